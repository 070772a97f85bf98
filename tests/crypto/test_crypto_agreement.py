"""X25519: both sides agree on one secret; raw encodings round-trip; bad points are refused."""

from __future__ import annotations

import pytest

from secagg.crypto.agreement import (
    KEY_BYTES,
    agree,
    generate_key_pair,
    key_pair_from_private_bytes,
    validate_public_key,
)
from secagg.errors import CryptoError


def test_both_parties_derive_the_same_secret() -> None:
    alice, bob = generate_key_pair(), generate_key_pair()
    assert agree(alice.private, bob.public) == agree(bob.private, alice.public)
    assert len(agree(alice.private, bob.public)) == KEY_BYTES


def test_different_partners_give_different_secrets() -> None:
    alice, bob, carol = generate_key_pair(), generate_key_pair(), generate_key_pair()
    assert agree(alice.private, bob.public) != agree(alice.private, carol.public)


def test_raw_private_bytes_rebuild_the_same_key_pair() -> None:
    pair = generate_key_pair()
    rebuilt = key_pair_from_private_bytes(pair.private_bytes())
    assert rebuilt.public == pair.public
    assert len(pair.public) == len(pair.private_bytes()) == KEY_BYTES


def test_repr_never_shows_the_private_key() -> None:
    pair = generate_key_pair()
    assert pair.private_bytes().hex() not in repr(pair)


def test_low_order_public_key_is_refused() -> None:
    with pytest.raises(CryptoError, match="low-order"):
        validate_public_key(bytes(KEY_BYTES))
    with pytest.raises(CryptoError, match="low-order"):
        agree(generate_key_pair().private, bytes(KEY_BYTES))


@pytest.mark.parametrize("size", [0, 31, 33])
def test_wrong_key_lengths_are_refused(size: int) -> None:
    with pytest.raises(CryptoError, match="32 bytes"):
        agree(generate_key_pair().private, b"\x09" * size)
    with pytest.raises(CryptoError, match="32 bytes"):
        key_pair_from_private_bytes(b"\x01" * size)
