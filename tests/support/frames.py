"""Frames with one declared length inflated or cut short, fed to a decoder whose work is
counted (:mod:`support.work_budget`): the harness of the bounded-parsing tests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import strategies as st
from support.work_budget import python_steps

from secagg.errors import CryptoError, HEError, TamperedMessageError

#: Python steps any decoder may take on a frame of a few kB (they take hundreds).
BUDGET = 50_000
#: What a bad frame is refused with: the library's named errors.
NAMED = (TamperedMessageError, HEError, CryptoError)
DIGEST = 32


@dataclass(frozen=True)
class Decoder:
    name: str
    frame: bytes = field(repr=False)
    fields: tuple[tuple[int, int], ...]  # (offset, width) of every declared length or count
    decode: Callable[[bytes], Any] = field(repr=False)
    digest: bool  # the frame ends with an unkeyed SHA-256 of the rest, which we recompute

    def with_field(self, offset: int, width: int, value: int) -> bytes:
        body = self.frame[:-DIGEST] if self.digest else self.frame
        body = body[:offset] + value.to_bytes(width, "big") + body[offset + width :]
        return body + hashlib.sha256(body).digest() if self.digest else body

    def truncated(self, cut: int, redigest: bool) -> bytes:
        if not (self.digest and redigest):
            return self.frame[:cut]
        body = self.frame[:-DIGEST][:cut]
        return body + hashlib.sha256(body).digest()


def _inflated(width: int, frame: bytes) -> st.SearchStrategy[int]:
    """Values no frame of this size can hold: beyond its bytes (and its bits, for counts of
    values), up to the field's maximum; for a one-byte session length, beyond 64."""
    top = 2 ** (8 * width) - 1
    if width == 1:
        return st.integers(65, top)
    low = 8 * len(frame) + 1
    return st.one_of(st.just(top), st.just(2**44), st.integers(low, top)).filter(
        lambda v: low <= v <= top
    )


def _pick(decoders: list[Decoder], data: st.DataObject) -> Decoder:
    """One decoder, reported by name (a failing example never prints a whole frame)."""
    name = data.draw(st.sampled_from([d.name for d in decoders]), label="decoder")
    return next(d for d in decoders if d.name == name)


def check_inflated(decoders: list[Decoder], data: st.DataObject) -> None:
    """One length or count field of one frame declared beyond what the frame holds."""
    decoder = _pick(decoders, data)
    offset, width = data.draw(st.sampled_from(decoder.fields), label="field")
    value = data.draw(_inflated(width, decoder.frame), label="declared")
    with python_steps(BUDGET), pytest.raises(NAMED):
        decoder.decode(decoder.with_field(offset, width, value))


def check_truncated(decoders: list[Decoder], data: st.DataObject) -> None:
    """One frame cut short (its digest recomputed over what is left, or not)."""
    decoder = _pick(decoders, data)
    redigest = decoder.digest and data.draw(st.booleans(), label="digest recomputed")
    kept = len(decoder.frame) - (DIGEST if redigest else 0)  # bytes a valid cut falls short of
    cut = data.draw(st.integers(0, kept - 1), label="kept bytes")
    with python_steps(BUDGET), pytest.raises(NAMED):
        decoder.decode(decoder.truncated(cut, redigest))
