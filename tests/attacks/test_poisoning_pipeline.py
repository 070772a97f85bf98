"""Attacks through the real pipeline (trainers, protection, aggregation), over several seeds.

The known directions, on the hospitals example: 30 % sign-flipping clients break FedAvg but
not the median or Krum; under secure aggregation the defences that need individual updates
are refused, never silently replaced by FedAvg. On the ALIE example (digits) under local DP,
ALIE hurts the median and Krum more than sign flipping does.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median

import pytest

from attacks.lab import Cell, load_grid, run_cell
from attacks.poisoning.clients import Poisoners
from attacks.poisoning.registry import build_attack
from attacks.poisoning.selection import choose_malicious
from secagg.config import config_from_dict, load_config
from secagg.data import load_federated
from secagg.errors import ConfigError
from secagg.simulation import run_simulation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
BASE = [
    "run.rounds=6",
    "privacy.mode=none",
    "protection.mode=none",
    "protection.dropout=0",
    "ledger.enabled=false",
    "data.partition=iid",
]
SEEDS = (0, 1, 2)


def _accuracy(rule: str, seed: int, attack: str | None, *extra: str) -> float:
    config = load_config(EXAMPLE, [*BASE, f"aggregation.rule={rule}", f"run.seed={seed}", *extra])
    if attack is None:
        return float(run_simulation(config).final["accuracy"])
    malicious = choose_malicious(range(config.data.clients), 0.3, seed)
    poisoners = Poisoners(
        build_attack(attack, {"scale": 4.0}), malicious, num_clients=config.data.clients, seed=seed
    )
    return float(run_simulation(config, client_factory=poisoners).final["accuracy"])


def test_thirty_percent_sign_flippers_break_fedavg_but_not_median_krum_or_fltrust() -> None:
    clean = median(_accuracy("fedavg", s, None) for s in SEEDS)
    fedavg = median(_accuracy("fedavg", s, "sign-flip") for s in SEEDS)
    robust = {
        rule: median(_accuracy(rule, s, "sign-flip", *extra) for s in SEEDS)
        for rule, extra in (
            ("median", ()),
            ("krum", ("aggregation.f=3",)),
            ("fltrust", ("data.root_samples=60",)),  # the server's own 60 clean rows
        )
    }
    assert clean > 0.9
    assert fedavg < 0.5  # worse than guessing the majority class
    for rule, accuracy in robust.items():
        assert accuracy > clean - 0.08, (rule, accuracy, clean)


@pytest.mark.parametrize("mode", ["secagg+", "ckks"])
@pytest.mark.parametrize("rule", ["median", "krum"])
def test_defences_that_need_each_update_are_refused_under_hiding_modes(
    mode: str, rule: str
) -> None:
    config = load_config(
        EXAMPLE, [*BASE, f"protection.mode={mode}", f"aggregation.rule={rule}", "run.rounds=1"]
    )
    with pytest.raises(ConfigError, match=f"aggregation.rule = '{rule}' needs every individual"):
        run_simulation(config)


def test_fltrust_without_a_root_dataset_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="fltrust' needs a root dataset on the server"):
        load_config(EXAMPLE, [*BASE, "aggregation.rule=fltrust"])


ALIE_EXAMPLE = EXAMPLE.parent / "alie.toml"


def test_alie_degrades_median_and_krum_more_than_sign_flip_under_local_dp() -> None:
    # Baruch et al. 2019: ALIE hides in the benign spread, so it hurts most where that spread is
    # large next to the mean update. Local DP noise makes it so: the median and Krum then follow
    # ALIE's mean - z·std drift, while sign flipping only slows them down. (Without DP, on
    # digits, sign flipping is the worse attack: see examples/alie.toml.)
    grid = load_grid(ALIE_EXAMPLE)  # 30 % malicious, omniscient ALIE with the paper's z
    accuracy: dict[tuple[str, str], list[float]] = {}
    for seed in (0, 1):
        dataset = load_federated(config_from_dict(grid.base).data, seed)
        for rule in ("median", "krum"):
            for attack in ("sign-flip", "alie"):
                row = run_cell(grid, Cell(attack, rule, 0.3, "local-dp", "none", seed), dataset)
                assert row["status"] == "ok", row["reason"]
                accuracy.setdefault((attack, rule), []).append(float(row["accuracy"]))
    for rule in ("median", "krum"):
        flip, alie = median(accuracy["sign-flip", rule]), median(accuracy["alie", rule])
        assert alie < flip - 0.1, (rule, accuracy)
