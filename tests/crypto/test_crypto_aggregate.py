"""BLS aggregate signatures: the sum verifies for exactly the signers and message it stands
for, and one bad signature anywhere in it makes the whole sum fail."""

from __future__ import annotations

import pytest
from blspy import G1Element

from secagg.crypto.aggregate import (
    SIGNATURE_BYTES,
    AggregateSigningKey,
    aggregate,
    load_public_key,
    verify,
    verify_aggregate,
)
from secagg.errors import CryptoError, TamperedMessageError


def _keys(n: int) -> list[AggregateSigningKey]:
    return [AggregateSigningKey.from_seed(bytes([i]) * 32) for i in range(1, n + 1)]


def _public(key: AggregateSigningKey) -> G1Element:
    return load_public_key(key.public, key.prove_possession())


def test_a_signature_verifies_for_its_message_and_key_only() -> None:
    alice, bob = _keys(2)
    signature = alice.sign(b"survivors 1,2,3")
    assert len(signature) == SIGNATURE_BYTES
    verify(_public(alice), signature, b"survivors 1,2,3", "alice")
    with pytest.raises(TamperedMessageError, match="alice: the aggregate signature does not"):
        verify(_public(alice), signature, b"survivors 1,2", "alice")
    with pytest.raises(TamperedMessageError, match="bob"):
        verify(_public(bob), signature, b"survivors 1,2,3", "bob")
    with pytest.raises(TamperedMessageError, match="96 bytes, got 95"):
        verify(_public(alice), signature[:-1], b"survivors 1,2,3", "alice")


def test_the_sum_verifies_for_exactly_its_signers_and_message() -> None:
    keys = _keys(6)
    publics = [_public(k) for k in keys]
    message = b"the survivor set"
    total = aggregate(k.sign(message) for k in keys[:5])
    verify_aggregate(publics[:5], total, message, "quorum")
    for wrong in (publics[:4], publics[1:6], publics[:5] + publics[5:]):  # missing, swapped, extra
        with pytest.raises(TamperedMessageError, match="quorum"):
            verify_aggregate(wrong, total, message, "quorum")
    with pytest.raises(TamperedMessageError):
        verify_aggregate(publics[:5], total, b"another set", "quorum")


def test_one_signature_on_another_message_spoils_the_sum() -> None:
    keys = _keys(4)
    signatures = [k.sign(b"set A") for k in keys[:3]] + [keys[3].sign(b"set B")]
    with pytest.raises(TamperedMessageError):
        verify_aggregate([_public(k) for k in keys], aggregate(signatures), b"set A", "quorum")


def test_bytes_that_are_not_a_signature_are_refused_before_adding_up() -> None:
    with pytest.raises(TamperedMessageError, match="not a BLS signature"):
        aggregate([b"\x01" * SIGNATURE_BYTES])
    with pytest.raises(TamperedMessageError, match="at least one signer"):
        verify_aggregate([], aggregate([]), b"m", "quorum")


def test_a_public_key_needs_its_own_proof_of_possession() -> None:
    alice, bob = _keys(2)
    with pytest.raises(CryptoError, match="without a valid proof of possession"):
        load_public_key(alice.public, bob.prove_possession())
    with pytest.raises(CryptoError, match="48 bytes, got 47"):
        load_public_key(alice.public[:-1], alice.prove_possession())
    with pytest.raises(CryptoError, match="seed is at least 32 bytes"):
        AggregateSigningKey.from_seed(b"short")
