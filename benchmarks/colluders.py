"""SecAgg+ degree, thresholds and round cost against the colluding fraction gamma.

For gamma in {0, 0.05, 0.1, 0.2, 1/3} and n in {100, 1,000, 10,000}: C = floor(gamma n)
colluders; the global threshold t = max(0.6 n, floor((n + C) / 2) + 1) (a signed round needs
C < 2t - n); the automatic degree k and t_s at 10 % and at 30 % expected loss; the collusion
bound at that k (the probability that some honest client has t_s - 1 colluding neighbours,
``secagg.masking.params.collusion_failure_bound``). Then the cost of one signed round at
d = 10^4 with 10 % of the clients dropped at masked_input (every party's CPU, as
``benchmarks.secagg`` counts it), measured at n = 100 and n = 1,000. At n = 10,000 it is
estimated, not timed: a least-squares fit of the n = 1,000 rounds to a + b n k (the edges
dominate at d = 10^4) is extrapolated, and the row says so. The ratio column divides each
round by the gamma = 0 round of the same n, measured in the same run.

``--quick`` measures n = 100 only (and tabulates every n).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from benchmarks import log
from benchmarks.secagg import BITS, SEED, _completing_params, _round_cpu
from secagg.crypto.identity import IdentityDirectory
from secagg.masking.driver import run_round
from secagg.masking.params import (
    MASKED_INPUT,
    auto_degree,
    colluder_count,
    collusion_failure_bound,
    share_threshold,
)

GAMMAS = (0.0, 0.05, 0.1, 0.2, 1 / 3)
SIZES = (100, 1000, 10_000)
D = 10**4
DROPOUT = 0.1
TIMED = {True: (100,), False: (100, 1000)}


def threshold_for(n: int, colluders: int) -> int:
    """The smallest t >= 0.6 n that a signed round accepts with C colluders (C < 2t - n)."""
    return max(math.ceil(round(0.6 * n, 9)), (n + colluders) // 2 + 1)


def plan(n: int, gamma: float) -> dict[str, Any]:
    """k, t_s and the collusion bound for one (n, gamma), at 10 % and 30 % loss."""
    c = colluder_count(n, gamma)
    t = threshold_for(n, c)
    row: dict[str, Any] = {"n": n, "gamma": gamma, "colluders": c, "threshold": t}
    for loss in (0.1, 0.3):
        k = auto_degree(n, t, loss, c)
        row[f"k_at_{loss:g}"] = k
        row[f"t_s_at_{loss:g}"] = share_threshold(n, t, k)
        row[f"collusion_bound_at_{loss:g}"] = collusion_failure_bound(n, t, k, c)
    return row


def signed_round_seconds(n: int, gamma: float) -> dict[str, Any]:
    """CPU of one signed round (fresh identities) at d = 10^4 with 10 % dropped."""
    c = colluder_count(n, gamma)
    t = threshold_for(n, c)
    ids = list(range(n))
    rng = np.random.default_rng([SEED, n, int(gamma * 1000)])
    dropped = sorted(int(x) for x in rng.choice(ids, round(DROPOUT * n), replace=False))
    inputs = {u: rng.integers(0, 2**BITS, D, dtype=np.uint32) for u in ids}
    found = _completing_params(ids, D, dropped, DROPOUT, t, gamma)
    if found is None:
        return {"completed": False}
    directory, keys = IdentityDirectory.generate(ids)
    params = dataclasses.replace(found, identities=directory)
    started = time.perf_counter()
    result = run_round(inputs, params, dropouts={MASKED_INPUT: dropped}, identities=keys)
    wall = time.perf_counter() - started
    survivors = n - len(dropped)
    return {
        "completed": True,
        "k": params.neighbors,
        "round_cpu_seconds": _round_cpu([result], n, survivors),
        "wall_seconds": wall,
    }


def run(quick: bool) -> dict[str, Any]:
    rows = [plan(n, g) for n in SIZES for g in GAMMAS]
    for row in rows:
        if row["n"] not in TIMED[quick]:
            continue
        started = time.perf_counter()
        row["measured"] = signed_round_seconds(row["n"], row["gamma"])
        log(f"  n={row['n']} gamma={row['gamma']:.3f}: {time.perf_counter() - started:.1f} s")
    fit = _fit([r for r in rows if r["n"] == 1000 and "measured" in r])
    for row in rows:
        measured = row.get("measured", {})
        if measured.get("completed"):
            row["round_cpu_seconds"] = measured["round_cpu_seconds"]
            row["cost"] = "measured"
        elif fit is not None and row["n"] == 10_000:
            row["round_cpu_seconds"] = fit[0] + fit[1] * row["n"] * row["k_at_0.1"]
            row["cost"] = "estimated from the n = 1,000 fit a + b n k"
    for row in rows:
        base = next(r for r in rows if r["n"] == row["n"] and r["gamma"] == 0)
        if "round_cpu_seconds" in row and "round_cpu_seconds" in base:
            row["cost_over_gamma_0"] = row["round_cpu_seconds"] / base["round_cpu_seconds"]
    return {
        "benchmark": "colluders",
        "params": {
            "gammas": list(GAMMAS),
            "sizes": list(SIZES),
            "d": D,
            "dropout_at_masked_input": DROPOUT,
            "threshold": "max(0.6 n, floor((n + C) / 2) + 1)",
            "consistency": "signed, fresh identities",
            "clock": "CPU seconds of every party (benchmarks.secagg._round_cpu)",
            "fit": None if fit is None else {"a": fit[0], "b_per_client_edge": fit[1]},
        },
        "results": rows,
        "ratios": {
            f"n={r['n']} gamma={r['gamma']:.3f}": r.get("cost_over_gamma_0")
            for r in rows
            if "cost_over_gamma_0" in r
        },
    }


def _fit(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    done = [r for r in rows if r["measured"].get("completed")]
    if len({r["k_at_0.1"] for r in done}) < 2:
        return None
    x = np.array([r["n"] * r["k_at_0.1"] for r in done], dtype=float)
    y = np.array([r["measured"]["round_cpu_seconds"] for r in done])
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def render(result: Mapping[str, Any]) -> str:
    lines = [
        "| gamma | n | C | t | k / t_s (10 % loss) | k / t_s (30 % loss) | "
        "collusion bound | signed round CPU (d = 10^4, 10 % loss) | / gamma = 0 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        cost = r.get("round_cpu_seconds")
        shown = "" if cost is None else f"{cost:.1f} s" + (
            "" if r.get("cost") == "measured" else " (est.)"
        )
        ratio = r.get("cost_over_gamma_0")
        lines.append(
            f"| {r['gamma']:.3g} | {r['n']} | {r['colluders']} | {r['threshold']} | "
            f"{r['k_at_0.1']} / {r['t_s_at_0.1']} | {r['k_at_0.3']} / {r['t_s_at_0.3']} | "
            f"{r['collusion_bound_at_0.1']:.1e} | {shown} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return "\n".join(lines)
