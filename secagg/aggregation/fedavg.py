"""Federated averaging (McMahan et al. 2017): the sample-weighted mean of client updates.

FedAvg is linear, so it runs under every protection mode: each client encodes what is to be
summed (:meth:`FedAvg.encode`), a protection mode sums the encodings without showing any
single one, and :meth:`FedAvg.finalize` turns the sum into the mean after checking it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from secagg.aggregation.base import check_updates
from secagg.errors import AggregateRejectedError, DataError


class FedAvg:
    """Weighted mean; a linear rule, so it is computable from a (hidden) weighted sum alone."""

    name = "fedavg"
    needs_individual_updates = False

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        w = check_updates(updates, weights)
        stacked = np.stack([u.astype(np.float64, copy=False) for u in updates])
        mean: np.ndarray = (w @ stacked) / w.sum()
        return mean.astype(np.float32)

    def encode(self, update: np.ndarray, weight: float, clip: float) -> np.ndarray:
        """``[w * clip(update, ±c), w * c]`` (float64, length d + 1): what a client hides.

        The server learns only ``sum w_i x_i`` and ``sum w_i``, never a single term. ``w`` is
        the client's sample count over the largest, so every coordinate, the weight one
        included, lies in [-c, c]: one bound for quantisation and encryption alike. Carrying
        ``w * c`` rather than ``w`` keeps the weight as precise as a coordinate at the bound.
        """
        if isinstance(weight, bool) or not isinstance(weight, Real) or not 0 < weight <= 1:
            raise DataError(
                f"weight must be a number in (0, 1], got {weight!r}; divide the sample counts "
                "by the largest one"
            )
        flat = np.asarray(update, dtype=np.float64).ravel()
        if not np.all(np.isfinite(flat)):
            raise DataError(
                f"the update holds {int((~np.isfinite(flat)).sum())} NaN/inf value(s); fix the "
                "update (e.g. lower the learning rate) before encoding it"
            )
        values = np.empty(flat.size + 1, dtype=np.float64)
        np.clip(flat, -clip, clip, out=values[:-1])
        values[:-1] *= weight
        values[-1] = weight * clip
        return values

    def finalize(
        self, total: np.ndarray, clip: float, declared_weight: float, error: float
    ) -> np.ndarray:
        """The mean ``sum w_i x_i / sum w_i`` (length d) from the sum of encodings, checked.

        ``declared_weight`` is the sum of the weights the included clients declared in the
        clear (sample counts are FedAvg weights, public by design); ``error`` bounds the
        absolute error of each coordinate of ``total`` (rounding, CKKS noise). A protection
        mode hides what each client encoded, so a malicious one can put anything in its
        vector; two checks catch what would move the model outside what honest clients can
        produce, and raise :class:`~secagg.errors.AggregateRejectedError`:

        - the weight coordinate must equal ``declared_weight * c`` up to ``error`` (a client
          that encodes -sum(honest weights) + 1 would otherwise turn a mean of 1e-3 into 1e8);
        - every coordinate of the mean must lie in [-c, c] up to the error.

        Anything inside those bounds is still possible: per-client input validation needs
        zero-knowledge range proofs, which are not built.
        """
        total = np.asarray(total, dtype=np.float64)
        if total.ndim != 1 or total.size < 2:
            raise DataError(
                f"a FedAvg total is a 1-D vector of length d + 1 >= 2, got shape {total.shape}; "
                "pass the sum of FedAvg.encode() outputs"
            )
        if not (math.isfinite(declared_weight) and declared_weight > 0):
            raise DataError(f"declared_weight must be a positive number, got {declared_weight}")
        weight_sum = total[-1] / clip
        if not abs(weight_sum - declared_weight) <= error / clip:
            raise AggregateRejectedError(
                f"the aggregate's weights sum to {weight_sum:.6g}, but the included clients "
                f"declared {declared_weight:.6g}: a client encoded a weight other than the one "
                "it declared, so the round is rejected"
            )
        mean = total[:-1] / declared_weight
        outside = ~(np.abs(mean) <= clip + error / declared_weight)  # NaN counts as outside
        if outside.any():
            first = int(np.argmax(outside))
            raise AggregateRejectedError(
                f"{int(outside.sum())} coordinate(s) of the aggregated mean lie outside "
                f"[-{clip:g}, {clip:g}] (first: index {first}, value {mean[first]:.6g}); honest "
                "clients clip to that range, so a client encoded out-of-range values and the "
                "round is rejected"
            )
        return mean
