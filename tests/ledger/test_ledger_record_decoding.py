"""Every decoder of a ledger record checks declared lengths against the bytes present
(issue 18, item 3, ledger part): the chain file, the round blobs, event logs and reverts.

Each malformed input is refused with a named error of secagg.errors, before anything is
allocated or looped over by what the input declares; none of these take more than
milliseconds (the tests do not time them).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.datastructures import AttributeDict
from web3.middleware import Web3Middleware

from secagg.errors import LedgerError, LedgerRecordError, TamperedBlobError
from secagg.ledger import LedgerClient, advance_time, block_timestamp, embedded_web3
from secagg.ledger.chainfile import (
    ChainRecord,
    ChainRecorder,
    decode_chain_file,
    encode_chain_file,
    replay_chain,
)
from secagg.ledger.compiled import LEDGER, REWARD_TOKEN, load_artifact
from secagg.ledger.revert import decode_revert, error_specs
from secagg.ledger.roundblobs import (
    decode_masked_blob,
    decode_round_config,
    decode_vector_blob,
    encode_masked_blob,
    encode_round_config,
)

_HEADER = struct.Struct(">4sHQII")


@pytest.fixture(scope="module")
def chain() -> tuple[Web3, LedgerClient, ChainRecord, bytes]:
    """A small embedded chain: the ledger deployed, a jump of the clock, a round opened."""
    w3 = embedded_web3()
    admin = LedgerClient.deploy(w3, epsilon_cap=3_000_000, reward_per_round=1)
    admin.grant_role("AGGREGATOR_ROLE", w3.eth.accounts[1])
    for account in w3.eth.accounts[3:6]:
        admin.register(account, keccak(text=account))
    advance_time(w3, 5000)
    now = block_timestamp(w3)
    admin.as_sender(w3.eth.accounts[1]).open_round(
        1,
        model_hash=b"\x05" * 32,
        config_hash=b"\x06" * 32,
        commit_deadline=now + 100,
        unmask_deadline=now + 200,
        participants=list(w3.eth.accounts[3:6]),
    )
    record, _ = ChainRecorder(w3).record()
    return w3, admin, record, encode_chain_file(record)


def test_a_recorded_chain_re_executes_to_the_same_head_clock_chain_id_and_state(
    chain: tuple[Web3, LedgerClient, ChainRecord, bytes],
) -> None:
    w3, admin, _, data = chain
    replayed, head = replay_chain(decode_chain_file(data))
    latest = w3.eth.get_block("latest")
    assert (head.number, head.hash) == (latest["number"], latest["hash"].to_0x_hex())
    assert replayed.eth.chain_id == w3.eth.chain_id
    assert replayed.eth.get_block("latest")["timestamp"] == latest["timestamp"]  # the jump
    again = LedgerClient(replayed, admin.address, replayed.eth.accounts[0])
    assert again.round_participants(1) == admin.round_participants(1)
    assert [e.name for e in again.events()] == [e.name for e in admin.events()]


def _with_header(data: bytes, **fields: int) -> bytes:
    magic, version, chain_id, count, raw_size = _HEADER.unpack_from(data)
    values = {"chain_id": chain_id, "count": count, "raw_size": raw_size, **fields}
    header = _HEADER.pack(magic, version, values["chain_id"], values["count"], values["raw_size"])
    return header + data[_HEADER.size :]


def _with_raw(data: bytes, raw: bytes, count: int) -> bytes:
    """A chain file whose header is honest about ``raw`` (lengths inside it may lie)."""
    _, _, chain_id, _, _ = _HEADER.unpack_from(data)
    return _HEADER.pack(b"SACH", 1, chain_id, count, len(raw)) + zlib.compress(raw)


def _raw(data: bytes) -> bytes:
    return zlib.decompress(data[_HEADER.size :])


MUTATIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "header cut": (lambda d: d[:10], "shorter than its"),
    "not a chain file": (lambda d: b"PK\x03\x04" + d[4:], "not a version-1 chain file"),
    "block count 2^32-1": (lambda d: _with_header(d, count=2**32 - 1), "impossible"),
    "raw size 2^32-1": (lambda d: _with_header(d, raw_size=2**32 - 1), "inflated length"),
    "raw size one short": (
        lambda d: _with_header(d, raw_size=_HEADER.unpack_from(d)[4] - 1),
        "edited or truncated",
    ),
    "body cut": (lambda d: d[:-7], "edited or truncated"),
    "bytes appended": (lambda d: d + b"\x00", "edited or truncated"),
    "first block length 2^32-1": (
        lambda d: _with_raw(d, struct.pack(">I", 2**32 - 1) + _raw(d)[4:], 1),
        "declares 4294967295 bytes",
    ),
    "one block fewer declared": (
        lambda d: _with_raw(d, _raw(d), _HEADER.unpack_from(d)[3] - 1),
        "after its last block",
    ),
    "zlib bomb": (
        # 50 MB of zeros in ~50 kB, declared as 1,000 bytes: at most 1,000 are inflated.
        lambda d: _HEADER.pack(b"SACH", 1, 1, 1, 1000) + zlib.compress(bytes(50_000_000), 9),
        "edited or truncated",
    ),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_malformed_chain_file_is_refused_by_name(
    chain: tuple[Web3, LedgerClient, ChainRecord, bytes], mutation: str
) -> None:
    mutate, message = MUTATIONS[mutation]
    with pytest.raises(LedgerRecordError, match=message):
        decode_chain_file(mutate(chain[3]))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: (b[0], b[2], b[1], *b[3:]), "the block at position 1 is block 2"),
        (lambda b: (b[0], b"\xc0", *b[2:]), "block 1 does not decode"),
        (lambda b: (b[0], *b[2:]), "the block at position 1 is block 2"),
        (lambda b: (b[0][:-1] + bytes([b[0][-1] ^ 1]), *b[1:]), "block 0"),
    ],
    ids=["blocks swapped", "block emptied", "block dropped", "genesis edited"],
)
def test_a_well_formed_chain_file_with_edited_blocks_does_not_replay(
    chain: tuple[Web3, LedgerClient, ChainRecord, bytes],
    edit: Callable[[tuple[bytes, ...]], tuple[bytes, ...]],
    message: str,
) -> None:
    record = chain[2]
    edited = ChainRecord(record.chain_id, edit(record.blocks))
    with pytest.raises(LedgerRecordError, match=message):
        replay_chain(decode_chain_file(encode_chain_file(edited)))


def test_a_recorded_chain_replayed_under_another_chain_id_does_not_re_execute(
    chain: tuple[Web3, LedgerClient, ChainRecord, bytes],
) -> None:
    # Every transaction is signed for the run's chain id: the header's chain id cannot move.
    record = chain[2]
    with pytest.raises(LedgerRecordError, match="signed for chain id"):
        replay_chain(ChainRecord(record.chain_id + 1, record.blocks))


# ---- round blobs --------------------------------------------------------------------------


def test_round_blobs_with_inflated_lengths_or_bad_parts_are_refused_by_name() -> None:
    masked = encode_masked_blob(b"message", {1: (b"\x01" * 32, b"\x02" * 32)})
    assert decode_masked_blob(masked).commitments == {1: (b"\x01" * 32, b"\x02" * 32)}
    cases: list[tuple[Callable[[], object], str]] = [
        # A header declared 4 GiB long in a blob of a few bytes.
        (lambda: decode_masked_blob(b"SAMI" + struct.pack(">I", 2**32 - 1) + b"{}"), "inflated"),
        (lambda: decode_masked_blob(masked[:20]), "inflated"),
        # A header nested 100,000 deep: Python's JSON parser would recurse out of its stack.
        (
            lambda: decode_masked_blob(b"SAMI" + struct.pack(">I", 100_000) + b"[" * 100_000),
            "does not parse",
        ),
        # A commitment that is not a 32-byte digest.
        (
            lambda: decode_masked_blob(encode_masked_blob(b"", {1: (b"\x01", b"\x02" * 32)})),
            "not 32 bytes",
        ),
        (lambda: decode_round_config(encode_round_config("x", {}, {})[:-3]), "inflated"),
        (lambda: decode_round_config(encode_round_config("x", {}, {})[:-1] + b"!"), "parse"),
        (lambda: decode_vector_blob(b"\x00" * 10, "update"), "not a whole number of float32"),
    ]
    for decode, message in cases:
        with pytest.raises(TamperedBlobError, match=message):
            decode()


# ---- event logs and reverts from the node ---------------------------------------------------


class _InflatingNode(Web3Middleware):
    """A node that answers eth_getLogs with the RoundOpened participants' array length
    inflated to 2^64: the log still has its few hundred bytes."""

    def response_processor(self, method: str, response: Any) -> Any:
        if method != "eth_getLogs" or not isinstance(response.get("result"), list):
            return response
        topic = keccak(text="RoundOpened(uint64,bytes32,bytes32,uint64,uint64,address[])")
        logs = []
        for log in response["result"]:
            log = dict(log)
            if _bytes(log["topics"][0]) == topic:
                data = bytearray(_bytes(log["data"]))
                data[5 * 32 : 6 * 32] = (2**64).to_bytes(32, "big")  # the array's length
                log["data"] = HexBytes(bytes(data))
            logs.append(AttributeDict(log))
        return {**response, "result": logs}


def _bytes(value: object) -> bytes:
    return bytes(HexBytes(value))  # type: ignore[arg-type]


def test_an_event_log_with_an_inflated_array_length_is_refused_by_name(
    chain: tuple[Web3, LedgerClient, ChainRecord, bytes],
) -> None:
    w3, admin, _, _ = chain
    # The same chain behind a lying node: a fresh connection to the same eth-tester.
    lying = Web3(w3.provider)
    lying.middleware_onion.add(_InflatingNode, "inflate")
    try:
        reader = LedgerClient(lying, admin.address, w3.eth.accounts[0])
        with pytest.raises(LedgerRecordError, match=r"RoundOpened log .* does not decode"):
            reader.events()
    finally:
        lying.middleware_onion.remove("inflate")


SPECS = error_specs([load_artifact(LEDGER).abi, load_artifact(REWARD_TOKEN).abi])


@pytest.mark.parametrize(
    "payload",
    [
        keccak(text="Error(string)")[:4] + abi_encode(["uint256"], [32]) + (2**255).to_bytes(32),
        keccak(text="EpsilonCapExceeded(address,uint64,uint64)")[:4] + b"\x00" * 40,
        keccak(text="WrongPhase(uint64,uint8,uint8)")[:4] + abi_encode(["uint64"] * 3, [1, 9, 9]),
    ],
    ids=["string length 2^255", "arguments cut", "phase out of range"],
)
def test_revert_data_that_does_not_decode_is_a_named_ledger_error(payload: bytes) -> None:
    error = decode_revert(payload, SPECS, "commit(1)")
    assert type(error) is LedgerError
    assert "does not decode" in str(error)
