"""Audit: exact lower bounds behave, stay below the accountant, catch noise that is not added."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from secagg.errors import PrivacyError
from secagg.privacy.audit import (
    AuditResult,
    audit_dp_sgd,
    clopper_pearson,
    epsilon_lower_bound,
    one_run_epsilon_lower_bound,
    one_run_p_value,
)

DELTA = 1e-5


# --- Clopper–Pearson and the two-point bound ------------------------------------------------


def test_clopper_pearson_closed_forms() -> None:
    # x = 0: upper bound solves (1 - p)^n = 1 - c; x = n: lower bound solves p^n = 1 - c.
    n, c = 50, 0.95
    assert clopper_pearson(0, n, c) == (0.0, pytest.approx(1 - (1 - c) ** (1 / n)))
    assert clopper_pearson(n, n, c) == (pytest.approx((1 - c) ** (1 / n)), 1.0)
    low, high = clopper_pearson(30, 100, c)
    assert low < 0.3 < high


def test_perfect_attack_gives_large_bound() -> None:
    eps = epsilon_lower_bound(1000, 0, DELTA, 1000, 1000)
    # both one-sided bounds at 97.5 %: FPR <= 1 - 0.025^(1/1000), TPR >= 0.025^(1/1000)
    fpr_high = 1 - 0.025 ** (1 / 1000)
    assert eps == pytest.approx(math.log((0.025 ** (1 / 1000) - DELTA) / fpr_high), rel=1e-9)
    assert eps > 5


def test_coin_flip_attack_gives_zero() -> None:
    assert epsilon_lower_bound(500, 500, DELTA, 1000, 1000) == 0.0
    assert epsilon_lower_bound(0, 0, DELTA, 1000, 1000) == 0.0


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0])
def test_randomized_response_bound_is_below_and_near_truth(epsilon: float) -> None:
    """ε-randomized response is exactly ε-DP: its bound must not exceed ε, and get close."""
    rng = np.random.default_rng(1)
    p = float(special.expit(epsilon))
    trials = 20_000
    tp = int(rng.binomial(trials, p))
    fp = int(rng.binomial(trials, 1 - p))
    bound = epsilon_lower_bound(tp, fp, 0.0, trials, trials)
    assert 0.85 * epsilon < bound <= epsilon


def test_delta_and_confidence_only_weaken_the_bound() -> None:
    base = epsilon_lower_bound(900, 100, 0.0, 1000, 1000)
    assert epsilon_lower_bound(900, 100, 0.05, 1000, 1000) < base
    assert epsilon_lower_bound(900, 100, 0.0, 1000, 1000, confidence=0.999) < base


@pytest.mark.parametrize(
    "args",
    [(11, 0, 0.0, 10, 10), (1, 0, 0.0, 0, 10), (1, 0, 1.0, 10, 10), (1.5, 0, 0.0, 10, 10)],
)
def test_bad_counts_are_refused(args: tuple[float, ...]) -> None:
    with pytest.raises(PrivacyError):
        epsilon_lower_bound(*args)  # type: ignore[arg-type]


# --- one-run audit ----------------------------------------------------------------------------


def test_one_run_random_scores_give_zero() -> None:
    nonzero = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        included = rng.random(1000) < 0.5
        bound = one_run_epsilon_lower_bound(rng.standard_normal(1000), included, 100, 100)
        nonzero += bound > 0
        assert bound < 0.5
    assert nonzero <= 4  # each is a 5 % false alarm at most


def test_one_run_perfect_scores_match_closed_form() -> None:
    """All r guesses right: the δ = 0 p-value is p^r, so ε = logit((1 - c)^(1/r))."""
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    scores = included + 0.01 * rng.random(1000)
    bound = one_run_epsilon_lower_bound(scores, included, 100, 100)
    assert bound == pytest.approx(float(special.logit(0.05 ** (1 / 200))), abs=1e-9)
    assert bound > 4
    # more guesses, all right, prove more
    assert one_run_epsilon_lower_bound(scores, included, 300, 300) > bound + 0.5
    # δ > 0 can only lower it
    assert one_run_epsilon_lower_bound(scores, included, 100, 100, delta=1e-3) < bound


def test_one_run_randomized_response_stays_below_truth() -> None:
    """Scores from ε-randomized response per canary: an exactly ε-DP 'training run'."""
    epsilon = 2.0
    rng = np.random.default_rng(3)
    included = rng.random(5000) < 0.5
    truthful = rng.random(5000) < special.expit(epsilon)
    guess = np.where(truthful, included, ~included)
    scores = guess + 0.01 * rng.random(5000)  # ties broken at random, within each guess
    bound = one_run_epsilon_lower_bound(scores, included, 2500, 2500)
    assert 0.5 * epsilon < bound <= epsilon


def test_one_run_p_value_delta_term() -> None:
    assert one_run_p_value(100, 10, 10, 1.0) == pytest.approx(special.expit(1.0) ** 10)
    assert one_run_p_value(100, 10, 10, 1.0, delta=1e-3) > one_run_p_value(100, 10, 10, 1.0)
    with pytest.raises(PrivacyError):
        one_run_p_value(5, 10, 3, 1.0)


def test_one_run_refuses_bad_input() -> None:
    included = np.array([True, False, True])
    with pytest.raises(PrivacyError):
        one_run_epsilon_lower_bound(np.zeros(3), included, 2, 2)
    with pytest.raises(PrivacyError):
        one_run_epsilon_lower_bound(np.zeros(3), included.astype(int), 1, 1)
    with pytest.raises(PrivacyError):
        one_run_epsilon_lower_bound(np.array([0.0, np.nan, 1.0]), included, 1, 1)


# --- end to end on LocalTrainer ---------------------------------------------------------------


@pytest.fixture(scope="module")
def honest() -> dict[float, AuditResult]:
    return {sigma: audit_dp_sgd(sigma) for sigma in (0.5, 1.0, 2.0)}


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_audit_never_exceeds_accountant(honest: dict[float, AuditResult], sigma: float) -> None:
    result = honest[sigma]
    assert result.noise_added
    assert 0.0 <= result.epsilon_lower_bound <= result.epsilon_accountant


def test_audit_has_power_and_orders_by_noise(honest: dict[float, AuditResult]) -> None:
    """Not vacuous: less noise, more leakage found (0.5 > 1 > 2), and σ = 0.5 leaks visibly."""
    bounds = [honest[s].epsilon_lower_bound for s in (0.5, 1.0, 2.0)]
    assert bounds[0] > bounds[1] > bounds[2]
    assert bounds[0] > 1.0


def test_audit_catches_noise_that_is_counted_but_not_added(
    honest: dict[float, AuditResult],
) -> None:
    broken = audit_dp_sgd(2.0, disable_noise=True)
    assert not broken.noise_added
    # the accountant still believes σ = 2: same claim as the honest run on the same data
    assert broken.epsilon_accountant == pytest.approx(honest[2.0].epsilon_accountant, rel=1e-12)
    assert broken.correct == broken.guesses
    assert broken.epsilon_lower_bound > broken.epsilon_accountant


def test_the_audit_ceiling_is_what_an_exact_mechanism_certifies_computed_not_hard_coded() -> None:
    """The ceiling beside an audited bound: the one-run audit of a Gaussian mechanism that
    spends exactly (ε, δ). It matches a simulation of that ideal mechanism, rises with ε and
    with the number of guesses, and at (3, 1e-5) with 1,000 canaries and 200 guesses is
    about 1.0: an audit there cannot tell ε = 3 from much less."""
    from secagg.privacy.audit import audit_ceiling, gaussian_mu

    rng = np.random.default_rng(0)
    for epsilon in (3.0, 8.0):
        ceiling = audit_ceiling(epsilon, 1e-5, 1000, 100, 100)
        mu = gaussian_mu(epsilon, 1e-5)
        simulated = []
        for _ in range(40):
            included = rng.random(1000) < 0.5
            scores = rng.normal(size=1000) + mu * included
            simulated.append(one_run_epsilon_lower_bound(scores, included, 100, 100, 0.95, 1e-5))
        assert abs(np.median(simulated) - ceiling) < 0.25, (epsilon, ceiling, simulated)
    assert audit_ceiling(3.0, 1e-5, 1000, 100, 100) == pytest.approx(1.0, abs=0.05)
    ceilings = [audit_ceiling(e, 1e-5, 1000, 100, 100) for e in (1.0, 3.0, 8.0)]
    assert ceilings == sorted(ceilings) and ceilings[0] < 0.5 < 2.5 < ceilings[2]
    assert audit_ceiling(8.0, 1e-5, 10_000, 1000, 1000) > ceilings[2]  # more guesses, more proof
