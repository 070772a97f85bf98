"""The results folder of a run: metrics JSON, the config it ran with, and plots.

Files are written atomically (temp file + rename), and metrics after every round, so an
interrupted run leaves valid files describing the rounds it finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from secagg.config import config_to_toml
from secagg.errors import ConfigError
from secagg.simulation.engine import SimulationResult


def write_atomic(path: Path, data: str | bytes, *, durable: bool = False) -> None:
    """Replace ``path`` in one step, never leaving a half-written file behind.

    ``durable``: also flush the file and its folder to the disk before returning, so a power
    cut cannot bring back the old content (a node's privacy budget needs this; results don't).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def unique_run_dir(base: str | Path, name: str) -> Path:
    """``base/name``, or ``base/name-2``, ``-3``... so an earlier run's results are never lost."""
    root = Path(base)
    candidate = root / name
    k = 2
    while candidate.exists():
        candidate = root / f"{name}-{k}"
        k += 1
    return candidate


#: Files whose presence means a folder holds an earlier run's results.
RESULT_FILES = ("metrics.json", "config.toml")


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse a folder that holds an earlier run's results, unless asked to overwrite them."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output folder {path} is a file; choose a folder")
    found = [name for name in RESULT_FILES if (path / name).exists()]
    if found and not overwrite:
        raise ConfigError(
            f"output folder {path} already holds results ({', '.join(found)}); choose another "
            "folder (or leave --output-dir out for a fresh one) or pass --overwrite to replace them"
        )


class ResultsWriter:
    def __init__(self, result: SimulationResult) -> None:
        assert result.output_dir is not None
        self.result = result
        self.dir = result.output_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / "config.toml", config_to_toml(result.config))

    def write_metrics(self) -> None:
        """metrics.json, and with a ledger its record first: the chain file of an embedded
        chain, then the head it ends at in metrics.json, so the audit finds them together."""
        session = self.result.ledger_session
        if session is not None:
            self.result.ledger, chain_file = session.run_record(self.dir)
            if chain_file is not None:
                write_atomic(self.dir / self.result.ledger["chain_file"], chain_file)
        text = json.dumps(self.result.to_dict(), indent=2, default=_json_default)
        write_atomic(self.dir / "metrics.json", text + "\n")

    def write_all(self) -> None:
        self.write_metrics()
        if self.result.audit:
            text = json.dumps(self.result.audit, indent=2, default=_json_default)
            write_atomic(self.dir / "audit.json", text + "\n")
        plot_accuracy(self.result, self.dir / "accuracy.png")
        if self.result.config.privacy.mode != "none":
            plot_epsilon(self.result, self.dir / "epsilon.png")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def plot_accuracy(result: SimulationResult, path: Path) -> None:
    """Test accuracy (and AUC for binary tasks) against the round number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [0] + [r.round for r in result.rounds]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(
        rounds,
        [result.initial["accuracy"]] + [r.accuracy for r in result.rounds],
        marker="o",
        ms=3,
        label="accuracy",
    )
    aucs = [r.auc for r in result.rounds if r.auc is not None]
    if aucs and len(aucs) == len(result.rounds):
        ax.plot(rounds[1:], aucs, marker="s", ms=3, label="AUC")
    aborted = [r.round for r in result.rounds if r.aborted]
    for i, x in enumerate(aborted):
        ax.axvline(x, color="red", alpha=0.3, lw=1, label="aborted round" if i == 0 else None)
    cfg = result.config
    ax.set_title(
        f"{cfg.run.name}: {cfg.data.dataset}, {len(result.clients)} clients, "
        f"privacy={cfg.privacy.mode}, protection={cfg.protection.mode}",
        fontsize=9,
    )
    ax.set_xlabel("round")
    ax.set_ylabel("global test set")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_epsilon(result: SimulationResult, path: Path) -> None:
    """Each client's cumulative ε against the round, with the target ε when one is set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    rounds = [r.round for r in result.rounds]
    for client in result.clients:
        eps = [r.epsilon.get(client.name) for r in result.rounds]
        ax.plot(
            rounds, [e if e is not None else float("nan") for e in eps], lw=1.2, label=client.name
        )
    pr = result.config.privacy
    if pr.target_epsilon is not None:
        ax.axhline(
            pr.target_epsilon,
            color="black",
            ls="--",
            lw=1,
            label=f"target ε = {pr.target_epsilon:g}",
        )
    ax.set_title(
        f"privacy spent per client (δ = {pr.delta:g}, {pr.accountant.upper()})", fontsize=9
    )
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative ε")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
