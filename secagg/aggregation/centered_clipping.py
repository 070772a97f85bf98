"""Centred clipping: move a centre towards the updates, but each by at most ``tau`` per step.

Karimireddy, He and Jaggi 2021, "Learning from History for Byzantine Robust Optimization"
(ICML).

Protection modes: ``none`` only. Each step clips ``x_i − v`` per client, a non-linear function
of the individual update, so the server cannot compute it from a masked or encrypted sum
(``needs_individual_updates = True``).

Weights (sample counts) are ignored: the step is the plain mean of clipped differences, so a
client moves the centre by at most ``tau / n`` per iteration whatever it declares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import check_updates, require_int, require_real, stack_updates


class CenteredClipping:
    """``v <- v + mean_i clip(x_i − v, tau)``, ``iterations`` times, from ``v0``.

    ``v0`` is the previous aggregate this rule returned (the paper's momentum: good updates
    change slowly, so the last centre is already close), or zeros in the first round or after
    :meth:`reset`, or when the update length changed. With ``v0`` near the honest updates an
    attacker far away is clipped to ``tau``; started from zeros, honest updates farther than
    ``tau`` are clipped too, so more iterations (or a larger ``tau``) are needed to reach them.
    """

    name = "centered-clipping"
    needs_individual_updates = True

    def __init__(self, tau: float = 1.0, iterations: int = 1) -> None:
        #: Clipping radius around the centre, > 0 (``aggregation.tau``).
        self.tau = require_real("tau", tau, low=0.0, low_open=True)
        #: Number of clipping steps per round, >= 1 (``aggregation.iterations``).
        self.iterations = require_int("iterations", iterations, 1)
        self.previous: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous aggregate: the next round starts from zeros (e.g. a new run)."""
        self.previous = None

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        check_updates(updates, weights)
        stacked = stack_updates(updates)
        d = stacked.shape[1]
        if self.previous is not None and self.previous.shape == (d,):
            v = self.previous.astype(np.float64)
        else:
            v = np.zeros(d, dtype=np.float64)
        for _ in range(self.iterations):
            diff = stacked - v
            norms = np.linalg.norm(diff, axis=1)
            # min(1, tau / ||z||), with a zero difference left as it is (scale 1).
            scale = np.minimum(1.0, self.tau / np.maximum(norms, np.finfo(np.float64).tiny))
            v = v + (diff * scale[:, None]).mean(axis=0)
        self.previous = v.copy()
        return v.astype(np.float32)
