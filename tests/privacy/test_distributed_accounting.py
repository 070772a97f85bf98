"""Distributed discrete Gaussian accounting, checked three ways.

1. Continuous limit: with σ_s² = 10⁶ the discreteness penalty τ is exactly 0 and the
   accountant must agree with Opacus's sampled Gaussian at the same z (never below it).
2. Exact Rényi divergences of the real distributions (sums of k discrete Gaussians, built by
   convolution), with and without Poisson subsampling, in both directions.
3. Google's ``dp_accounting``: its RDP accountant in the continuous limit, and its PLD
   accountant's (nearly tight) discrete Gaussian for k = 1.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
import warnings

import numpy as np
import pytest
from opacus.accountants.analysis import rdp as rdp_analysis
from scipy.special import logsumexp

from secagg.errors import PrivacyError
from secagg.privacy.accounting import rdp_floor
from secagg.privacy.distributed_accounting import (
    DEFAULT_ORDERS,
    NoisySum,
    epsilon,
    noise_multiplier_for,
    rdp,
    share_variance_for,
)

pytestmark = pytest.mark.filterwarnings("error")

DELTA = 1e-5
BIG_VARIANCE = 1e6  # σ_s = 1000 integer units: τ underflows to exactly 0


def _continuous(z: float, shares: int = 5, dim: int = 1000) -> NoisySum:
    """A release whose k shares add up to noise multiplier z, far from the integer grid."""
    return NoisySum(BIG_VARIANCE, shares, math.sqrt(shares * BIG_VARIANCE) / z, dim)


def _opacus_epsilon(
    z: float, q: float, steps: int, orders: tuple[float, ...] = DEFAULT_ORDERS
) -> float:
    with warnings.catch_warnings():  # Opacus's own "optimal order" warnings are not under test
        warnings.simplefilter("ignore")
        rdp_curve = rdp_analysis.compute_rdp(
            q=q, noise_multiplier=z, steps=steps, orders=list(orders)
        )
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(orders), rdp=rdp_curve, delta=DELTA)
    return float(eps)


# ---------------------------------------------------------------- 1. continuous limit


def test_continuous_limit_has_no_discreteness_penalty() -> None:
    release = _continuous(1.3)
    assert release.tau == 0.0
    assert release.noise_multiplier == pytest.approx(1.3, rel=1e-12)
    assert release.effective_noise_multiplier == pytest.approx(1.3, rel=1e-12)
    assert release.zcdp_epsilon == pytest.approx(1 / 1.3, rel=1e-12)


@pytest.mark.parametrize("z", [1.0, 2.0])
@pytest.mark.parametrize("q", [1.0, 0.1, 0.01])
@pytest.mark.parametrize("steps", [10, 100, 1000])
def test_continuous_limit_matches_opacus_sampled_gaussian(z: float, q: float, steps: int) -> None:
    ours = epsilon([(_continuous(z), q, steps)], DELTA)
    sgm = _opacus_epsilon(z, q, steps)
    assert ours >= sgm * (1 - 1e-9)  # an upper bound on the same mechanism in the limit
    assert ours <= sgm * 1.01


@pytest.mark.parametrize("q", [0.5, 0.1, 0.03, 0.01, 0.001])
def test_integer_orders_are_opacus_term_by_term(q: float) -> None:
    """At integer α the binomial expansion is exact: the same numbers as Opacus's SGM."""
    orders = tuple(float(a) for a in range(2, 64))
    ours = rdp(_continuous(0.9), q, orders)
    theirs = rdp_analysis.compute_rdp(q=q, noise_multiplier=0.9, steps=1, orders=list(orders))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_continuous_limit_never_below_opacus_and_close_to_it_everywhere() -> None:
    """Fractional orders cost a little (no finite expansion): never below Opacus, ≤ 3 % above
    at any budget worth certifying (ε ≤ 25). Beyond, where the best order is close to 1 and
    only the chord to α = 1 bounds it, the gap grows (1.6x at z = 0.7, q = 0.2, ε ≈ 230)."""
    for z in (0.7, 1.0, 1.5, 3.0):
        for q in (0.2, 0.05, 0.01):
            for steps in (1, 50, 2000):
                ours = epsilon([(_continuous(z), q, steps)], DELTA)
                sgm = _opacus_epsilon(z, q, steps)
                assert ours >= sgm * (1 - 1e-9)
                if sgm <= 25:
                    assert ours <= 1.03 * sgm


def test_unsampled_release_is_exactly_the_zcdp_curve() -> None:
    release = _continuous(0.8)
    alphas = np.asarray(DEFAULT_ORDERS)
    np.testing.assert_allclose(rdp(release, 1.0), alphas * release.zcdp_epsilon**2 / 2, rtol=1e-12)
    # With a discreteness penalty the KLS curve adds τd once, not ατd: below the zCDP line.
    coarse = NoisySum(0.6, 4, 3.0, 10)
    assert coarse.tau > 0
    assert np.all(rdp(coarse, 1.0) <= alphas * coarse.zcdp_epsilon**2 / 2 + 1e-12)
    np.testing.assert_allclose(rdp(coarse, 1.0), coarse.rdp_unsampled(alphas))


# ---------------------------------------------------------------- 2. exact divergences

_SUPPORT = 200  # per share; the divergences' mass sits within |x| <= (α − 1)Δ + a few σ


@functools.cache
def _log_pmf_of_sum(share_variance: float, shares: int) -> np.ndarray:
    """log pmf of the sum of ``shares`` i.i.d. N_Z(0, σ²) on [−kM, kM], in log space."""
    x = np.arange(-_SUPPORT, _SUPPORT + 1, dtype=np.float64)
    one = -(x**2) / (2 * share_variance)
    one -= logsumexp(one)
    total = one
    for _ in range(shares - 1):
        out = np.full(len(total) + len(one) - 1, -np.inf)
        for i, log_p in enumerate(one):
            out[i : i + len(total)] = np.logaddexp(out[i : i + len(total)], total + log_p)
        total = out
    return total


def _renyi(alpha: float, log_p: np.ndarray, log_q: np.ndarray) -> float:
    return float(logsumexp(alpha * log_p + (1 - alpha) * log_q) / (alpha - 1))


def _pair(share_variance: float, shares: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, P shifted by Δ) on the common window where both are represented."""
    log_p = _log_pmf_of_sum(share_variance, shares)
    return log_p[shift:-shift], log_p[: -2 * shift]


EXACT_ORDERS = (2.0, 4.0, 8.0, 16.0)
EXACT_CASES = [
    (variance, shares, shift)
    for variance in (0.5, 1.0, 2.0)
    for shares in (1, 2, 3, 5)
    for shift in (1, 2, 3)
]


@pytest.mark.parametrize(("variance", "shares", "shift"), EXACT_CASES)
def test_exact_divergence_is_below_the_bound(variance: float, shares: int, shift: int) -> None:
    log_p, log_shifted = _pair(variance, shares, shift)
    release = NoisySum(variance, shares, float(shift), 1)
    bound = rdp(release, 1.0, EXACT_ORDERS)
    for alpha, b in zip(EXACT_ORDERS, bound, strict=True):
        exact = max(_renyi(alpha, log_shifted, log_p), _renyi(alpha, log_p, log_shifted))
        assert exact <= b * (1 + 1e-9) + 1e-12
        assert b <= 2 * exact  # not absurdly loose, even at σ² = 1/2 where τ ≈ 0.1
        if release.tau < 1e-3:
            assert b <= exact * 1.01 + release.tau
        if shares == 1:  # Canonne-Kamath-Steinke: exact at integer orders
            assert b == pytest.approx(exact, rel=1e-9)


SUBSAMPLED_ORDERS = (1.1, 1.5, 2.0, 2.5, 4.0, 5.5, 8.0, 16.0)


@pytest.mark.parametrize(("variance", "shares", "shift"), EXACT_CASES)
def test_exact_subsampled_divergences_are_below_rdp(
    variance: float, shares: int, shift: int
) -> None:
    """Both directions of the Poisson-sampled pair, integer and fractional orders."""
    log_p, log_shifted = _pair(variance, shares, shift)
    release = NoisySum(variance, shares, float(shift), 1)
    for q in (0.01, 0.1, 0.5):
        log_mix = np.logaddexp(math.log1p(-q) + log_p, math.log(q) + log_shifted)
        ours = rdp(release, q, SUBSAMPLED_ORDERS)
        for alpha, bound in zip(SUBSAMPLED_ORDERS, ours, strict=True):
            add = _renyi(alpha, log_mix, log_p)
            remove = _renyi(alpha, log_p, log_mix)
            assert remove <= add * (1 + 1e-9) + 1e-15  # the symmetry lemma, on real numbers
            assert add <= bound * (1 + 1e-9) + 1e-15
            if float(alpha).is_integer():
                assert bound <= 1.5 * add  # and tight where the expansion is exact


@pytest.mark.parametrize(
    ("variance", "shift", "q", "alpha"),
    [(0.5, 3, 0.01, 1.1), (0.5, 2, 0.5, 1.1), (0.5, 2, 0.01, 1.5)],
)
def test_sampled_gaussian_at_the_same_z_under_counts_a_discrete_gaussian(
    variance: float, shift: int, q: float, alpha: float
) -> None:
    """Why not candidate (a): even for one share, the continuous SGM's RDP at z = σ/Δ is
    below the exact sampled divergence at fractional orders. Ours is not."""
    log_p, log_shifted = _pair(variance, 1, shift)
    log_mix = np.logaddexp(math.log1p(-q) + log_p, math.log(q) + log_shifted)
    exact = _renyi(alpha, log_mix, log_p)
    release = NoisySum(variance, 1, float(shift), 1)
    sgm = rdp_analysis.compute_rdp(
        q=q, noise_multiplier=release.effective_noise_multiplier, steps=1, orders=[alpha]
    )
    assert float(np.asarray(sgm).item()) < exact * (1 - 5e-4)
    assert exact <= rdp(release, q, [alpha])[0] * (1 + 1e-9)


def test_remove_direction_never_exceeds_add_direction_for_mirrored_pairs() -> None:
    """The two-point inequality behind the remove-direction argument (module docstring).

    On an orbit {x, v − x} the pair takes values (1, t) and (t, 1); add − remove there is
    u^α − u^{1−α} + m^α t^{1−α} − t^α m^{1−α} with u = 1 − q + qt, m = (1 − q)t + q.
    """
    log_t = np.linspace(-8, 8, 801)
    t = np.exp(log_t)
    for q in (1e-4, 0.01, 0.1, 0.5, 0.9, 0.999):
        u, m = 1 - q + q * t, (1 - q) * t + q
        for alpha in (1.01, 1.5, 2.0, 3.7, 8.0, 32.0, 63.0):
            log_add = np.logaddexp(alpha * np.log(u), alpha * np.log(m) + (1 - alpha) * log_t)
            log_remove = np.logaddexp(
                (1 - alpha) * np.log(u), alpha * log_t + (1 - alpha) * np.log(m)
            )
            assert np.all(log_remove <= log_add + 1e-12)


# ---------------------------------------------------------------- 3. dp_accounting


@pytest.mark.parametrize(
    ("z", "q", "steps"), [(1.0, 0.05, 500), (1.0, 0.01, 1000), (2.0, 0.1, 100), (0.8, 1.0, 10)]
)
def test_matches_google_rdp_accountant_in_the_continuous_limit(
    z: float, q: float, steps: int
) -> None:
    dp_accounting = pytest.importorskip("dp_accounting")
    accountant = dp_accounting.rdp.RdpAccountant(orders=list(DEFAULT_ORDERS))
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    google = accountant.get_epsilon(DELTA)
    ours = epsilon([(_continuous(z), q, steps)], DELTA)
    assert google * (1 - 1e-5) <= ours <= google * 1.01


@pytest.mark.parametrize(
    ("variance", "shift", "steps"), [(4.0, 1, 1), (4.0, 1, 10), (1.0, 1, 5), (25.0, 3, 50)]
)
def test_single_share_is_above_the_pld_discrete_gaussian(
    variance: float, shift: int, steps: int
) -> None:
    """PLD is (nearly) tight for k = 1; RDP must sit above it, by RDP's usual margin."""
    dp_accounting = pytest.importorskip("dp_accounting")
    pld = dp_accounting.pld.privacy_loss_distribution.from_discrete_gaussian_mechanism(
        sigma=math.sqrt(variance), sensitivity=shift, value_discretization_interval=1e-3
    )
    tight = pld.self_compose(steps).get_epsilon_for_delta(DELTA)
    ours = epsilon([(NoisySum(variance, 1, float(shift), 1), 1.0, steps)], DELTA)
    assert tight <= ours <= 1.15 * tight


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize(
    ("target", "q", "steps", "shares", "l2", "dim"),
    [
        (3.0, 0.05, 500, 5, 100.0, 1000),
        (1.0, 0.01, 1000, 20, 2_000.0, 10_000),
        (8.0, 1.0, 10, 1, 10.0, 1),
        (0.5, 0.1, 50, 3, 30.0, 100),
    ],
)
def test_calibration_round_trip(
    target: float, q: float, steps: int, shares: int, l2: float, dim: int
) -> None:
    z = noise_multiplier_for(
        target_epsilon=target,
        delta=DELTA,
        sample_rate=q,
        steps=steps,
        shares=shares,
        l2_sensitivity=l2,
        dim=dim,
    )
    release = NoisySum(share_variance_for(z, shares, l2), shares, l2, dim)
    assert release.noise_multiplier == pytest.approx(z, rel=1e-12)
    spent = epsilon([(release, q, steps)], DELTA)
    assert spent <= target
    assert spent >= target - min(0.01, 0.005 * target)


def test_calibration_stops_at_the_smallest_admissible_share() -> None:
    """Many shares and a tiny sensitivity: σ_s² = 1/2 already beats the target."""
    z = noise_multiplier_for(
        target_epsilon=5.0,
        delta=DELTA,
        sample_rate=0.1,
        steps=10,
        shares=100,
        l2_sensitivity=1.0,
        dim=10,
    )
    assert share_variance_for(z, 100, 1.0) == pytest.approx(0.5, rel=1e-9)
    assert epsilon([(NoisySum(share_variance_for(z, 100, 1.0), 100, 1.0, 10), 0.1, 10)], DELTA) < 5


def test_calibrated_noise_is_the_continuous_one_in_the_limit() -> None:
    """Far from the integer grid, z matches what Opacus needs (up to the fractional-order cost)."""
    z = noise_multiplier_for(
        target_epsilon=4.0,
        delta=DELTA,
        sample_rate=0.05,
        steps=300,
        shares=5,
        l2_sensitivity=5_000.0,
        dim=1000,
    )
    assert _opacus_epsilon(z, 0.05, 300) <= 4.0
    assert _opacus_epsilon(z * 0.98, 0.05, 300) > 4.0 * 0.99


# ---------------------------------------------------------------- monotonicity


def test_more_honest_shares_spend_less() -> None:
    eps = [epsilon([(NoisySum(2.0, k, 10.0, 100), 0.1, 100)], DELTA) for k in (1, 2, 5, 20, 100)]
    assert all(a > b for a, b in itertools.pairwise(eps))


def test_higher_sample_rate_spends_more() -> None:
    release = NoisySum(50.0, 4, 12.0, 1000)
    eps = [epsilon([(release, q, 200)], DELTA) for q in (0.001, 0.01, 0.05, 0.2, 1.0)]
    assert all(a < b for a, b in itertools.pairwise(eps))


def test_more_steps_spend_more() -> None:
    release = NoisySum(50.0, 4, 12.0, 1000)
    eps = [epsilon([(release, 0.05, n)], DELTA) for n in (1, 10, 100, 1000)]
    assert all(a < b for a, b in itertools.pairwise(eps))


def test_rdp_curve_is_monotone_in_q_at_every_order() -> None:
    release = NoisySum(3.0, 3, 4.0, 50)
    curves = [rdp(release, q) for q in (0.001, 0.01, 0.1, 0.5, 1.0)]
    for low, high in itertools.pairwise(curves):
        assert np.all(low <= high + 1e-15)


# ---------------------------------------------------------------- history


def test_history_composes_by_adding_rdp_and_merges_identical_rounds() -> None:
    a, b = NoisySum(40.0, 5, 10.0, 100), NoisySum(40.0, 3, 10.0, 100)  # b: two dropped out
    split = epsilon([(a, 0.05, 30), (b, 0.05, 10), (a, 0.05, 70)], DELTA)
    merged = epsilon([(a, 0.05, 100), (b, 0.05, 10)], DELTA)
    assert split == merged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_hand, _ = rdp_analysis.get_privacy_spent(
            orders=list(DEFAULT_ORDERS), rdp=100 * rdp(a, 0.05) + 10 * rdp(b, 0.05), delta=DELTA
        )
    assert merged == pytest.approx(float(by_hand), rel=1e-12)
    assert epsilon([], DELTA) == 0.0


def test_long_history_is_fast() -> None:
    release = NoisySum(123.456, 7, 9.0, 500)  # not seen by any other test: nothing cached
    history = [(release, 0.02, 1)] * 1000
    start = time.perf_counter()
    eps = epsilon(history, DELTA)
    assert time.perf_counter() - start < 0.05
    assert eps == epsilon([(release, 0.02, 1000)], DELTA)


def test_rdp_returns_a_private_copy() -> None:
    release = NoisySum(8.0, 2, 3.0, 10)
    curve = rdp(release, 0.1)
    curve[:] = 0.0
    assert np.all(rdp(release, 0.1) > 0)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shares": 0}, "shares must be an integer >= 1"),
        ({"shares": True}, "shares must be an integer >= 1"),
        ({"shares": 2.0}, "shares must be an integer >= 1"),
        ({"l2_sensitivity": 0.0}, "l2_sensitivity must be a finite number > 0"),
        ({"l2_sensitivity": -3.0}, "l2_sensitivity must be a finite number > 0"),
        ({"share_variance": 0.0}, "share_variance must be a finite number > 0"),
        ({"share_variance": math.inf}, "share_variance must be a finite number > 0"),
        ({"share_variance": 0.4}, "below 0.5"),
        ({"dim": 0}, "dim must be an integer >= 1"),
        ({"l1_sensitivity": -1.0}, "l1_sensitivity must be a finite number > 0"),
    ],
)
def test_bad_releases_are_refused(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "share_variance": 2.0,
        "shares": 3,
        "l2_sensitivity": 5.0,
        "dim": 10,
    }
    fields.update(kwargs)
    with pytest.raises(PrivacyError, match=message):
        NoisySum(**fields)  # type: ignore[arg-type]


def test_a_single_share_may_be_narrow() -> None:
    """The σ² >= 1/2 condition is for sums; one discrete Gaussian is exact at any σ."""
    assert NoisySum(0.1, 1, 1.0, 1).zcdp_epsilon == pytest.approx(math.sqrt(10))


def test_bad_arguments_are_refused() -> None:
    release = NoisySum(2.0, 3, 5.0, 10)
    with pytest.raises(PrivacyError, match="sample_rate must be in"):
        rdp(release, 1.5)
    with pytest.raises(PrivacyError, match="sample_rate must be a finite number > 0"):
        rdp(release, 0.0)
    with pytest.raises(PrivacyError, match="RDP orders must be in"):
        rdp(release, 0.1, [1.0, 2.0])
    with pytest.raises(PrivacyError, match="release must be a NoisySum"):
        rdp((2.0, 3, 5.0, 10), 0.1)  # type: ignore[arg-type]
    with pytest.raises(PrivacyError, match="delta must be in"):
        epsilon([(release, 0.1, 1)], 1.0)
    with pytest.raises(PrivacyError, match="steps must be an integer >= 1"):
        epsilon([(release, 0.1, 0)], DELTA)
    with pytest.raises(PrivacyError, match="a history entry is"):
        epsilon([(release, 0.1)], DELTA)  # type: ignore[list-item]


def test_unreachable_target_is_refused() -> None:
    floor = rdp_floor(DELTA)
    with pytest.raises(PrivacyError, match="unreachable"):
        noise_multiplier_for(
            target_epsilon=floor * 0.99,
            delta=DELTA,
            sample_rate=0.01,
            steps=10,
            shares=5,
            l2_sensitivity=10.0,
            dim=100,
        )
    with pytest.raises(PrivacyError, match="shares must be an integer >= 1"):
        noise_multiplier_for(
            target_epsilon=1.0,
            delta=DELTA,
            sample_rate=0.01,
            steps=10,
            shares=0,
            l2_sensitivity=10.0,
            dim=100,
        )


# ---------------------------------------------------------------- teeth


def test_forgetting_tau_under_counts_the_exact_divergence() -> None:
    """Two shares of σ² = 1/2 are not a discrete Gaussian of variance 1: α·s²/2 is too low."""
    log_p, log_shifted = _pair(0.5, 2, 1)
    exact = _renyi(4.0, log_shifted, log_p)
    without_tau = 4.0 / 2 * (1.0**2 / (2 * 0.5))
    assert exact > without_tau * (1 + 1e-4)
    assert exact <= rdp(NoisySum(0.5, 2, 1.0, 1), 1.0, [4.0])[0]


def test_dropping_sqrt_k_is_caught() -> None:
    """Crediting only one share (Δ₂/σ_s) is 5x the exact divergence; our bound is not."""
    log_p, log_shifted = _pair(2.0, 5, 2)
    exact = _renyi(8.0, log_shifted, log_p)
    one_share = 8.0 / 2 * (2.0**2 / 2.0)
    ours = rdp(NoisySum(2.0, 5, 2.0, 1), 1.0, [8.0])[0]
    assert one_share > 4 * exact
    assert exact <= ours <= 1.01 * exact
    # ...and in the continuous limit it would be far from Opacus's ε at the same z.
    right = _continuous(1.0, shares=5)
    wrong = NoisySum(BIG_VARIANCE, 1, right.l2_sensitivity, 1000)  # same Δ₂, one share's noise
    assert epsilon([(wrong, 0.05, 500)], DELTA) > 2 * _opacus_epsilon(1.0, 0.05, 500)


def test_ignoring_sampling_is_far_above() -> None:
    release = NoisySum(1.0, 3, 2.0, 1)
    amplified = epsilon([(release, 0.01, 1000)], DELTA)
    assert epsilon([(release, 1.0, 1000)], DELTA) > 10 * amplified


def test_overcrediting_shares_under_counts_the_exact_sampled_divergence() -> None:
    """Taking k shares as k·σ_s instead of √k·σ_s of noise falls below the real divergence."""
    log_p, log_shifted = _pair(1.0, 3, 2)
    q, alpha = 0.1, 8.0
    log_mix = np.logaddexp(math.log1p(-q) + log_p, math.log(q) + log_shifted)
    exact = _renyi(alpha, log_mix, log_p)
    overcredited = rdp_analysis.compute_rdp(
        q=q, noise_multiplier=3 * math.sqrt(1.0) / 2.0, steps=1, orders=[alpha]
    )
    assert float(np.asarray(overcredited).item()) < exact
    assert exact <= rdp(NoisySum(1.0, 3, 2.0, 1), q, [alpha])[0]
