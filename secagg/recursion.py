"""Recursive decoders of untrusted input, kept within Python's recursion limit.

py-evm and py_ecc raise the interpreter's recursion limit when they are imported (to 12,288
and 100,000 frames: the EVM's call depth and the pairing code need it), and every run with a
ledger or signed rounds imports them. A decoder that recurses once per level of nesting the
input declares (``json.loads``, RLP) would then overflow the C stack on a few hundred
kilobytes of ``[[[[...`` and kill the process with a segmentation fault, long before Python
raises RecursionError. :func:`shallow_recursion` lowers the limit for the duration of one
decode, so deep nesting is a RecursionError the decoder turns into its named error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Frames a decoder may use above its caller: far more than any honest record nests
#: (a block with its transactions is under 100), far less than the C stack holds.
DECODER_FRAMES = 400


@contextmanager
def shallow_recursion(frames: int = DECODER_FRAMES) -> Iterator[None]:
    """Run the body with at most ``frames`` Python frames above the current one.

    The limit is the interpreter's, so this is for single-threaded decoding (the audit, the
    run's own records); it is restored on exit, whatever happens inside.
    """
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(min(previous, depth + frames))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)
