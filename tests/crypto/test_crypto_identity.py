"""Identity keys: one seed, three derived keys; pair keys agree only between the two parties;
the directory refuses entries that are not keys or lack a proof of possession, with one line
naming the entry."""

from __future__ import annotations

import pytest
from blspy import G1Element

from secagg.crypto import aggregate
from secagg.crypto.identity import RECORD_BYTES, IdentityDirectory, IdentityKey, parse_record
from secagg.errors import CryptoError, TamperedMessageError


def test_a_key_round_trips_through_its_seed_and_never_shows_it() -> None:
    key = IdentityKey.generate()
    again = IdentityKey.from_private_bytes(key.private_bytes())
    assert again.record == key.record and len(key.record) == RECORD_BYTES
    assert key.private_bytes().hex() not in repr(key)
    with pytest.raises(CryptoError, match="32-byte seed"):
        IdentityKey.from_private_bytes(b"short")


def test_the_pair_key_is_shared_by_exactly_the_two_identities() -> None:
    directory, keys = IdentityDirectory.generate([0, 1, 2])
    assert keys[0].pair_key(directory[1]) == keys[1].pair_key(directory[0])
    assert keys[0].pair_key(directory[1]) != keys[0].pair_key(directory[2])
    assert keys[2].pair_key(directory[1]) != keys[0].pair_key(directory[1])
    # From another identity's seed the pair key cannot be derived: a fresh seed gives another.
    impostor = IdentityKey.generate()
    assert impostor.pair_key(directory[1]) != keys[0].pair_key(directory[1])


def test_a_registered_record_parses_back_to_the_keys_it_was_made_from() -> None:
    key = IdentityKey.generate()
    parsed = parse_record(key.record)
    assert (parsed.name, parsed.agreement) == (key.public, key.agreement.public)
    assert bytes(parsed.aggregate) == key.aggregate.public


def _with(record: bytes, start: int, value: bytes) -> bytes:
    return record[:start] + value + record[start + len(value) :]


def test_a_bls_key_without_its_own_proof_of_possession_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rogue-key attack: Mallory registers pk_rogue = x·G - (pk_0 + ... + pk_3), built
    from the honest keys, whose secret she does not know. The keys of all five then add up
    to x·G, so her one signature verifies as the aggregate of all five: a quorum forged
    alone. She cannot prove possession of pk_rogue (here she brings the proof of her own
    x·G), so the directory refuses the entry by name; with the proof unchecked, it takes the
    entry and the forged quorum verifies."""
    honest, _ = IdentityDirectory.generate(range(4))
    mallory = IdentityKey.generate()
    rogue = mallory.aggregate.private.get_g1()
    for client in honest:
        rogue += honest[client].aggregate.negate()
    start = RECORD_BYTES - aggregate.PROOF_BYTES - aggregate.PUBLIC_KEY_BYTES
    entry = _with(mallory.record, start, bytes(rogue))
    records = {**{c: honest.raw(c) for c in honest}, 4: entry}
    message = b"the survivor set {0, 1, 2, 3, 4}"
    forged = mallory.aggregate.sign(message)  # Mallory's signature alone
    with pytest.raises(CryptoError, match=r"entry for client 4: .*proof of possession"):
        IdentityDirectory(records)

    monkeypatch.setattr(aggregate, "load_public_key", lambda raw, proof: G1Element.from_bytes(raw))
    directory = IdentityDirectory(records)
    everyone = [directory[c].aggregate for c in range(5)]
    aggregate.verify_aggregate(everyone, forged, message, "the forged quorum of five")
    with pytest.raises(TamperedMessageError):  # none of the four honest clients signed
        aggregate.verify_aggregate(everyone[:4], forged, message, "the honest four")


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({0: "not bytes"}, "entry for client 0: an identity directory entry is 208 bytes, got str"),
        ({0: b"\x01" * 31}, "entry for client 0: .* got 31 bytes"),
        ({-1: b"\x01" * RECORD_BYTES}, "ids are integers >= 0"),
        ({"0": b"\x01" * RECORD_BYTES}, "ids are integers >= 0"),
        ([b"\x01" * RECORD_BYTES], "maps client ids to directory entries, got list"),
    ],
)
def test_a_directory_with_wrong_types_is_one_named_error(entries: object, match: str) -> None:
    with pytest.raises(CryptoError, match=match):
        IdentityDirectory(entries)  # type: ignore[arg-type]


def test_a_directory_entry_with_a_broken_key_names_the_key() -> None:
    record = IdentityKey.generate().record
    with pytest.raises(CryptoError, match="BLS public key"):
        IdentityDirectory({0: _with(record, 64, b"\x00" * aggregate.PUBLIC_KEY_BYTES)})
    with pytest.raises(CryptoError, match="low-order"):
        IdentityDirectory({0: _with(record, 32, b"\x00" * 32)})


def test_a_directory_refuses_one_key_for_two_clients() -> None:
    record = IdentityKey.generate().record
    with pytest.raises(CryptoError, match="one name key for two clients"):
        IdentityDirectory({0: record, 1: record})


def test_a_copied_bls_key_is_refused_even_with_its_valid_proof() -> None:
    """Its proof of possession verifies for anyone who copies it; listed twice, the honest
    owner's one signature would count for two signers in the sum."""
    honest, copier = IdentityKey.generate(), IdentityKey.generate()
    copied = copier.record[:64] + honest.record[64:]
    with pytest.raises(CryptoError, match="one BLS key for two clients"):
        IdentityDirectory({0: honest.record, 1: copied})


def test_generated_directory_matches_the_private_keys_and_survives_a_reload() -> None:
    directory, keys = IdentityDirectory.generate([3, 5])
    assert sorted(directory) == [3, 5] and len(directory) == 2
    reloaded = IdentityDirectory({c: directory.raw(c) for c in directory})
    for client, key in keys.items():
        assert directory.raw(client) == key.record
        assert reloaded[client] == directory[client]
