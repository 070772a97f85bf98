"""FLTrust: trust each update by how well it agrees in direction with the server's own update.

Cao, Fang, Liu and Gong 2021, "FLTrust: Byzantine-robust Federated Learning via Trust
Bootstrapping" (NDSS).

Protection modes: ``none`` only. The trust score is the cosine between one client's update and
the root update, and each update is rescaled by its own norm: both need the individual update,
which masking and encryption hide (``needs_individual_updates = True``).

Weights (sample counts) are ignored, as in the paper: trust comes from the direction of the
update, not from what the client declares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import check_updates, stack_updates
from secagg.errors import DataError


class FLTrust:
    """``sum_i TS_i * x̂_i / sum_i TS_i`` with ``TS_i = ReLU(cos(x_i, g0))`` and
    ``x̂_i = x_i * ||g0|| / ||x_i||``.

    The ReLU drops every update pointing more than 90° away from the root update ``g0``;
    rescaling to ``||g0||`` stops a client from winning by magnitude. If every trust score is
    0 (no update agrees with ``g0``, or all are zero vectors) the aggregate is the zero vector:
    the round leaves the model unchanged rather than trust anyone.

    ``g0`` is the update the server computes on its small clean root dataset, from the same
    global model as the clients; pass it to the constructor or to :meth:`set_root_update`
    every round.
    """

    name = "fltrust"
    needs_individual_updates = True

    def __init__(self, root_update: np.ndarray | None = None) -> None:
        self.root_update: np.ndarray | None = None
        if root_update is not None:
            self.set_root_update(root_update)

    def set_root_update(self, root_update: np.ndarray) -> None:
        """Set this round's server update ``g0`` (a 1-D, finite, non-zero vector)."""
        g0 = np.asarray(root_update, dtype=np.float64)
        if g0.ndim != 1 or not np.all(np.isfinite(g0)):
            raise DataError(
                f"the FLTrust root update must be a finite 1-D vector, got shape {g0.shape}"
            )
        if not np.any(g0):
            raise DataError(
                "the FLTrust root update is all zeros, so no direction can be trusted; check "
                "the root dataset and the server's learning rate"
            )
        self.root_update = g0.copy()

    def trust_scores(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        """``TS_i = max(0, cos(x_i, g0))`` for each update (0 for a zero update)."""
        _, scores = self._scores(updates, weights)
        return scores

    def _scores(
        self, updates: Sequence[np.ndarray], weights: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        check_updates(updates, weights)
        g0 = self.root_update
        if g0 is None:
            raise DataError(
                "FLTrust has no root update for this round; call set_root_update(g0) first"
            )
        stacked = stack_updates(updates)
        if stacked.shape[1] != g0.size:
            raise DataError(
                f"updates have length {stacked.shape[1]} but the root update has {g0.size}"
            )
        norms = np.linalg.norm(stacked, axis=1)
        g0_norm = float(np.linalg.norm(g0))
        safe = np.where(norms > 0, norms, 1.0)
        cos = np.where(norms > 0, (stacked @ g0) / (safe * g0_norm), 0.0)
        scores: np.ndarray = np.maximum(cos, 0.0)
        rescaled: np.ndarray = stacked * (g0_norm / safe)[:, None]
        return rescaled, scores

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        rescaled, scores = self._scores(updates, weights)
        total = float(scores.sum())
        if total == 0.0:
            return np.zeros(rescaled.shape[1], dtype=np.float32)
        result: np.ndarray = (scores @ rescaled) / total
        return result.astype(np.float32)
