"""AES-GCM authenticated encryption of the Shamir shares a client sends through the server.

The server relays every share, so each one is encrypted for its recipient and bound to its
context through the associated data (round, sender, recipient): a ciphertext moved to another
round or pair fails to decrypt. Output format: ``nonce (12 bytes) || ciphertext || tag (16)``.
A random 96-bit nonce is safe here because each key encrypts only a handful of messages.

:func:`seal_once` / :func:`open_once` are for keys derived for exactly one message (the
share bundles: one HKDF key per round, sender and recipient). A key that encrypts a single
plaintext can use a fixed all-zero nonce, the construction TLS 1.3 and HPKE rely on, which
saves the 12 nonce bytes on every bundle: ``ciphertext || tag (16)``. Never call
:func:`seal_once` twice with one key.

Authentication failure raises :class:`~secagg.errors.TamperedMessageError` (a ProtocolError)
rather than a bare CryptoError: a ciphertext that does not verify is, by definition, a
tampered message, and protocol code can then ignore it like any other offending message.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg.errors import CryptoError, TamperedMessageError

NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES
#: Bytes :func:`seal_once` adds to a plaintext (the tag only).
ONCE_OVERHEAD = TAG_BYTES
_ZERO_NONCE = bytes(NONCE_BYTES)
_KEY_SIZES = (16, 24, 32)


def _cipher(key: bytes) -> AESGCM:
    if len(key) not in _KEY_SIZES:
        raise CryptoError(f"AES-GCM keys are 16, 24 or 32 bytes, got {len(key)}")
    return AESGCM(key)


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext``; ``associated_data`` is authenticated, not sent."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _cipher(key).encrypt(nonce, plaintext, associated_data)


def decrypt(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Inverse of :func:`encrypt`; raises TamperedMessageError unless everything verifies."""
    if len(sealed) < OVERHEAD:
        raise TamperedMessageError(
            f"AES-GCM ciphertext is {len(sealed)} bytes, shorter than nonce + tag ({OVERHEAD})"
        )
    return _open(key, sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)


def _open(key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    try:
        return _cipher(key).decrypt(nonce, sealed, associated_data)
    except InvalidTag as exc:
        raise TamperedMessageError(
            "AES-GCM authentication failed: the ciphertext was modified, or it belongs to "
            "another round, sender or recipient"
        ) from exc


def seal_once(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt the single message ``key`` will ever protect (fixed nonce; module docstring)."""
    return _cipher(key).encrypt(_ZERO_NONCE, plaintext, associated_data)


def open_once(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Inverse of :func:`seal_once`; raises TamperedMessageError unless everything verifies."""
    if len(sealed) < TAG_BYTES:
        raise TamperedMessageError(
            f"AES-GCM ciphertext is {len(sealed)} bytes, shorter than its tag ({TAG_BYTES})"
        )
    return _open(key, _ZERO_NONCE, sealed, associated_data)
