"""Federated averaging (McMahan et al. 2017): the sample-weighted mean of client updates.

FedAvg is linear, so it runs under every protection mode: each client encodes what is to be
summed (:meth:`FedAvg.encode`), a protection mode sums the encodings without showing any
single one, and :meth:`FedAvg.finalize` turns the sum into the mean after checking it.

What a check on the sum can catch, and what it cannot. A hiding mode shows the server the sum
of the encodings and nothing that depends on any one of them: that is its privacy guarantee
(masking: the view is simulated from the sum alone; HE: ciphertexts are semantically secure
and the key holder decrypts only the sum). So every server-side check is a function of the
sum. If a liar's vector ``v`` and the honest encodings add up to a sum that honest clients
could also have produced, the server's view is one an honest round can give, and a check that
never rejects an honest round accepts it. Per-client ranges read off the sum therefore do not
exist: a guard bit above each quantised coordinate, or Paillier's bound on each packed slot,
sees the *sum's* slot, and a liar who knows (or guesses) the honest sum borrows across slots
or wraps mod 2^b so that the sum's slots look honest
(``tests/protection/test_protection_lying_client.py`` plays that liar against both).

The strongest check on the sum is thus "honest clients could have produced it", and that is
what :meth:`FedAvg.finalize` checks: the weight coordinate equals the declared total, and the
mean lies in [-c, c] (under norm bounding also in the ``max_norm`` ball,
:meth:`~secagg.aggregation.NormBound.check_mean`). One lying client, whatever its weight, can
still set every coordinate of the mean anywhere in that set; f lying clients can do no more.
Closing the gap needs each client to prove its own encoding in range, bound to its masked
input or ciphertext (zero-knowledge range proofs), which is not built. What the weight lever
adds on top is closed by capping declared counts at registered ones
(:mod:`secagg.aggregation.sample_counts`).
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
        clear (sample counts, capped at the registered ones, are FedAvg weights, public by
        design); ``error`` bounds the absolute error of each coordinate of ``total``
        (rounding, CKKS noise). The mean divides by ``declared_weight``, never by the decoded
        weight coordinate, so a forged weight coordinate cannot scale it. A protection mode
        hides what each client encoded, so a malicious one can put anything in its vector;
        the sum must be one that honest clients could have produced, else
        :class:`~secagg.errors.AggregateRejectedError` (:meth:`check_weights`,
        :meth:`check_mean`). A lie whose sum passes is not detectable from the sum (see the
        module docstring): it can set the mean anywhere in [-c, c].
        """
        total = np.asarray(total, dtype=np.float64)
        if total.ndim != 1 or total.size < 2:
            raise DataError(
                f"a FedAvg total is a 1-D vector of length d + 1 >= 2, got shape {total.shape}; "
                "pass the sum of FedAvg.encode() outputs"
            )
        if not (math.isfinite(declared_weight) and declared_weight > 0):
            raise DataError(f"declared_weight must be a positive number, got {declared_weight}")
        self.check_weights(total, clip, declared_weight, error)
        mean = total[:-1] / declared_weight
        self.check_mean(mean, clip, error / declared_weight)
        return mean

    @staticmethod
    def check_weights(total: np.ndarray, clip: float, declared_weight: float, error: float) -> None:
        """The weight coordinate must equal ``declared_weight * c`` up to ``error``.

        A client that encodes a weight other than the one it declared (e.g. -sum of the
        honest weights + 1) did not follow the encoding; the round is rejected and the lie
        named, although the mean, divided by the declared weights, would not grow from it.
        """
        weight_sum = total[-1] / clip
        if not abs(weight_sum - declared_weight) <= error / clip:
            raise AggregateRejectedError(
                f"the aggregate's weights sum to {weight_sum:.6g}, but the included clients "
                f"declared {declared_weight:.6g}: a client encoded a weight other than the one "
                "it declared, so the round is rejected"
            )

    @staticmethod
    def check_mean(mean: np.ndarray, clip: float, error: float) -> None:
        """Every coordinate of the mean must lie in [-c, c] up to ``error`` (per coordinate).

        Honest clients clip to [-c, c], so their weighted mean does too; a mean outside it
        can only come from a client that encoded out-of-range values. Inside it, the sum
        cannot tell a liar from honest clients.
        """
        outside = ~(np.abs(mean) <= clip + error)  # NaN counts as outside
        if outside.any():
            first = int(np.argmax(outside))
            raise AggregateRejectedError(
                f"{int(outside.sum())} coordinate(s) of the aggregated mean lie outside "
                f"[-{clip:g}, {clip:g}] (first: index {first}, value {mean[first]:.6g}); honest "
                "clients clip to that range, so a client encoded out-of-range values and the "
                "round is rejected"
            )
