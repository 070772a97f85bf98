"""Built-in datasets: shapes, classes, dtypes and seeding of scikit-learn and synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.config import DataSection
from secagg.data import FederatedDataset, load_federated
from secagg.errors import ConfigError


def _all_rows(fed: FederatedDataset) -> int:
    return len(fed.y_test) + sum(len(c.y_train) + len(c.y_val) for c in fed.clients)


@pytest.mark.parametrize(
    ("dataset", "rows", "features", "classes", "task"),
    [
        ("breast_cancer", 569, 30, ["malignant", "benign"], "binary"),
        ("digits", 1797, 64, [str(d) for d in range(10)], "multiclass"),
    ],
)
def test_sklearn_datasets_load_with_their_shapes_and_classes(
    dataset: str, rows: int, features: int, classes: list[str], task: str
) -> None:
    fed = load_federated(DataSection(dataset=dataset, clients=5), seed=0)
    assert fed.n_features == features == len(fed.feature_names)
    assert fed.class_names == classes
    assert fed.n_classes == len(classes)
    assert fed.task == task
    assert len(fed.clients) == 5
    assert _all_rows(fed) == rows  # every row used exactly once (test + train + val)
    for c in fed.clients:
        assert c.X_train.dtype == c.X_val.dtype == np.float32
        assert c.y_train.dtype == c.y_val.dtype == np.int64
        assert c.X_train.shape == (c.num_samples, features)
        assert c.X_val.shape == (len(c.y_val), features)
    assert fed.X_test.dtype == np.float32 and fed.y_test.dtype == np.int64
    assert set(np.unique(fed.y_test)) == set(range(len(classes)))  # stratified: all classes


def test_synthetic_follows_its_config_keys() -> None:
    data = DataSection(
        dataset="synthetic", synthetic_samples=300, synthetic_features=7, synthetic_classes=3
    )
    fed = load_federated(data, seed=1)
    assert (fed.n_features, fed.n_classes, _all_rows(fed)) == (7, 3, 300)
    assert fed.feature_names == [f"x{i}" for i in range(7)]
    assert fed.class_names == ["0", "1", "2"]
    assert fed.task == "multiclass"


def test_synthetic_data_is_seeded() -> None:
    data = DataSection(dataset="synthetic", synthetic_samples=200, standardize="none")
    a, b, c = (load_federated(data, seed=s) for s in (4, 4, 5))
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert not np.array_equal(a.X_test, c.X_test)


def test_synthetic_rejects_more_classes_than_features_can_separate() -> None:
    data = DataSection(dataset="synthetic", synthetic_features=2, synthetic_classes=5)
    with pytest.raises(ConfigError, match=r"synthetic_classes = 5 needs .*synthetic_features"):
        load_federated(data, seed=0)


@pytest.mark.parametrize(
    ("key", "value"),
    [("dataset", "mnist"), ("partition", "shards"), ("standardize", "minmax")],
)
def test_unknown_option_values_list_the_allowed_ones(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"data\.{key} = '{value}' is not one of: ") as exc:
        load_federated(DataSection(**{key: value}), seed=0)  # type: ignore[arg-type]
    assert "\n" not in str(exc.value)


def test_site_partition_needs_csv() -> None:
    with pytest.raises(ConfigError, match=r"data\.partition = 'site' needs data\.dataset = 'csv'"):
        load_federated(DataSection(dataset="digits", partition="site"), seed=0)
