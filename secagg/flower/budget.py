"""A node's privacy spending, kept on its own disk: ε only grows, a round is trained once.

A coordinator can re-send setup, start a "new" run, or restart the node; none of that may
bring back privacy budget the node has spent. So the node's accountant state lives here, not
in the process: ``<state folder>/budget.json`` (the folder is named by the hospital's policy,
:mod:`secagg.flower.policy`), read before each round and rewritten, atomically and flushed to
disk, after the round trained and before its update leaves the node::

    {
      "format": "secagg-node-budget/2",
      "client_id": 3,
      "history": [[1.12, 0.03, 40], ...],
      "sum_releases": [{"share_variance": 812.5, "shares": 3, "l2_sensitivity": 41.2,
                        "dim": 64, "sample_rate": 0.02, "rounds": 2}, ...],
      "runs": {"run-3f2a...": {"rounds_trained": 2, "last_round": 1}}
    }

- ``history``: every (σ, q, steps) of DP-SGD this node's data was trained with, in every run
  (Opacus' accountant history).
- ``sum_releases``: every noisy sum (``privacy.mode = "distributed-dp"``) this node's data
  went into, each kind once with its count: the discrete Gaussian release as the accountant
  sees it (:class:`~secagg.privacy.distributed_accounting.NoisySum`: share variance, the
  honest shares it is *guaranteed*, Δ₂, the padded dimension) and the node's own sampling
  rate. The node charges each round it sends a masked input for the plan's worst case,
  ``min_shares`` honest shares: it cannot check how many honest survivors the round had.
- The node's ε is the composition of all of it (:func:`lifetime_epsilon`), checked against
  the policy's ``max_epsilon`` before each round. With sum releases on disk the two kinds
  compose by adding their RDP curves on Opacus' default orders (DP-SGD's from
  :func:`~secagg.privacy.accounting._rdp_per_step`, the sum's from
  :func:`~secagg.privacy.distributed_accounting.rdp`) and converting once with Opacus'
  ``get_privacy_spent``; without any it is exactly the DP-SGD accountant's ε, as before.
- ``runs``: per run key (a digest of the run's configuration, :func:`run_key`), how many
  rounds the node trained and the last round number: a second setup of the same run resumes
  there and refuses a round it already trained. A coordinator that changes the configuration
  starts another run, whose rounds count in the same history.

Format 1 files (no ``sum_releases``) are read as they are; the node writes format 2 from its
next round on. The state is read and written under an exclusive lock (``flock`` on
``budget.lock``) held for the whole round, so two node processes on one folder cannot spend
the same budget twice. A file that cannot be read is an error, never an empty state:
forgetting the ε spent is the failure this module exists to prevent.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from secagg.errors import PolicyError, PrivacyError
from secagg.privacy.accounting import (
    HistoryEntry,
    _quiet_opacus,
    _rdp_per_step,
    epsilon_of_history,
)
from secagg.privacy.distributed_accounting import DEFAULT_ORDERS, NoisySum, rdp

FORMAT = "secagg-node-budget/2"
#: Every format this version reads (1: before the noisy sum's releases were kept).
READABLE = ("secagg-node-budget/1", FORMAT)
STATE_FILE = "budget.json"
LOCK_FILE = "budget.lock"


def run_key(config_text: str) -> str:
    """The name under which a node records its rounds of one run: a digest of its config."""
    return "run-" + hashlib.sha256(config_text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SumRelease:
    """``rounds`` noisy sums of one kind that this node's data went into (distributed DP)."""

    share_variance: float
    shares: int
    l2_sensitivity: float
    dim: int
    sample_rate: float
    rounds: int = 1

    @classmethod
    def of(cls, release: NoisySum, sample_rate: float, rounds: int = 1) -> SumRelease:
        return cls(
            release.share_variance,
            release.shares,
            release.l2_sensitivity,
            release.dim,
            float(sample_rate),
            rounds,
        )

    @property
    def release(self) -> NoisySum:
        return NoisySum(self.share_variance, self.shares, self.l2_sensitivity, self.dim)

    @property
    def kind(self) -> tuple[float, int, float, int, float]:
        """What makes two entries the same release (their counts add)."""
        return (self.share_variance, self.shares, self.l2_sensitivity, self.dim, self.sample_rate)

    def to_json(self) -> dict[str, Any]:
        return {
            "share_variance": self.share_variance,
            "shares": self.shares,
            "l2_sensitivity": self.l2_sensitivity,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "rounds": self.rounds,
        }


def lifetime_epsilon(
    history: list[HistoryEntry],
    releases: list[SumRelease],
    delta: float,
    accountant: str = "rdp",
) -> float:
    """The ε at ``delta`` of everything a node's data went into: DP-SGD steps and noisy sums.

    Without sum releases this is the DP-SGD accountant's own ε (``accountant``: rdp or prv).
    With them, the two compose by RDP: the curves add on Opacus' default orders and convert
    once (RDP is a valid bound for DP-SGD too, so a prv node pays a little more there).
    """
    if not releases:
        return epsilon_of_history(history, delta, accountant)
    total = np.zeros(len(DEFAULT_ORDERS))
    for sigma, q, steps in history:
        total = total + _rdp_per_step(float(sigma), float(q)) * int(steps)
    for entry in releases:
        total = total + rdp(entry.release, entry.sample_rate) * entry.rounds
    from opacus.accountants.analysis import rdp as rdp_analysis

    with _quiet_opacus():
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(DEFAULT_ORDERS), rdp=total, delta=delta)
    return float(eps)


@dataclass
class RunRecord:
    """What the node trained in one run."""

    rounds_trained: int = 0
    last_round: int = -1  # -1: none yet


@dataclass
class BudgetState:
    """The content of ``budget.json``."""

    client_id: int
    history: list[HistoryEntry] = field(default_factory=list)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    sum_releases: list[SumRelease] = field(default_factory=list)

    def run(self, key: str) -> RunRecord:
        return self.runs.get(key, RunRecord())

    def epsilon(
        self,
        delta: float,
        accountant: str = "rdp",
        *,
        history: list[HistoryEntry] | None = None,
        release: SumRelease | None = None,
    ) -> float:
        """The node's lifetime ε at ``delta``: what it spent, or (``history``: the DP-SGD
        history instead of the recorded one; ``release``: one more noisy sum) what it would."""
        releases = self.sum_releases if release is None else [*self.sum_releases, release]
        return lifetime_epsilon(
            self.history if history is None else history, releases, delta, accountant
        )

    def record_sum_round(self, key: str, round_idx: int, release: SumRelease) -> None:
        """One more round of run ``key`` whose noisy sum this node's data went into."""
        for i, entry in enumerate(self.sum_releases):
            if entry.kind == release.kind:
                self.sum_releases[i] = replace(entry, rounds=entry.rounds + release.rounds)
                break
        else:
            self.sum_releases.append(release)
        previous = self.run(key)
        self.runs[key] = RunRecord(previous.rounds_trained + 1, round_idx)

    def record_round(self, key: str, round_idx: int, history: list[HistoryEntry]) -> None:
        """One more round of run ``key`` trained; ``history`` is the accountant's after it."""
        kept = max(len(self.history) - 1, 0)  # the accountant may merge into the last entry
        if len(history) < len(self.history) or history[:kept] != self.history[:kept]:
            raise RuntimeError(  # a bug, not a user error: spending is only ever appended
                "the accountant history after a round does not extend the recorded one"
            )
        previous = self.run(key)
        self.history = list(history)
        self.runs[key] = RunRecord(previous.rounds_trained + 1, round_idx)

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "client_id": self.client_id,
            "history": [list(e) for e in self.history],
            "sum_releases": [e.to_json() for e in self.sum_releases],
            "runs": {k: vars(r) for k, r in sorted(self.runs.items())},
        }
        return json.dumps(body, indent=1) + "\n"


class NodeBudget:
    """The budget file of one node in its state folder."""

    def __init__(self, folder: str | Path, client_id: int) -> None:
        self.folder = Path(folder)
        self.client_id = client_id
        self.path = self.folder / STATE_FILE

    def load(self) -> BudgetState:
        """The recorded state (an empty one before the node's first round)."""
        if not self.path.exists():
            return BudgetState(self.client_id)
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return self._parse(raw)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._unreadable(str(exc)) from None

    @contextmanager
    def spending(self) -> Iterator[BudgetState]:
        """Lock, read, let the caller train and record, write (only if no exception), unlock."""
        from secagg.simulation.results import write_atomic

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = (self.folder / LOCK_FILE).open("a")
        except OSError as exc:
            raise PolicyError(
                f"the node's state folder {self.folder} cannot be used ({exc}); fix [state] "
                "folder in the node's policy"
            ) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.load()
            yield state
            write_atomic(self.path, state.to_json(), durable=True)

    def _unreadable(self, why: str) -> PolicyError:
        return PolicyError(
            f"the node's budget file {self.path} is unreadable ({why}); the node refuses to "
            "train rather than forget the ε it spent: restore the file from a backup"
        )

    def _parse(self, raw: Any) -> BudgetState:
        if not isinstance(raw, dict) or raw.get("format") not in READABLE:
            raise self._unreadable(f"not a {' or '.join(READABLE)} document")
        if raw.get("client_id") != self.client_id:
            raise PolicyError(
                f"the budget file {self.path} belongs to client {raw.get('client_id')!r}, this "
                f"node is client {self.client_id}: give each node its own [state] folder"
            )
        history: list[HistoryEntry] = []
        for entry in raw.get("history", []):
            if not (
                isinstance(entry, list)
                and len(entry) == 3
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in entry)
                and isinstance(entry[2], int)
                and math.isfinite(entry[0])
                and entry[0] > 0
                and 0 < entry[1] <= 1
                and entry[2] >= 1
            ):
                raise self._unreadable(f"history entry {entry!r} is not (sigma, q, steps)")
            history.append((float(entry[0]), float(entry[1]), int(entry[2])))
        runs: dict[str, RunRecord] = {}
        table = raw.get("runs", {})
        if not isinstance(table, dict):
            raise self._unreadable("runs is not a table")
        for key, record in table.items():
            if not (
                isinstance(record, dict)
                and set(record) == {"rounds_trained", "last_round"}
                and all(type(v) is int for v in record.values())
                and record["rounds_trained"] >= 0
                and record["last_round"] >= -1
            ):
                raise self._unreadable(f"run {key!r} is not {{rounds_trained, last_round}}")
            runs[str(key)] = RunRecord(record["rounds_trained"], record["last_round"])
        releases = raw.get("sum_releases", [])
        if raw["format"] != FORMAT and "sum_releases" in raw:
            raise self._unreadable(f"{raw['format']} holds no sum_releases")
        if not isinstance(releases, list):
            raise self._unreadable("sum_releases is not a list")
        return BudgetState(self.client_id, history, runs, [self._release(e) for e in releases])

    def _release(self, entry: Any) -> SumRelease:
        keys = ("share_variance", "shares", "l2_sensitivity", "dim", "sample_rate", "rounds")
        bad = self._unreadable(f"sum release {entry!r} is not {{{', '.join(keys)}}}")
        if not isinstance(entry, dict) or set(entry) != set(keys):
            raise bad
        numbers = [entry[k] for k in keys]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            raise bad
        if not all(type(entry[k]) is int and entry[k] >= 1 for k in ("shares", "dim", "rounds")):
            raise bad
        if not all(math.isfinite(float(v)) for v in numbers) or not 0 < entry["sample_rate"] <= 1:
            raise bad
        release = SumRelease(
            float(entry["share_variance"]),
            entry["shares"],
            float(entry["l2_sensitivity"]),
            entry["dim"],
            float(entry["sample_rate"]),
            entry["rounds"],
        )
        try:
            _ = release.release  # NoisySum's own checks (positive, KLS's share-variance floor)
        except PrivacyError as exc:
            raise self._unreadable(f"sum release {entry!r}: {exc}") from None
        return release
