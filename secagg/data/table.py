"""The labelled table every source (built-in or CSV) is loaded into before it is split.

One common shape lets the hold-out, partitioning and standardisation code stay independent
of where the rows came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Table:
    """Raw (unstandardised) labelled rows, optionally tagged with the site they came from.

    ``X`` is float64 so statistics are computed at full precision; ``y`` holds class indices
    into ``class_names``. ``sites[i]`` indexes ``site_names`` (``None`` when the source has
    no sites); ``site_sources[s]`` says where site ``s`` came from, for error messages.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    source: str
    sites: np.ndarray | None = None
    site_names: tuple[str, ...] = ()
    site_sources: tuple[str, ...] = ()

    @property
    def n_rows(self) -> int:
        return len(self.y)
