"""Assemble a :class:`FederatedDataset` from a ``[data]`` config section and a seed.

Order of operations, chosen so that evaluation never sees training rows and no statistic is
pooled across sites unless asked:

1. Load the rows (built-in dataset or CSV).
2. Hold out the global test set, stratified by label (``data.test_fraction``). With
   ``partition = "site"`` it is held out per site, so every site contributes test rows.
3. Partition the remaining rows among clients: ``iid``, ``dirichlet`` or ``site``. CSV data
   may also use ``iid``/``dirichlet``: rows of all sites are then pooled and re-dealt.
   Dirichlet clients get at least ``min(10, half the mean client size)`` rows (and never
   fewer than step 4 needs), see :func:`~secagg.data.partition.dirichlet_partition`.
4. Split each client's rows into train/validation (``data.val_fraction``, stratified).
5. Standardise (``data.standardize``): ``site`` = every client with its own training
   statistics (the test set with its own, or per site with that site's); ``global`` = one
   scaler over all clients' training rows (pools statistics, for comparison); ``none``.

Randomness comes from independent streams derived from ``seed`` (one per step and client),
so e.g. changing the partitioner does not change which rows are held out for testing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secagg.config import CHOICES, DataSection
from secagg.data.builtin import load_builtin
from secagg.data.csv import load_csv
from secagg.data.dataset import ClientData, FederatedDataset
from secagg.data.partition import (
    dirichlet_min_size,
    dirichlet_partition,
    iid_partition,
    stratified_take,
)
from secagg.data.standardize import Standardizer
from secagg.data.table import Table
from secagg.errors import ConfigError, DataError

# Independent random streams, one per step (see the module docstring).
_STREAM_SOURCE, _STREAM_HOLDOUT, _STREAM_PARTITION, _STREAM_VALIDATION, _STREAM_ROOT = range(5)


@dataclass(frozen=True)
class _Share:
    """Rows (positions in the table) assigned to one client before standardisation."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray | None  # this site's held-out rows (site partition only)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def load_federated(data: DataSection, seed: int) -> FederatedDataset:
    """Load, hold out, partition, split and standardise ``data`` deterministically from ``seed``."""
    _check_choices(data)
    if seed < 0:
        raise ConfigError(f"run.seed must be >= 0, got {seed}")
    if data.dataset == "csv":
        table = load_csv(data)
    else:
        table = load_builtin(data, _rng(seed, _STREAM_SOURCE))
    # A client needs one training row, plus one validation row when validation is on.
    need = 2 if data.val_fraction > 0 else 1

    root_idx = np.empty(0, dtype=np.int64)
    if data.partition == "site":
        shares, test_idx = _by_site(table, data, seed, need)
    else:
        shares, test_idx, root_idx = _pooled(table, data, seed, need)

    return _standardise(table, data.standardize, shares, test_idx, root_idx)


def _check_choices(data: DataSection) -> None:
    """Re-check option values: callers may build a DataSection without ``config.validate``."""
    for key in ("data.dataset", "data.partition", "data.standardize"):
        value = getattr(data, key.split(".")[1])
        if value not in CHOICES[key]:
            raise ConfigError(f"{key} = {value!r} is not one of: {', '.join(CHOICES[key])}")
    if not 0 < data.test_fraction < 1:
        raise ConfigError(f"data.test_fraction must be in (0, 1), got {data.test_fraction}")
    if not 0 <= data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {data.val_fraction}")
    if data.partition == "dirichlet" and not data.alpha > 0:
        raise ConfigError(f"data.alpha must be > 0, got {data.alpha}")
    if data.partition == "site":
        if data.dataset != "csv":
            raise ConfigError(
                "data.partition = 'site' needs data.dataset = 'csv' (built-in datasets have "
                "no sites)"
            )
        if data.clients < 0:
            raise ConfigError(f"data.clients must be >= 0 (0 = one per site), got {data.clients}")
    elif data.clients < 1:
        raise ConfigError(
            f"data.clients must be >= 1 for data.partition = {data.partition!r}, "
            f"got {data.clients} (0 = one per site needs data.partition = 'site')"
        )


def _holdout_size(n: int, fraction: float, keep: int) -> int:
    """round(fraction * n), at least 1 and leaving at least ``keep`` rows."""
    return min(max(1, round(fraction * n)), n - keep)


def _val_split(
    y: np.ndarray, rows: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/val split of ``rows``; ≥ 1 train row, and ≥ 1 val row if enabled."""
    m = len(rows)
    n_val = 0 if val_fraction == 0 else min(max(1, round(val_fraction * m)), m - 1)
    train, val = stratified_take(y[rows], n_val, rng)
    return rows[train], rows[val]


def _client_names(n: int) -> list[str]:
    width = max(2, len(str(n - 1)))
    return [f"hospital-{i:0{width}d}" for i in range(n)]


def _pooled(
    table: Table, data: DataSection, seed: int, need: int
) -> tuple[list[_Share], np.ndarray, np.ndarray]:
    n, k = table.n_rows, data.clients
    if n < 2:
        raise DataError(f"{table.source}: {n} row(s); need at least 2 (test and training)")
    n_test = _holdout_size(n, data.test_fraction, keep=1)
    pool, test_idx = stratified_take(table.y, n_test, _rng(seed, _STREAM_HOLDOUT))
    root_idx = np.empty(0, dtype=np.int64)
    if data.root_samples:
        if data.root_samples >= len(pool):
            raise DataError(
                f"data.root_samples = {data.root_samples} leaves no training rows "
                f"({len(pool)} after the test hold-out)"
            )
        keep, root = stratified_take(table.y[pool], data.root_samples, _rng(seed, _STREAM_ROOT))
        pool, root_idx = pool[keep], pool[root]
    n_train = len(pool)
    if n_train < k * need:
        per = "1 train + 1 validation" if need == 2 else "1 train"
        hint = f"use data.clients <= {n_train // need}" if n_train >= need else "use more data"
        raise DataError(
            f"data.clients={k} but only {n_train} training samples ({table.source}: {n} rows, "
            f"{n_test} held out for data.test_fraction={data.test_fraction}); each client "
            f"needs at least {need} ({per}): {hint}"
        )
    rng = _rng(seed, _STREAM_PARTITION)
    if data.partition == "iid":
        parts = iid_partition(n_train, k, rng)
    else:
        min_size = dirichlet_min_size(n_train, k, floor=need)
        parts = dirichlet_partition(table.y[pool], k, data.alpha, rng, min_size=min_size)
    shares = []
    for i, (name, part) in enumerate(zip(_client_names(k), parts, strict=True)):
        train, val = _val_split(
            table.y, pool[part], data.val_fraction, _rng(seed, _STREAM_VALIDATION, i)
        )
        shares.append(_Share(name, train, val, None))
    return shares, test_idx, root_idx


def _by_site(
    table: Table, data: DataSection, seed: int, need: int
) -> tuple[list[_Share], np.ndarray]:
    assert table.sites is not None  # load_csv tags sites whenever partition == "site"
    n_sites = len(table.site_names)
    if data.clients not in (0, n_sites):
        raise ConfigError(
            f"data.clients = {data.clients} but {table.source} has {n_sites} sites "
            f"({', '.join(table.site_names[:8])}{', ...' if n_sites > 8 else ''}); "
            f"with data.partition = 'site' set data.clients = {n_sites} or 0 (one per site)"
        )
    shares, tests = [], []
    for s, (name, where) in enumerate(zip(table.site_names, table.site_sources, strict=True)):
        rows = np.flatnonzero(table.sites == s)
        if len(rows) < need + 1:
            per = "1 test, 1 train, 1 validation" if need == 2 else "1 test, 1 train"
            raise DataError(
                f"{where}: site {name!r} has {len(rows)} row(s); each site needs at least "
                f"{need + 1} ({per}): add rows or remove the site"
                + (" (or set data.val_fraction = 0)" if need == 2 else "")
            )
        n_test = _holdout_size(len(rows), data.test_fraction, keep=need)
        keep, test = stratified_take(table.y[rows], n_test, _rng(seed, _STREAM_HOLDOUT, s))
        train, val = _val_split(
            table.y, rows[keep], data.val_fraction, _rng(seed, _STREAM_VALIDATION, s)
        )
        shares.append(_Share(name, train, val, rows[test]))
        tests.append(rows[test])
    return shares, np.concatenate(tests)


def _standardise(
    table: Table, mode: str, shares: list[_Share], test_idx: np.ndarray, root_idx: np.ndarray
) -> FederatedDataset:
    X, y, d = table.X, table.y, table.X.shape[1]
    pooled = (
        Standardizer.fit(np.concatenate([X[s.train] for s in shares]))
        if mode == "global"
        else Standardizer.identity(d)
    )
    clients, test_blocks = [], []
    for s in shares:
        scaler = Standardizer.fit(X[s.train]) if mode == "site" else pooled
        clients.append(
            ClientData(
                s.name, scaler.apply(X[s.train]), y[s.train], scaler.apply(X[s.val]), y[s.val]
            )
        )
        if s.test is not None:
            test_blocks.append(scaler.apply(X[s.test]))
    if test_blocks:  # site partition: each site's held-out rows with that site's scaler
        X_test = np.concatenate(test_blocks)
    elif mode == "site":  # the test set is one more, independent site
        X_test = Standardizer.fit(X[test_idx]).apply(X[test_idx])
    else:  # "global": the pooled scaler; "none": identity
        X_test = pooled.apply(X[test_idx])
    root = None
    if len(root_idx):  # the server's own rows: one more independent party, like the test set
        scaler = Standardizer.fit(X[root_idx]) if mode == "site" else pooled
        empty = np.empty((0, d), dtype=np.float32)
        root = ClientData(
            "server-root", scaler.apply(X[root_idx]), y[root_idx], empty, y[root_idx][:0]
        )
    return FederatedDataset(
        root=root,
        clients=clients,
        X_test=X_test,
        y_test=y[test_idx],
        n_features=d,
        n_classes=len(table.class_names),
        feature_names=list(table.feature_names),
        class_names=list(table.class_names),
    )
