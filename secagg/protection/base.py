"""What every protection mode shares: the outcome records and the FedAvg plumbing around a sum.

A protection mode answers one question, "how does the sum of the clients' encodings reach the
server?" (:class:`SecureSum`). What is summed, and what the sum means, belongs to the
aggregation rule (:meth:`~secagg.aggregation.FedAvg.encode` / ``finalize``), so FedAvg's
"sum w*x and w" and its checks exist once, whichever mode hides the terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from secagg.aggregation import FedAvg, NormBound
from secagg.errors import (
    AggregateRejectedError,
    BelowThresholdError,
    CryptoError,
    TamperedMessageError,
)
from secagg.protection.dropout import DropoutSchedule

#: What aborts a round's secure sum (too few survivors, secrets beyond correction, a sum that
#: does not decode): the round is rejected, not the run.
SUM_FAILURES = (BelowThresholdError, CryptoError, TamperedMessageError)


@dataclass
class AggregateOutcome:
    """One round's aggregation: the update to apply (None if the round failed) and its costs."""

    update: np.ndarray | None
    included: list[int]
    aborted_reason: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class SumOutcome:
    """The sum of the included clients' encodings, as the server ends up holding it."""

    total: np.ndarray  # float64, length d + 1
    included: list[int]
    error: float  # worst-case absolute error of each coordinate of ``total``
    stats: dict[str, Any] = field(default_factory=dict)


class Protection(Protocol):
    """What the engine drives: one call per round, updates in, global update out."""

    name: str

    def public_record(self, round_idx: int) -> dict[str, Any]:
        """The round's public parameters, for the ledger's record and the audit."""
        ...

    def aggregate(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, float],
        schedule: DropoutSchedule,
        round_idx: int,
    ) -> AggregateOutcome: ...


class SecureSum(Protocol):
    """Sums the clients' encodings while hiding each one from the server.

    ``sum`` raises :class:`~secagg.errors.BelowThresholdError` or
    :class:`~secagg.errors.CryptoError` when the round must abort; nothing is revealed then.
    """

    #: Modes registered under these names use this class (see :mod:`secagg.protection`).
    MODES: ClassVar[tuple[str, ...]]

    def sum(
        self, encodings: Mapping[int, np.ndarray], schedule: DropoutSchedule, round_idx: int
    ) -> SumOutcome: ...

    def public_record(self, round_idx: int) -> dict[str, Any]:
        """The round's public parameters, for the ledger's record and the audit."""
        ...


class HiddenFedAvg:
    """FedAvg over a :class:`SecureSum`: encode, sum without looking, check, average.

    Sample counts are declared in the clear (they are the FedAvg weights, capped at the
    registered counts before they get here); what each client encodes is hidden, so the
    decoded sum is checked against the declarations (:meth:`FedAvg.finalize`) and, under
    norm bounding, against ``max_norm`` (:meth:`NormBound.check_mean`). These checks accept
    exactly the sums honest clients can produce, so one lying client can still put the mean
    anywhere in that set (see :mod:`secagg.aggregation.fedavg`). :meth:`encode` is the
    client's side: attacks override it.
    """

    def __init__(
        self,
        name: str,
        rule: FedAvg,
        secure_sum: SecureSum,
        clip: float,
        norm_bound: NormBound | None = None,
    ) -> None:
        self.name = name
        self.rule = rule
        self.secure_sum = secure_sum
        self.clip = clip
        #: Norm bounding under hiding: each client clips its own update before encoding (the
        #: server cannot check it did); the server checks the mean's norm.
        self.norm_bound = norm_bound

    def public_record(self, round_idx: int) -> dict[str, Any]:
        return {"mode": self.name, **self.secure_sum.public_record(round_idx)}

    def encode(self, client: int, update: np.ndarray, weight: float, round_idx: int) -> np.ndarray:
        """What one client hands to the protection: ``[w * clip(update), w * c]``."""
        if self.norm_bound is not None:
            update = self.norm_bound.clip_update(update)
        return self.rule.encode(update, weight, self.clip)

    @staticmethod
    def declared_weights(weights: Mapping[int, float]) -> dict[int, float]:
        """The weights each client encodes: its sample count over the largest one."""
        top = max(weights.values())
        return {c: w / top for c, w in weights.items()}

    @staticmethod
    def aborted(exc: Exception) -> AggregateOutcome:
        """A round whose sum could not be formed (too few survivors, broken secrets)."""
        return AggregateOutcome(None, [], f"{type(exc).__name__}: {exc}")

    def conclude(self, outcome: SumOutcome, declared: Mapping[int, float]) -> AggregateOutcome:
        """The server's side after the sum: check it against the declarations, average."""
        included = outcome.included
        weight = sum(declared[c] for c in included)
        try:
            mean = self.rule.finalize(outcome.total, self.clip, weight, outcome.error)
            if self.norm_bound is not None:
                self.norm_bound.check_mean(mean, outcome.error / weight)
        except AggregateRejectedError as exc:
            return AggregateOutcome(None, included, f"{type(exc).__name__}: {exc}", outcome.stats)
        return AggregateOutcome(mean.astype(np.float32), included, stats=outcome.stats)

    def aggregate(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, float],
        schedule: DropoutSchedule,
        round_idx: int,
    ) -> AggregateOutcome:
        declared = self.declared_weights(weights)
        encodings = {c: self.encode(c, updates[c], declared[c], round_idx) for c in updates}
        try:
            outcome = self.secure_sum.sum(encodings, schedule, round_idx)
        except SUM_FAILURES as exc:
            # Too few survivors, secrets beyond correction, or a sum that does not decode (a
            # Paillier slot beyond what the summands can hold: one client's out-of-range
            # plaintext): the round is rejected, not the run.
            return self.aborted(exc)
        return self.conclude(outcome, declared)
