"""Ed25519 identity keys: signatures verify only for their message and key; the directory
refuses entries that are not keys, with one line naming the entry."""

from __future__ import annotations

import pytest

from secagg.crypto.signing import (
    SIGNATURE_BYTES,
    IdentityDirectory,
    SigningKey,
    load_public_key,
    verify,
)
from secagg.errors import CryptoError, TamperedMessageError


def test_a_signature_verifies_for_its_message_and_key_only() -> None:
    alice, bob = SigningKey.generate(), SigningKey.generate()
    signature = alice.sign(b"survivors 1,2,3")
    assert len(signature) == SIGNATURE_BYTES
    verify(load_public_key(alice.public), signature, b"survivors 1,2,3", "alice")
    with pytest.raises(TamperedMessageError, match="alice: the signature does not verify"):
        verify(load_public_key(alice.public), signature, b"survivors 1,2", "alice")
    with pytest.raises(TamperedMessageError, match="bob: the signature does not verify"):
        verify(load_public_key(bob.public), signature, b"survivors 1,2,3", "bob")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(TamperedMessageError):
        verify(load_public_key(alice.public), flipped, b"survivors 1,2,3", "alice")
    with pytest.raises(TamperedMessageError, match="64 bytes, got 63"):
        verify(load_public_key(alice.public), signature[:-1], b"survivors 1,2,3", "alice")


def test_a_key_round_trips_through_its_raw_seed_and_never_shows_it() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_private_bytes(key.private_bytes())
    assert again.public == key.public
    assert key.private_bytes().hex() not in repr(key)
    with pytest.raises(CryptoError, match="32 raw bytes"):
        SigningKey.from_private_bytes(b"short")


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({0: "not bytes"}, "entry for client 0: an Ed25519 public key is 32 raw bytes, got str"),
        ({0: b"\x01" * 31}, "entry for client 0: .* got 31 bytes"),
        ({-1: b"\x01" * 32}, "ids are integers >= 0"),
        ({"0": b"\x01" * 32}, "ids are integers >= 0"),
        ([b"\x01" * 32], "maps client ids to raw public keys, got list"),
    ],
)
def test_a_directory_with_wrong_types_is_one_named_error(entries: object, match: str) -> None:
    with pytest.raises(CryptoError, match=match):
        IdentityDirectory(entries)  # type: ignore[arg-type]


def test_a_directory_refuses_one_key_for_two_clients() -> None:
    key = SigningKey.generate().public
    with pytest.raises(CryptoError, match="one public key for two clients"):
        IdentityDirectory({0: key, 1: key})


def test_generated_directory_matches_the_private_keys() -> None:
    directory, keys = IdentityDirectory.generate([3, 5])
    assert sorted(directory) == [3, 5] and len(directory) == 2
    for client, key in keys.items():
        assert directory.raw(client) == key.public
        verify(directory[client], key.sign(b"m"), b"m", f"client {client}")
