"""FedAvg: the plaintext mean, and the encode/finalize pair every hiding mode sums through.

``finalize`` is where a hidden sum is checked, and it sees only the sum: a lie that makes the
sum one honest clients could not produce (a weight coordinate other than the declared total, a
mean outside [-c, c]) rejects the round; any other lie passes. A client whose encoding stays in
its own range adds at most c·w/W to the mean; one outside it can put the mean anywhere in
[-c, c], whatever its weight (measured per protection mode in
``tests/protection/test_protection_lying_client.py``).
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


HONEST_WEIGHT = 0.1  # four small hospitals beside a client of weight w
SPEC = QuantizationSpec(bits=32, clip=1.0, max_clients=5)


def _unclamped(values: np.ndarray) -> np.ndarray:
    """A liar's quantiser: its vector as group elements, not clamped to ±c."""
    signed = np.rint(values * SPEC.scale).astype(np.int64)
    return np.bitwise_and(signed, SPEC.modulus - 1).astype(SPEC.dtype)


def _honest_sum() -> np.ndarray:
    rng = _rng(0)
    return modular_sum(
        [
            quantize(RULE.encode(rng.normal(0, 1e-3, 8), HONEST_WEIGHT, SPEC.clip), SPEC, rng)
            for _ in range(4)
        ],
        32,
    )


def _masked_total(liar: np.ndarray) -> np.ndarray:
    """The dequantized sum of 4 honest encodings (small updates) and the liar's vector."""
    return dequantize(modular_sum([_honest_sum(), _unclamped(liar)], 32), SPEC)


ERROR = error_bound(SPEC, 5)


def test_a_forged_weight_coordinate_is_named_and_cannot_scale_the_mean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client declares weight 1 but encodes 1 - (sum of the honest weights), so the decoded
    weights sum to 1 instead of 1.4. The round is rejected by name. Even unchecked the lie
    gains nothing: the mean divides by the *declared* weights (a decoder dividing by the
    decoded sum, as in issue #6, would have scaled the mean 1.4-fold)."""
    declared = 4 * HONEST_WEIGHT + 1.0
    forged = np.zeros(9)
    forged[-1] = (1 - 4 * HONEST_WEIGHT) * SPEC.clip
    total = _masked_total(forged)
    assert abs(total[-1] / SPEC.clip - 1.0) < 1e-6  # the raw sum is fooled
    with pytest.raises(AggregateRejectedError, match="weights sum to 1, but the included"):
        RULE.finalize(total, SPEC.clip, declared, ERROR)

    monkeypatch.setattr(FedAvg, "check_weights", staticmethod(lambda *args: None))
    mean = RULE.finalize(total, SPEC.clip, declared, ERROR)
    np.testing.assert_array_equal(mean, total[:-1] / declared)  # not total[:-1] / 1.0


def test_a_lie_that_takes_the_mean_outside_the_clip_range_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client encodes its weight honestly but 3 c in coordinate 3: the mean there would be
    3 / 1.4 = 2.14 c. The range check on the mean rejects it by name; switched off, the lie
    gets its 2.14 c."""
    declared = 4 * HONEST_WEIGHT + 1.0
    forged = np.zeros(9)
    forged[3], forged[-1] = 3 * SPEC.clip, SPEC.clip
    total = _masked_total(forged)
    with pytest.raises(AggregateRejectedError, match=r"outside \[-1, 1\] \(first: index 3"):
        RULE.finalize(total, SPEC.clip, declared, ERROR)

    monkeypatch.setattr(FedAvg, "check_mean", staticmethod(lambda *args: None))
    mean = RULE.finalize(total, SPEC.clip, declared, ERROR)
    assert abs(mean[3] - 3 * SPEC.clip / declared) < 1e-3


def test_a_client_that_keeps_its_encoding_in_range_adds_at_most_c_w_over_w_to_the_mean() -> None:
    """The bound per-client range proofs would give: a client of weight w whose encoding
    stays in its range [-w c, w c] (every coordinate at +c here) adds w c / W to the mean."""
    declared = 4 * HONEST_WEIGHT + 1.0
    total = _masked_total(RULE.encode(np.full(8, 5.0), 1.0, SPEC.clip))  # clipped to c
    mean = RULE.finalize(total, SPEC.clip, declared, ERROR)
    honest_part = dequantize(_honest_sum(), SPEC)[:-1] / declared
    np.testing.assert_allclose(mean - honest_part, SPEC.clip * 1.0 / declared, atol=ERROR)


def test_a_client_outside_its_encoding_range_sets_the_mean_to_c_whatever_its_weight() -> None:
    """Nothing on the sum bounds a summand: a client of weight 0.001 (share 0.0025) that
    encodes c * W - (the honest sum) puts every coordinate of the mean on c, 400 times the
    c·w/W it could add inside its range, and passes every check."""
    weight = 0.001
    declared = 4 * HONEST_WEIGHT + weight
    honest = dequantize(_honest_sum(), SPEC)
    forged = np.append(SPEC.clip * declared - honest[:-1], weight * SPEC.clip)
    assert np.abs(forged[:-1]).min() > 100 * weight * SPEC.clip  # far outside its range
    mean = RULE.finalize(_masked_total(forged), SPEC.clip, declared, ERROR)
    np.testing.assert_allclose(mean, SPEC.clip, atol=ERROR / declared)
    assert (mean - honest[:-1] / declared).min() / (SPEC.clip * weight / declared) > 390
