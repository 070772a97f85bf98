"""HKDF-SHA256 key derivation with explicit, unambiguous context.

Every key in the protocol is derived for exactly one purpose; the purpose (a label plus the
integers it is bound to, e.g. round and client pair) goes into HKDF's ``info``. Fields are
length-prefixed / fixed-width so no two different contexts encode to the same bytes.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.errors import CryptoError

_U64 = struct.Struct(">Q")
_MAX_LENGTH = 255 * 32  # RFC 5869 limit for SHA-256


def encode_context(label: bytes, *fields: int) -> bytes:
    """``len(label) || label || field_1 || ... `` with each field a big-endian uint64."""
    if len(label) > 255:
        raise CryptoError(f"a context label is at most 255 bytes, got {len(label)}")
    try:
        return bytes([len(label)]) + label + b"".join(_U64.pack(f) for f in fields)
    except struct.error as exc:
        raise CryptoError(f"context fields must be integers in [0, 2^64), got {fields}") from exc


def derive_key(secret: bytes, *, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256(secret) for the purpose named by ``info``."""
    if not 1 <= length <= _MAX_LENGTH:
        raise CryptoError(f"HKDF-SHA256 output length must be in [1, {_MAX_LENGTH}], got {length}")
    if not secret:
        raise CryptoError("refusing to derive a key from an empty secret")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)
