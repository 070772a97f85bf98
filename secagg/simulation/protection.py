"""How client updates reach the aggregator: in the clear, or hidden by secure aggregation.

Each protection turns the round's local results into one global update and reports what it
cost (bytes, seconds, who was included). The engine does not know which one it is driving.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from secagg.aggregation import AggregationRule
from secagg.config import Config
from secagg.crypto.signing import IdentityDirectory, SigningKey
from secagg.errors import (
    AggregateRejectedError,
    BelowThresholdError,
    ConfigError,
    CryptoError,
    ProtocolError,
    QuantizationError,
)
from secagg.masking.driver import run_round
from secagg.masking.params import MaskingParams
from secagg.quantize import QuantizationSpec, decode_weighted_mean, encode_weighted
from secagg.simulation.dropout import DropoutSchedule


@dataclass
class AggregateOutcome:
    """One round's aggregation: the update to apply (None if the round aborted) and its costs."""

    update: np.ndarray | None
    included: list[int]
    aborted_reason: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


class Protection(Protocol):
    name: str

    def aggregate(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, float],
        schedule: DropoutSchedule,
        round_idx: int,
    ) -> AggregateOutcome: ...


class PlainProtection:
    """No protection: the server sees every update (needed by robust rules; the baseline)."""

    name = "none"

    def __init__(self, rule: AggregationRule) -> None:
        self.rule = rule

    def aggregate(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, float],
        schedule: DropoutSchedule,
        round_idx: int,
    ) -> AggregateOutcome:
        lost = schedule.before_input()
        included = sorted(c for c in updates if c not in lost)
        if not included:
            return AggregateOutcome(None, [], "every client dropped out")
        start = time.perf_counter()
        update = self.rule.aggregate([updates[c] for c in included], [weights[c] for c in included])
        dim = next(iter(updates.values())).size
        return AggregateOutcome(
            update,
            included,
            stats={
                "bytes_sent_per_client": 4 * dim,
                "server_seconds": time.perf_counter() - start,
            },
        )


class MaskedProtection:
    """SecAgg / SecAgg+: the server learns only the weighted sum of the surviving updates.

    FedAvg under masking: each client encodes ``w_i * clip(Δ_i)`` plus ``w_i`` as one extra
    coordinate, so the server recovers ``Σ w_i Δ_i / Σ w_i`` without seeing any single term.
    Weights are sample counts divided by the largest one, which keeps every term in range.
    """

    def __init__(self, config: Config, client_ids: list[int], dim: int, seed: int) -> None:
        pt = config.protection
        self.name = pt.mode
        self.client_ids = client_ids
        self.dim = dim
        self.seed = seed
        n = len(client_ids)
        self.neighbors = (n - 1) if pt.mode == "secagg" else pt.neighbors
        self.threshold: float | int = pt.threshold if pt.threshold < 1 else int(pt.threshold)
        try:
            self.spec = QuantizationSpec(bits=pt.bits, clip=pt.clip_range, max_clients=n)
        except QuantizationError as exc:
            raise ConfigError(f"protection.bits / protection.clip_range: {exc}") from None
        # Identity keys, registered once for the whole run (out of band in a deployment).
        self.directory: IdentityDirectory | None = None
        self.identity_keys: dict[int, SigningKey] = {}
        if pt.consistency == "signatures":
            self.directory, self.identity_keys = IdentityDirectory.generate(client_ids)
        # Size the SecAgg+ graph for the dropout this run will see: the expected rate, or the
        # simulated one compounded over its phases, whichever is larger.
        simulated = 1 - (1 - pt.dropout) ** len(pt.dropout_phases)
        self.dropout_rate = max(pt.expected_dropout, simulated)
        try:  # the protocol's own checks of t and k against n, before any client trains
            self._params(0)
        except ProtocolError as exc:
            raise ConfigError(f"protection: {exc}") from None

    def _params(self, round_idx: int) -> MaskingParams:
        return MaskingParams.create(
            self.client_ids,
            self.dim + 1,
            threshold=self.threshold,
            neighbors=self.neighbors,
            bits=self.spec.bits,
            round_id=round_idx,
            graph_seed=f"secagg-graph/{self.seed}".encode(),
            dropout_rate=self.dropout_rate,
            identities=self.directory,
        )

    def aggregate(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, float],
        schedule: DropoutSchedule,
        round_idx: int,
    ) -> AggregateOutcome:
        # Sample counts are declared in the clear (they are the FedAvg weights); what each
        # client encodes is hidden, so the decoded sum is checked against the declarations.
        max_w = max(weights.values())
        declared = {c: weights[c] / max_w for c in self.client_ids}
        inputs = {c: self.encode(c, updates[c], declared[c], round_idx) for c in self.client_ids}
        params = self._params(round_idx)
        try:
            result = run_round(
                inputs, params, dropouts=schedule.by_phase, identities=self.identity_keys
            )
        except (BelowThresholdError, CryptoError) as exc:
            # Too few survivors, or shares beyond correction: the round reveals nothing.
            return AggregateOutcome(None, [], f"{type(exc).__name__}: {exc}")
        included = result.included
        try:
            mean = decode_weighted_mean(
                result.total, self.spec, sum(declared[c] for c in included), len(included)
            )
        except AggregateRejectedError as exc:
            return AggregateOutcome(None, included, f"{type(exc).__name__}: {exc}")
        update = mean.astype(np.float32)
        sent = list(result.bytes_sent.values())
        return AggregateOutcome(
            update,
            included,
            stats={
                "bytes_sent_per_client": float(np.mean(sent)) if sent else 0.0,
                "bytes_sent_max": max(sent) if sent else 0,
                "client_seconds": result.client_seconds,
                "server_seconds": sum(result.server_seconds.values()),
                "server_seconds_by_phase": result.server_seconds,
                "neighbors": params.neighbors,
                "threshold": params.threshold,
                "consistency": "signatures" if params.signed else "none",
                "inconsistent_holders": {
                    str(h): owners for h, owners in result.inconsistent_holders.items()
                },
            },
        )

    def encode(self, client: int, update: np.ndarray, weight: float, round_idx: int) -> np.ndarray:
        """What one client masks: ``weight * clip(update)`` and ``weight`` (the seam attacks use).

        Stochastic rounding is not secret: a seeded generator keeps runs reproducible.
        """
        rng = np.random.default_rng([self.seed, round_idx, client, 0x5EC])
        return encode_weighted(update, weight, self.spec, rng)


def make_protection(
    config: Config, rule: AggregationRule, client_ids: list[int], dim: int, seed: int
) -> Protection:
    """Pick the protection named by ``protection.mode``, refusing impossible combinations."""
    mode = config.protection.mode
    if mode == "none":
        return PlainProtection(rule)
    if rule.needs_individual_updates:
        raise ConfigError(
            f"aggregation.rule = {rule.name!r} needs every individual update, which "
            f"protection.mode = {mode!r} hides; use protection.mode = 'none' or rule 'fedavg'"
        )
    if mode in ("secagg", "secagg+"):
        return MaskedProtection(config, client_ids, dim, seed)
    raise ConfigError(f"protection.mode = {mode!r} is not supported")
