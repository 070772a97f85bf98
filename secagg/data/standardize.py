"""Feature standardisation (zero mean, unit variance) fitted on one party's rows only.

Federated sites cannot pool raw data, so by default each site standardises with statistics of
its own training rows; this module is the small scaler that makes that explicit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A column whose standard deviation is below this is treated as constant (e.g. the always-
# zero border pixels of digits): it is centred but not divided, instead of blowing up.
MIN_STD = 1e-8


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean and scale; ``apply`` maps rows to ``(X - mean) / scale``."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        """Statistics of ``X`` (float64); constant columns get scale 1."""
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            return cls.identity(X.shape[1])
        std = X.std(axis=0)
        return cls(mean=X.mean(axis=0), scale=np.where(std > MIN_STD, std, 1.0))

    @classmethod
    def identity(cls, n_features: int) -> Standardizer:
        """A no-op scaler (for ``data.standardize = "none"``)."""
        return cls(mean=np.zeros(n_features), scale=np.ones(n_features))

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Standardised copy of ``X`` as float32."""
        return ((np.asarray(X, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)
