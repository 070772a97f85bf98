"""Share-commitment Merkle trees, bit-compatible with OpenZeppelin's.

The contract checks share proofs with OpenZeppelin's ``MerkleProof`` (keccak256, sorted
pairs), so the tree here is OpenZeppelin's ``StandardMerkleTree`` re-done in Python: leaves
are ``keccak256(keccak256(abi.encode(values)))`` (double hashing stops a 64-byte inner node
from passing as a leaf), sorted by hash, laid out as a complete binary tree in one array.
A root or proof built here verifies on chain and in the JS library, and the reverse.

A share leaf binds (chain id, ledger address, round, owner, holder, H(b-share), H(s-share)):
the chain id and ledger address keep a tree from being replayed on another chain or ledger.
At unmasking a holder reveals one of the two shares plus the hash of the other, which is
enough to recompute the leaf without exposing the share that must stay secret.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_canonical_address

from secagg.errors import LedgerInputError

SHARE_LEAF_TYPES = ("uint256", "address", "uint64", "address", "address", "bytes32", "bytes32")


def share_hash(share: bytes) -> bytes:
    """keccak256 of one encoded share: what a leaf commits to instead of the share itself."""
    return keccak(share)


def standard_leaf(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """OpenZeppelin StandardMerkleTree leaf: keccak256(bytes.concat(keccak256(abi.encode(...))))."""
    return keccak(keccak(abi_encode(list(types), list(values))))


def share_leaf(
    *,
    chain_id: int,
    ledger: str,
    round_id: int,
    owner: str,
    holder: str,
    b_share_hash: bytes,
    s_share_hash: bytes,
) -> bytes:
    """The leaf of ``owner``'s share tree for ``holder``; same as the contract's ``shareLeaf``."""
    _check_bytes32(b_share_hash, "b_share_hash")
    _check_bytes32(s_share_hash, "s_share_hash")
    values = (
        chain_id,
        to_canonical_address(ledger),
        round_id,
        to_canonical_address(owner),
        to_canonical_address(holder),
        b_share_hash,
        s_share_hash,
    )
    return standard_leaf(SHARE_LEAF_TYPES, values)


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Commutative inner node: keccak256 of the two children in ascending byte order."""
    return keccak(a + b) if a < b else keccak(b + a)


def process_proof(proof: Iterable[bytes], leaf: bytes) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (OpenZeppelin ``processProof``)."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify(proof: Iterable[bytes], root: bytes, leaf: bytes) -> bool:
    """True when ``proof`` shows ``leaf`` is in the tree with ``root``."""
    return process_proof(proof, leaf) == root


@dataclass(frozen=True)
class MerkleTree:
    """A tree over already-hashed leaves, laid out exactly as OpenZeppelin's merkle-tree.

    ``nodes`` is the complete binary tree in one array: the root at 0, children of ``i`` at
    ``2i+1`` and ``2i+2``; the sorted leaves fill the tail in reverse order.
    """

    nodes: tuple[bytes, ...]
    leaves: tuple[bytes, ...]

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> MerkleTree:
        """Build from leaf hashes (e.g. :func:`share_leaf`); sorted here, duplicates refused."""
        ordered = sorted(leaves)
        if not ordered:
            raise LedgerInputError("a Merkle tree needs at least one leaf")
        for leaf in ordered:
            _check_bytes32(leaf, "leaf")
        if len(set(ordered)) != len(ordered):
            raise LedgerInputError(
                "duplicate Merkle leaves: each (owner, holder) pair must appear once"
            )
        n = len(ordered)
        nodes: list[bytes] = [b""] * (2 * n - 1)
        for i, leaf in enumerate(ordered):
            nodes[len(nodes) - 1 - i] = leaf
        for i in range(len(nodes) - 1 - n, -1, -1):
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2])
        return cls(nodes=tuple(nodes), leaves=tuple(ordered))

    @property
    def root(self) -> bytes:
        """The 32-byte root to commit on chain."""
        return self.nodes[0]

    def proof(self, leaf: bytes) -> list[bytes]:
        """Sibling hashes from ``leaf`` up to the root (empty for a one-leaf tree)."""
        try:
            position = self.leaves.index(leaf)
        except ValueError:
            raise LedgerInputError(
                f"leaf 0x{leaf.hex()} is not in this tree; rebuild the leaf from the same "
                "(chain id, ledger, round, owner, holder, share hashes)"
            ) from None
        index = len(self.nodes) - 1 - position
        path: list[bytes] = []
        while index > 0:
            sibling = index + 1 if index % 2 == 1 else index - 1
            path.append(self.nodes[sibling])
            index = (index - 1) // 2
        return path


def _check_bytes32(value: bytes, name: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise LedgerInputError(f"{name} must be 32 bytes, got {value!r:.80}")
