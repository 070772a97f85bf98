"""Norm bounding: scale every update down to an L2 norm of at most ``max_norm``, then FedAvg.

Sun et al. 2019, "Can You Really Backdoor Federated Learning?" (arXiv:1911.07963).

Protection modes: all of them, with one condition. After clipping the rule is a weighted mean,
which is linear, so it needs only the sum (``needs_individual_updates = False``). But clipping
itself needs the individual update: under ``secagg``/``secagg+``/``ckks``/``paillier`` it must
run on the client (:meth:`NormBound.clip_update`, before encoding), and the server cannot check
that it did — a malicious client can skip it, and only the hiding modes' range check on the
mean (``FedAvg.finalize``) then limits it. In mode ``none`` the server clips every update
itself in :meth:`NormBound.aggregate`, so there it holds against every client.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import check_updates, require_real
from secagg.aggregation.fedavg import FedAvg


class NormBound:
    """FedAvg over updates clipped to ``||x||_2 <= max_norm`` (``aggregation.max_norm``).

    A boosted (scaled-up) poisoned update is what model-replacement backdoors rely on; bounding
    the norm caps how far any one client can move the mean, whatever it sends.
    """

    name = "norm-bound"
    needs_individual_updates = False

    def __init__(self, max_norm: float = 1.0) -> None:
        #: Largest L2 norm an update keeps, > 0 (``aggregation.max_norm``).
        self.max_norm = require_real("max_norm", max_norm, low=0.0, low_open=True)
        self._fedavg = FedAvg()

    def clip_update(self, update: np.ndarray) -> np.ndarray:
        """``update * min(1, max_norm / ||update||)``: the client-side step under masking.

        Keeps the input's floating dtype (float64 for integer input); an update already within
        the bound is returned unchanged (as a copy).
        """
        x = np.asarray(update)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
        x64 = x.astype(np.float64)
        norm = float(np.linalg.norm(x64))
        if norm > self.max_norm:
            x64 = x64 * (self.max_norm / norm)
        clipped: np.ndarray = x64.astype(dtype)
        return clipped

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        check_updates(updates, weights)
        return self._fedavg.aggregate([self.clip_update(u) for u in updates], weights)
