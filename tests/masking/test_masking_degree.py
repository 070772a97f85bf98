"""The automatic SecAgg+ degree: secure (graph stays connected) AND likely to complete.

Specification (secagg/masking/params.py, "Degree"): k = auto_degree(n, t, p) is the smallest
even k >= k_sec such that n * P[Bin(k + 1, 1 - p) < t_s(k)] + P[Bin(n, 1 - p) < t] <= 2^-20,
with t_s(k) = floor((k + 1) / 2) + 1 a strict majority of the neighbourhood, or n - 1 when no
k < n - 1 qualifies (and always when p >= 1 - t/n).

The probability claims behind it (survivors stay connected except with probability
n^2 rho^k; a round aborts at most as often as completion_failure_bound says) are checked by
counting over many random graphs and loss patterns, not by recomputing the formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from secagg.errors import ProtocolError
from secagg.masking import MaskingParams, run_round
from secagg.masking import params as params_module
from secagg.masking.graph import harary_graph
from secagg.masking.params import (
    CORRECTNESS_BITS,
    DEFAULT_COLLUDING_FRACTION,
    DEFAULT_DROPOUT_RATE,
    MASKED_INPUT,
    auto_degree,
    completion_failure_bound,
    security_degree,
    share_threshold,
)

RATES = [0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.39, 0.4, 0.6, 0.99]
SIZES = [(10, 6), (40, 24), (100, 60), (100, 51), (100, 80), (1000, 600), (1000, 501)]


def test_correctness_parameter_and_default_dropout_rate() -> None:
    assert CORRECTNESS_BITS == 20
    assert DEFAULT_DROPOUT_RATE == 0.1
    assert auto_degree(1000, 600) == auto_degree(1000, 600, DEFAULT_DROPOUT_RATE)
    # gamma = 0.1: 100 of 1,000 clients may collude, which raises k from 46 at 10 % loss
    assert DEFAULT_COLLUDING_FRACTION == 0.1
    assert MaskingParams.create(range(1000), 1).neighbors == auto_degree(1000, 600, 0.1, 100)


@pytest.mark.parametrize(("n", "t"), SIZES)
def test_degree_is_even_or_complete_and_at_least_the_security_degree(n: int, t: int) -> None:
    for p in RATES:
        k = auto_degree(n, t, p)
        assert k == n - 1 or (k % 2 == 0 and 2 <= k < n - 1), (p, k)
        assert k >= security_degree(n, t)


@pytest.mark.parametrize(("n", "t"), SIZES)
def test_degree_is_monotone_in_the_dropout_rate(n: int, t: int) -> None:
    degrees = [auto_degree(n, t, p) for p in RATES]
    assert degrees == sorted(degrees)
    assert degrees[0] == security_degree(n, t)  # no loss expected: security alone decides


@pytest.mark.parametrize(("n", "t"), SIZES)
def test_auto_degree_is_the_smallest_even_degree_whose_completion_bound_meets_the_target(
    n: int, t: int
) -> None:
    # auto_degree and completion_failure_bound must tell one story: the degree chosen meets
    # the 2^-eta target by the published bound, and no smaller admissible degree does (the
    # bound is not monotone in k, so every smaller even k >= k_sec is checked).
    target = 2.0**-CORRECTNESS_BITS
    k_sec = security_degree(n, t)
    for p in RATES:
        k = auto_degree(n, t, p)
        if k < n - 1:
            assert completion_failure_bound(n, t, k, p) <= target, (p, k)
        smaller = range(max(k_sec, 2), min(k, n - 1), 2)
        assert all(completion_failure_bound(n, t, c, p) > target for c in smaller), (p, k)


def test_concrete_degrees_quoted_in_the_docstring() -> None:
    table = {
        p: [auto_degree(n, math.ceil(0.6 * n), p) for n in (100, 1000, 10_000)]
        for p in (0, 0.1, 0.2, 0.3)
    }
    assert table == {
        0: [42, 46, 52],
        0.1: [42, 46, 52],
        0.2: [99, 80, 90],
        0.3: [99, 206, 232],
    }


@pytest.mark.parametrize(("n", "t"), [(100, 60), (1000, 600), (50, 26)])
def test_hopeless_dropout_rates_use_the_complete_graph(n: int, t: int) -> None:
    # Losing 1 - t/n or more in expectation: no degree makes completion likely; the round then
    # completes only when at least t clients happen to survive (exactly so on the complete graph).
    for p in (1 - t / n, (1 - t / n + 1) / 2, 0.999):
        assert auto_degree(n, t, p) == n - 1
    assert completion_failure_bound(n, t, n - 1, 1 - t / n) > 0.4


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, True, "0.1", None])
def test_dropout_rate_must_be_a_fraction_below_one(rate: object) -> None:
    with pytest.raises(ProtocolError, match="dropout_rate"):
        MaskingParams.create(range(10), 4, dropout_rate=rate)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="dropout_rate"):
        auto_degree(10, 6, rate)  # type: ignore[arg-type]


def test_dropout_rate_only_matters_for_the_automatic_degree() -> None:
    explicit = [
        MaskingParams.create(range(100), 4, neighbors=20, dropout_rate=p, colluding_fraction=0)
        for p in (0, 0.3)
    ]
    assert explicit[0] == explicit[1]
    auto = [
        MaskingParams.create(range(1000), 4, dropout_rate=p, colluding_fraction=0) for p in (0, 0.3)
    ]
    assert [a.neighbors for a in auto] == [46, 206]
    assert auto[0].digest != auto[1].digest  # through k, which the digest covers


def _neighbourhood_matrix(n: int, t: int, k: int) -> np.ndarray:
    """Row u: the holders of u's shares (its neighbourhood), from the real graph."""
    graph = harary_graph(range(n), k, b"degree-test", 7)
    holders = np.zeros((n, n), dtype=np.int32)
    for u in range(n):
        holders[u, sorted(graph.neighborhood(u))] = 1
    return holders


def _dropout_sets(n: int, t: int, p: float, trials: int, seed: int) -> np.ndarray:
    """``trials`` alive-masks, each client lost with prob. p, conditioned on >= t survivors."""
    rng = np.random.default_rng(seed)
    masks: list[np.ndarray] = []
    while len(masks) < trials:
        alive = rng.random(n) >= p
        if alive.sum() >= t:
            masks.append(alive)
    return np.array(masks).T  # n x trials


def _reconstructable(holders: np.ndarray, alive: np.ndarray, t_s: int) -> np.ndarray:
    """Per trial, whether the server's checks at masked_input/unmasking all pass.

    server.py needs t_s alive holders of b_u for every survivor u (its neighbourhood) and of
    s_u for every dropped client u that a survivor masked with (its neighbours; u itself is
    not alive). We check every dropped client, which also covers those dropped before
    share_keys (the server would not even need them).
    """
    alive_holders = holders @ alive.astype(np.int32)  # n x trials: alive members of N[u]
    return np.asarray((alive_holders >= t_s).all(axis=0))


@pytest.mark.parametrize(("n", "t", "p"), [(100, 60, 0.3), (1000, 600, 0.1), (1000, 600, 0.3)])
def test_random_dropouts_leave_every_neighbourhood_reconstructable(
    n: int, t: int, p: float
) -> None:
    k = auto_degree(n, t, p)
    alive = _dropout_sets(n, t, p, trials=200, seed=n + int(100 * p))
    ok = _reconstructable(_neighbourhood_matrix(n, t, k), alive, share_threshold(n, t, k))
    assert ok.all(), f"k = {k}: {int((~ok).sum())} of 200 dropout sets would abort"
    if p == 0.3:
        # Half the security degree makes such rounds abort: the check has teeth.
        small = 2 * (security_degree(n, t) // 4)
        small_ok = _reconstructable(
            _neighbourhood_matrix(n, t, small), alive, share_threshold(n, t, small)
        )
        assert small < k and small_ok.mean() < 0.9


@pytest.mark.parametrize(("seed", "round_id"), [(0, 0), (1, 5), (2, 2**63), (3, 17)])
def test_round_with_30_percent_dropout_at_masked_input_completes(seed: int, round_id: int) -> None:
    n, dim = 40, 8
    params = MaskingParams.create(range(n), dim, round_id=round_id, dropout_rate=0.3)
    rng = np.random.default_rng(seed)
    inputs = {c: rng.integers(0, 2**32, dim, dtype=np.uint64).astype(np.uint32) for c in range(n)}
    dropped = {int(c) for c in rng.choice(n, size=int(0.3 * n), replace=False)}
    result = run_round(inputs, params, dropouts={MASKED_INPUT: dropped})
    survivors = sorted(set(range(n)) - dropped)
    assert list(result.included) == survivors
    expected = sum(inputs[c].astype(np.uint64) for c in survivors) % 2**32
    assert np.array_equal(np.asarray(result.total, dtype=np.uint64), expected)


# --------------------------------------------------------------------------------------------
# The two probability claims behind the degree, checked empirically: many random graphs
# (random graph seeds and round ids) x random loss patterns, counted, and compared with the
# claimed probability through a binomial quantile. The targets sigma = 40 and eta = 20 are
# far too small to observe, so these tests lower them (monkeypatching SECURITY_BITS and
# CORRECTNESS_BITS) to 2^-7 ~ 0.8 %, which 2,000 trials can resolve, and let the code size k
# for that target. All randomness here is public and seeded: the tests are deterministic.
# --------------------------------------------------------------------------------------------

GRAPHS, LOSS_PATTERNS = 100, 20  # 2,000 trials
TRIALS = GRAPHS * LOSS_PATTERNS
TESTABLE_BITS = 7
#: A count above the (1 - 1e-6)-quantile of Bin(TRIALS, rate) refutes "probability <= rate".
QUANTILE = 1 - 1e-6


def _most_failures_consistent_with(rate: float) -> int:
    """The largest failure count out of TRIALS not refuting a failure probability <= rate."""
    return int(binom.ppf(QUANTILE, TRIALS, min(rate, 1.0)))


def _random_graphs(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """GRAPHS x n x n adjacency matrices of the real round graph for random graph seeds."""
    adjacency = np.zeros((GRAPHS, n, n), dtype=np.float32)
    for g in range(GRAPHS):
        graph = harary_graph(range(n), k, rng.bytes(16), int(rng.integers(2**63)))
        for u in range(n):
            adjacency[g, u, sorted(graph.neighbors(u))] = 1
    return adjacency


def _alive(n: int, loss_rate: float, rng: np.random.Generator) -> np.ndarray:
    """GRAPHS x n x LOSS_PATTERNS: each client lost independently with probability loss_rate."""
    return rng.random((GRAPHS, n, LOSS_PATTERNS)) >= loss_rate


def _disconnected(adjacency: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Per trial, whether the graph induced on the surviving clients is disconnected.

    Breadth-first search from the first survivor, all trials at once: ``reached`` grows by
    the alive neighbours of reached clients until it stops changing.
    """
    graphs, _, patterns = alive.shape
    g, d = np.meshgrid(np.arange(graphs), np.arange(patterns), indexing="ij")
    reached = np.zeros_like(alive)
    first = alive.argmax(axis=1)
    reached[g, first, d] = alive[g, first, d]
    while True:
        grown = alive & (reached | (adjacency @ reached.astype(np.float32) > 0))
        if np.array_equal(grown, reached):
            return np.asarray((reached != alive).any(axis=1))
        reached = grown


def _incomplete(adjacency: np.ndarray, alive: np.ndarray, t_s: int) -> np.ndarray:
    """Per trial, whether some neighbourhood (a client and its neighbours) keeps < t_s alive."""
    n = adjacency.shape[1]
    holders = adjacency + np.eye(n, dtype=np.float32)
    return np.asarray(((holders @ alive.astype(np.float32)) < t_s).any(axis=1))


@pytest.mark.parametrize(("n", "t"), [(30, 18), (40, 24), (60, 40)])
def test_survivors_stay_connected_at_the_security_degree_as_often_as_n2_rho_k_claims(
    monkeypatch: pytest.MonkeyPatch, n: int, t: int
) -> None:
    # Security (params docstring): losing each client with probability rho = 1 - t/n
    # disconnects the survivors with probability <= n^2 rho^k, and security_degree picks k
    # so that this is <= 2^-sigma.
    monkeypatch.setattr(params_module, "SECURITY_BITS", TESTABLE_BITS)
    k, rho = security_degree(n, t), 1 - t / n
    assert k < n - 1  # a sparse graph: disconnection is possible at all
    claimed = n**2 * rho**k
    assert claimed <= 2.0**-TESTABLE_BITS
    rng = np.random.default_rng(n)
    failures = int(_disconnected(_random_graphs(n, k, rng), _alive(n, rho, rng)).sum())
    assert failures <= _most_failures_consistent_with(claimed), (k, failures, claimed)


@pytest.mark.parametrize(("n", "t"), [(30, 18), (40, 24), (60, 40)])
def test_far_below_the_security_degree_survivors_disconnect_far_more_often_than_the_target(
    monkeypatch: pytest.MonkeyPatch, n: int, t: int
) -> None:
    # The experiment above has teeth: halve the degree and the observed disconnection rate
    # refutes the 2^-7 target.
    monkeypatch.setattr(params_module, "SECURITY_BITS", TESTABLE_BITS)
    k = 2 * (security_degree(n, t) // 4)
    rng = np.random.default_rng(n)
    failures = int(_disconnected(_random_graphs(n, k, rng), _alive(n, 1 - t / n, rng)).sum())
    assert failures > _most_failures_consistent_with(2.0**-TESTABLE_BITS), (k, failures)


@pytest.mark.parametrize(
    ("n", "t", "p", "k"),
    [(100, 60, 0.1, 16), (100, 60, 0.2, 40), (100, 60, 0.2, 64), (200, 120, 0.2, 56)],
)
def test_completion_failure_bound_bounds_the_observed_abort_rate(
    n: int, t: int, p: float, k: int
) -> None:
    bound = completion_failure_bound(n, t, k, p)
    assert bound < 0.2  # an informative bound, not the cap at 1
    rng = np.random.default_rng(k)
    aborts = _incomplete(_random_graphs(n, k, rng), _alive(n, p, rng), share_threshold(n, t, k))
    assert int(aborts.sum()) <= _most_failures_consistent_with(bound), (int(aborts.sum()), bound)


@pytest.mark.parametrize(("n", "t", "p"), [(40, 24, 0.35), (25, 13, 0.4)])
def test_on_the_complete_graph_the_completion_bound_is_the_exact_abort_rate(
    n: int, t: int, p: float
) -> None:
    exact = completion_failure_bound(n, t, n - 1, p)
    rng = np.random.default_rng(n)
    aborts = int(_incomplete(_random_graphs(n, n - 1, rng), _alive(n, p, rng), t).sum())
    assert binom.ppf(1 - QUANTILE, TRIALS, exact) <= aborts <= binom.ppf(QUANTILE, TRIALS, exact)


@pytest.mark.parametrize(("n", "t", "p"), [(100, 60, 0.1), (100, 60, 0.2), (200, 120, 0.2)])
def test_auto_degree_completes_at_the_expected_dropout_rate_as_often_as_its_target(
    monkeypatch: pytest.MonkeyPatch, n: int, t: int, p: float
) -> None:
    # Lower both targets so that completion, not security, decides k, at a testable rate.
    monkeypatch.setattr(params_module, "SECURITY_BITS", 1)
    monkeypatch.setattr(params_module, "CORRECTNESS_BITS", TESTABLE_BITS)
    k = auto_degree(n, t, p)
    assert security_degree(n, t) < k < n - 1
    bound = completion_failure_bound(n, t, k, p)
    assert bound <= 2.0**-TESTABLE_BITS
    rng = np.random.default_rng(n + k)
    aborts = _incomplete(_random_graphs(n, k, rng), _alive(n, p, rng), share_threshold(n, t, k))
    assert int(aborts.sum()) <= _most_failures_consistent_with(bound), (k, int(aborts.sum()))


@pytest.mark.parametrize(("n", "t", "p"), [(100, 60, 0.1), (100, 60, 0.2), (200, 120, 0.2)])
def test_far_below_the_auto_degree_rounds_abort_far_more_often_than_the_target(
    monkeypatch: pytest.MonkeyPatch, n: int, t: int, p: float
) -> None:
    monkeypatch.setattr(params_module, "SECURITY_BITS", 1)
    monkeypatch.setattr(params_module, "CORRECTNESS_BITS", TESTABLE_BITS)
    k = 2 * (auto_degree(n, t, p) // 4)  # about half
    rng = np.random.default_rng(n + k)
    aborts = _incomplete(_random_graphs(n, k, rng), _alive(n, p, rng), share_threshold(n, t, k))
    assert int(aborts.sum()) > _most_failures_consistent_with(2.0**-TESTABLE_BITS), k
