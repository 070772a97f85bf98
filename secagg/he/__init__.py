"""Additively homomorphic encryption of float update vectors, behind one interface.

Clients encrypt their update under the key holder's public key, the aggregator adds the
ciphertexts without being able to read them, and only the secret-key holder decrypts the sum.

- :mod:`.base`: the interface (:class:`HEPublicKey`, :class:`HESecretKey`,
  :class:`EncryptedVector`, :class:`Capacity`) and the value-bound check
- :mod:`.wire`: byte framing of public keys, ciphertexts and sealed secret keys
- :mod:`.ckks`: CKKS through TenSEAL (approximate, fast, N/2 values per ciphertext; decryption
  adds flooding noise, since raw CKKS decryptions leak the secret key)
- :mod:`.paillier`: Paillier through phe + gmpy2, several fixed-point values per plaintext

Neither backend offers threshold decryption: the secret-key holder can decrypt any single
ciphertext it gets hold of, so the aggregator must never hold the key and the key holder must
never see individual ciphertexts. The backends are imported lazily (TenSEAL is heavy).
"""

from __future__ import annotations

import importlib
from typing import cast

from secagg.errors import HEError
from secagg.he import wire
from secagg.he.base import Capacity, EncryptedVector, HEBackend, HEPublicKey, HESecretKey

SCHEMES = ("ckks", "paillier")

__all__ = [
    "SCHEMES",
    "Capacity",
    "EncryptedVector",
    "HEBackend",
    "HEPublicKey",
    "HESecretKey",
    "backend",
    "load_public_key",
]


def backend(scheme: str) -> HEBackend:
    """The backend module for ``scheme`` ("ckks" or "paillier")."""
    if scheme not in SCHEMES:
        raise HEError(f"unknown HE scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return cast(HEBackend, importlib.import_module(f"secagg.he.{scheme}"))


def load_public_key(data: bytes) -> HEPublicKey:
    """A public key of either scheme from its bytes (the scheme is read from the frame)."""
    return backend(wire.peek_scheme(data)).load_public_key(data)
