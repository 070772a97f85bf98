"""HKDF: keys depend on the secret and on every field of the context, unambiguously."""

from __future__ import annotations

import pytest

from secagg.crypto.kdf import derive_key, encode_context
from secagg.errors import CryptoError


def test_same_secret_and_context_give_the_same_key() -> None:
    info = encode_context(b"label", 1, 2)
    assert derive_key(b"secret", info=info) == derive_key(b"secret", info=info)
    assert len(derive_key(b"secret", info=info, length=16)) == 16


def test_every_context_field_changes_the_key() -> None:
    keys = {
        derive_key(b"secret", info=encode_context(b"label", 1, 2)),
        derive_key(b"secret", info=encode_context(b"label", 2, 1)),
        derive_key(b"secret", info=encode_context(b"other", 1, 2)),
        derive_key(b"secret", info=encode_context(b"label", 1, 2, 0)),
        derive_key(b"secreT", info=encode_context(b"label", 1, 2)),
    }
    assert len(keys) == 5


def test_context_encoding_is_unambiguous() -> None:
    # A naive concatenation would make ("ab", 1) and ("a", ...) collide; the length prefix
    # and fixed-width fields prevent it.
    assert encode_context(b"ab") != encode_context(b"a", ord("b"))
    assert encode_context(b"x", 1, 2) != encode_context(b"x", 0x0102)


def test_invalid_inputs_raise_crypto_error() -> None:
    with pytest.raises(CryptoError):
        encode_context(b"x", -1)
    with pytest.raises(CryptoError):
        encode_context(b"x" * 256)
    with pytest.raises(CryptoError):
        derive_key(b"", info=b"i")
    with pytest.raises(CryptoError):
        derive_key(b"s", info=b"i", length=0)
