"""A node's privacy spending, kept on its own disk: ε only grows, a round is trained once.

A coordinator can re-send setup, start a "new" run, or restart the node; none of that may
bring back privacy budget the node has spent. So the node's accountant state lives here, not
in the process: ``<state folder>/budget.json`` (the folder is named by the hospital's policy,
:mod:`secagg.flower.policy`), read before each round and rewritten, atomically and flushed to
disk, after the round trained and before its update leaves the node::

    {
      "format": "secagg-node-budget/1",
      "client_id": 3,
      "history": [[1.12, 0.03, 40], ...],
      "runs": {"run-3f2a...": {"rounds_trained": 2, "last_round": 1}}
    }

- ``history``: every (σ, q, steps) of DP-SGD this node's data was trained with, in every run
  (Opacus' accountant history). The node's ε is the composition of all of it, checked against
  the policy's ``max_epsilon`` before each round.
- ``runs``: per run key (a digest of the run's configuration, :func:`run_key`), how many
  rounds the node trained and the last round number: a second setup of the same run resumes
  there and refuses a round it already trained. A coordinator that changes the configuration
  starts another run, whose rounds count in the same history.

The state is read and written under an exclusive lock (``flock`` on ``budget.lock``) held
for the whole round, so two node processes on one folder cannot spend the same budget twice.
A file that cannot be read is an error, never an empty state: forgetting the ε spent is the
failure this module exists to prevent.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secagg.errors import PolicyError
from secagg.privacy.accounting import HistoryEntry

FORMAT = "secagg-node-budget/1"
STATE_FILE = "budget.json"
LOCK_FILE = "budget.lock"


def run_key(config_text: str) -> str:
    """The name under which a node records its rounds of one run: a digest of its config."""
    return "run-" + hashlib.sha256(config_text.encode()).hexdigest()[:32]


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

    def run(self, key: str) -> RunRecord:
        return self.runs.get(key, RunRecord())

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
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise self._unreadable(f"not a {FORMAT} document")
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
        return BudgetState(self.client_id, history, runs)
