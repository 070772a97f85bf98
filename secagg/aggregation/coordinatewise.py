"""Coordinate-wise median and trimmed mean: robust statistics applied one coordinate at a time.

Yin et al. 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates"
(ICML).

Protection modes: ``none`` only. A median or a trimmed mean needs the order of the values in
each coordinate, which a masked or encrypted sum does not reveal, so both rules set
``needs_individual_updates = True``.

Weights (sample counts) are ignored: they are self-declared, and a weighted median would let
one client that claims many samples pick the median itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import check_updates, require_real, stack_updates


class CoordinateMedian:
    """Each coordinate is the median of the clients' values for it (the mean of the middle two
    when n is even): it moves only if more than half the clients push it."""

    name = "median"
    needs_individual_updates = True

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        check_updates(updates, weights)
        median: np.ndarray = np.median(stack_updates(updates), axis=0)
        return median.astype(np.float32)


class TrimmedMean:
    """Each coordinate is the mean after dropping the ``floor(beta * n)`` largest and smallest
    values (``beta`` = ``aggregation.trim``), the convention of :func:`scipy.stats.trim_mean`.

    Tolerates up to ``floor(beta * n)`` attackers per coordinate while averaging the rest, so it
    keeps more of the honest signal than the median. ``beta = 0`` is the plain mean.
    """

    name = "trimmed-mean"
    needs_individual_updates = True

    def __init__(self, trim: float = 0.1) -> None:
        #: Fraction trimmed from each end, in [0, 0.5) (``aggregation.trim``).
        self.trim = require_real("trim", trim, low=0.0, high=0.5)

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        check_updates(updates, weights)
        stacked = stack_updates(updates)
        n = stacked.shape[0]
        k = int(self.trim * n)  # < n / 2 because trim < 0.5, so at least one value remains
        ordered = np.sort(stacked, axis=0)
        mean: np.ndarray = ordered[k : n - k].mean(axis=0)
        return mean.astype(np.float32)
