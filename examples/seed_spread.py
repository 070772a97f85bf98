"""How much does the hospital example's accuracy depend on the seed (i.e. on the data split)?

The global test set has 114 rows, so one row is 0.9 points; the Dirichlet split decides how
skewed each hospital is. This prints, as JSON, the final test accuracy per seed with and
without DP, and their medians, for the README's figures:

    python examples/seed_spread.py --seeds 10
    python examples/seed_spread.py --seeds 10 --set data.standardize=global
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from secagg.config import load_config
from secagg.simulation import run_simulation

EXAMPLE = Path(__file__).resolve().parent / "hospitals.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    out: dict[str, object] = {"overrides": args.overrides, "seeds": list(range(args.seeds))}
    for label, extra in (("no_dp", ["privacy.mode=none"]), ("dp", [])):
        accs = []
        for seed in range(args.seeds):
            cfg = load_config(EXAMPLE, [*args.overrides, *extra, f"run.seed={seed}"])
            accs.append(round(run_simulation(cfg).final["accuracy"], 4))
        out[label] = {"accuracy": accs, "median": statistics.median(accs), "min": min(accs)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
