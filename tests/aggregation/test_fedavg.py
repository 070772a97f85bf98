"""FedAvg: the plaintext mean, and the encode/finalize pair every hiding mode sums through.

``finalize`` is where a hidden sum is checked: a client that lies about its weight, or puts
values outside the clip range, gets the round rejected; one that stays inside the range does
not, and these tests say by how much it can move the mean.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.aggregation import FedAvg
from secagg.errors import AggregateRejectedError, DataError
from secagg.quantize import QuantizationSpec, dequantize, error_bound, modular_sum, quantize

RULE = FedAvg()
ULPS = 1e-12


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_plaintext_fedavg_is_the_sample_weighted_mean() -> None:
    updates = [np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)]
    np.testing.assert_allclose(RULE.aggregate(updates, [3.0, 1.0]), [0.75, 0.25])


@settings(max_examples=40)
@given(
    bits=st.sampled_from([16, 24, 32, 48, 64]),
    clip=st.sampled_from([0.01, 0.3, 1.0, 25.0]),
    n=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_masked_mean_equals_np_average_within_the_quantisation_bound(
    bits: int, clip: float, n: int, seed: int
) -> None:
    spec = QuantizationSpec(bits=bits, clip=clip, max_clients=20)
    rng = _rng(seed)
    xs = rng.uniform(-1.5 * clip, 1.5 * clip, size=(n, 40))
    weights = rng.uniform(0.05, 1.0, size=n)
    weights[rng.integers(n)] = 1.0  # sample counts over the largest
    encoded = (
        quantize(RULE.encode(x, w, clip), spec, rng) for x, w in zip(xs, weights, strict=True)
    )
    total = modular_sum(encoded, bits)
    assert total.shape == (41,)
    mean = RULE.finalize(dequantize(total, spec), clip, float(weights.sum()), error_bound(spec, n))
    expected = np.average(np.clip(xs, -clip, clip), axis=0, weights=weights)
    # The numerator is off by < n units, e_N = n / scale; the declared weights are exact.
    bound = error_bound(spec, n) / weights.sum()
    assert mean.shape == (40,)
    assert np.abs(mean - expected).max() <= bound + ULPS * clip


def test_the_weight_coordinate_carries_w_times_c_so_every_coordinate_is_within_c() -> None:
    encoded = RULE.encode(np.array([[5.0, -0.2], [0.1, -9.0]]), 0.25, 0.5)
    np.testing.assert_allclose(encoded, [0.125, -0.05, 0.025, -0.125, 0.125])
    assert np.all(np.abs(encoded) <= 0.5)


def test_the_update_is_not_modified() -> None:
    x = np.linspace(-2, 2, 11)
    before = x.copy()
    RULE.encode(x, 0.5, 1.0)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("weight", [0.0, -0.5, 1.5, float("nan"), True, "1"])
def test_weights_outside_zero_one_are_refused(weight: object) -> None:
    with pytest.raises(DataError, match=r"weight must be a number in \(0, 1\]"):
        RULE.encode(np.zeros(3), weight, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_updates_are_refused(bad: float) -> None:
    with pytest.raises(DataError, match=r"1 NaN/inf"):
        RULE.encode(np.array([0.1, bad]), 1.0, 1.0)


@pytest.mark.parametrize("declared", [0.0, -1.0, float("nan")])
def test_a_declared_weight_must_be_positive(declared: float) -> None:
    with pytest.raises(DataError, match="declared_weight must be a positive number"):
        RULE.finalize(np.zeros(4), 1.0, declared, 0.0)


def test_a_total_must_have_a_weight_coordinate() -> None:
    with pytest.raises(DataError, match=r"length d \+ 1"):
        RULE.finalize(np.ones(1), 1.0, 1.0, 0.0)


HONEST_WEIGHT = 0.1  # four small hospitals beside one that claims weight 1
SPEC = QuantizationSpec(bits=32, clip=1.0, max_clients=5)


def _masked_total(liar: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The dequantized sum of 4 honest encodings (small updates) and the liar's; declared W."""
    rng = _rng(0)
    honest = [
        quantize(RULE.encode(rng.normal(0, 1e-3, 8), HONEST_WEIGHT, SPEC.clip), SPEC, rng)
        for _ in range(4)
    ]
    total = dequantize(modular_sum([*honest, quantize(liar, SPEC, rng)], 32), SPEC)
    return total, 4 * HONEST_WEIGHT + 1.0, error_bound(SPEC, 5)


def test_a_client_that_encodes_a_weight_it_did_not_declare_is_caught() -> None:
    # The attack of issue #6: it declares weight 1 but encodes -(sum of honest weights) + 1,
    # so the decoded weight sum is 1 instead of 1.4 and the mean would grow 1.4-fold... or,
    # with a sum near zero, a mean of 1e-3 would become 1e8.
    forged = np.zeros(9)
    forged[-1] = (1 - 4 * HONEST_WEIGHT) * SPEC.clip
    total, declared, error = _masked_total(forged)
    assert abs(total[-1] / SPEC.clip - 1.0) < 1e-6  # the raw sum is fooled
    with pytest.raises(AggregateRejectedError, match="weights sum to 1, but the included"):
        RULE.finalize(total, SPEC.clip, declared, error)


def test_a_client_that_encodes_values_beyond_the_clip_range_is_caught() -> None:
    forged = np.zeros(9)
    forged[-1] = SPEC.clip  # encodes the weight it declares ...
    total, declared, error = _masked_total(forged)
    total[3] += 3 * SPEC.clip  # ... but 3 clip ranges in coordinate 3, as raw group elements
    with pytest.raises(AggregateRejectedError, match=r"outside \[-1, 1\] \(first: index 3"):
        RULE.finalize(total, SPEC.clip, declared, error)


def test_a_client_inside_the_clip_range_passes_and_moves_the_mean_by_up_to_c_w_over_w() -> None:
    # What hiding modes cannot stop without range proofs: any value in [-c, c] is accepted.
    total, declared, error = _masked_total(RULE.encode(np.full(8, 1.0), 1.0, SPEC.clip))
    mean = RULE.finalize(total, SPEC.clip, declared, error)
    np.testing.assert_allclose(mean, 1.0 / declared, atol=1e-3)  # c * w_liar / W
