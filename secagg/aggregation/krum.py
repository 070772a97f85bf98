"""Krum and Multi-Krum: keep the updates that sit in the densest part of the cloud.

Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
Descent" (NeurIPS).

Protection modes: ``none`` only. The score of an update depends on its distance to every other
update, which the server cannot compute from a masked or encrypted sum, so both rules set
``needs_individual_updates = True`` and the protection registry refuses them under
``secagg``/``secagg+``/``ckks``/``paillier``.

Weights (sample counts) are ignored, as in the paper: they are declared by the clients, and a
robust rule that let one client claim a huge count would give the attacker the lever back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import check_updates, require_int, stack_updates
from secagg.errors import DataError


def krum_scores(stacked: np.ndarray, f: int) -> np.ndarray:
    """Each row's Krum score: the sum of squared distances to its n − f − 2 nearest others.

    Refuses n <= 2f + 2: below that the honest updates are not guaranteed to outnumber the
    Byzantine ones among any update's nearest neighbours, so the selection proves nothing.
    """
    n = stacked.shape[0]
    if n <= 2 * f + 2:
        raise DataError(
            f"Krum with aggregation.f = {f} needs more than 2f + 2 = {2 * f + 2} updates, got "
            f"{n}; lower aggregation.f to at most {max((n - 3) // 2, 0)} or include more clients"
            if n >= 3
            else f"Krum needs at least 3 updates, got {n} (aggregation.f = {f})"
        )
    neighbours = n - f - 2
    # One row at a time: O(n d) memory rather than the O(n² d) of a broadcast difference.
    dist = np.empty((n, n), dtype=np.float64)
    for i in range(n):
        diff = stacked - stacked[i]
        dist[i] = np.einsum("ij,ij->i", diff, diff)
    np.fill_diagonal(dist, np.inf)  # the distance to itself is not a neighbour
    nearest = np.sort(dist, axis=1)[:, :neighbours]
    scores: np.ndarray = nearest.sum(axis=1)
    return scores


class Krum:
    """The single update with the lowest Krum score (ties: the lowest index)."""

    name = "krum"
    needs_individual_updates = True

    def __init__(self, f: int = 1) -> None:
        #: Number of Byzantine clients tolerated (``aggregation.f``).
        self.f = require_int("f", f, 0)

    def select(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> list[int]:
        """Indices of the chosen update(s), best first: what the server keeps this round."""
        check_updates(updates, weights)
        scores = krum_scores(stack_updates(updates), self.f)
        return [int(np.argmin(scores))]

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        chosen = self.select(updates, weights)
        return np.asarray(updates[chosen[0]], dtype=np.float32).copy()


class MultiKrum(Krum):
    """The plain mean of the ``m`` updates with the lowest Krum scores.

    Averaging several well-scored updates keeps most of FedAvg's variance reduction, which Krum
    (``m = 1``) throws away. ``m = 0`` (the default) means ``n − f``: every update except as
    many as there may be attackers.
    """

    name = "multi-krum"

    def __init__(self, f: int = 1, m: int = 0) -> None:
        super().__init__(f)
        #: How many updates to average (``aggregation.m``); 0 = n − f.
        self.m = require_int("m", m, 0)

    def select(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> list[int]:
        check_updates(updates, weights)
        scores = krum_scores(stack_updates(updates), self.f)
        n = len(updates)
        m = self.m or n - self.f
        if m > n:
            raise DataError(
                f"aggregation.m = {m} exceeds the {n} updates received; lower aggregation.m "
                "(0 = n − f)"
            )
        return [int(i) for i in np.argsort(scores, kind="stable")[:m]]

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        chosen = self.select(updates, weights)
        mean: np.ndarray = stack_updates([updates[i] for i in chosen]).mean(axis=0)
        return mean.astype(np.float32)
