"""The blobs a round leaves in the store, and the share trees committed on chain.

Blobs are bytes the chain refers to by digest; their layouts are defined here once, for the
session that writes them and the audit that reads them back.

- round config: the run's TOML and, for HE, the public key, so an auditor knows the rules;
- masked input: the client's ``MaskedInput`` message and its share commitments (digests of the
  b- and s-share it gave each holder), from which anyone rebuilds its committed Merkle root;
- revealed shares: a holder's ``UnmaskingResponse`` message, as sent;
- aggregate: the sum as the server holds it (the masked modular sum, or the ciphertext sum);
- model and update: parameter vectors as float32 little-endian (:func:`vector_blob`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg.errors import TamperedBlobError
from secagg.ledger import merkle
from secagg.ledger.client import LedgerClient
from secagg.recursion import shallow_recursion

#: The layout of model and update blobs.
VECTOR_DTYPE = np.dtype("<f4")

#: A share commitment is a SHA-256 digest (:func:`secagg.masking.params.share_digest`).
SHARE_DIGEST_SIZE = 32

_ROUND_CONFIG = b"SACF"
_MASKED = b"SAMI"
_U32 = struct.Struct(">I")


def vector_blob(vector: np.ndarray) -> bytes:
    """A model or update vector as stored: float32, little-endian, nothing else."""
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


def decode_vector_blob(blob: bytes, what: str = "vector") -> np.ndarray:
    """A model or update vector read back (float32); a ragged length is a TamperedBlobError."""
    if len(blob) % VECTOR_DTYPE.itemsize:
        raise TamperedBlobError(
            f"the {what} blob is {len(blob)} bytes, not a whole number of float32 values"
        )
    return np.frombuffer(blob, dtype=VECTOR_DTYPE).astype(np.float32)


def _frame(magic: bytes, header: Mapping[str, object], body: bytes) -> bytes:
    raw = json.dumps(header, sort_keys=True).encode()
    return magic + _U32.pack(len(raw)) + raw + body


def _unframe(magic: bytes, blob: bytes, what: str) -> tuple[dict[str, object], bytes]:
    if blob[:4] != magic or len(blob) < 8:
        raise TamperedBlobError(f"not a {what} blob")
    (size,) = _U32.unpack(blob[4:8])
    if size > len(blob) - 8:
        raise TamperedBlobError(
            f"the {what} blob declares a {size}-byte header, {len(blob) - 8} bytes follow: "
            "truncated or an inflated length"
        )
    try:
        with shallow_recursion():  # a header nested 10^5 deep must not reach the C stack
            header = json.loads(blob[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise TamperedBlobError(
            f"the {what} blob's header does not parse: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(header, dict):
        raise TamperedBlobError(f"the {what} blob's header is not a table")
    return header, blob[8 + size :]


def encode_round_config(
    config_toml: str, record: Mapping[str, object], weights: Mapping[int, float]
) -> bytes:
    """The run's TOML, the protection's public record, and the weights clients declared."""
    header = {
        "config": config_toml,
        "protection": dict(record),
        "declared_weights": {str(c): w for c, w in sorted(weights.items())},
    }
    return _frame(_ROUND_CONFIG, header, b"")


@dataclass(frozen=True)
class RoundConfig:
    config_toml: str
    protection: dict[str, Any]
    declared_weights: dict[int, float]


def decode_round_config(blob: bytes) -> RoundConfig:
    header, _ = _unframe(_ROUND_CONFIG, blob, "round config")
    config, record, weights = (header.get(k) for k in ("config", "protection", "declared_weights"))
    if not (isinstance(config, str) and isinstance(record, dict) and isinstance(weights, dict)):
        raise TamperedBlobError("the round config blob lacks its configuration or weights")
    try:
        declared = {int(c): float(w) for c, w in weights.items()}
    except (TypeError, ValueError) as exc:
        raise TamperedBlobError(f"malformed declared weights: {exc}") from None
    return RoundConfig(config, record, declared)


def encode_masked_blob(message: bytes, commitments: Mapping[int, tuple[bytes, bytes]]) -> bytes:
    header = {str(h): [b.hex(), s.hex()] for h, (b, s) in sorted(commitments.items())}
    return _frame(_MASKED, {"share_commitments": header}, message)


@dataclass(frozen=True)
class MaskedBlob:
    message: bytes  # the MaskedInput as sent
    commitments: dict[int, tuple[bytes, bytes]]  # holder -> (digest of b-share, of s-share)


def decode_masked_blob(blob: bytes) -> MaskedBlob:
    header, body = _unframe(_MASKED, blob, "masked input")
    table = header.get("share_commitments")
    if not isinstance(table, dict):
        raise TamperedBlobError("the masked input blob holds no share commitments")
    try:
        commitments = {
            int(h): (bytes.fromhex(pair[0]), bytes.fromhex(pair[1])) for h, pair in table.items()
        }
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise TamperedBlobError(f"malformed share commitments: {exc}") from None
    if any(len(d) != SHARE_DIGEST_SIZE for pair in commitments.values() for d in pair):
        raise TamperedBlobError(
            f"a share commitment in the masked input blob is not {SHARE_DIGEST_SIZE} bytes"
        )
    return MaskedBlob(body, commitments)


def share_tree(
    ledger: LedgerClient,
    chain_round: int,
    addresses: Mapping[int, str],
    owner: int,
    commitments: Mapping[int, tuple[bytes, bytes]],
) -> merkle.MerkleTree:
    """The Merkle tree over ``owner``'s share commitments, one leaf per holder."""
    return merkle.MerkleTree.from_leaves(
        ledger.share_leaf(
            chain_round,
            owner=addresses[owner],
            holder=addresses[holder],
            b_share_hash=b,
            s_share_hash=s,
        )
        for holder, (b, s) in commitments.items()
    )
