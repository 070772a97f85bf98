"""The exact discrete Gaussian sampler: right distribution, exact decisions, keyed streams.

Every draw comes from a fixed key, so each statistical check below is deterministic.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from decimal import Context, Decimal
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from secagg.crypto.kdf import derive_key, encode_context
from secagg.crypto.prg import Keystream
from secagg.errors import PrivacyError
from secagg.privacy import discrete
from secagg.privacy.discrete import discrete_gaussian_pmf, sample_discrete_gaussian
from secagg.privacy.noise import NoiseSource, RoundNoise

N = 10**6


def keystream(label: str) -> Keystream:
    """A fixed keystream per label: deterministic tests, independent streams."""
    return Keystream(hashlib.sha256(label.encode()).digest()[:16])


def chi2_pvalue(draws: np.ndarray, sigma_squared: float) -> float:
    """χ² goodness of fit of integer ``draws`` against N_Z(0, σ²).

    One bin per integer in ±(12σ + 10) (draws beyond fall into the end bins), merged from the
    left until each bin expects ≥ 5 draws; a short remainder joins the last bin.
    """
    reach = int(12 * math.sqrt(sigma_squared) + 10)
    support = np.arange(-reach, reach + 1)
    expected = discrete_gaussian_pmf(sigma_squared, support) * draws.size
    observed = np.bincount(np.clip(draws, -reach, reach) + reach, minlength=support.size)
    obs_bins: list[float] = []
    exp_bins: list[float] = []
    acc_obs = acc_exp = 0.0
    for o, e in zip(observed, expected, strict=True):
        acc_obs, acc_exp = acc_obs + o, acc_exp + e
        if acc_exp >= 5:
            obs_bins.append(acc_obs)
            exp_bins.append(acc_exp)
            acc_obs = acc_exp = 0.0
    obs_bins[-1] += acc_obs
    exp_bins[-1] += acc_exp
    obs, exp = np.array(obs_bins), np.array(exp_bins)
    assert len(obs) >= 3 and exp.min() >= 5
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("sigma_squared", [0.3, 2, 30.25, 10**4])
def test_draws_fit_the_discrete_gaussian_pmf(sigma_squared: float) -> None:
    draws = sample_discrete_gaussian(keystream(f"fit {sigma_squared}"), sigma_squared, N)
    assert draws.shape == (N,) and draws.dtype == np.int64
    assert chi2_pvalue(draws, sigma_squared) > 1e-3


def _laplace_proposal(sigma_squared: float) -> np.ndarray:
    """CKS's discrete Laplace proposal alone, without the final Gaussian rejection step."""
    stream, t = keystream("laplace"), math.isqrt(int(sigma_squared)) + 1
    parts, total = [], 0
    while total < N:
        parts.append(discrete._discrete_laplace(stream, t, N))
        total += parts[-1].size
    return np.concatenate(parts)[:N]


def _rounded_gaussian(sigma_squared: float) -> np.ndarray:
    """round(N(0, σ²)) from the project's own CSPRNG Box-Muller: the naive alternative."""
    normal = NoiseSource.from_seed(0).for_round(0).gaussian(N)
    return np.rint(normal * math.sqrt(sigma_squared)).astype(np.int64)


def _too_wide(sigma_squared: float) -> np.ndarray:
    """The right sampler at a 2 % larger σ²."""
    return sample_discrete_gaussian(keystream("too wide"), 1.02 * sigma_squared, N)


@pytest.mark.parametrize(
    ("wrong_sampler", "sigma_squared"),
    [(_laplace_proposal, 2.0), (_rounded_gaussian, 0.3), (_too_wide, 30.25)],
    ids=["laplace-proposal", "rounded-gaussian", "sigma2-2%-too-large"],
)
def test_the_fit_rejects_a_wrong_sampler(
    wrong_sampler: Callable[[float], np.ndarray], sigma_squared: float
) -> None:
    assert chi2_pvalue(wrong_sampler(sigma_squared), sigma_squared) < 1e-6


def test_the_exact_path_alone_draws_the_same_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """With margins that leave every float comparison undecided, each Bernoulli decision goes
    through decimal arithmetic; the draws still fit, and equal the fast path's draw for draw
    (both decide exactly U < exp(-γ) on the same keystream words)."""
    count, sigma_squared = 20_000, 2
    calls: list[Fraction] = []
    exact = discrete._exact_bernoulli_exp

    def spy(stream: Keystream, gamma: Fraction, word: int) -> bool:
        calls.append(gamma)
        return exact(stream, gamma, word)

    monkeypatch.setattr(discrete, "_exact_bernoulli_exp", spy)
    fast = sample_discrete_gaussian(keystream("exact path"), sigma_squared, count)
    assert len(calls) <= 2  # the float margin decides all but ~2^-30 of the decisions
    calls.clear()
    monkeypatch.setattr(discrete, "FLOAT_RELATIVE_MARGIN", 4.0)
    monkeypatch.setattr(discrete, "FLOAT_ABSOLUTE_MARGIN", 2.0)
    slow = sample_discrete_gaussian(keystream("exact path"), sigma_squared, count)
    # each draw takes at least a uniform, a geometric and an acceptance decision
    assert len(calls) >= 3 * count
    assert {Fraction(0), Fraction(1, 2), Fraction(1)} <= set(calls)
    assert chi2_pvalue(slow, sigma_squared) > 1e-3
    np.testing.assert_array_equal(slow, fast)


def test_an_undecided_word_is_resolved_with_more_bits_of_the_same_stream() -> None:
    """U < exp(-1) when U's first 64 bits are the word T = floor(2^64/e) straddling exp(-1):
    the next keystream word decides, and only that word is consumed."""
    context = Context(prec=80)
    p = Context(prec=80).exp(Decimal(-1))
    T = int(context.multiply(p, Decimal(2**64)))
    stream, twin = keystream("boundary"), keystream("boundary")
    assert discrete._exact_bernoulli_exp(stream, Fraction(1), T - 1) is True
    assert discrete._exact_bernoulli_exp(stream, Fraction(1), T + 1) is False
    word = int(twin.words(1)[0])
    prefix, F = (T << 64) | word, int(context.multiply(p, Decimal(2**128)))
    assert prefix != F  # else 128 bits would not decide either (probability 2^-64)
    assert discrete._exact_bernoulli_exp(stream, Fraction(1), T) is (prefix < F)
    np.testing.assert_array_equal(stream.words(4), twin.words(4))


@pytest.mark.parametrize(
    "gamma",
    [Fraction(1, 10**30), Fraction(1, 3), Fraction(1), Fraction(123456789, 1000), Fraction(44)],
)
@pytest.mark.parametrize("bits", [64, 128, 256])
def test_exact_bounds_enclose_exp(gamma: Fraction, bits: int) -> None:
    low, high = discrete._exp_neg_scaled(gamma, bits)
    context = Context(prec=500, Emin=-(10**9))
    exponent = context.minus(context.divide(Decimal(gamma.numerator), gamma.denominator))
    true = Fraction(context.exp(exponent))
    assert low <= true * 2**bits <= high and high - low <= 3


def test_the_float_path_decides_extreme_exponents_without_the_exact_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(stream: Keystream, gamma: Fraction, word: int) -> bool:
        raise AssertionError("exact path taken")

    monkeypatch.setattr(discrete, "_exact_bernoulli_exp", fail)
    stream = keystream("extremes")
    gamma = np.array([701.0, 5e3, 1e300, np.inf] * 1000)
    assert not discrete._bernoulli_exp(stream, gamma, gamma.size, lambda i: Fraction(0)).any()
    assert discrete._bernoulli_exp(stream, 800.0, 4000, lambda i: Fraction(0)).sum() == 0


@pytest.mark.parametrize("sigma_squared", [2, 10**4, 2**40])
def test_variance_matches_sigma_squared_and_mean_is_zero(sigma_squared: int) -> None:
    """Sample variance within 5 standard errors of σ² (Var(s²) ≈ 2σ⁴/N: the discrete
    Gaussian's moments equal the continuous ones to within e^(-2π²σ²) for σ² ≥ 1)."""
    draws = sample_discrete_gaussian(keystream(f"moments {sigma_squared}"), sigma_squared, N)
    sigma = math.sqrt(sigma_squared)
    assert abs(draws.mean()) < 5 * sigma / math.sqrt(N)
    assert abs(draws.var() - sigma_squared) < 5 * sigma_squared * math.sqrt(2 / N)
    if sigma_squared == 2**40:  # here the lattice is fine: the draws are normal to KS accuracy
        assert stats.kstest(draws / sigma, "norm").pvalue > 1e-3


def test_same_key_same_draws_other_key_or_later_call_other_draws() -> None:
    first = sample_discrete_gaussian(keystream("a"), 30.25, 4096)
    np.testing.assert_array_equal(first, sample_discrete_gaussian(keystream("a"), 30.25, 4096))
    assert not np.array_equal(first, sample_discrete_gaussian(keystream("b"), 30.25, 4096))
    stream = keystream("a")
    sample_discrete_gaussian(stream, 30.25, 4096)
    assert not np.array_equal(first, sample_discrete_gaussian(stream, 30.25, 4096))
    assert sample_discrete_gaussian(stream, 30.25, 0).shape == (0,)


def test_sigma_squared_is_taken_exactly_whatever_its_type() -> None:
    numpy_scalars: tuple[object, ...] = (np.int64(4), np.float32(4))
    for same in (4, 4.0, Fraction(4), *numpy_scalars):
        np.testing.assert_array_equal(
            sample_discrete_gaussian(keystream("type"), same, 1000),  # type: ignore[arg-type]
            sample_discrete_gaussian(keystream("type"), Fraction(4), 1000),
        )
    np.testing.assert_array_equal(  # a float is its exact binary value, Fraction(0.1)
        sample_discrete_gaussian(keystream("type"), 0.1, 1000),
        sample_discrete_gaussian(keystream("type"), Fraction(0.1), 1000),
    )


@pytest.mark.parametrize(
    ("sigma_squared", "count", "problem"),
    [
        (0, 10, "> 0"),
        (-1.5, 10, "> 0"),
        (Fraction(-1, 3), 10, "> 0"),
        (float("nan"), 10, "finite"),
        (float("inf"), 10, "finite"),
        (-float("inf"), 10, "finite"),
        (True, 10, "real number"),
        ("2", 10, "real number"),
        (None, 10, "real number"),
        (2.0**-101, 10, "2\\^-100"),
        (2**101, 10, "2\\^100"),
        (2, -1, "count"),
        (2, 1.5, "count"),
        (2, True, "count"),
    ],
)
def test_bad_arguments_are_refused(sigma_squared: object, count: object, problem: str) -> None:
    with pytest.raises(PrivacyError, match=problem):
        sample_discrete_gaussian(keystream("bad"), sigma_squared, count)  # type: ignore[arg-type]


def test_the_pmf_is_a_normalised_symmetric_distribution() -> None:
    for sigma_squared in (0.3, 2.0, 1e4):
        reach = int(12 * math.sqrt(sigma_squared) + 10)
        pmf = discrete_gaussian_pmf(sigma_squared, np.arange(-reach, reach + 1))
        assert abs(pmf.sum() - 1) < 1e-12 and np.array_equal(pmf, pmf[::-1])
    big = 2.0**44  # normalised by Poisson summation: the continuous density at 0
    assert discrete_gaussian_pmf(big, np.array([0]))[0] == pytest.approx(
        1 / math.sqrt(2 * math.pi * big), rel=1e-12
    )
    with pytest.raises(PrivacyError, match="integers"):
        discrete_gaussian_pmf(2.0, np.array([0.5]))
    with pytest.raises(PrivacyError, match="> 0"):
        discrete_gaussian_pmf(0.0, np.array([0]))


def _old_seed_key(seed: int) -> bytes:
    """The simulation key exactly as NoiseSource.from_seed derived it before this sampler."""
    return derive_key(
        seed.to_bytes(8, "big"), info=encode_context(b"secagg/dp-sgd/simulation-seed")
    )


def test_round_noise_draws_discrete_gaussian_from_its_own_stream() -> None:
    source = NoiseSource.from_seed(1)
    draws = source.for_round(0).discrete_gaussian(1000, 4)
    assert draws.shape == (1000,) and draws.dtype == np.int64
    np.testing.assert_array_equal(draws, source.for_round(0).discrete_gaussian(1000, 4))
    info = encode_context(b"secagg/dp/discrete-gaussian", 0)
    own = Keystream(derive_key(_old_seed_key(1), info=info))
    np.testing.assert_array_equal(draws, sample_discrete_gaussian(own, 4, 1000))
    assert not np.array_equal(draws, source.for_round(1).discrete_gaussian(1000, 4))
    three_streams = RoundNoise(keystream("s"), keystream("g"), 0)  # the old constructor
    with pytest.raises(PrivacyError, match="discrete-Gaussian stream"):
        three_streams.discrete_gaussian(10, 4)


def test_the_existing_streams_are_derived_as_before() -> None:
    """Adding the discrete stream changes no existing draw: the round's Gaussian, Poisson and
    torch streams equal those of keys derived as the code before the change derived them."""
    key = _old_seed_key(1)

    def stream(label: bytes) -> Keystream:
        return Keystream(derive_key(key, info=encode_context(label, 0)))

    torch_key = derive_key(key, info=encode_context(b"secagg/dp-sgd/torch-seed", 0), length=8)
    old = RoundNoise(
        stream(b"secagg/dp-sgd/poisson-sampling"),
        stream(b"secagg/dp-sgd/gaussian-noise"),
        int.from_bytes(torch_key, "big") >> 1,
    )
    new = NoiseSource.from_seed(1).for_round(0)
    new.discrete_gaussian(100, 2.0)  # drawing discrete noise leaves the other streams alone
    assert new.torch_seed == old.torch_seed
    np.testing.assert_array_equal(new.gaussian(8), old.gaussian(8))
    np.testing.assert_array_equal(new.poisson_mask(64, 0.3), old.poisson_mask(64, 0.3))
