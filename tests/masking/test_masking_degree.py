"""The automatic SecAgg+ degree: secure (graph stays connected) AND likely to complete.

Specification (secagg/masking/params.py, "Degree"): k = auto_degree(n, t, p) is the smallest
even k >= k_sec such that n * P[Bin(k + 1, 1 - p) < t_s(k)] <= 2^-20, or n - 1 when no
k < n - 1 qualifies (and always when p >= 1 - t/n).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from secagg.errors import ProtocolError
from secagg.masking import MaskingParams, run_round
from secagg.masking.graph import harary_graph
from secagg.masking.params import (
    CORRECTNESS_BITS,
    DEFAULT_DROPOUT_RATE,
    MASKED_INPUT,
    auto_degree,
    completion_failure_bound,
    security_degree,
    share_threshold,
)

RATES = [0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.39, 0.4, 0.6, 0.99]
SIZES = [(10, 6), (40, 24), (100, 60), (100, 51), (100, 80), (1000, 600), (1000, 501)]


def exact_union_bound(n: int, t: int, k: int, p: Fraction) -> Fraction:
    """n * P[Bin(k + 1, 1 - p) < t_s(k)], in exact rational arithmetic (math.comb)."""
    t_s, q = share_threshold(n, t, k), 1 - p
    return n * sum((math.comb(k + 1, j) * q**j * p ** (k + 1 - j) for j in range(t_s)), Fraction(0))


def test_correctness_parameter_and_default_dropout_rate() -> None:
    assert CORRECTNESS_BITS == 20
    assert DEFAULT_DROPOUT_RATE == 0.1
    assert auto_degree(1000, 600) == auto_degree(1000, 600, DEFAULT_DROPOUT_RATE)
    assert MaskingParams.create(range(1000), 1).neighbors == auto_degree(1000, 600, 0.1)


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
@pytest.mark.parametrize("p", [Fraction(1, 100), Fraction(1, 10), Fraction(1, 5), Fraction(3, 10)])
def test_union_bound_holds_and_k_is_the_smallest_such_even_degree(
    n: int, t: int, p: Fraction
) -> None:
    k = auto_degree(n, t, float(p))
    target = Fraction(1, 2**CORRECTNESS_BITS)
    if k < n - 1:
        assert exact_union_bound(n, t, k, p) <= target
        assert completion_failure_bound(n, t, k, float(p)) <= 2.0**-CORRECTNESS_BITS
    smaller = k - 2 if k < n - 1 else (n - 3 if n % 2 else n - 2)  # largest even below n - 1
    if smaller >= security_degree(n, t):
        assert exact_union_bound(n, t, smaller, p) > target  # k - 2 would not do


def test_concrete_degrees_quoted_in_the_docstring() -> None:
    table = {
        p: [auto_degree(n, math.ceil(0.6 * n), p) for n in (100, 1000, 10_000)]
        for p in (0, 0.1, 0.2, 0.3)
    }
    assert table == {
        0: [42, 46, 52],
        0.1: [50, 54, 62],
        0.2: [99, 170, 192],
        0.3: [99, 792, 892],
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
    explicit = [MaskingParams.create(range(100), 4, neighbors=20, dropout_rate=p) for p in (0, 0.3)]
    assert explicit[0] == explicit[1]
    auto = [MaskingParams.create(range(1000), 4, dropout_rate=p) for p in (0, 0.3)]
    assert [a.neighbors for a in auto] == [46, 792]
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
    return (alive_holders >= t_s).all(axis=0)


@pytest.mark.parametrize(("n", "t", "p"), [(100, 60, 0.3), (1000, 600, 0.1), (1000, 600, 0.3)])
def test_random_dropouts_leave_every_neighbourhood_reconstructable(
    n: int, t: int, p: float
) -> None:
    k = auto_degree(n, t, p)
    alive = _dropout_sets(n, t, p, trials=200, seed=n + int(100 * p))
    ok = _reconstructable(_neighbourhood_matrix(n, t, k), alive, share_threshold(n, t, k))
    assert ok.all(), f"k = {k}: {int((~ok).sum())} of 200 dropout sets would abort"
    if p == 0.3:
        # The security-only degree is what made such rounds abort: the check has teeth.
        k_sec = security_degree(n, t)
        sec_ok = _reconstructable(
            _neighbourhood_matrix(n, t, k_sec), alive, share_threshold(n, t, k_sec)
        )
        assert k_sec < k and sec_ok.mean() < 0.9


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
