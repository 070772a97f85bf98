"""Label flipping (Tolpegin et al. 2020, "Data Poisoning Attacks Against FL", ESORICS).

The malicious client trains honestly on wrong labels; its update is then protected and sent like
any other, so the attack needs no access to the protocol, only to its own data.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from secagg.data import ClientData
from secagg.errors import ConfigError


def flip_labels(
    data: ClientData, n_classes: int, mapping: Mapping[int, int] | None = None
) -> ClientData:
    """A copy of ``data`` with training labels flipped; ``data`` itself is not modified.

    Without ``mapping`` every label ``y`` becomes ``n_classes - 1 - y`` (untargeted: all
    classes move). With ``mapping`` only its keys move (targeted, e.g. ``{7: 1}`` makes sevens
    read as ones) and other labels stay. Features and the validation split are unchanged: the
    attacker corrupts what it trains on, not its own measurement of the model.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ConfigError(f"attack.n_classes must be an integer >= 2, got {n_classes!r}")
    y = data.y_train
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ConfigError(f"client {data.name!r}: labels outside 0..{n_classes - 1}")
    if mapping is None:
        flipped = (n_classes - 1 - y).astype(np.int64)
    else:
        for src, dst in mapping.items():
            if not (0 <= src < n_classes and 0 <= dst < n_classes):
                raise ConfigError(
                    f"attack.source/attack.target must be classes in 0..{n_classes - 1}, "
                    f"got {src} -> {dst}"
                )
        table = np.arange(n_classes, dtype=np.int64)
        for src, dst in mapping.items():
            table[src] = dst
        flipped = table[y]
    return ClientData(data.name, data.X_train.copy(), flipped, data.X_val.copy(), data.y_val.copy())
