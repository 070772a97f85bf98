"""Robust aggregation rules (issue #9): each against a poisoned batch, and each against its
definition on small data.

The poisoned batch: 7 honest updates near a true vector ``mu`` and 3 attackers sending
``-10 * mu`` (sign-flipped and boosted). FedAvg lands near ``-2.3 * mu``; a robust rule must
land near the honest mean.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from secagg.aggregation import (
    RULE_PARAMS,
    AggregationRule,
    CenteredClipping,
    CoordinateMedian,
    FedAvg,
    FLTrust,
    Krum,
    MultiKrum,
    NormBound,
    TrimmedMean,
    make_rule,
)
from secagg.errors import ConfigError, DataError

D = 20
N_HONEST = 7
N_ATTACK = 3


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _poisoned_batch(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """``mu``, then 7 honest updates (indices 0..6) and 3 attackers (7..9), equal weights."""
    rng = _rng(seed)
    mu = rng.normal(size=D)
    honest = [mu + rng.normal(scale=0.1, size=D) for _ in range(N_HONEST)]
    attack = [-10.0 * mu + rng.normal(scale=0.1, size=D) for _ in range(N_ATTACK)]
    updates = [u.astype(np.float32) for u in honest + attack]
    return mu, updates, [1.0] * len(updates)


def _honest_mean(updates: list[np.ndarray]) -> np.ndarray:
    return np.mean(np.stack(updates[:N_HONEST]).astype(np.float64), axis=0)


ROBUST: dict[str, Callable[[], AggregationRule]] = {
    "median": CoordinateMedian,
    "trimmed-mean": lambda: TrimmedMean(trim=0.3),
    "krum": lambda: Krum(f=3),
    "multi-krum": lambda: MultiKrum(f=3),
    "centered-clipping": lambda: CenteredClipping(tau=0.5, iterations=60),
    "fltrust": FLTrust,  # root update set per batch: mu plus noise, like a small root set
}


# --- the poisoning lab: robust rules hold, FedAvg does not --------------------------------


def test_fedavg_is_pulled_far_from_the_honest_mean_by_three_attackers() -> None:
    mu, updates, weights = _poisoned_batch()
    distance = np.linalg.norm(FedAvg().aggregate(updates, weights) - _honest_mean(updates))
    assert distance > 3.0 * np.linalg.norm(mu)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(ROBUST))
def test_robust_rule_stays_close_to_the_honest_mean_under_attack(name: str, seed: int) -> None:
    mu, updates, weights = _poisoned_batch(seed)
    rule = ROBUST[name]()
    if isinstance(rule, FLTrust):
        rule.set_root_update(mu + _rng(seed + 100).normal(scale=0.1, size=D))
    result = rule.aggregate(updates, weights)
    assert result.dtype == np.float32 and result.shape == (D,)
    # FedAvg is off by ~3.3 |mu|; a rule that resisted is within 20 % of |mu| (one honest
    # update alone, Krum's answer, is ~10 % away).
    assert np.linalg.norm(result - _honest_mean(updates)) < 0.2 * np.linalg.norm(mu)


@pytest.mark.parametrize("seed", range(5))
def test_krum_picks_an_honest_update(seed: int) -> None:
    _, updates, weights = _poisoned_batch(seed)
    rule = Krum(f=3)
    (chosen,) = rule.select(updates, weights)
    assert chosen < N_HONEST
    np.testing.assert_array_equal(rule.aggregate(updates, weights), updates[chosen])


@pytest.mark.parametrize("seed", range(5))
def test_multi_krum_keeps_exactly_the_honest_updates_and_averages_them(seed: int) -> None:
    _, updates, weights = _poisoned_batch(seed)
    rule = MultiKrum(f=3)  # m = n - f = 7
    assert sorted(rule.select(updates, weights)) == list(range(N_HONEST))
    np.testing.assert_allclose(
        rule.aggregate(updates, weights), _honest_mean(updates), rtol=1e-6, atol=1e-6
    )


def test_multi_krum_with_m_1_is_krum() -> None:
    _, updates, weights = _poisoned_batch()
    np.testing.assert_array_equal(
        MultiKrum(f=3, m=1).aggregate(updates, weights), Krum(f=3).aggregate(updates, weights)
    )


def test_krum_score_is_the_sum_of_squared_distances_to_the_n_minus_f_minus_2_nearest() -> None:
    # Points on a line: 0, 1, 3, 7, 15 (n = 5, f = 1 -> 2 nearest others).
    updates = [np.array([x], np.float32) for x in (0.0, 1.0, 3.0, 7.0, 15.0)]
    from secagg.aggregation.krum import krum_scores

    scores = krum_scores(np.stack(updates).astype(np.float64), f=1)
    np.testing.assert_allclose(scores, [1 + 9, 1 + 4, 4 + 9, 16 + 36, 64 + 144])
    assert Krum(f=1).select(updates, [1.0] * 5) == [1]


@pytest.mark.parametrize("n, f", [(4, 1), (6, 2), (8, 3), (2, 0)])
def test_krum_refuses_n_at_most_2f_plus_2_naming_aggregation_f(n: int, f: int) -> None:
    updates = [np.full(3, i, np.float32) for i in range(n)]
    for rule in (Krum(f=f), MultiKrum(f=f)):
        with pytest.raises(DataError, match=r"aggregation\.f"):
            rule.aggregate(updates, [1.0] * n)


def test_multi_krum_refuses_m_above_n_naming_aggregation_m() -> None:
    _, updates, weights = _poisoned_batch()
    with pytest.raises(DataError, match=r"aggregation\.m"):
        MultiKrum(f=1, m=11).aggregate(updates, weights)


# --- coordinate-wise rules against their definitions ---------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 10, 11])
def test_median_equals_np_median_per_coordinate(n: int) -> None:
    xs = _rng(n).normal(size=(n, 30))
    result = CoordinateMedian().aggregate(list(xs), [1.0] * n)
    np.testing.assert_allclose(result, np.median(xs, axis=0).astype(np.float32))


def test_median_ignores_declared_weights() -> None:
    xs = _rng(3).normal(size=(5, 4))
    a = CoordinateMedian().aggregate(list(xs), [1.0] * 5)
    b = CoordinateMedian().aggregate(list(xs), [1e9, 1, 1, 1, 1])
    np.testing.assert_array_equal(a, b)


def test_trimmed_mean_with_trim_0_is_the_plain_mean() -> None:
    xs = _rng(1).normal(size=(9, 12))
    result = TrimmedMean(trim=0.0).aggregate(list(xs), [1.0] * 9)
    np.testing.assert_allclose(result, xs.mean(axis=0), rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 25),
    trim=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.49]),
    seed=st.integers(0, 2**32 - 1),
)
def test_trimmed_mean_matches_scipy_trim_mean(n: int, trim: float, seed: int) -> None:
    xs = _rng(seed).normal(scale=3.0, size=(n, 8))
    result = TrimmedMean(trim=trim).aggregate(list(xs), [1.0] * n)
    expected = stats.trim_mean(xs, trim, axis=0)
    np.testing.assert_allclose(result, expected.astype(np.float32), rtol=1e-5, atol=1e-5)


# --- norm bounding -------------------------------------------------------------------------


def test_norm_bound_clips_to_the_bound_exactly_and_keeps_the_direction() -> None:
    rule = NormBound(max_norm=2.0)
    for scale in (1.0001, 1.5, 2.5, 1e6):
        x = np.array([0.6, 0.8, 0.0]) * 2.0 * scale  # norm 2 * scale
        clipped = rule.clip_update(x)
        assert np.linalg.norm(clipped) == pytest.approx(2.0, rel=1e-12)
        np.testing.assert_allclose(clipped, [1.2, 1.6, 0.0], rtol=1e-12)
    x32 = _rng(2).normal(scale=10, size=50).astype(np.float32)
    c32 = rule.clip_update(x32)
    assert c32.dtype == np.float32
    assert np.linalg.norm(c32.astype(np.float64)) == pytest.approx(2.0, rel=1e-6)


def test_norm_bound_leaves_an_update_inside_the_bound_unchanged() -> None:
    rule = NormBound(max_norm=10.0)
    x = np.array([0.5, -1.0, 2.0], np.float32)
    np.testing.assert_array_equal(rule.clip_update(x), x)
    np.testing.assert_array_equal(rule.clip_update(np.zeros(3)), np.zeros(3))


def test_norm_bound_is_fedavg_of_the_clipped_updates_so_a_boosted_attack_is_bounded() -> None:
    rule = NormBound(max_norm=1.0)
    assert rule.needs_individual_updates is False
    _, updates, _ = _poisoned_batch()
    updates[-1] = updates[-1] * 1000.0
    weights = [float(w) for w in _rng(4).uniform(1, 100, size=len(updates))]
    result = rule.aggregate(updates, weights)
    expected = FedAvg().aggregate([rule.clip_update(u) for u in updates], weights)
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    # A mean of vectors of norm <= 1 has norm <= 1, whatever one client sent.
    assert np.linalg.norm(result.astype(np.float64)) <= 1.0 + 1e-6


# --- centred clipping ----------------------------------------------------------------------


def test_centered_clipping_with_a_huge_tau_is_the_mean_in_one_iteration() -> None:
    xs = _rng(5).normal(size=(6, 10))
    result = CenteredClipping(tau=1e6, iterations=1).aggregate(list(xs), [1.0] * 6)
    np.testing.assert_allclose(result, xs.mean(axis=0), rtol=1e-6, atol=1e-6)


def test_centered_clipping_moves_each_step_by_at_most_tau() -> None:
    # From v0 = 0, one step moves by mean_i clip(x_i, tau): norm <= tau.
    _, updates, weights = _poisoned_batch()
    result = CenteredClipping(tau=0.3, iterations=1).aggregate(updates, weights)
    assert np.linalg.norm(result.astype(np.float64)) <= 0.3 + 1e-6


def test_centered_clipping_starts_from_the_previous_aggregate_until_reset() -> None:
    _, updates, weights = _poisoned_batch()
    rule = CenteredClipping(tau=0.5, iterations=60)
    first = rule.aggregate(updates, weights)
    # Next round, from the previous centre, a single step suffices to stay near the honest mean.
    rule.iterations = 1
    second = rule.aggregate(updates, weights)
    honest = _honest_mean(updates)
    assert np.linalg.norm(second - honest) <= np.linalg.norm(first - honest) + 0.05
    rule.reset()
    fresh = rule.aggregate(updates, weights)  # from zero, one step: at most tau from 0
    assert np.linalg.norm(fresh.astype(np.float64)) <= 0.5 + 1e-6


# --- FLTrust -------------------------------------------------------------------------------


def test_fltrust_gives_zero_trust_to_an_update_against_the_root_update() -> None:
    g0 = np.array([1.0, 1.0, 0.0])
    updates = [
        np.array([2.0, 2.0, 0.0], np.float32),  # same direction: TS = 1
        np.array([1.0, 0.0, 0.0], np.float32),  # 45°: TS = cos 45°
        np.array([-5.0, -5.0, 1.0], np.float32),  # against g0: TS = 0
    ]
    rule = FLTrust(g0)
    scores = rule.trust_scores(updates, [1.0] * 3)
    np.testing.assert_allclose(scores, [1.0, np.sqrt(0.5), 0.0], atol=1e-7)
    with_attacker = rule.aggregate(updates, [1.0] * 3)
    without = rule.aggregate(updates[:2], [1.0] * 2)
    np.testing.assert_allclose(with_attacker, without, rtol=1e-6)
    # The definition: sum TS_i * x_i * |g0| / |x_i|, over sum TS_i.
    norm = np.sqrt(2.0)
    expected = (1.0 * np.array([1.0, 1.0, 0.0]) + np.sqrt(0.5) * np.array([norm, 0.0, 0.0])) / (
        1.0 + np.sqrt(0.5)
    )
    np.testing.assert_allclose(with_attacker, expected, rtol=1e-6)


def test_fltrust_rescales_every_update_to_the_root_norm_so_boosting_does_not_help() -> None:
    g0 = np.array([0.0, 1.0])
    rule = FLTrust(g0)
    small = [np.array([0.1, 1.0], np.float32), np.array([-0.1, 1.0], np.float32)]
    boosted = [small[0], small[1] * 1000.0]
    np.testing.assert_allclose(
        rule.aggregate(small, [1.0, 1.0]),
        rule.aggregate(boosted, [1.0, 1.0]),
        rtol=1e-6,
        atol=1e-7,
    )


def test_fltrust_returns_zeros_when_no_update_is_trusted() -> None:
    rule = FLTrust()
    rule.set_root_update(np.array([1.0, 0.0]))
    updates: list[np.ndarray] = [
        np.array([-1.0, 0.5], np.float32),
        np.array([0.0, 3.0], np.float32),
        np.zeros(2),
    ]
    result = rule.aggregate(updates, [1.0] * 3)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, np.zeros(2, np.float32))


def test_fltrust_needs_a_usable_root_update() -> None:
    updates = [np.ones(3, np.float32)]
    with pytest.raises(DataError, match="set_root_update"):
        FLTrust().aggregate(updates, [1.0])
    with pytest.raises(DataError, match="all zeros"):
        FLTrust(np.zeros(3))
    with pytest.raises(DataError, match="length"):
        FLTrust(np.ones(4)).aggregate(updates, [1.0])


# --- registry and parameter validation -----------------------------------------------------


@pytest.mark.parametrize(
    "name, params, cls, individual",
    [
        ("fedavg", {}, FedAvg, False),
        ("krum", {"f": 2}, Krum, True),
        ("multi-krum", {"f": 2, "m": 3}, MultiKrum, True),
        ("median", {}, CoordinateMedian, True),
        ("trimmed-mean", {"trim": 0.2}, TrimmedMean, True),
        ("norm-bound", {"max_norm": 3.0}, NormBound, False),
        ("centered-clipping", {"tau": 2.0, "iterations": 4}, CenteredClipping, True),
        ("fltrust", {}, FLTrust, True),
    ],
)
def test_make_rule_builds_every_rule_with_its_parameters(
    name: str, params: dict[str, object], cls: type, individual: bool
) -> None:
    rule = make_rule(name, **params)
    assert isinstance(rule, cls) and isinstance(rule, AggregationRule)
    assert rule.name == name
    assert rule.needs_individual_updates is individual
    assert set(params) == set(RULE_PARAMS[name])
    for key, value in params.items():
        assert getattr(rule, key) == value


def test_every_rule_returns_float32_of_the_update_length() -> None:
    _, updates, weights = _poisoned_batch()
    for name in RULE_PARAMS:
        rule = make_rule(name)
        if isinstance(rule, FLTrust):
            rule.set_root_update(np.ones(D))
        result = rule.aggregate(updates, weights)
        assert result.dtype == np.float32 and result.shape == (D,), name


@pytest.mark.parametrize(
    "name, params, key",
    [
        ("krum", {"f": -1}, "f"),
        ("krum", {"f": 1.5}, "f"),
        ("krum", {"f": True}, "f"),
        ("multi-krum", {"m": -1}, "m"),
        ("trimmed-mean", {"trim": 0.5}, "trim"),
        ("trimmed-mean", {"trim": -0.1}, "trim"),
        ("trimmed-mean", {"trim": float("nan")}, "trim"),
        ("norm-bound", {"max_norm": 0.0}, "max_norm"),
        ("norm-bound", {"max_norm": float("inf")}, "max_norm"),
        ("centered-clipping", {"tau": -1.0}, "tau"),
        ("centered-clipping", {"iterations": 0}, "iterations"),
        ("median", {"trim": 0.1}, "trim"),  # a parameter the rule does not take
        ("krum", {"tau": 1.0}, "tau"),
        ("fedavg", {"f": 1}, "f"),
        ("nope", {}, "rule"),
    ],
)
def test_bad_parameters_raise_config_error_naming_the_key(
    name: str, params: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"aggregation\.{key}\b"):
        make_rule(name, **params)


def test_robust_rules_still_validate_the_batch() -> None:
    for name in RULE_PARAMS:
        rule = make_rule(name)
        if isinstance(rule, FLTrust):
            rule.set_root_update(np.ones(2))
        with pytest.raises(DataError):
            rule.aggregate([np.array([1.0, np.nan], np.float32)] * 5, [1.0] * 5)
        with pytest.raises(DataError):
            rule.aggregate([], [])
