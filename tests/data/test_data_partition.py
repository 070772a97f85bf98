"""Partitioners and the stratified hold-out, as pure functions of labels and a Generator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.config import DataSection
from secagg.data import dirichlet_partition, iid_partition, load_federated, stratified_take
from secagg.data.partition import DIRICHLET_MAX_DRAWS, dirichlet_min_size
from secagg.errors import DataError


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert joined.dtype == np.int64
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))  # disjoint and complete


def _label_skew(y: np.ndarray, parts: list[np.ndarray], n_classes: int) -> float:
    """Mean total-variation distance between each client's label mix and the global one."""
    overall = np.bincount(y, minlength=n_classes) / len(y)
    dists = [np.bincount(y[p], minlength=n_classes) / len(p) for p in parts]
    return float(np.mean([0.5 * np.abs(d - overall).sum() for d in dists]))


def test_iid_partition_is_a_near_equal_shuffled_cover() -> None:
    parts = iid_partition(103, 10, np.random.default_rng(0))
    _assert_exact_cover(parts, 103)
    assert {len(p) for p in parts} == {10, 11}
    assert not np.array_equal(np.concatenate(parts), np.arange(103))  # shuffled


@given(
    n=st.integers(1, 300),
    k=st.integers(1, 30),
    alpha=st.floats(0.001, 100.0),
    classes=st.integers(1, 6),
    min_size=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_partition_is_a_cover_respecting_the_minimum_size(
    n: int, k: int, alpha: float, classes: int, min_size: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    if n < k * min_size:
        with pytest.raises(DataError):
            dirichlet_partition(y, k, alpha, rng, min_size=min_size)
        return
    parts = dirichlet_partition(y, k, alpha, rng, min_size=min_size)
    assert len(parts) == k
    _assert_exact_cover(parts, n)
    assert min(len(p) for p in parts) >= min_size


def test_dirichlet_top_up_terminates_when_redraws_cannot_succeed() -> None:
    # alpha = 0.001 gives each class to one client: 50 clients of 2 classes can never all be
    # non-empty by redrawing alone, so the top-up path must do the work.
    y = np.repeat([0, 1], 100)
    parts = dirichlet_partition(y, 50, 0.001, np.random.default_rng(0), min_size=3)
    _assert_exact_cover(parts, 200)
    assert min(len(p) for p in parts) >= 3
    assert DIRICHLET_MAX_DRAWS >= 1


def test_dirichlet_min_size_rule() -> None:
    assert dirichlet_min_size(455, 10, floor=2) == 10  # capped at 10
    assert dirichlet_min_size(455, 100, floor=2) == 2  # half of the mean 4
    assert dirichlet_min_size(60, 100, floor=1) == 1  # never below the floor


def test_dirichlet_skew_grows_as_alpha_shrinks() -> None:
    y = np.random.default_rng(0).integers(10, size=2000)
    skews = []
    for alpha in (100.0, 1.0, 0.1):
        per_seed = [
            _label_skew(y, dirichlet_partition(y, 10, alpha, np.random.default_rng(s)), 10)
            for s in range(3)
        ]
        skews.append(np.mean(per_seed))
    assert skews[0] < 0.1  # near IID
    assert skews[0] < skews[1] < skews[2]
    assert skews[2] > 0.5  # strongly skewed


def test_dirichlet_skew_shows_up_in_loaded_clients() -> None:
    def skew(alpha: float) -> float:
        fed = load_federated(
            DataSection(dataset="digits", partition="dirichlet", alpha=alpha, val_fraction=0),
            seed=0,
        )
        y = np.concatenate([c.y_train for c in fed.clients])
        sizes = [c.num_samples for c in fed.clients]
        parts = np.split(np.arange(len(y)), np.cumsum(sizes)[:-1])
        return _label_skew(y, parts, fed.n_classes)

    assert skew(100.0) < skew(1.0) < skew(0.05)


@given(
    y=st.lists(st.integers(0, 4), min_size=1, max_size=200),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_take_is_exact_and_proportional(
    y: list[int], fraction: float, seed: int
) -> None:
    labels = np.array(y)
    n_take = round(fraction * len(labels))
    kept, taken = stratified_take(labels, n_take, np.random.default_rng(seed))
    assert len(taken) == n_take
    _assert_exact_cover([kept, taken], len(labels))
    for c in np.unique(labels):
        quota = np.sum(labels == c) * n_take / len(labels)
        assert abs(np.sum(labels[taken] == c) - quota) < 1  # largest-remainder rounding


def test_partitioners_need_enough_samples() -> None:
    with pytest.raises(DataError, match="5 clients"):
        iid_partition(4, 5, np.random.default_rng(0))
