"""Count the work a call does, in Python steps, instead of timing it.

Tests never assert on wall time; a decoder that loops or allocates by a declared length
instead of by the bytes present is caught by the number of Python lines it executes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class WorkBudgetExceeded(AssertionError):
    """The call ran more Python steps than its budget: its work is not bounded by its input."""


@contextmanager
def python_steps(limit: int) -> Iterator[None]:
    """Raise WorkBudgetExceeded inside the block once it has executed ``limit`` lines."""
    executed = 0
    previous = sys.gettrace()

    def on_line(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal executed
        if event == "line":
            executed += 1
            if executed > limit:
                raise WorkBudgetExceeded(f"more than {limit} Python steps")
        return on_line

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        return on_line

    sys.settrace(on_call)
    try:
        yield
    finally:
        sys.settrace(previous)
