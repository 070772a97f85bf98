"""Federated averaging (McMahan et al. 2017): the sample-weighted mean of client updates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import check_updates


class FedAvg:
    """Weighted mean; a linear rule, so it is computable from a (masked) weighted sum alone."""

    name = "fedavg"
    needs_individual_updates = False

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        w = check_updates(updates, weights)
        stacked = np.stack([u.astype(np.float64, copy=False) for u in updates])
        mean: np.ndarray = (w @ stacked) / w.sum()
        return mean.astype(np.float32)
