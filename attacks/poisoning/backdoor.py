"""Backdoor triggers and backdoored training data (Gu et al. 2017, "BadNets", arXiv:1708.06733).

A :class:`Trigger` is a set of feature columns and the value each is set to. Values are in the
*standardised* feature space the models see (the data layer standardises before training), so a
trigger is applied to exactly the arrays in a :class:`~secagg.data.ClientData`.

Pixel trigger for 8x8 digits: feature ``j`` is pixel ``(row, col) = divmod(j, 8)``, row-major as
in scikit-learn's ``load_digits`` and as :class:`~secagg.models.SmallCNN` reshapes it. The
default 3x3 bottom-right patch is features ``{45, 46, 47, 53, 54, 55, 61, 62, 63}``. Full raw
intensity (16) standardises to between about 1 and 16 depending on the pixel (corner pixels are
rarely lit, so their scale is small); the default value 3.0 is at or above full intensity for
most pixels. For an exact "full intensity" patch, pass per-pixel values
``(16 - scaler.mean[f]) / scaler.scale[f]`` for the patch features ``f``.

Feature trigger for tabular data: chosen columns set to a fixed out-of-distribution value
(default 5.0, i.e. five standard deviations above a standardised column's mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secagg.data import ClientData
from secagg.errors import ConfigError

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass(frozen=True)
class Trigger:
    """Set ``features[i]`` to ``values[i]``: the pattern the backdoored model learns to obey."""

    features: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.features:
            raise ConfigError("attack.trigger_features: a trigger needs at least one feature")
        if len(set(self.features)) != len(self.features) or min(self.features) < 0:
            raise ConfigError(
                f"attack.trigger_features must be distinct indices >= 0, got {self.features}"
            )
        if len(self.values) != len(self.features):
            raise ConfigError(
                f"attack.trigger_value: {len(self.values)} values for {len(self.features)} features"
            )
        if not all(np.isfinite(self.values)):
            raise ConfigError(f"attack.trigger_value must be finite, got {self.values}")


def _values(value: float | Sequence[float], n: int) -> tuple[float, ...]:
    if isinstance(value, int | float):
        return (float(value),) * n
    return tuple(float(v) for v in value)


def pixel_trigger(
    size: int = 3,
    corner: str = "bottom-right",
    value: float | Sequence[float] = 3.0,
    side: int = 8,
) -> Trigger:
    """A ``size x size`` patch in one corner of a ``side x side`` image (row-major features)."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= side:
        raise ConfigError(f"attack.trigger_size must be an integer in [1, {side}], got {size!r}")
    if corner not in CORNERS:
        raise ConfigError(f"attack.trigger_corner must be one of {CORNERS}, got {corner!r}")
    rows = range(side - size, side) if corner.startswith("bottom") else range(size)
    cols = range(side - size, side) if corner.endswith("right") else range(size)
    features = tuple(r * side + c for r in rows for c in cols)
    return Trigger(features, _values(value, len(features)))


def feature_trigger(features: Sequence[int], value: float | Sequence[float] = 5.0) -> Trigger:
    """Tabular trigger: the given columns set to an out-of-distribution value."""
    feats = tuple(int(f) for f in features)
    return Trigger(feats, _values(value, len(feats)))


def apply_trigger(X: np.ndarray, trigger: Trigger) -> np.ndarray:
    """A float32 copy of ``X`` with the trigger stamped on every row (e.g. to measure attack
    success: the share of triggered test inputs classified as the target)."""
    out = np.array(X, dtype=np.float32, copy=True)
    if out.ndim != 2 or max(trigger.features) >= out.shape[1]:
        raise ConfigError(
            f"attack.trigger_features {trigger.features} do not fit data of shape {out.shape}"
        )
    out[:, list(trigger.features)] = np.asarray(trigger.values, dtype=np.float32)
    return out


def backdoor_data(
    data: ClientData,
    trigger: Trigger,
    target: int,
    fraction: float,
    rng: np.random.Generator,
) -> ClientData:
    """A copy of ``data`` where ``round(fraction · n)`` training records, chosen by ``rng``, carry
    the trigger and the label ``target``; the rest stay clean so the model keeps its main-task
    accuracy (which makes the backdoor stealthy). The validation split is left unchanged."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"attack.fraction must be in (0, 1], got {fraction!r}")
    if target < 0:
        raise ConfigError(f"attack.target must be a class index >= 0, got {target!r}")
    n = data.num_samples
    chosen = rng.choice(n, size=min(n, round(fraction * n)), replace=False)
    X = data.X_train.copy()
    y = data.y_train.copy()
    X[chosen] = apply_trigger(X[chosen], trigger)
    y[chosen] = target
    return ClientData(data.name, X, y, data.X_val.copy(), data.y_val.copy())
