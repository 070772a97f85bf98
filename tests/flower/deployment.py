"""Helpers of the deployment tests: the reduced hospital example, running and watching a run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from secagg.config import Config, load_config
from secagg.flower.deploy import LocalFederation

HOSPITALS = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
#: The hospital example reduced to 4 clients and 3 rounds; dropout is simulated only in
#: `secagg simulate` (in a deployment nodes really go away), so it is off for comparisons.
REDUCED = ["data.clients=4", "run.rounds=3", "protection.dropout=0.0"]


def hospitals(*overrides: str) -> Config:
    return load_config(HOSPITALS, [*REDUCED, *overrides])


def run(
    federation: LocalFederation,
    config: Config,
    out: Path,
    phase_timeout: float = 60.0,
    meanwhile: Callable[[], Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Submit ``config``, call ``meanwhile()`` while the federation runs it (the test process
    is idle then), wait for the run's final status (failing with the logs if it failed)."""
    federation.submit(config, out, phase_timeout=phase_timeout)
    aside = meanwhile() if meanwhile is not None else None
    status = federation.wait(out, timeout=400)
    if status["status"] != "finished":
        logs = "\n".join(
            f"--- {name}\n{federation.log_tail(name, 1500)}" for name in federation.parties
        )
        pytest.fail(f"the run failed: {status.get('traceback') or status}\n{logs}")
    return status, aside


def wait_for_event(out: Path, round_: int, phase: str, event: str, timeout: float = 300) -> None:
    """Block until the server app logs ``event`` for ``phase`` of ``round_`` (1-based)."""
    from secagg.flower.server_app import EVENTS_FILE

    deadline = time.monotonic() + timeout
    path = out / EVENTS_FILE
    while time.monotonic() < deadline:
        if path.is_file():
            for line in path.read_text().splitlines():
                e = json.loads(line)
                if (e["round"], e["phase"], e["event"]) == (round_, phase, event):
                    return
        time.sleep(0.01)
    pytest.fail(f"the server never reached round {round_} {phase} {event}")
