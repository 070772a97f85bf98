"""Speed and cost measurements: ``python -m benchmarks NAME [--quick] [--json]``.

Every module here with a top-level ``run(quick: bool) -> dict`` is a benchmark; the runner
finds them itself, so adding one is dropping a file in this folder. A run returns one
JSON-serialisable object::

    {"benchmark": NAME, "params": {...}, "results": [...], "ratios": {...}, "environment": {...}}

Ratios always divide two figures measured in the same process, on the same data, minutes
apart, so that machine speed cancels out; absolute seconds are only meaningful on one machine.
Benchmarks never assert: they report. This module holds the shared helpers (timing,
environment, logging to stderr so that ``--json`` keeps stdout to exactly one object).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def log(message: str) -> None:
    """Progress for humans: always stderr, so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Timing:
    """Repeated measurements of one operation; medians resist the odd slow repeat."""

    wall: list[float]  # time.perf_counter seconds per repeat
    cpu: list[float]  # time.process_time seconds per repeat (all threads of this process)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_seconds_median": self.wall_median,
            "cpu_seconds_median": self.cpu_median,
            "wall_seconds_all": self.wall,
            "cpu_seconds_all": self.cpu,
        }


def measure(
    operation: Callable[[], object],
    repeats: int,
    *,
    warmup: int = 1,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``operation`` ``repeats`` times after ``warmup`` untimed calls.

    ``setup`` runs untimed before every call (e.g. to reset an accumulator). Both clocks are
    kept: wall time is what a user waits, CPU time ignores other load on the machine.
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        operation()
    wall, cpu = [], []
    for _ in range(max(1, repeats)):
        if setup is not None:
            setup()
        w0, c0 = time.perf_counter(), time.process_time()
        operation()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return Timing(wall, cpu)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """What the figures depend on: interpreter, library versions, CPU, OpenSSL."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    for package in ("numpy", "cryptography", "torch", "flwr"):
        env[package] = _package_version(package)
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        env["openssl"] = backend.openssl_version_text()
    except Exception:  # any failure here only loses an informational field
        env["openssl"] = None
    env["aes_ni"] = _cpu_flag("aes")
    return env


def _cpu_flag(flag: str) -> bool | None:
    """Whether /proc/cpuinfo lists ``flag`` (None where there is no /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return flag in line.split(":", 1)[1].split()
    except OSError:
        return None
    return None
