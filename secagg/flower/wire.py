"""How our messages ride inside Flower messages: one envelope, bytes in, bytes out.

A Flower :class:`~flwr.app.Message` carries a :class:`~flwr.app.RecordDict`. Ours holds two
records: ``secagg.meta`` (a ConfigRecord of small public scalars: round, counts, ε, the
client's id) and ``secagg.blobs`` (an ArrayRecord of byte strings, each one ``uint8`` array
so Flower chunks large ones). The byte strings are our own wire format, unchanged: masking
messages are :mod:`secagg.masking.messages` encodings (``to_bytes``/``decode_*``), HE
ciphertexts are the backend's serialisation, vectors are little-endian float32/float64.
Flower never parses them; the state machines at each end do.

Everything read from a message is checked before it is used: each blob's declared length
against the bytes present (before anything is allocated), vectors against the length the
reader expects, meta values against their type and range. A message that fails is refused with
:class:`~secagg.errors.TamperedMessageError`, never a raw ``KeyError`` or ``ValueError``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from secagg.errors import TamperedMessageError

META = "secagg.meta"
BLOBS = "secagg.blobs"

#: Scalar types a meta record may hold (Flower's ConfigRecord types).
Scalar = int | float | str | bool


def pack(meta: Mapping[str, Scalar | None], blobs: Mapping[str, bytes] | None = None) -> Any:
    """A RecordDict with ``meta`` (None values left out) and ``blobs``."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    record = RecordDict({META: ConfigRecord({k: v for k, v in meta.items() if v is not None})})
    if blobs:
        record[BLOBS] = ArrayRecord(
            {
                name: Array(np.frombuffer(data, dtype=np.uint8).copy())
                for name, data in blobs.items()
            }
        )
    return record


def unpack(content: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(meta, blobs)`` of a RecordDict made by :func:`pack` (each blob checked)."""
    meta = dict(content.config_records.get(META, {}))
    arrays = content.array_records.get(BLOBS)
    blobs = {} if arrays is None else {k: array_bytes(k, arrays[k]) for k in arrays}
    return meta, blobs


def array_bytes(name: str, array: Any) -> bytes:
    """The bytes of one blob: a 1-D ``uint8`` Flower Array, its .npy header checked first.

    The header's declared length must equal both the Array's declared shape and the bytes
    actually present, so an inflated length is refused before any buffer is allocated
    (``Array.numpy()`` would allocate what the header claims).
    """

    def refuse(why: str) -> TamperedMessageError:
        return TamperedMessageError(f"malformed blob {name!r}: {why}")

    shape = tuple(getattr(array, "shape", ()))
    if getattr(array, "stype", None) != "numpy.ndarray" or getattr(array, "dtype", None) != "uint8":
        raise refuse("not a uint8 numpy array")
    if len(shape) != 1:
        raise refuse(f"shape {shape} is not one byte string")
    data = getattr(array, "data", b"")
    if not isinstance(data, bytes):
        raise refuse("its data are not bytes")
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(stream)
        else:
            raise refuse(f".npy version {version} is not 1.0 or 2.0")
    except (ValueError, EOFError) as exc:
        raise refuse(f"bad .npy header ({exc})") from None
    declared, fortran, dtype = header
    if declared != shape or fortran or dtype != np.dtype(np.uint8):
        raise refuse(f"its header declares {declared} {dtype}, the array {shape} uint8")
    present = len(data) - stream.tell()
    if present != shape[0]:
        raise refuse(f"declares {shape[0]} bytes, {present} are present")
    return data[stream.tell() :]


def blob(blobs: Mapping[str, bytes], name: str) -> bytes:
    """The blob ``name``, which the message must carry."""
    if name not in blobs:
        raise TamperedMessageError(f"the message carries no {name!r} blob")
    return blobs[name]


def meta_int(meta: Mapping[str, Any], name: str, *, minimum: int = 0) -> int:
    """An integer meta value in [minimum, 2^63)."""
    value = meta.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**63:
        raise TamperedMessageError(
            f"meta {name} = {value!r}: expected an integer in [{minimum}, 2^63)"
        )
    return value


def meta_number(meta: Mapping[str, Any], name: str) -> float:
    """A finite number > 0."""
    value = meta.get(name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise TamperedMessageError(f"meta {name} = {value!r}: expected a finite number > 0")
    return float(value)


def meta_text(meta: Mapping[str, Any], name: str, *, max_chars: int = 4096) -> str:
    value = meta.get(name)
    if not isinstance(value, str) or len(value) > max_chars:
        raise TamperedMessageError(
            f"meta {name}: expected a string of at most {max_chars} characters"
        )
    return value


def meta_ids(meta: Mapping[str, Any], name: str, *, limit: int) -> list[int]:
    """A comma-separated list of at most ``limit`` distinct ids ("0,1,2"), sorted.

    The text's length is bounded before it is split, so a list of 2^40 ids costs nothing.
    """
    text = meta_text(meta, name, max_chars=21 * limit)
    parts = text.split(",")
    if len(parts) > limit or not all(p.isdigit() and len(p) <= 19 for p in parts):
        raise TamperedMessageError(
            f"meta {name}: expected at most {limit} comma-separated ids, got {text[:60]!r}"
        )
    ids = sorted(int(p) for p in parts)
    if len(set(ids)) != len(ids):
        raise TamperedMessageError(f"meta {name}: an id appears twice")
    return ids


def counts_text(counts: Mapping[int, int]) -> str:
    """``{0: 120, 1: 88}`` -> ``"0:120,1:88"`` (ids in order), for :func:`meta_counts`."""
    return ",".join(f"{c}:{counts[c]}" for c in sorted(counts))


def meta_counts(meta: Mapping[str, Any], name: str, *, limit: int) -> dict[int, int]:
    """A comma-separated table of at most ``limit`` ``id:count`` pairs, ids distinct and
    counts >= 1 ("0:120,1:88"). Its length is bounded before it is split."""
    text = meta_text(meta, name, max_chars=41 * limit)
    parts = [p.split(":") for p in text.split(",")]
    if len(parts) > limit or not all(
        len(p) == 2 and all(v.isdigit() and len(v) <= 19 for v in p) for p in parts
    ):
        raise TamperedMessageError(
            f"meta {name}: expected at most {limit} comma-separated id:count pairs, got "
            f"{text[:60]!r}"
        )
    counts = {int(c): int(n) for c, n in parts}
    if len(counts) != len(parts):
        raise TamperedMessageError(f"meta {name}: an id appears twice")
    if min(counts.values()) < 1:
        raise TamperedMessageError(f"meta {name}: a count is 0")
    return counts


def payload_bytes(blobs: Mapping[str, bytes]) -> int:
    """The bytes of our own payload in a message (what the in-process runner counts)."""
    return sum(len(b) for b in blobs.values())


def framed_bytes(message: Any) -> int | None:
    """Bytes of ``message`` as Flower transfers it (its deflated objects), if measurable."""
    try:
        from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

        return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())
    except Exception:  # internal API: a figure we can do without
        return None


def f32(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_f32(data: bytes, count: int | None = None) -> np.ndarray:
    """A float32 vector; ``count``: the length the reader expects (checked before copying)."""
    return _vector(data, np.dtype("<f4"), count).astype(np.float32)


def f64(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f8").tobytes()


def from_f64(data: bytes, count: int | None = None) -> np.ndarray:
    """A float64 vector; ``count``: the length the reader expects (checked before copying)."""
    return _vector(data, np.dtype("<f8"), count).astype(np.float64)


def _vector(data: bytes, dtype: np.dtype, count: int | None) -> np.ndarray:
    size = dtype.itemsize
    if len(data) % size or (count is not None and len(data) != count * size):
        expected = f"{count} values ({count * size} bytes)" if count is not None else "whole"
        raise TamperedMessageError(
            f"a vector of {dtype.name} has {len(data)} bytes; expected {expected}"
        )
    return np.frombuffer(data, dtype=dtype)
