"""One signed SecAgg+ round of the scale case n = 1,000, d = 10⁴, 30 % dropped, at any commit.

The before/after figure of the cross-device scale work compares whole rounds (all parties'
CPU) of the code at two commits on the same machine in one session. Run it at an old
commit through a worktree, and at this one, alternately::

    git worktree add /tmp/before 49ec149
    PYTHONPATH=/tmp/before python benchmarks/signed_round_at.py   # the code before
    PYTHONPATH=. python benchmarks/signed_round_at.py             # this checkout

It uses only what both ends of that history have (``benchmarks.secagg``'s case set-up and
``run_round``), builds fresh identities (no key known from an earlier round), and prints
JSON: k, t_s, whether the sum is exact, and ``round_cpu_seconds`` counted the way
``benchmarks.secagg`` counts it (the server's CPU plus, per phase, the mean client CPU times
the clients that worked in it).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

# Run as a script, its own folder would come first on the path, and benchmarks/secagg.py
# would shadow the secagg package: the checkout to measure is the one on PYTHONPATH.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from benchmarks.secagg import BITS, SEED, Case, _completing_params  # noqa: E402 (the checkout's own)
from secagg.masking.driver import run_round  # noqa: E402
from secagg.masking.params import MASKED_INPUT, PHASES  # noqa: E402


def main() -> None:
    case = Case(1000, 10**4, 0.3)
    rng = np.random.default_rng([SEED, case.n, case.d, int(case.dropout * 1000)])
    ids = list(range(case.n))
    dropped = sorted(int(c) for c in rng.choice(ids, round(case.dropout * case.n), replace=False))
    inputs = {c: rng.integers(0, 2**BITS, case.d, dtype=np.uint32) for c in ids}
    params = _completing_params(ids, case.d, dropped, case.dropout)
    if params is None:
        raise SystemExit("no neighbour graph lets this dropout set complete")
    try:  # the module's name at this commit, or before the identity keys had three parts
        identity = importlib.import_module("secagg.crypto.identity")
    except ModuleNotFoundError:
        identity = importlib.import_module("secagg.crypto.signing")
    directory, keys = identity.IdentityDirectory.generate(ids)
    params = dataclasses.replace(params, identities=directory)
    start = time.perf_counter()
    result = run_round(inputs, params, dropouts={MASKED_INPUT: dropped}, identities=keys)
    wall = time.perf_counter() - start
    survivors = [c for c in ids if c not in set(dropped)]
    expected = np.zeros(case.d, dtype=np.uint32)
    for c in survivors:
        np.add(expected, inputs[c], out=expected)
    working = {p: case.n if p in PHASES[:2] else len(survivors) for p in PHASES}
    clients = sum(result.client_seconds.get(p, 0.0) * working[p] for p in PHASES)
    server = sum(result.server_seconds.values())
    print(
        json.dumps(
            {
                "k": params.neighbors,
                "t_s": params.share_threshold,
                "sum_correct": bool(np.array_equal(expected, result.total)),
                "round_cpu_seconds": server + clients,
                "server_seconds": server,
                "client_seconds": result.client_seconds,
                "wall_seconds": wall,
            }
        )
    )


if __name__ == "__main__":
    main()
