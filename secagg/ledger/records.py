"""Typed records of what the ledger holds and emits, and the on-chain ε fixed point.

Plain data, no I/O: the client builds these from web3 results, the audit reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from secagg.errors import LedgerInputError

#: ε on chain is ε × EPSILON_SCALE as uint64 (the contract's ``EPSILON_SCALE``).
EPSILON_SCALE = 1_000_000
#: Largest uint64: as ``epsilon_cap`` it disables the cap.
UINT64_MAX = 2**64 - 1


def epsilon_to_fixed(epsilon: float) -> int:
    """ε as the contract's fixed point, rounded UP so the chain never under-reports spend."""
    if not math.isfinite(epsilon) or epsilon < 0:
        raise LedgerInputError(
            f"ε must be finite and non-negative to go on chain, got {epsilon!r}; "
            "without DP there is no ε to record"
        )
    fixed = math.ceil(round(epsilon * EPSILON_SCALE, 6))  # round: drop float noise first
    if fixed > UINT64_MAX:
        raise LedgerInputError(f"ε = {epsilon} does not fit the contract's uint64 fixed point")
    return max(fixed, 0)


def epsilon_from_fixed(fixed: int) -> float:
    """The float ε for a fixed-point value read from the chain."""
    return fixed / EPSILON_SCALE


class Phase(IntEnum):
    """Round lifecycle, same order as the contract's ``Phase`` enum."""

    NONE = 0
    OPEN = 1
    UNMASKING = 2
    AGGREGATED = 3


@dataclass(frozen=True)
class TxReceipt:
    """What a transaction cost and emitted: gas for benchmarks, events for the audit."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[LedgerEvent, ...] = ()


@dataclass(frozen=True)
class LedgerEvent:
    """One decoded contract event; ``round_id`` is None for events outside rounds."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int
    round_id: int | None = field(default=None)


@dataclass(frozen=True)
class RoundInfo:
    """The public record of one round (``Phase.NONE``: never opened).

    Deadlines, phase and counts are contract state; the hashes come from the round's
    ``RoundOpened`` and ``AggregatePosted`` events (zeros until emitted).
    """

    round_id: int
    model_hash: bytes
    config_hash: bytes
    aggregate_cid: bytes
    aggregate_hash: bytes
    commit_deadline: int
    unmask_deadline: int
    participant_count: int
    active_count: int
    committed_count: int
    phase: Phase


@dataclass(frozen=True)
class KeyAdvert:
    """A participant's round keys as published on chain."""

    participant: str
    encryption_key: bytes
    masking_key: bytes
    seed_commitment: bytes


@dataclass(frozen=True)
class MemberRecord:
    """Everything one participant did in one round, as the chain recorded it.

    The flags and the share root are contract state (what the contract checks); keys,
    blob hash, per-round ε and the revealed-shares hash come from the participant's
    events in that round (zeros when the event was never emitted).
    """

    round_id: int
    participant: str
    encryption_key: bytes
    masking_key: bytes
    seed_commitment: bytes
    blob_hash: bytes
    share_root: bytes
    shares_blob_hash: bytes
    cumulative_epsilon: int
    in_round: bool
    advertised: bool
    committed: bool
    survivor: bool
    dropped: bool
    shares_posted: bool
    included: bool
    reward_claimed: bool

    @property
    def key_advert(self) -> KeyAdvert | None:
        """The advertised keys, or None if the participant never advertised."""
        if not self.advertised:
            return None
        return KeyAdvert(
            self.participant, self.encryption_key, self.masking_key, self.seed_commitment
        )
