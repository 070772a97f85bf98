"""The interface every aggregation rule implements, and the registry that builds them by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from secagg.errors import ConfigError, DataError

if TYPE_CHECKING:
    from secagg.config import AggregationSection


@runtime_checkable
class AggregationRule(Protocol):
    """Combines client updates into one update for the global model."""

    name: str
    #: True when the rule must see each update (so it cannot run under masking or HE).
    needs_individual_updates: bool

    def aggregate(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        """Return the global update from per-client updates and their (sample-count) weights."""
        ...


def check_updates(updates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Validate a batch of updates once, for every rule: same length, finite, weights positive."""
    if len(updates) == 0:
        raise DataError("cannot aggregate zero updates")
    if len(updates) != len(weights):
        raise DataError(f"{len(updates)} updates but {len(weights)} weights")
    dims = {u.shape for u in updates}
    if len(dims) != 1 or next(iter(dims)) != (updates[0].size,):
        raise DataError(f"updates must be 1-D vectors of one length, got shapes {sorted(dims)}")
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise DataError(f"weights must be finite and > 0, got {w.tolist()}")
    for i, u in enumerate(updates):
        if not np.all(np.isfinite(u)):
            raise DataError(f"update {i} contains NaN or inf")
    return w


def stack_updates(updates: Sequence[np.ndarray]) -> np.ndarray:
    """The (already checked) updates as one float64 (n, d) matrix, so sums do not lose bits."""
    return np.stack([np.asarray(u, dtype=np.float64) for u in updates])


def require_int(key: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ConfigError naming ``aggregation.<key>``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"aggregation.{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"aggregation.{key} must be >= {minimum}, got {value}")
    return int(value)


def require_real(
    key: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    """``value`` as a finite float in the given range, or a ConfigError naming the key."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ConfigError(f"aggregation.{key} must be a finite number, got {value!r}")
    x = float(value)
    too_low = x <= low if low_open else x < low
    too_high = x >= high if high_open else x > high
    if too_low or too_high:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"aggregation.{key} must be in {span}, got {x:g}")
    return x


#: The ``aggregation.<param>`` keys each rule accepts, by ``aggregation.rule`` name. A config
#: loader passes exactly these to :func:`make_rule`; any other keyword is refused there.
RULE_PARAMS: dict[str, tuple[str, ...]] = {
    "fedavg": (),
    "krum": ("f",),
    "multi-krum": ("f", "m"),
    "median": (),
    "trimmed-mean": ("trim",),
    "norm-bound": ("max_norm",),
    "centered-clipping": ("tau", "iterations"),
    "fltrust": (),
}


def _rule_classes() -> dict[str, Callable[..., AggregationRule]]:
    from secagg.aggregation.centered_clipping import CenteredClipping
    from secagg.aggregation.coordinatewise import CoordinateMedian, TrimmedMean
    from secagg.aggregation.fedavg import FedAvg
    from secagg.aggregation.fltrust import FLTrust
    from secagg.aggregation.krum import Krum, MultiKrum
    from secagg.aggregation.norm_bound import NormBound

    return {
        "fedavg": FedAvg,
        "krum": Krum,
        "multi-krum": MultiKrum,
        "median": CoordinateMedian,
        "trimmed-mean": TrimmedMean,
        "norm-bound": NormBound,
        "centered-clipping": CenteredClipping,
        "fltrust": FLTrust,
    }


def make_rule(name: str, **params: object) -> AggregationRule:
    """Build a rule from its configuration name (``aggregation.rule``) and parameters.

    ``params`` are the rule's ``aggregation.<param>`` values (:data:`RULE_PARAMS`); a name the
    rule does not take, or a value out of range, raises :class:`ConfigError` naming the key,
    so a typo in a config file fails loudly instead of silently running with the default.
    """
    rules = _rule_classes()
    if name not in rules:
        raise ConfigError(f"aggregation.rule = {name!r} is not one of: {', '.join(rules)}")
    accepted = RULE_PARAMS[name]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        keys = ", ".join(f"aggregation.{k}" for k in unknown)
        takes = ", ".join(f"aggregation.{k}" for k in accepted) or "no parameters"
        raise ConfigError(
            f"{keys} does not apply to aggregation.rule = {name!r} (it takes {takes})"
        )
    rule: AggregationRule = rules[name](**params)
    return rule


def rule_from_config(section: AggregationSection) -> AggregationRule:
    """The rule an ``[aggregation]`` section names, with the parameters that rule takes."""
    name = section.rule
    return make_rule(name, **{k: getattr(section, k) for k in RULE_PARAMS.get(name, ())})
