"""load_federated: hold-out, determinism, client sizes and per-site standardisation."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.config import DataSection
from secagg.data import FederatedDataset, Standardizer, load_federated
from secagg.errors import DataError


def _rows(X: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in np.asarray(X, dtype=np.float32)}


def _same(a: FederatedDataset, b: FederatedDataset) -> bool:
    pairs = [(a.X_test, b.X_test), (a.y_test, b.y_test)]
    for ca, cb in zip(a.clients, b.clients, strict=True):
        pairs += [(ca.X_train, cb.X_train), (ca.y_train, cb.y_train)]
        pairs += [(ca.X_val, cb.X_val), (ca.y_val, cb.y_val)]
    return all(np.array_equal(x, y) for x, y in pairs)


@pytest.mark.parametrize("partition", ["iid", "dirichlet"])
def test_same_seed_same_federation_other_seed_other_partition(partition: str) -> None:
    data = DataSection(dataset="breast_cancer", partition=partition)
    a, b, c = (load_federated(data, seed=s) for s in (7, 7, 8))
    assert _same(a, b)
    assert not _same(a, c)
    assert not np.array_equal(a.clients[0].y_train, c.clients[0].y_train)


def test_loading_does_not_touch_global_numpy_rng() -> None:
    np.random.seed(0)
    expected = np.random.random()
    np.random.seed(0)
    load_federated(DataSection(dataset="synthetic", partition="dirichlet"), seed=3)
    assert np.random.random() == expected


@pytest.mark.parametrize("dataset", ["breast_cancer", "synthetic"])
def test_test_set_is_disjoint_from_client_rows(dataset: str) -> None:
    fed = load_federated(DataSection(dataset=dataset, standardize="none"), seed=0)
    test_rows = _rows(fed.X_test)
    client_rows: set[bytes] = set()
    for c in fed.clients:
        for block in (c.X_train, c.X_val):
            rows = _rows(block)
            assert not rows & client_rows  # no row shared between clients or splits
            client_rows |= rows
    assert len(test_rows) == len(fed.y_test)  # rows are unique in these datasets
    assert not test_rows & client_rows
    n_total = len(fed.y_test) + sum(len(c.y_train) + len(c.y_val) for c in fed.clients)
    assert round(0.2 * n_total) == len(fed.y_test)


@pytest.mark.parametrize(
    ("partition", "alpha", "clients"), [("iid", 0.5, 60), ("dirichlet", 0.01, 40)]
)
def test_every_client_gets_train_and_val_rows(partition: str, alpha: float, clients: int) -> None:
    data = DataSection(dataset="breast_cancer", partition=partition, alpha=alpha, clients=clients)
    fed = load_federated(data, seed=0)
    assert len(fed.clients) == clients
    assert all(c.num_samples >= 1 and len(c.y_val) >= 1 for c in fed.clients)
    assert len({c.name for c in fed.clients}) == clients
    assert fed.clients[0].name == "hospital-00"


def test_no_validation_split_when_val_fraction_is_zero() -> None:
    fed = load_federated(DataSection(dataset="breast_cancer", val_fraction=0.0), seed=0)
    assert all(c.X_val.shape == (0, 30) and len(c.y_val) == 0 for c in fed.clients)


def test_too_many_clients_names_both_numbers() -> None:
    data = DataSection(dataset="breast_cancer", clients=500)
    with pytest.raises(DataError, match=r"data\.clients=500 but only 455 training samples") as e:
        load_federated(data, seed=0)
    assert "data.clients <= 227" in str(e.value) and "\n" not in str(e.value)


def test_more_clients_than_rows_without_validation() -> None:
    data = DataSection(dataset="breast_cancer", clients=456, val_fraction=0.0)
    with pytest.raises(DataError, match=r"data\.clients=456 .* 455 training samples"):
        load_federated(data, seed=0)
    assert len(load_federated(DataSection(**{**vars(data), "clients": 455}), 0).clients) == 455


# -------------------------------------------------------------------------------------------
# Standardisation
# -------------------------------------------------------------------------------------------


def _assert_standardised(X: np.ndarray) -> None:
    """~0 mean; ~1 std except constant columns, which stay exactly 0 (no NaN from 0/0)."""
    assert np.isfinite(X).all()
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-4)
    std = X.std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-3) | (std == 0))


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits"])
def test_site_standardisation_uses_each_clients_own_training_statistics(dataset: str) -> None:
    data = DataSection(dataset=dataset, partition="dirichlet", alpha=0.3)
    fed = load_federated(data, seed=0)
    raw = load_federated(DataSection(**{**vars(data), "standardize": "none"}), seed=0)
    for c, r in zip(fed.clients, raw.clients, strict=True):
        _assert_standardised(c.X_train)
        # Validation rows use the client's *training* statistics, not their own.
        scaler = Standardizer.fit(r.X_train)
        np.testing.assert_allclose(c.X_val, scaler.apply(r.X_val), atol=1e-5)
        np.testing.assert_array_equal(c.y_val, r.y_val)
    # The global test set is standardised as its own, independent site.
    _assert_standardised(fed.X_test)
    np.testing.assert_allclose(
        fed.X_test, Standardizer.fit(raw.X_test).apply(raw.X_test), atol=1e-5
    )


def test_site_statistics_are_not_pooled() -> None:
    base = DataSection(dataset="breast_cancer", partition="dirichlet", alpha=0.1)
    per_site = load_federated(base, seed=0)
    pooled = load_federated(DataSection(**{**vars(base), "standardize": "global"}), seed=0)
    raw = load_federated(DataSection(**{**vars(base), "standardize": "none"}), seed=0)
    # Under label skew clients' feature distributions differ: with one pooled scaler their
    # means are visibly off zero, while per-site scaling centres every client.
    off_centre = [np.abs(c.X_train.mean(axis=0)).max() for c in pooled.clients]
    assert max(off_centre) > 0.5
    assert all(np.abs(c.X_train.mean(axis=0)).max() < 1e-4 for c in per_site.clients)
    # "global" is one scaler over all clients' training rows, applied everywhere.
    scaler = Standardizer.fit(np.concatenate([c.X_train for c in raw.clients]))
    np.testing.assert_allclose(pooled.X_test, scaler.apply(raw.X_test), atol=1e-5)
    np.testing.assert_allclose(
        pooled.clients[3].X_val, scaler.apply(raw.clients[3].X_val), atol=1e-5
    )


def test_digits_constant_pixels_do_not_produce_nan() -> None:
    fed = load_federated(DataSection(dataset="digits", clients=20), seed=0)
    assert all(np.isfinite(c.X_train).all() and np.isfinite(c.X_val).all() for c in fed.clients)
    assert np.any(fed.clients[0].X_train.std(axis=0) == 0)  # border pixels stay constant 0


def test_standardize_none_keeps_raw_values() -> None:
    fed = load_federated(DataSection(dataset="digits", standardize="none"), seed=0)
    assert fed.X_test.min() == 0 and fed.X_test.max() == 16  # raw pixel intensities


def test_a_server_root_dataset_is_held_out_apart_from_clients_and_test() -> None:
    section = DataSection(dataset="digits", partition="iid", clients=5, root_samples=100)
    with_root = load_federated(section, 3)
    without = load_federated(DataSection(dataset="digits", partition="iid", clients=5), 3)
    assert with_root.root is not None and without.root is None
    assert len(with_root.root.y_train) == 100
    assert len(set(with_root.root.y_train.tolist())) == 10  # stratified: every digit
    clients = sum(c.num_samples + len(c.y_val) for c in with_root.clients)
    clients_without = sum(c.num_samples + len(c.y_val) for c in without.clients)
    assert clients == clients_without - 100  # taken from the training pool, not the test set
    assert len(with_root.y_test) == len(without.y_test)
