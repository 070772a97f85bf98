"""The interface every aggregation rule implements, and the registry that builds them by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from secagg.errors import ConfigError, DataError


@runtime_checkable
class AggregationRule(Protocol):
    """Combines client updates into one update for the global model."""

    name: str
    #: True when the rule must see each update (so it cannot run under masking or HE).
    needs_individual_updates: bool

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        """Return the global update from per-client updates and their (sample-count) weights."""
        ...


def check_updates(updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Validate a batch of updates once, for every rule: same length, finite, weights positive."""
    if len(updates) == 0:
        raise DataError("cannot aggregate zero updates")
    if len(updates) != len(weights):
        raise DataError(f"{len(updates)} updates but {len(weights)} weights")
    dims = {u.shape for u in updates}
    if len(dims) != 1 or next(iter(dims)) != (updates[0].size,):
        raise DataError(f"updates must be 1-D vectors of one length, got shapes {sorted(dims)}")
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise DataError(f"weights must be finite and > 0, got {w.tolist()}")
    for i, u in enumerate(updates):
        if not np.all(np.isfinite(u)):
            raise DataError(f"update {i} contains NaN or inf")
    return w


def make_rule(name: str) -> AggregationRule:
    """Build a rule from its configuration name (``aggregation.rule``)."""
    from secagg.aggregation.fedavg import FedAvg

    rules: dict[str, type] = {"fedavg": FedAvg}
    if name not in rules:
        raise ConfigError(f"aggregation.rule = {name!r} is not one of: {', '.join(rules)}")
    rule: AggregationRule = rules[name]()
    return rule
