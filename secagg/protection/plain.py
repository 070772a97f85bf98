"""``protection.mode = "none"``: updates travel in the clear.

The baseline every hidden mode is compared with, and the only mode in which rules that need
each update (Krum, the median) can run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from secagg.aggregation import AggregationRule
from secagg.protection.base import AggregateOutcome
from secagg.protection.dropout import DropoutSchedule


class PlainProtection:
    """The server sees every update that arrives and hands them all to the rule."""

    name = "none"

    def __init__(self, rule: AggregationRule) -> None:
        self.rule = rule

    def public_record(self, round_idx: int) -> dict[str, Any]:
        return {"mode": self.name}

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
