"""Bytes on the wire per client per round: secagg on Flower's deployment runtime vs in process.

One workload, the hospital example reduced to 4 clients (``examples/hospitals.toml`` with
``data.clients=4``, no simulated dropout, no ledger), measured three ways:

- **deployed**: a local Flower federation (:mod:`secagg.flower.deploy`: one SuperLink, four
  SuperNodes with their ClientApp workers, ``flwr run``); the server app counts, per client
  and round, our own payload in the replies (the masking messages, the ciphertext or the
  plain update: the same bytes the in-process runner counts) and the same replies as Flower
  transfers them (its deflated message objects, records and metadata included);
- **in process**: ``secagg simulate`` of the same config (``metrics.json`` figures);
- **Flower's SecAgg+** (masking modes): Flower's own SecAgg+ primitives on the same workload
  (same ids, neighbour graph, share threshold and vector length), payload only, as
  :mod:`benchmarks.flower_baseline` counts it.

``--quick``: SecAgg+ only, one round. Full: SecAgg+, CKKS and no protection, three rounds.
Byte counts do not depend on the machine; the run takes about a minute per mode.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from benchmarks import log, ratio

HOSPITALS = Path(__file__).resolve().parents[1] / "examples" / "hospitals.toml"
BASE = ["data.clients=4", "protection.dropout=0.0", "ledger.enabled=false"]


def _median(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r["protection"].get(key) for r in rounds if r.get("protection")]
    values = [v for v in values if v is not None]
    return float(median(values)) if values else None


def _flower_secaggplus(config: Any, dim: int) -> dict[str, Any]:
    """Flower's own SecAgg+ primitives on the round's workload: payload bytes per client."""
    from benchmarks.flower_baseline import FlowerWorkload, load_flower, run_flower_round
    from secagg.protection.masking import MaskingSum

    flower, reason = load_flower()
    if flower is None:
        return {"available": False, "reason": reason}
    secure_sum = MaskingSum(config, [0, 1, 2, 3], dim + 1, 0)
    params = secure_sum.params(0)
    rng = np.random.default_rng(0)
    inputs = {c: rng.integers(0, 2**32, dim + 1, dtype=np.uint64) for c in params.client_ids}
    work = FlowerWorkload(
        inputs=inputs,
        neighbors={c: params.graph.neighbors(c) for c in params.client_ids},
        share_threshold=params.share_threshold,
        dropped=frozenset(),
        timed=frozenset(params.client_ids),
    )
    result = run_flower_round(flower, work)
    return {
        "available": True,
        "version": flower.version,
        "bytes_sent_per_client": result.bytes_sent_per_client,
        "sum_verified": result.sum_verified,
    }


def measure(mode: str, rounds: int) -> dict[str, Any]:
    from secagg.config import load_config
    from secagg.flower.deploy import deploy
    from secagg.simulation import run_simulation

    config = load_config(HOSPITALS, [*BASE, f"protection.mode={mode}", f"run.rounds={rounds}"])
    with tempfile.TemporaryDirectory(prefix="secagg-bench-flower-") as tmp:
        out = Path(tmp) / "out"
        log(f"  {mode}: deploying on a local Flower federation ({rounds} round(s))")
        status = deploy(config, out, workdir=Path(tmp) / "work", phase_timeout=120.0)
        if status.get("status") != "finished":
            return {"mode": mode, "error": status.get("error")}
        import json

        deployed = json.loads((out / "metrics.json").read_text())["rounds"]
    log(f"  {mode}: the same config in process")
    simulated = run_simulation(config)
    in_process = [{"protection": r.protection} for r in simulated.rounds]
    row: dict[str, Any] = {
        "mode": mode,
        "rounds": rounds,
        "dim": int(simulated.params.size),
        "deployed": {
            "payload_bytes_sent_per_client": _median(deployed, "bytes_sent_per_client"),
            "flower_bytes_sent_per_client": _median(deployed, "flower_bytes_sent_per_client"),
            "payload_bytes_received_per_client": _median(deployed, "bytes_received_per_client"),
            "flower_bytes_received_per_client": _median(
                deployed, "flower_bytes_received_per_client"
            ),
        },
        "in_process": {"bytes_sent_per_client": _median(in_process, "bytes_sent_per_client")},
    }
    if mode in ("secagg", "secagg+"):
        row["flower_secaggplus"] = _flower_secaggplus(config, int(simulated.params.size))
    return row


def run(quick: bool) -> dict[str, Any]:
    modes = ["secagg+"] if quick else ["secagg+", "ckks", "none"]
    rounds = 1 if quick else 3
    results = [measure(mode, rounds) for mode in modes]
    ratios: dict[str, Any] = {}
    for row in results:
        if "error" in row:
            continue
        sent = row["deployed"]["payload_bytes_sent_per_client"]
        framed = row["deployed"]["flower_bytes_sent_per_client"]
        entry = {
            "deployed_payload_over_in_process": ratio(
                sent, row["in_process"]["bytes_sent_per_client"]
            ),
            "flower_framed_over_payload": ratio(framed, sent),
        }
        theirs = row.get("flower_secaggplus", {})
        if theirs.get("available"):
            entry["ours_over_flower_secaggplus_payload"] = ratio(
                sent, theirs["bytes_sent_per_client"]
            )
        ratios[row["mode"]] = entry
    return {
        "benchmark": "flower",
        "params": {
            "config": str(HOSPITALS),
            "overrides": BASE,
            "modes": modes,
            "rounds": rounds,
            "clients": 4,
        },
        "results": results,
        "ratios": ratios,
    }
