"""Built-in datasets: scikit-learn's bundled breast cancer and digits, and seeded synthetic data.

All three work offline (scikit-learn ships the first two in its wheel), which keeps examples,
notebooks and tests reproducible without network access.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, make_classification

from secagg.config import DataSection
from secagg.data.table import Table
from secagg.errors import ConfigError

BUILTIN_DATASETS = ("breast_cancer", "digits", "synthetic")


def load_builtin(data: DataSection, rng: np.random.Generator) -> Table:
    """Load ``data.dataset`` (one of :data:`BUILTIN_DATASETS`); ``rng`` seeds synthetic data."""
    sklearn_loaders = {"breast_cancer": load_breast_cancer, "digits": load_digits}
    if data.dataset in sklearn_loaders:
        bunch = sklearn_loaders[data.dataset]()
        return Table(
            X=np.asarray(bunch.data, dtype=np.float64),
            y=np.asarray(bunch.target, dtype=np.int64),
            feature_names=[str(f) for f in bunch.feature_names],
            class_names=[str(c) for c in bunch.target_names],
            source=data.dataset,
        )
    if data.dataset == "synthetic":
        return _synthetic(data, rng)
    raise ConfigError(
        f"data.dataset = {data.dataset!r} is not a built-in dataset: "
        f"{', '.join(BUILTIN_DATASETS)} (or 'csv' with data.path)"
    )


def _synthetic(data: DataSection, rng: np.random.Generator) -> Table:
    """A ``make_classification`` problem: half the features informative, a quarter redundant.

    One cluster per class keeps the problem learnable by a linear model, so accuracy
    differences in experiments come from privacy/protection settings, not model capacity.
    """
    n, d, k = data.synthetic_samples, data.synthetic_features, data.synthetic_classes
    if n < 2 or d < 2 or k < 2:
        raise ConfigError(
            "data.synthetic_samples, data.synthetic_features and data.synthetic_classes "
            f"must each be >= 2, got {n}, {d}, {k}"
        )
    informative = min(d, max(math.ceil(d / 2), math.ceil(math.log2(k))))
    if 2**informative < k:  # make_classification puts each class on a hypercube vertex
        need = math.ceil(math.log2(k))
        raise ConfigError(
            f"data.synthetic_classes = {k} needs data.synthetic_features >= {need}, got {d}"
        )
    if n < k:
        raise ConfigError(
            f"data.synthetic_samples = {n} is fewer than data.synthetic_classes = {k}"
        )
    X, y = make_classification(
        n_samples=n,
        n_features=d,
        n_informative=informative,
        n_redundant=(d - informative) // 2,
        n_classes=k,
        n_clusters_per_class=1,
        random_state=int(rng.integers(2**31 - 1)),
    )
    return Table(
        X=np.asarray(X, dtype=np.float64),
        y=np.asarray(y, dtype=np.int64),
        feature_names=[f"x{i}" for i in range(d)],
        class_names=[str(c) for c in range(k)],
        source=f"synthetic ({n} samples, {d} features, {k} classes)",
    )
