"""How our messages ride inside Flower messages: one envelope, bytes in, bytes out.

A Flower :class:`~flwr.app.Message` carries a :class:`~flwr.app.RecordDict`. Ours holds two
records: ``secagg.meta`` (a ConfigRecord of small public scalars: round, counts, ε, the
client's id) and ``secagg.blobs`` (an ArrayRecord of byte strings, each one ``uint8`` array
so Flower chunks large ones). The byte strings are our own wire format, unchanged: masking
messages are :mod:`secagg.masking.messages` encodings (``to_bytes``/``decode_*``), HE
ciphertexts are the backend's serialisation, vectors are little-endian float32/float64.
Flower never parses them; the state machines at each end do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

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
    """``(meta, blobs)`` of a RecordDict made by :func:`pack`."""
    meta = dict(content.config_records.get(META, {}))
    arrays = content.array_records.get(BLOBS)
    blobs = {} if arrays is None else {k: arrays[k].numpy().tobytes() for k in arrays}
    return meta, blobs


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


def from_f32(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def f64(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f8").tobytes()


def from_f64(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f8").astype(np.float64)
