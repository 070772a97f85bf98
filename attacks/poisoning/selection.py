"""Which clients are malicious: a deterministic, seeded choice of a fixed fraction."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from secagg.errors import ConfigError


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def choose_malicious(client_ids: Iterable[int], fraction: float, seed: int) -> frozenset[int]:
    """``round(fraction · n)`` of ``client_ids`` drawn without replacement, fixed by ``seed``.

    Ids are sorted first, so the choice depends only on the set of ids, not on their order.
    ``fraction`` must lie in [0, 1): an all-malicious federation has no one to attack.
    Rounding is half-to-even (Python's ``round``), e.g. 0.25 of 10 clients gives 2; a count
    that rounds up to all ``n`` clients is capped at ``n - 1`` (at least one stays honest).
    """
    fraction = _number("attack.malicious_fraction", fraction)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"attack.malicious_fraction must be in [0, 1), got {fraction!r}")
    ids = sorted({int(i) for i in client_ids})
    count = min(round(fraction * len(ids)), max(len(ids) - 1, 0))
    if count == 0:
        return frozenset()
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(ids), size=count, replace=False)
    return frozenset(ids[int(i)] for i in picked)
