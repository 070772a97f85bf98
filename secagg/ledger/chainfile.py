"""The embedded chain of a run, kept in its run folder and re-executed at audit time.

The embedded chain ends with the process that ran it, so the run folder keeps its blocks
(``chain.bin``). An auditor rebuilds a fresh embedded chain with the same genesis and chain
id and imports every block: py-evm re-executes each transaction (signatures, nonces, the
chain id, the contract's own checks) and refuses a block whose state root, receipts root,
transactions root or parent hash differ from what the block says. The last block's hash
must then equal the head the run recorded in ``metrics.json`` (and any head kept outside
the folder), so a chain file cut short is refused too.

Layout (integers big-endian)::

    b"SACH" | version u16 | chain id u64 | block count u32 | raw size u32 | zlib(raw)
    raw = (block length u32 | block RLP) * block count, from the genesis block on

Every declared length is checked against the bytes present before anything is allocated or
looped over; the decompressed size is bounded by the declared raw size, itself bounded by
zlib's best ratio and :data:`MAX_RAW_BYTES`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from secagg.errors import LedgerRecordError
from secagg.ledger.providers import embedded_web3, is_embedded
from secagg.recursion import shallow_recursion

#: The chain file's name inside a run folder.
CHAIN_FILE = "chain.bin"
MAGIC = b"SACH"
VERSION = 1
_HEADER = struct.Struct(">4sHQII")
_LENGTH = struct.Struct(">I")
#: Refuse chain files that would decompress past this (a 20-round demo needs about 1 MB).
MAX_RAW_BYTES = 1 << 30
#: zlib never compresses better than about 1032:1; a larger declared ratio is a lie.
_ZLIB_MAX_RATIO = 1032


@dataclass(frozen=True)
class ChainRecord:
    """A recorded embedded chain: its chain id and its blocks (RLP), genesis first."""

    chain_id: int
    blocks: tuple[bytes, ...]


@dataclass(frozen=True)
class ChainHead:
    """The last block of a chain: what a run folder records and an auditor compares."""

    number: int
    hash: str  # 0x-prefixed hex


def encode_chain_file(record: ChainRecord) -> bytes:
    """The chain file's bytes for ``record``."""
    raw = b"".join(_LENGTH.pack(len(block)) + block for block in record.blocks)
    header = _HEADER.pack(MAGIC, VERSION, record.chain_id, len(record.blocks), len(raw))
    return header + zlib.compress(raw, 6)


def decode_chain_file(data: bytes, name: str = CHAIN_FILE) -> ChainRecord:
    """Parse a chain file; any malformed, truncated or inflated part is a LedgerRecordError."""
    if len(data) < _HEADER.size:
        raise LedgerRecordError(
            f"{name} is {len(data)} bytes, shorter than its {_HEADER.size}-byte header: "
            "truncated or not a chain file"
        )
    magic, version, chain_id, count, raw_size = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise LedgerRecordError(
            f"{name} is not a version-{VERSION} chain file (magic {magic!r}, version {version})"
        )
    body = data[_HEADER.size :]
    if raw_size > MAX_RAW_BYTES or raw_size > _ZLIB_MAX_RATIO * len(body) + 64:
        raise LedgerRecordError(
            f"{name} declares {raw_size} bytes of blocks in {len(body)} compressed bytes: "
            "more than zlib can hold there (an inflated length)"
        )
    if count == 0 or count * _LENGTH.size > raw_size:
        raise LedgerRecordError(
            f"{name} declares {count} blocks in {raw_size} bytes: impossible (each block "
            f"takes at least {_LENGTH.size} bytes, and the genesis block must be there)"
        )
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, raw_size)
    except zlib.error as exc:
        raise LedgerRecordError(
            f"{name} does not decompress: {exc} (edited or truncated)"
        ) from None
    if len(raw) != raw_size or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise LedgerRecordError(
            f"{name} decompresses to {len(raw)}{'+' if inflater.unconsumed_tail else ''} bytes "
            f"(complete: {inflater.eof}), its header declares {raw_size}: edited or truncated"
        )
    blocks: list[bytes] = []
    offset = 0
    for number in range(count):
        if raw_size - offset < _LENGTH.size:
            raise LedgerRecordError(f"{name} ends before block {number}'s length")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if size > raw_size - offset:
            raise LedgerRecordError(
                f"{name}: block {number} declares {size} bytes, {raw_size - offset} remain"
            )
        blocks.append(raw[offset : offset + size])
        offset += size
    if offset != raw_size:
        raise LedgerRecordError(f"{name} holds {raw_size - offset} bytes after its last block")
    return ChainRecord(chain_id, tuple(blocks))


class ChainRecorder:
    """Reads an embedded chain's blocks as they are mined, each encoded once."""

    def __init__(self, w3: Web3) -> None:
        if not is_embedded(w3):
            raise LedgerRecordError("only the embedded chain is recorded into the run folder")
        self.w3 = w3
        self._blocks: list[bytes] = []
        self._hashes: list[bytes] = []

    def _chain(self) -> Any:
        return self.w3.provider.ethereum_tester.backend.chain  # type: ignore[attr-defined]

    def record(self) -> tuple[ChainRecord, ChainHead]:
        """Every block mined so far, and the head they end at."""
        import rlp

        chain = self._chain()
        head = chain.get_canonical_head()
        known = len(self._hashes)
        # A snapshot revert (tests) rewinds the chain: start again from the first block
        # that is no longer canonical.
        while known and (
            known - 1 > head.block_number
            or chain.get_canonical_block_hash(known - 1) != self._hashes[known - 1]
        ):
            known -= 1
        del self._blocks[known:], self._hashes[known:]
        for number in range(known, head.block_number + 1):
            block = chain.get_canonical_block_by_number(number)
            self._blocks.append(rlp.encode(block))
            self._hashes.append(block.hash)
        record = ChainRecord(int(chain.chain_id), tuple(self._blocks))
        return record, ChainHead(head.block_number, "0x" + head.hash.hex())


def replay_chain(record: ChainRecord, name: str = CHAIN_FILE) -> tuple[Web3, ChainHead]:
    """A fresh embedded chain on which every recorded block was imported (re-executed).

    Raises LedgerRecordError naming the first block that does not decode or re-execute.
    """
    timestamp = _genesis_timestamp(record, name)
    w3 = embedded_web3(chain_id=record.chain_id, genesis_timestamp=timestamp)
    chain = w3.provider.ethereum_tester.backend.chain  # type: ignore[attr-defined]
    genesis = chain.get_canonical_block_by_number(0)
    recorded = _decode_block(type(genesis), record.blocks[0], 0, name)
    if recorded.hash != genesis.hash:
        raise LedgerRecordError(
            f"{name}: block 0 is not the genesis of an embedded chain (hash "
            f"0x{recorded.hash.hex()}, a fresh chain with its timestamp and chain id has "
            f"0x{genesis.hash.hex()}): edited, or written by another eth-tester/py-evm"
        )
    for number, raw in enumerate(record.blocks[1:], start=1):
        block_class = chain.get_vm_class_for_block_number(number).get_block_class()
        block = _decode_block(block_class, raw, number, name)
        try:
            chain.import_block(block)
        except Exception as exc:  # py-evm raises many types; each means "not this chain"
            raise LedgerRecordError(
                f"{name}: block {number} does not re-execute on the chain rebuilt so far "
                f"({type(exc).__name__}: {exc}); the file was edited"
            ) from None
    head = chain.get_canonical_head()
    return w3, ChainHead(head.block_number, "0x" + head.hash.hex())


def _genesis_timestamp(record: ChainRecord, name: str) -> int:
    """The genesis block's timestamp: the one genesis field that differs between chains."""
    from eth.vm.forks.prague.blocks import PragueBlock

    return int(_decode_block(PragueBlock, record.blocks[0], 0, name).header.timestamp)


def _decode_block(block_class: Any, raw: bytes, number: int, name: str) -> Any:
    import rlp

    try:
        with shallow_recursion():  # RLP nests: a crafted block must not reach the C stack
            block = rlp.decode(raw, sedes=block_class)
    except Exception as exc:  # rlp's DecodingError / DeserializationError, py-evm's checks
        raise LedgerRecordError(
            f"{name}: block {number} does not decode ({type(exc).__name__}: {exc})"
        ) from None
    if block.number != number:
        raise LedgerRecordError(f"{name}: the block at position {number} is block {block.number}")
    return block
