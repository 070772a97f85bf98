"""The federated dataset handed to the simulation: one :class:`ClientData` per client.

These containers are the contract between the data layer and everything that trains or
evaluates. They check their own invariants on construction so that a hand-built federation
(e.g. one passed to the simulation by an attack experiment) fails early with a clear message
rather than deep inside torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secagg.errors import DataError


def _as_features(name: str, X: np.ndarray) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D (samples x features) array, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name}: expected numeric features, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_labels(name: str, y: np.ndarray, n_rows: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array of class indices, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise DataError(f"{name}: expected integer class indices, got dtype {arr.dtype}")
    if len(arr) != n_rows:
        raise DataError(f"{name}: {len(arr)} labels for {n_rows} feature rows")
    return np.ascontiguousarray(arr, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's (hospital's) local data: a training split and a validation split.

    Arrays are converted on construction to float32 features and int64 class indices, the
    dtypes torch training expects, so consumers never need to cast. ``eq=False``: comparing
    array fields with ``==`` is ambiguous, so equality (and hashing) is by identity.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray

    def __post_init__(self) -> None:
        x_train = _as_features(f"client {self.name!r} X_train", self.X_train)
        x_val = _as_features(f"client {self.name!r} X_val", self.X_val)
        if x_val.shape[1] != x_train.shape[1]:
            raise DataError(
                f"client {self.name!r}: X_val has {x_val.shape[1]} features, "
                f"X_train has {x_train.shape[1]}"
            )
        # frozen=True forbids normal assignment; normalising dtypes here is still safe.
        object.__setattr__(self, "X_train", x_train)
        object.__setattr__(self, "X_val", x_val)
        object.__setattr__(
            self, "y_train", _as_labels(f"client {self.name!r} y_train", self.y_train, len(x_train))
        )
        object.__setattr__(
            self, "y_val", _as_labels(f"client {self.name!r} y_val", self.y_val, len(x_val))
        )

    @property
    def num_samples(self) -> int:
        """Training examples held by this client (the FedAvg weight)."""
        return len(self.y_train)


@dataclass(frozen=True, eq=False)
class FederatedDataset:
    """All clients plus a held-out global test set used only for evaluation."""

    clients: list[ClientData]
    X_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_classes: int
    feature_names: list[str]
    class_names: list[str]
    #: A small clean set the server holds (FLTrust's root dataset); empty unless asked for.
    root: ClientData | None = None

    def __post_init__(self) -> None:
        x_test = _as_features("X_test", self.X_test)
        object.__setattr__(self, "X_test", x_test)
        object.__setattr__(self, "y_test", _as_labels("y_test", self.y_test, len(x_test)))
        if not self.clients:
            raise DataError("a federated dataset needs at least one client")
        if self.n_classes < 2:
            raise DataError(f"need at least 2 classes, got n_classes={self.n_classes}")
        if len(self.class_names) != self.n_classes:
            raise DataError(f"{len(self.class_names)} class names for n_classes={self.n_classes}")
        if len(self.feature_names) != self.n_features:
            raise DataError(
                f"{len(self.feature_names)} feature names for n_features={self.n_features}"
            )
        parts = [("X_test", x_test, self.y_test)]
        for c in self.clients:
            parts += [(f"client {c.name!r} train", c.X_train, c.y_train)]
            parts += [(f"client {c.name!r} val", c.X_val, c.y_val)]
        for what, X, y in parts:
            if X.shape[1] != self.n_features:
                raise DataError(f"{what}: {X.shape[1]} features, expected {self.n_features}")
            if y.size and (y.min() < 0 or y.max() >= self.n_classes):
                raise DataError(
                    f"{what}: labels must be class indices in 0..{self.n_classes - 1}, "
                    f"got {y.min()}..{y.max()}"
                )

    @property
    def task(self) -> str:
        """Either "binary" or "multiclass": lets metrics pick e.g. AUC vs macro-F1."""
        return "binary" if self.n_classes == 2 else "multiclass"
