"""The poisoning lab: a grid of attacks x defences x malicious fraction x DP x protection x seeds.

``secagg attack CONFIG.toml`` reads a run configuration (the same sections as ``secagg
simulate``) plus a ``[grid]`` section, runs every cell through the real pipeline, and writes

- ``cells.csv``: one row per cell, appended as each finishes, so an interrupted grid resumes
  where it stopped (finished cells are read back, never run again);
- ``table.md``: median and spread (min-max) over seeds of accuracy and attack success;
- ``accuracy.png`` / ``attack_success.png``: each against the malicious fraction, one line per
  defence, one panel per attack.

A cell whose defence needs individual updates while its protection hides them is recorded as
not applicable, with the reason, and never silently run with FedAvg instead. Norm bounding
runs under every protection: clients clip their own updates before hiding them.

The privacy axis: ``none``; ``local-dp``, ``central-dp`` or ``distributed-dp`` at the base's
target ε; or ``MODE:EPS`` at a target ε of EPS. DP on the sum (central-dp, distributed-dp) is
DP-FedSGD here: such a cell sets ``privacy.unit = "record"``, ``training.local_epochs = 1``
and takes its rounds, learning rate and batch size from ``[grid.sum_dp]``, since the base's
local-training settings would be one noisy step per round at the wrong scale. Distributed DP
with ``protection = "none"`` (every noise share in the server's sight) and DP on the sum with
a rule other than FedAvg are not applicable, with the reason.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from attacks.inference.cells import (
    HEADLINE,
    INFERENCE,
    InferenceRuns,
    check_params,
    run_inference_cell,
)
from attacks.poisoning.backdoor import apply_trigger
from attacks.poisoning.clients import Poisoners
from attacks.poisoning.registry import ATTACKS, Backdoor, LabelFlip, build_attack
from attacks.poisoning.selection import choose_malicious
from secagg.aggregation import rule_from_config
from secagg.config import (
    CHOICES,
    HIDING_MODES,
    SUM_MODES,
    Config,
    apply_overrides,
    config_from_dict,
    parse_override,
    read_toml,
)
from secagg.data import FederatedDataset, load_federated
from secagg.errors import ConfigError, SecAggError
from secagg.models import build_model, set_flat_params
from secagg.simulation import run_simulation
from secagg.training import evaluate

GRID_KEYS = ("attacks", "rules", "malicious_fractions", "privacy", "protection", "seeds")
#: Sub-tables of [grid]: each attack's parameters, and the DP-FedSGD settings of sum modes.
GRID_TABLES = ("attack_params", "sum_dp")
#: [grid.sum_dp]: what a cell with privacy central-dp / distributed-dp trains with.
SUM_DP_KEYS = ("rounds", "lr", "batch_size")
#: Privacy modes a level may give a target ε to (MODE:EPS).
EPSILON_MODES = ("local-dp", *SUM_MODES)
CSV_FIELDS = (
    "attack",
    "rule",
    "malicious_fraction",
    "privacy",
    "protection",
    "seed",
    "status",
    "accuracy",
    "attack_success",
    "knowledge",
    "malicious",
    "reason",
    "accuracy_by_round",
    "attack_success_by_round",
    "metrics",
)


@dataclass(frozen=True)
class Cell:
    attack: str
    rule: str
    malicious_fraction: float
    privacy: str
    protection: str
    seed: int

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(str(v) for v in asdict(self).values())


@dataclass(frozen=True)
class Grid:
    base: dict[str, Any]  # the run configuration, as parsed TOML
    attacks: tuple[str, ...]
    rules: tuple[str, ...]
    malicious_fractions: tuple[float, ...]
    privacy: tuple[str, ...]
    protection: tuple[str, ...]
    seeds: tuple[int, ...]
    attack_params: dict[str, dict[str, Any]]
    #: [grid.sum_dp]: rounds, lr and batch_size of the cells with DP on the sum
    sum_dp: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        product = itertools.product(
            self.attacks,
            self.rules,
            self.malicious_fractions,
            self.privacy,
            self.protection,
            self.seeds,
        )
        return [Cell(*values) for values in product]


def load_grid(path: str | Path, overrides: Sequence[str] = ()) -> Grid:
    """Read a lab configuration: a run configuration plus ``[grid]``, with one-line errors.

    ``overrides`` are ``--set`` items: ``section.key=value`` for the run, ``grid.key=value``
    (``grid.sum_dp.rounds=10``, ``grid.attack_params.lira.shadows=16``) for the grid."""
    p = Path(path)
    raw = read_toml(p)
    grid = raw.pop("grid", None)
    if not isinstance(grid, dict):
        raise ConfigError(f"{p}: needs a [grid] section ({', '.join(GRID_KEYS)})")
    on_grid = [o for o in overrides if o.strip().startswith("grid.")]
    for item in on_grid:  # grid.KEY=VALUE, or grid.TABLE.KEY=VALUE for its tables
        _, name, value = parse_override(item)
        *tables, key = name.split(".")
        body = grid
        for table in tables:
            body = body.setdefault(table, {})
            if not isinstance(body, dict):
                raise ConfigError(f"--set {item}: grid.{table} is not a table")
        body[key] = value
    base = apply_overrides(raw, [o for o in overrides if o not in on_grid])
    config_from_dict(base)  # the base must be a valid run configuration on its own
    params = grid.pop("attack_params", {})
    sum_dp_table = grid.pop("sum_dp", None)
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) grid.{', grid.'.join(unknown)}; allowed: {GRID_KEYS + GRID_TABLES}"
        )

    def listed(key: str, allowed: Sequence[Any] | None, kind: type) -> tuple[Any, ...]:
        values = grid.get(key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key} must be a non-empty list")
        for v in values:
            ok = not isinstance(v, bool) and (
                isinstance(v, kind) or (kind is float and isinstance(v, int))
            )
            if not ok or (allowed is not None and v not in allowed):
                hint = f"; allowed: {', '.join(map(str, allowed))}" if allowed else ""
                raise ConfigError(f"grid.{key}: {v!r} is not allowed{hint}")
        return tuple(float(v) if kind is float else v for v in values)

    attacks = listed("attacks", ("none", *ATTACKS, *INFERENCE), str)
    fractions = listed("malicious_fractions", None, float)
    if any(not 0 <= f < 1 for f in fractions):
        raise ConfigError("grid.malicious_fractions must lie in [0, 1)")
    if not isinstance(params, dict) or any(
        name not in (*ATTACKS, *INFERENCE) or not isinstance(v, dict) for name, v in params.items()
    ):
        raise ConfigError("grid.attack_params maps attack names to tables of their parameters")
    for name, table in params.items():
        if name in INFERENCE:
            check_params(name, table)
        else:
            build_attack(name, table, n_classes=None if name != "label-flip" else 2)
    privacy = tuple(_privacy_level(v) for v in listed("privacy", None, str))
    out = Grid(
        base,
        attacks,
        listed("rules", CHOICES["aggregation.rule"], str),
        fractions,
        privacy,
        listed("protection", CHOICES["protection.mode"], str),
        listed("seeds", None, int),
        {k: dict(v) for k, v in params.items()},
        _sum_dp(sum_dp_table, privacy),
    )
    # Every cell that will run must be a valid run configuration: say so now, not mid-grid.
    for rule, level, protection in itertools.product(out.rules, out.privacy, out.protection):
        cell = Cell("none", rule, 0.0, level, protection, out.seeds[0])
        if not _sum_not_applicable(cell):
            try:
                _config(out, cell)
            except ConfigError as exc:
                raise ConfigError(f"grid cell ({level}, {rule}, {protection}): {exc}") from None
    return out


def _privacy_level(level: str) -> str:
    """``none``; ``local-dp``, ``central-dp`` or ``distributed-dp`` (the base's target ε); or
    ``MODE:EPS`` for one of those three (a target ε of EPS)."""
    mode, colon, epsilon = level.partition(":")
    if mode not in CHOICES["privacy.mode"]:
        raise ConfigError(
            f"grid.privacy: {level!r} is not one of {', '.join(CHOICES['privacy.mode'])} "
            f"(or MODE:EPS for a target ε, MODE one of {', '.join(EPSILON_MODES)})"
        )
    if colon:
        if mode not in EPSILON_MODES:
            raise ConfigError(
                f"grid.privacy: {level!r}: {mode!r} takes no ε (MODE:EPS is for "
                f"{', '.join(EPSILON_MODES)})"
            )
        try:
            value = float(epsilon)
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"grid.privacy: {level!r}: write {mode}:EPS with EPS > 0")
    return level


def _sum_dp(table: object, privacy: Sequence[str]) -> dict[str, Any]:
    """[grid.sum_dp], checked: required when a level puts the noise on the sum."""
    sum_levels = [level for level in privacy if level.partition(":")[0] in SUM_MODES]
    if table is None:
        if sum_levels:
            raise ConfigError(
                f"grid.privacy lists {sum_levels[0]!r}: DP on the sum runs DP-FedSGD here (one "
                "DP-SGD step per round, privacy.unit = 'record'), so the grid needs a "
                f"[grid.sum_dp] table with {', '.join(SUM_DP_KEYS)} "
                "(e.g. rounds = 100, lr = 1.0, batch_size = 32)"
            )
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"grid.sum_dp must be a table of {', '.join(SUM_DP_KEYS)}")
    unknown = sorted(set(table) - set(SUM_DP_KEYS))
    if unknown:
        raise ConfigError(
            f"grid.sum_dp: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SUM_DP_KEYS)}"
        )
    missing = [k for k in SUM_DP_KEYS if k not in table]
    if missing:
        raise ConfigError(
            f"grid.sum_dp needs {', '.join(missing)} (the DP-FedSGD settings of the cells "
            "with central-dp or distributed-dp)"
        )
    for key in ("rounds", "batch_size"):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"grid.sum_dp.{key} must be an integer >= 1, got {value!r}")
    lr = table["lr"]
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
        raise ConfigError(f"grid.sum_dp.lr must be a number > 0, got {lr!r}")
    return {"rounds": table["rounds"], "lr": float(lr), "batch_size": table["batch_size"]}


def _config(grid: Grid, cell: Cell) -> Config:
    mode, _, epsilon = cell.privacy.partition(":")
    merged = apply_overrides(
        grid.base,
        [
            f"aggregation.rule={cell.rule}",
            f"privacy.mode={mode}",
            f"protection.mode={cell.protection}",
            f"run.seed={cell.seed}",
            "ledger.enabled=false",
        ],
    )
    if epsilon:  # the level's target decides σ
        merged["privacy"].pop("noise_multiplier", None)
        merged["privacy"]["target_epsilon"] = float(epsilon)
    if mode in SUM_MODES:  # DP-FedSGD: one DP-SGD step per round, each record the unit
        sd = grid.sum_dp
        merged["run"]["rounds"] = sd["rounds"]
        merged["privacy"]["unit"] = "record"
        merged.setdefault("training", {}).update(
            local_epochs=1, lr=sd["lr"], batch_size=sd["batch_size"]
        )
    return config_from_dict(merged)


def _sum_not_applicable(cell: Cell) -> str:
    """Why a cell with DP on the sum cannot run ('' if it can), before its config is built
    (the config itself would be refused)."""
    mode = cell.privacy.partition(":")[0]
    if mode == "distributed-dp" and cell.protection not in HIDING_MODES:
        return (
            f"distributed-dp needs a protection that hides each update ({', '.join(HIDING_MODES)})"
            f": under {cell.protection!r} the server sees every client's noise share, each far "
            "too small to protect anyone (central-dp trusts the aggregator instead)"
        )
    if mode in SUM_MODES and cell.rule != "fedavg":
        return (
            f"{mode} noises the sum of clipped contributions, which the server can only "
            f"average: aggregation.rule must be fedavg, not {cell.rule} (the clip already "
            "bounds what each record adds)"
        )
    if mode in SUM_MODES and cell.attack in ATTACKS and cell.malicious_fraction > 0:
        return (
            f"{mode} clients send clipped gradient sums, not model updates; the poisoning "
            "attacks here forge model updates (under DP on the sum a client's influence is "
            "bounded by the clip: what one liar can do is the clip range, see the README)"
        )
    return ""


def not_applicable(config: Config) -> str:
    """Why a cell cannot run ('' if it can): a defence that needs what the protection hides."""
    ag = config.aggregation
    rule = rule_from_config(ag)
    if config.protection.mode != "none" and rule.needs_individual_updates:
        return (
            f"{ag.rule} needs every individual update, which {config.protection.mode} hides "
            "(under hiding modes the defences are clipping, DP and the aggregate checks)"
        )
    return ""


def attack_success(
    attack: Any, dataset: FederatedDataset, config: Config, params: np.ndarray
) -> float:
    """How far the attacker got its way (NaN for untargeted attacks).

    Backdoor: the share of triggered test inputs of other classes classified as the target.
    Targeted label flip: the share of the source class's test inputs classified as the target.
    """
    if isinstance(attack, Backdoor):
        keep = dataset.y_test != attack.target
        inputs = apply_trigger(dataset.X_test[keep], attack.pattern())
        target = attack.target
    elif isinstance(attack, LabelFlip) and attack.source is not None:
        keep = dataset.y_test == attack.source
        inputs = dataset.X_test[keep]
        target = int(attack.target or 0)
    else:
        return math.nan
    if not keep.any():
        return math.nan
    model = build_model(
        config.model.name, dataset.n_features, dataset.n_classes, hidden=config.model.hidden
    )
    set_flat_params(model, params)
    labels = np.full(int(keep.sum()), target, dtype=np.int64)
    return float(evaluate(model, inputs, labels)["accuracy"])


def run_cell(
    grid: Grid, cell: Cell, dataset: FederatedDataset, cache: InferenceRuns | None = None
) -> dict[str, Any]:
    """One cell's row; ``cache`` lets inference cells share their runs (see run_grid)."""
    row: dict[str, Any] = {**asdict(cell), "status": "ok", "accuracy": "", "attack_success": ""}
    row.update(
        knowledge="",
        malicious=0,
        reason="",
        accuracy_by_round="",
        attack_success_by_round="",
        metrics="",
    )
    reason = _sum_not_applicable(cell)
    if reason:
        return {**row, "status": "n/a", "reason": reason}
    config = _config(grid, cell)
    reason = not_applicable(config)
    if reason:
        return {**row, "status": "n/a", "reason": reason}
    if cell.attack in INFERENCE:
        params = grid.attack_params.get(cell.attack, {})
        return run_inference_cell(
            cell.attack, params, config, dataset, row, cache or InferenceRuns()
        )
    n = len(dataset.clients)
    factory = None
    attack = None
    if cell.attack != "none" and cell.malicious_fraction > 0:
        attack = build_attack(
            cell.attack, grid.attack_params.get(cell.attack, {}), n_classes=dataset.n_classes
        )
        malicious = choose_malicious(range(n), cell.malicious_fraction, cell.seed)
        factory = Poisoners(attack, malicious, num_clients=n, seed=cell.seed)
        row.update(malicious=len(malicious), knowledge=factory.sees)
    if attack is not None and attack.needs_benign and cell.protection != "none":
        return {
            **row,
            "status": "n/a",
            "reason": f"knowledge = 'omniscient' needs the benign updates, which "
            f"{cell.protection} hides from everyone (use knowledge = 'own')",
        }
    per_round: list[float] = []

    def score(_: int, params: np.ndarray) -> None:
        if attack is not None:
            per_round.append(attack_success(attack, dataset, config, params))

    try:
        if factory is None:
            result = run_simulation(config, dataset=dataset, on_model=score)
        else:
            result = run_simulation(config, dataset=dataset, client_factory=factory, on_model=score)
    except SecAggError as exc:
        return {**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    row["accuracy"] = result.final["accuracy"]
    row["accuracy_by_round"] = json.dumps([round(r.accuracy, 4) for r in result.rounds])
    if per_round and not math.isnan(per_round[-1]):
        row["attack_success"] = per_round[-1]
        row["attack_success_by_round"] = json.dumps([round(v, 4) for v in per_round])
    return row


def finished_cells(path: Path) -> dict[tuple[str, ...], dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {tuple(r[k] for k in CSV_FIELDS[:6]): r for r in rows}


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    progress: bool = False,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, str]]:
    """Run every cell not already in ``out/cells.csv``; write the table and the plots."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "cells.csv"
    done = finished_cells(csv_path)
    todo = [c for c in grid.cells() if c.key not in done]
    datasets: dict[int, FederatedDataset] = {}
    cache = InferenceRuns()
    _upgrade_header(csv_path, done)
    new_file = not csv_path.is_file()
    with csv_path.open("a", newline="") as f, _bar(progress, len(grid.cells()), len(done)) as bar:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new_file:
            writer.writeheader()
        for cell in todo:
            if cell.seed not in datasets:
                base = config_from_dict(grid.base)
                datasets[cell.seed] = load_federated(base.data, cell.seed)
            row = run_cell(grid, cell, datasets[cell.seed], cache)
            writer.writerow(row)
            f.flush()
            bar(row)
            if on_cell is not None:
                on_cell(row)
    rows = list(finished_cells(csv_path).values())
    write_table(rows, out / "table.md")
    plot(rows, out)
    if any(r["attack"] in INFERENCE for r in rows):
        write_privacy_table(rows, out / "privacy.md")
        plot_privacy(rows, out / "privacy.png")
    return rows


def _upgrade_header(path: Path, done: Mapping[tuple[str, ...], dict[str, str]]) -> None:
    """Rewrite a cells.csv from an older version with today's columns (blank where new)."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(header) == CSV_FIELDS:
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(done.values())


class _NoBar:
    def __init__(self, *_: object) -> None:
        pass

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        return lambda row: None

    def __exit__(self, *exc: object) -> None:
        return None


class _RichBar:
    def __init__(self, total: int, done: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[s]}")
        )
        self.task = self.progress.add_task("cells", total=total, completed=done, s="")

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        self.progress.start()

        def advance(row: dict[str, Any]) -> None:
            what = (
                f"{row['attack']} vs {row['rule']} @ {row['malicious_fraction']}: {row['status']}"
            )
            self.progress.update(self.task, advance=1, s=what)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _bar(progress: bool, total: int, done: int) -> _NoBar | _RichBar:
    return _RichBar(total, done) if progress else _NoBar()


def _numbers(values: Sequence[str]) -> list[float]:
    return [float(v) for v in values if v not in ("", None)]


def summarize(rows: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Median and min-max over seeds, per (attack, rule, fraction, privacy, protection)."""
    groups: dict[tuple[str, ...], list[Mapping[str, str]]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in CSV_FIELDS[:5])].append(r)
    summary = []
    for key, members in sorted(groups.items()):
        entry: dict[str, Any] = dict(zip(CSV_FIELDS[:5], key, strict=True))
        entry["status"] = members[0]["status"]
        entry["seeds"] = len(members)
        for metric in ("accuracy", "attack_success"):
            values = _numbers([m[metric] for m in members])
            entry[metric] = (median(values), min(values), max(values)) if values else None
        entry["reason"] = members[0]["reason"]
        summary.append(entry)
    return summary


def _cell_text(stat: tuple[float, float, float] | None) -> str:
    if stat is None:
        return "-"
    mid, lo, hi = stat
    return f"{mid:.3f} ({lo:.3f}-{hi:.3f})"


def write_table(rows: Sequence[Mapping[str, str]], path: Path) -> None:
    lines = [
        "| attack | defence | malicious | privacy | protection | accuracy, median (min-max) "
        "| attack success | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in summarize(rows):
        if e["status"] == "n/a":
            acc, success = "n/a", e["reason"]
        else:
            acc, success = _cell_text(e["accuracy"]), _cell_text(e["attack_success"])
        lines.append(
            f"| {e['attack']} | {e['rule']} | {e['malicious_fraction']} | {e['privacy']} | "
            f"{e['protection']} | {acc} | {success} | {e['seeds']} |"
        )
    path.write_text("\n".join(lines) + "\n")


def plot(rows: Sequence[Mapping[str, str]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = [e for e in summarize(rows) if e["status"] == "ok"]
    attacks = sorted({e["attack"] for e in summary})
    for metric, name in (("accuracy", "accuracy.png"), ("attack_success", "attack_success.png")):
        fig, axes = plt.subplots(
            1, max(1, len(attacks)), figsize=(4 * max(1, len(attacks)), 3.2), squeeze=False
        )
        for ax, attack in zip(axes[0], attacks, strict=False):
            lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for e in summary:
                if e["attack"] == attack and e[metric] is not None:
                    label = f"{e['rule']} ({e['privacy']}, {e['protection']})"
                    lines[label].append((float(e["malicious_fraction"]), e[metric][0]))
            for label, points in sorted(lines.items()):
                xs, ys = zip(*sorted(points), strict=True)
                ax.plot(xs, ys, marker="o", label=label)
            ax.set_title(attack)
            ax.set_xlabel("malicious fraction")
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_ylim(-0.02, 1.02)
        if any(ax.has_data() for ax in axes[0]):
            axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)


#: Columns of privacy.md: (header, attack whose metrics hold it, metric key, format).
PRIVACY_COLUMNS = (
    ("test accuracy", None, "accuracy", "{:.3f}"),
    ("inversion PSNR (dB), matching", "inversion", "psnr", "{:.1f}"),
    ("inversion PSNR (dB), analytic rows", "inversion", "psnr_analytic", "{:.1f}"),
    ("membership AUC (loss)", "membership", "auc", "{:.3f}"),
    ("membership AUC, server's view of one client", "membership", "auc_client_view", "{:.3f}"),
    ("LiRA AUC", "lira", "auc", "{:.3f}"),
    ("LiRA TPR at 0.1 % FPR", "lira", "tpr_at_0.1pct", "{:.4f}"),
    ("accountant ε", None, "epsilon", "{:.2f}"),
    ("audited ε lower bound", "audit", "epsilon_lower_bound", "{:.2f}"),
    ("its ceiling at the accountant's ε", "audit", "epsilon_ceiling", "{:.2f}"),
)


def _metric_values(rows: Sequence[Mapping[str, str]], attack: str | None, key: str) -> list[float]:
    values = []
    for r in rows:
        if r["status"] != "ok" or not r.get("metrics") or (attack and r["attack"] != attack):
            continue
        value = json.loads(r["metrics"]).get(key)
        if value is not None:
            values.append(float(value))  # "inf" parses to infinity
    return values


def privacy_summary(rows: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Per (privacy, protection): the median over seeds of every inference figure."""
    groups: dict[tuple[str, str], list[Mapping[str, str]]] = defaultdict(list)
    for r in rows:
        if r["attack"] in INFERENCE:
            groups[(r["privacy"], r["protection"])].append(r)
    out = []
    for (privacy, protection), members in groups.items():
        entry: dict[str, Any] = {"privacy": privacy, "protection": protection}
        entry["seeds"] = len({r["seed"] for r in members})
        # A combination none of whose cells could run (e.g. distributed-dp in plaintext).
        not_run = all(r["status"] == "n/a" for r in members)
        entry["not_applicable"] = members[0]["reason"] if not_run else ""
        for header, attack, key, _ in PRIVACY_COLUMNS:
            values = _metric_values(members, attack, key)
            entry[header] = median(values) if values else None
        out.append(entry)
    return out


def write_privacy_table(rows: Sequence[Mapping[str, str]], path: Path) -> None:
    """privacy.md: one line per (privacy level, protection), medians over seeds."""
    headers = [h for h, *_ in PRIVACY_COLUMNS]
    lines = [
        "| privacy | protection | " + " | ".join(headers) + " | seeds |",
        "| --- | --- |" + " --- |" * (len(headers) + 1),
    ]
    not_applicable: dict[str, list[str]] = defaultdict(list)
    for e in privacy_summary(rows):
        cells = []
        for header, _, _, fmt in PRIVACY_COLUMNS:
            value = e[header]
            cells.append("-" if value is None else "∞" if math.isinf(value) else fmt.format(value))
        if e["not_applicable"]:
            cells = ["n/a"] * len(cells)
            not_applicable[e["not_applicable"]].append(f"{e['privacy']} under {e['protection']}")
        lines.append(
            f"| {e['privacy']} | {e['protection']} | " + " | ".join(cells) + f" | {e['seeds']} |"
        )
    notes = [f"- {attack}: {text}" for attack, text in HEADLINE.items()]
    if not_applicable:
        notes.append("\nNot applicable:")
        notes += [f"- {', '.join(where)}: {why}" for why, where in not_applicable.items()]
    path.write_text(
        "\n".join(lines)
        + "\n\nMedians over seeds. attack_success in cells.csv:\n"
        + "\n".join(notes)
        + "\n"
    )


def plot_privacy(rows: Sequence[Mapping[str, str]], path: Path) -> None:
    """Each inference figure against the privacy level, one line per protection mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = privacy_summary(rows)
    levels = list(dict.fromkeys(e["privacy"] for e in summary))
    panels = [c for c in PRIVACY_COLUMNS if any(e[c[0]] is not None for e in summary)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    for ax, (header, *_) in zip(axes[0], panels, strict=True):
        for protection in dict.fromkeys(e["protection"] for e in summary):
            points = [
                (levels.index(e["privacy"]), e[header])
                for e in summary
                if e["protection"] == protection
                and e[header] is not None
                and math.isfinite(e[header])
            ]
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                ax.plot(xs, ys, marker="o", label=protection)
        ax.set_xticks(range(len(levels)), levels, rotation=30, fontsize=7)
        ax.set_title(header, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
