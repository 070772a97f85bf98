"""CIDs are IPFS CIDv1 (raw, sha2-256): known vectors, an independent encoding, refusals."""

from __future__ import annotations

import base64
import hashlib

import pytest
from multiformats import CID, multihash

from secagg.errors import InvalidCidError
from secagg.storage import Cid

HELLO_WORLD = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def _cid_v1_raw_sha256_by_hand(data: bytes) -> str:
    """The same CID spelled out with the standard library only: multibase 'b' (base32,
    lowercase, unpadded) of <version 1><codec raw 0x55><sha2-256 0x12><length 32><digest>."""
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def test_known_vector_hello_world() -> None:
    cid = Cid.of(b"hello world")
    assert str(cid) == HELLO_WORLD
    assert cid.digest == hashlib.sha256(b"hello world").digest()
    assert cid.digest.hex().startswith("b94d27b9934d3e08")


@pytest.mark.parametrize("data", [b"", b"hello world", bytes(range(256)) * 17])
def test_cid_matches_an_independent_encoding(data: bytes) -> None:
    assert str(Cid.of(data)) == _cid_v1_raw_sha256_by_hand(data)


def test_digest_round_trips_through_the_chain_representation() -> None:
    """The ledger stores the 32-byte digest; the CID to fetch is recovered from it."""
    cid = Cid.of(b"a masked update")
    onchain = cid.digest
    assert len(onchain) == 32 and Cid.digest_of(b"a masked update") == onchain
    assert Cid.from_digest(onchain) == cid
    assert Cid.parse(str(cid)) == cid and Cid.coerce(str(cid)) == cid and Cid.coerce(cid) is cid
    assert str(Cid.from_digest(onchain)) == str(cid)
    assert cid.matches(b"a masked update") and not cid.matches(b"a masked updatE")
    assert len({Cid.of(b"x"), Cid.parse(str(Cid.of(b"x")))}) == 1  # hashable, equal by digest


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u", "CIDv0"),
        (str(CID("base32", 1, "dag-pb", multihash.digest(b"x", "sha2-256"))), "dag-pb"),
        (str(CID("base32", 1, "raw", multihash.digest(b"x", "sha2-512"))), "sha2-512"),
        ("bafkrei-not-a-cid", "is not a CID"),
        ("", "is not a CID"),
    ],
)
def test_other_cids_are_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidCidError, match=reason):
        Cid.parse(text)


def test_a_digest_must_be_32_bytes() -> None:
    with pytest.raises(InvalidCidError, match="32 bytes"):
        Cid.from_digest(b"\x00" * 31)
