"""Splitting rows: stratified hold-outs and the IID / Dirichlet label-skew partitioners.

Every function takes an explicit ``numpy.random.Generator`` (no global RNG state), returns
row positions (not copies of data) and is a pure function of its inputs, so a whole
federation is reproducible from one seed.
"""

from __future__ import annotations

import numpy as np

from secagg.errors import DataError

# Dirichlet partitioning: how many fresh draws to try before topping up short clients, and
# the largest minimum client size it enforces (the rule is described in dirichlet_partition).
DIRICHLET_MAX_DRAWS = 100
DIRICHLET_MIN_SIZE_CAP = 10


def stratified_take(
    y: np.ndarray, n_take: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..len(y)-1`` into ``(kept, taken)`` with ``len(taken) == n_take``.

    Each class contributes in proportion to its size (largest-remainder rounding, ties broken
    at random), so a held-out set mirrors the label distribution even for rare classes
    where ``sklearn``'s splitter would refuse. Both outputs are shuffled.
    """
    n = len(y)
    if not 0 <= n_take <= n:
        raise ValueError(f"n_take must be in 0..{n}, got {n_take}")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    quotas = counts * (n_take / n) if n else counts.astype(float)
    base = np.floor(quotas).astype(np.int64)
    extra = n_take - int(base.sum())
    # Classes with the largest fractional quota get the leftover slots; every such class has
    # a positive fraction, so base + 1 never exceeds its count.
    order = np.lexsort((rng.random(len(classes)), -(quotas - base)))
    base[order[:extra]] += 1
    taken: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for c in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == c))
        taken.append(members[: base[c]])
        kept.append(members[base[c] :])
    empty = np.empty(0, dtype=np.int64)
    return (
        rng.permutation(np.concatenate(kept)) if kept else empty,
        rng.permutation(np.concatenate(taken)) if taken else empty,
    )


def iid_partition(n: int, n_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle ``n`` positions and cut them into ``n_clients`` parts whose sizes differ by ≤ 1."""
    _check_enough(n, n_clients, 1)
    return [part.astype(np.int64) for part in np.array_split(rng.permutation(n), n_clients)]


def dirichlet_min_size(n: int, n_clients: int, floor: int = 1) -> int:
    """The smallest client :func:`dirichlet_partition` allows by default.

    Half the mean client size, capped at :data:`DIRICHLET_MIN_SIZE_CAP` (the usual "at least
    10 samples" of non-IID benchmarks), and never below ``floor`` (what a client needs to have
    a training split at all). It counts a client's rows before its train/validation split.
    """
    return max(floor, min(DIRICHLET_MIN_SIZE_CAP, n // n_clients // 2))


def dirichlet_partition(
    y: np.ndarray,
    n_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Label-skewed partition: for each class, client shares are drawn from Dir(alpha).

    Small ``alpha`` gives each client few classes; large ``alpha`` approaches IID.

    Minimum-size rule: a draw in which some client gets fewer than ``min_size`` rows is
    redrawn, up to :data:`DIRICHLET_MAX_DRAWS` times. If no draw succeeds (very small
    ``alpha`` or many clients), the draw with the largest smallest client is kept and each
    short client is topped up with rows moved one at a time, chosen at random, from the
    currently largest client. Topping up moves at most ``n_clients * min_size`` rows, so the
    skew is preserved, and the function always terminates.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    n = len(y)
    _check_enough(n, n_clients, min_size)
    classes = np.unique(y)
    best: list[np.ndarray] | None = None
    for _ in range(DIRICHLET_MAX_DRAWS):
        parts = _dirichlet_draw(y, classes, n_clients, alpha, rng)
        if best is None or min(map(len, parts)) > min(map(len, best)):
            best = parts
        if min(map(len, best)) >= min_size:
            break
    assert best is not None
    lists = [list(p) for p in best]
    sizes = np.array([len(p) for p in lists])
    for short in np.flatnonzero(sizes < min_size):
        while len(lists[short]) < min_size:
            donor = int(np.argmax([len(p) for p in lists]))
            lists[short].append(lists[donor].pop(int(rng.integers(len(lists[donor])))))
    return [rng.permutation(np.asarray(p, dtype=np.int64)) for p in lists]


def _dirichlet_draw(
    y: np.ndarray, classes: np.ndarray, n_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    chunks: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for c in classes:
        members = rng.permutation(np.flatnonzero(y == c))
        shares = rng.dirichlet(np.full(n_clients, alpha))
        if not np.all(np.isfinite(shares)) or shares.sum() <= 0:
            # Tiny alpha can underflow every component; the limit is "one client takes all".
            shares = np.zeros(n_clients)
            shares[rng.integers(n_clients)] = 1.0
        cuts = np.floor(np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
        for i, piece in enumerate(np.split(members, cuts)):
            chunks[i].append(piece)
    return [np.concatenate(ch).astype(np.int64) for ch in chunks]


def _check_enough(n: int, n_clients: int, per_client: int) -> None:
    if n_clients < 1:
        raise DataError(f"need at least one client, got {n_clients}")
    if n < n_clients * per_client:
        raise DataError(
            f"cannot give {n_clients} clients {per_client} sample(s) each from {n} samples"
        )
