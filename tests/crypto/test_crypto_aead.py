"""AES-GCM: a share decrypts only under its own key and its own (round, sender, recipient)."""

from __future__ import annotations

import os

import pytest

from secagg.crypto import aead
from secagg.crypto.kdf import encode_context
from secagg.errors import CryptoError, TamperedMessageError

KEY = os.urandom(32)


def _ad(round_id: int, sender: int, recipient: int) -> bytes:
    return encode_context(b"test/share", round_id, sender, recipient)


def test_round_trip_and_size() -> None:
    sealed = aead.encrypt(KEY, b"share bytes", _ad(1, 2, 3))
    assert aead.decrypt(KEY, sealed, _ad(1, 2, 3)) == b"share bytes"
    assert len(sealed) == len(b"share bytes") + aead.OVERHEAD


def test_random_nonce_makes_ciphertexts_differ() -> None:
    assert aead.encrypt(KEY, b"same", b"ad") != aead.encrypt(KEY, b"same", b"ad")


@pytest.mark.parametrize(
    "other_context",
    [(2, 2, 3), (1, 3, 2), (1, 2, 4), (1, 4, 3)],
    ids=["other round", "reversed direction", "other recipient", "other sender"],
)
def test_associated_data_binds_round_sender_and_recipient(
    other_context: tuple[int, int, int],
) -> None:
    sealed = aead.encrypt(KEY, b"share", _ad(1, 2, 3))
    with pytest.raises(TamperedMessageError, match="authentication failed"):
        aead.decrypt(KEY, sealed, _ad(*other_context))


def test_flipped_byte_anywhere_is_detected() -> None:
    sealed = aead.encrypt(KEY, b"share", b"ad")
    for position in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(TamperedMessageError):
            aead.decrypt(KEY, bytes(tampered), b"ad")


def test_wrong_key_and_truncation_are_detected() -> None:
    sealed = aead.encrypt(KEY, b"share", b"ad")
    with pytest.raises(TamperedMessageError):
        aead.decrypt(os.urandom(32), sealed, b"ad")
    with pytest.raises(TamperedMessageError, match="shorter"):
        aead.decrypt(KEY, sealed[: aead.OVERHEAD - 1], b"ad")


def test_bad_key_length_is_a_crypto_error() -> None:
    with pytest.raises(CryptoError, match="16, 24 or 32"):
        aead.encrypt(b"short", b"x", b"")


def test_single_use_sealing_round_trips_without_a_nonce_and_checks_its_context() -> None:
    sealed = aead.seal_once(KEY, b"bundle", _ad(1, 2, 3))
    assert len(sealed) == len(b"bundle") + aead.ONCE_OVERHEAD == len(b"bundle") + 16
    assert aead.open_once(KEY, sealed, _ad(1, 2, 3)) == b"bundle"
    for other in (_ad(2, 2, 3), _ad(1, 3, 2)):
        with pytest.raises(TamperedMessageError, match="authentication failed"):
            aead.open_once(KEY, sealed, other)
    with pytest.raises(TamperedMessageError, match="authentication failed"):
        aead.open_once(os.urandom(32), sealed, _ad(1, 2, 3))
    with pytest.raises(TamperedMessageError, match="shorter than its tag"):
        aead.open_once(KEY, sealed[:15], _ad(1, 2, 3))
