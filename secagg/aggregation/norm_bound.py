"""Norm bounding: scale every update down to an L2 norm of at most ``max_norm``, then FedAvg.

Sun et al. 2019, "Can You Really Backdoor Federated Learning?" (arXiv:1911.07963).

Protection modes: all of them, with one condition. After clipping the rule is a weighted mean,
which is linear, so it needs only the sum (``needs_individual_updates = False``). But clipping
itself needs the individual update: under ``secagg``/``secagg+``/``ckks``/``paillier`` it must
run on the client (:meth:`NormBound.clip_update`, before encoding), and the server cannot check
that it did. A malicious client can skip it; what the server can check is that the *mean* is
one clipped clients could produce (:meth:`NormBound.check_mean`: norm <= ``max_norm``, besides
FedAvg's [-c, c]), so a liar moves the mean anywhere in that ball and no further. In mode
``none`` the server clips every update itself in :meth:`NormBound.aggregate`, so there it holds
against every client.

Weights. The mean is weighted by sample counts, and a count is the client's word: one client
declaring 10^6 samples beside hospitals of 100 would move the model by nearly ``max_norm``
alone. The engine therefore caps every declaration at the count the client registered
(:class:`~secagg.aggregation.sample_counts.SampleRegistry`); a caller of :meth:`aggregate`
must pass registered (or capped) counts, never raw declarations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import check_updates, require_real
from secagg.aggregation.fedavg import FedAvg
from secagg.errors import AggregateRejectedError


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

    def check_mean(self, mean: np.ndarray, error: float) -> None:
        """A hidden sum's mean must have norm <= ``max_norm`` (``error`` per coordinate).

        A weighted mean of vectors of norm <= ``max_norm`` has norm <= ``max_norm``, so a
        larger one means a client skipped its clipping:
        :class:`~secagg.errors.AggregateRejectedError`, the round is rejected.
        """
        norm = float(np.linalg.norm(np.asarray(mean, dtype=np.float64)))
        slack = error * math.sqrt(np.size(mean))
        if not norm <= self.max_norm + slack:  # NaN counts as outside
            raise AggregateRejectedError(
                f"the aggregated mean has L2 norm {norm:.6g}, above aggregation.max_norm = "
                f"{self.max_norm:g} (+ {slack:.2g} decoding error); clients clip their updates "
                "to max_norm, so one skipped it and the round is rejected"
            )

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        """Clip every update to ``max_norm``, then FedAvg with ``weights`` (registered counts)."""
        check_updates(updates, weights)
        return self._fedavg.aggregate([self.clip_update(u) for u in updates], weights)
