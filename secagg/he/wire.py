"""Byte framing shared by both HE backends: public keys, ciphertext vectors, sealed secret keys.

Every frame starts with ``b"SAHE" | version | kind | scheme`` so that a blob is never read as
the wrong thing (a public key as a ciphertext, a Paillier vector as a CKKS one). Public keys and
ciphertexts end with a SHA-256 digest of everything before it:

    public key:  header | params_len u32 | params (canonical JSON) | key_len u64 | key | digest
    ciphertext:  header | key_id (16) | length u64 | summands u32 | payload_len u64 | payload
                 | digest

The digest is unkeyed. It catches truncation and accidental or naive alteration with a named
error before the bytes reach TenSEAL or gmpy2 (a flipped coefficient would otherwise decrypt
to garbage without complaint), but anyone can recompute it: it does not authenticate the
sender. Authenticity is the transport's or the ledger's job (the ledger commits each blob's
hash). The key id is the first 16 bytes of the public key frame's digest, so a ciphertext names
the exact key and parameter set it was made under.

Secret keys only ever leave memory sealed with AES-GCM under a caller-supplied key:

    sealed secret: header | key_id (16) | AES-GCM(public key frame, secret material)

Every declared length or count is checked against the bytes present before anything is
allocated or looped over (:class:`Reader`), so a frame costs work in proportion to its own
size, whatever it claims: an 83-byte frame declaring 2^44 values is refused in microseconds.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from secagg.crypto import aead
from secagg.errors import HEError, TamperedMessageError

MAGIC = b"SAHE"
VERSION = 1
KEY_ID_BYTES = 16
DIGEST_BYTES = 32
SCHEME_IDS = {"ckks": 1, "paillier": 2}
_SCHEME_NAMES = {v: k for k, v in SCHEME_IDS.items()}

_HEADER = struct.Struct(">4sBBB")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_VECTOR_FIELDS = struct.Struct(">QIQ")
_SECRET_AD = b"secagg/he/sealed-secret-key/v1"
_MAX_PARAM_BRACKETS = 16  # "[" and "{" in a public key's parameters (they hold two)


class Kind(IntEnum):
    PUBLIC_KEY = 1
    CIPHERTEXT = 2
    SEALED_SECRET = 3


@dataclass(frozen=True)
class PublicKeyFrame:
    scheme: str
    params: dict[str, Any]
    key: bytes
    key_id: bytes


@dataclass(frozen=True)
class CiphertextFrame:
    length: int
    summands: int
    payload: bytes


def canonical_json(fields: dict[str, Any]) -> bytes:
    """One byte string per parameter set, so equal parameters give equal key ids."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _header(kind: Kind, scheme: str) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind, SCHEME_IDS[scheme])


def _with_digest(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def peek_scheme(data: bytes) -> str:
    """The scheme a frame belongs to (for dispatching), after checking magic and version."""
    if len(data) < _HEADER.size:
        raise TamperedMessageError(f"HE frame truncated: {len(data)} bytes, header alone is 7")
    magic, version, _kind, scheme_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise TamperedMessageError("not a secagg HE frame (bad magic bytes)")
    if version != VERSION:
        raise HEError(f"HE frame version {version} is not supported (this library reads {VERSION})")
    if scheme_id not in _SCHEME_NAMES:
        raise TamperedMessageError(f"HE frame names unknown scheme id {scheme_id}")
    return _SCHEME_NAMES[scheme_id]


def _open(data: bytes, kind: Kind, scheme: str, *, digest: bool) -> memoryview:
    """Check header (and digest); return the body between header and digest."""
    found = peek_scheme(data)
    found_kind = data[_HEADER.size - 2]
    if found_kind != kind:
        known = {k.value: k.name.lower() for k in Kind}
        got = known.get(found_kind, f"frame of unknown kind {found_kind}")
        raise TamperedMessageError(f"HE frame is a {got}, expected a {kind.name.lower()}")
    if found != scheme:
        raise HEError(f"HE frame belongs to scheme {found!r}, expected {scheme!r}")
    if not digest:
        return memoryview(data)[_HEADER.size :]
    if len(data) < _HEADER.size + DIGEST_BYTES:
        raise TamperedMessageError(f"HE frame truncated: {len(data)} bytes")
    body, tag = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != tag:
        raise TamperedMessageError(
            f"HE {kind.name.lower()} digest mismatch: the bytes were truncated or altered"
        )
    return memoryview(body)[_HEADER.size :]


class Reader:
    """Bounds-checked sequential reads; running past the end is a truncated frame.

    Lengths and counts are read through :meth:`take` and :meth:`count`, which compare what
    is declared with what is left before anything is copied or looped over.
    """

    def __init__(self, view: memoryview | bytes, what: str) -> None:
        self._view, self._pos, self._what = memoryview(view), 0, what

    @property
    def remaining(self) -> int:
        return len(self._view) - self._pos

    def fail(self, reason: str) -> TamperedMessageError:
        return TamperedMessageError(f"HE {self._what} malformed: {reason}")

    def take(self, size: int) -> bytes:
        if size < 0 or size > self.remaining:
            raise TamperedMessageError(
                f"HE {self._what} truncated or malformed: {size} bytes declared, "
                f"{self.remaining} left"
            )
        out = bytes(self._view[self._pos : self._pos + size])
        self._pos += size
        return out

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        return layout.unpack(self.take(layout.size))

    def u32(self) -> int:
        return int(self.unpack(_U32)[0])

    def u64(self) -> int:
        return int(self.unpack(_U64)[0])

    def count(self, min_entry_bytes: int) -> int:
        """A u32 entry count, refused if the bytes left cannot hold that many entries."""
        n = self.u32()
        if n * min_entry_bytes > self.remaining:
            raise self.fail(
                f"declares {n} entries of at least {min_entry_bytes} bytes, "
                f"only {self.remaining} bytes left"
            )
        return n

    def finish(self) -> None:
        if self.remaining:
            raise TamperedMessageError(f"HE {self._what} has {self.remaining} trailing bytes")


def pack_public_key(scheme: str, params: dict[str, Any], key: bytes) -> bytes:
    encoded = canonical_json(params)
    body = (
        _header(Kind.PUBLIC_KEY, scheme)
        + _U32.pack(len(encoded))
        + encoded
        + _U64.pack(len(key))
        + key
    )
    return _with_digest(body)


def key_id_of(public_key_frame: bytes) -> bytes:
    return public_key_frame[-DIGEST_BYTES:][:KEY_ID_BYTES]


def unpack_public_key(data: bytes, scheme: str) -> PublicKeyFrame:
    reader = Reader(_open(data, Kind.PUBLIC_KEY, scheme, digest=True), "public key")
    (params_len,) = reader.unpack(_U32)
    raw = reader.take(params_len)
    (key_len,) = reader.unpack(_U64)
    key = reader.take(key_len)
    reader.finish()
    # Parameters are one flat object with one list in it. Deeper nesting is refused before
    # the JSON parser recurses into it (past the recursion limit it raises RecursionError, and
    # where a program raised that limit it can overflow the C stack).
    if raw.count(b"[") + raw.count(b"{") > _MAX_PARAM_BRACKETS:
        raise TamperedMessageError("HE public key parameters are nested too deeply")
    try:
        params = json.loads(raw)
    except (ValueError, RecursionError):
        raise TamperedMessageError("HE public key parameters are not valid JSON") from None
    if not isinstance(params, dict) or canonical_json(params) != raw:
        raise TamperedMessageError("HE public key parameters are not in canonical form")
    return PublicKeyFrame(scheme, params, key, key_id_of(data))


def pack_ciphertext(
    scheme: str, key_id: bytes, length: int, summands: int, payload: bytes
) -> bytes:
    body = (
        _header(Kind.CIPHERTEXT, scheme)
        + key_id
        + _VECTOR_FIELDS.pack(length, summands, len(payload))
        + payload
    )
    return _with_digest(body)


def unpack_ciphertext(data: bytes, scheme: str, key_id: bytes) -> CiphertextFrame:
    reader = Reader(_open(data, Kind.CIPHERTEXT, scheme, digest=True), "ciphertext")
    found_id = reader.take(KEY_ID_BYTES)
    if found_id != key_id:
        raise HEError(
            f"ciphertext was encrypted under key {found_id.hex()}, not this key {key_id.hex()}: "
            "every client must use the public key of the current round"
        )
    length, summands, payload_len = reader.unpack(_VECTOR_FIELDS)
    payload = reader.take(payload_len)
    reader.finish()
    if length < 1 or summands < 1:
        raise TamperedMessageError(f"ciphertext declares length {length}, summands {summands}")
    return CiphertextFrame(length, summands, payload)


def seal_secret(
    scheme: str, key_id: bytes, public_frame: bytes, material: bytes, wrapping_key: bytes
) -> bytes:
    header = _header(Kind.SEALED_SECRET, scheme) + key_id
    plaintext = _U64.pack(len(public_frame)) + public_frame + material
    return header + aead.encrypt(wrapping_key, plaintext, _SECRET_AD + header)


def open_secret(sealed: bytes, scheme: str, wrapping_key: bytes) -> tuple[bytes, bytes]:
    """(public key frame, secret material) of a sealed secret key; wrong key or bytes: raises."""
    body = _open(sealed, Kind.SEALED_SECRET, scheme, digest=False)
    if len(body) < KEY_ID_BYTES:
        raise TamperedMessageError("sealed HE secret key truncated")
    header = bytes(sealed[: _HEADER.size + KEY_ID_BYTES])
    plaintext = aead.decrypt(wrapping_key, bytes(body[KEY_ID_BYTES:]), _SECRET_AD + header)
    reader = Reader(memoryview(plaintext), "sealed secret key")
    (public_len,) = reader.unpack(_U64)
    public_frame = reader.take(public_len)
    material = bytes(memoryview(plaintext)[_U64.size + public_len :])
    if key_id_of(public_frame) != header[_HEADER.size :]:
        raise TamperedMessageError("sealed HE secret key names another public key")
    return public_frame, material
