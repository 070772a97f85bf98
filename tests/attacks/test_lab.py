"""The poisoning lab: a grid that resumes, marks what cannot run, and shows the directions.

The small grid here is examples/poisoning.toml cut down to seconds; the directions are the
ones the literature reports and that the shipped example shows on digits.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path
from statistics import median

import pytest

from attacks.lab import Grid, load_grid, run_grid
from secagg.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "poisoning.toml"


def _grid(*overrides: str) -> Grid:
    return load_grid(EXAMPLE, ["run.rounds=3", *overrides])


def _small(grid: Grid, **fields: object) -> Grid:
    return replace(grid, **fields)  # type: ignore[arg-type]


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "cells.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_an_interrupted_grid_resumes_without_running_finished_cells(tmp_path: Path) -> None:
    grid = _small(
        _grid(),
        attacks=("none", "sign-flip"),
        rules=("fedavg", "median"),
        malicious_fractions=(0.3,),
        protection=("none",),
        seeds=(0, 1),
    )
    seen: list[dict[str, object]] = []

    def stop_after_three(row: dict[str, object]) -> None:
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, on_cell=stop_after_three)
    assert len(_rows(tmp_path)) == 3  # what finished was written before the interruption
    rerun: list[dict[str, object]] = []
    rows = run_grid(grid, tmp_path, on_cell=rerun.append)
    assert len(rerun) == len(grid.cells()) - 3  # only the missing cells ran
    assert len(rows) == len(_rows(tmp_path)) == len(grid.cells())
    for name in ("table.md", "accuracy.png", "attack_success.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_defences_that_need_each_update_are_marked_not_applicable_under_secagg(
    tmp_path: Path,
) -> None:
    grid = _small(
        _grid(),
        attacks=("sign-flip",),
        rules=("fedavg", "krum", "median"),
        malicious_fractions=(0.3,),
        protection=("secagg+",),
        seeds=(0,),
    )
    rows = {r["rule"]: r for r in run_grid(grid, tmp_path)}
    assert rows["fedavg"]["status"] == "ok" and float(rows["fedavg"]["accuracy"]) >= 0
    for rule in ("krum", "median"):
        assert rows[rule]["status"] == "n/a"
        assert "needs every individual update, which secagg+ hides" in rows[rule]["reason"]
        assert rows[rule]["accuracy"] == ""  # never silently run with FedAvg
    assert (
        "| sign-flip | krum | 0.3 | none | secagg+ | n/a |" in (tmp_path / "table.md").read_text()
    )


@pytest.mark.parametrize("protection", ["none", "secagg+"])
def test_a_scaled_backdoor_succeeds_without_defence_and_norm_bounding_cuts_it_down(
    tmp_path: Path, protection: str
) -> None:
    # Under masking, norm bounding still runs: each client clips its own update before
    # masking it (the server cannot check that; the aggregate checks bound the rest).
    grid = _small(
        _grid("run.rounds=5"),
        attacks=("backdoor",),
        rules=("fedavg", "norm-bound"),
        malicious_fractions=(0.1,),
        protection=(protection,),
        seeds=(0, 1, 2),
    )
    rows = run_grid(grid, tmp_path)
    assert all(r["status"] == "ok" for r in rows)
    success = {
        rule: median(float(r["attack_success"]) for r in rows if r["rule"] == rule)
        for rule in ("fedavg", "norm-bound")
    }
    assert success["fedavg"] > 0.9
    assert success["norm-bound"] < 0.3
    for row in rows:  # scored after every round; the last score is the final one
        by_round = json.loads(row["attack_success_by_round"])
        assert len(by_round) == len(json.loads(row["accuracy_by_round"])) == 5
        assert by_round[-1] == pytest.approx(float(row["attack_success"]), abs=1e-4)


def test_omniscient_attacks_are_not_applicable_where_updates_are_hidden(tmp_path: Path) -> None:
    grid = _small(
        _grid(),
        attacks=("alie",),
        rules=("fedavg",),
        malicious_fractions=(0.3,),
        protection=("none", "secagg+"),
        seeds=(0,),
        attack_params={"alie": {"knowledge": "omniscient"}},
    )
    rows = {r["protection"]: r for r in run_grid(grid, tmp_path)}
    assert rows["none"]["status"] == "ok"
    assert rows["none"]["knowledge"] == "every client's updates"
    assert rows["secagg+"]["status"] == "n/a"
    assert "needs the benign updates, which secagg+ hides" in rows["secagg+"]["reason"]


def test_a_targeted_label_flip_succeeds_more_the_more_clients_flip(tmp_path: Path) -> None:
    # Attack success: the share of the source class (1) read as the target class (7).
    grid = _small(
        _grid(),
        attacks=("label-flip",),
        rules=("fedavg",),
        malicious_fractions=(0.1, 0.5),
        protection=("none",),
        seeds=(0,),
        attack_params={"label-flip": {"source": 1, "target": 7}},
    )
    rows = {r["malicious_fraction"]: r for r in run_grid(grid, tmp_path)}
    few, many = float(rows["0.1"]["attack_success"]), float(rows["0.5"]["attack_success"])
    assert many > few
    assert rows["0.5"]["malicious"] == "5"


def test_a_lab_config_with_a_bad_grid_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "lab.toml"
    text = EXAMPLE.read_text().replace('rules = ["fedavg"', 'rules = ["fedavgg"')
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"grid\.rules: 'fedavgg' is not allowed"):
        load_grid(bad)
    missing = tmp_path / "nogrid.toml"
    missing.write_text(EXAMPLE.read_text().split("[grid]")[0])
    with pytest.raises(ConfigError, match=r"needs a \[grid\] section"):
        load_grid(missing)


def test_membership_cells_score_the_final_model_and_fall_toward_chance_with_epsilon(
    tmp_path: Path,
) -> None:
    grid = load_grid(EXAMPLE.parent / "inference.toml")
    grid = _small(
        grid,
        attacks=("membership",),
        privacy=("none", "local-dp:1"),
        protection=("none",),
        seeds=(0,),
    )
    rows = {r["privacy"]: r for r in run_grid(grid, tmp_path)}
    no_dp, dp = float(rows["none"]["attack_success"]), float(rows["local-dp:1"]["attack_success"])
    assert no_dp > dp
    assert abs(dp - 0.5) < 0.02  # ε <= 1: the attacker is close to guessing
    spent = re.search(r"max ε ([0-9.e-]+)", rows["local-dp:1"]["reason"])
    assert spent is not None and float(spent.group(1)) <= 1.0  # the level's target was met


def test_a_privacy_level_must_name_a_mode_and_a_positive_epsilon(tmp_path: Path) -> None:
    bad = tmp_path / "lab.toml"
    bad.write_text(EXAMPLE.read_text().replace('privacy = ["none"]', 'privacy = ["local-dp:-1"]'))
    with pytest.raises(ConfigError, match="write local-dp:EPS with EPS > 0"):
        load_grid(bad)


def _inference(**fields: object) -> Grid:
    grid = load_grid(EXAMPLE.parent / "inference.toml", ["run.rounds=2", "training.local_epochs=3"])
    return _small(grid, seeds=(0,), **fields)


def test_inversion_cells_read_one_plaintext_update_but_not_the_secure_aggregate(
    tmp_path: Path,
) -> None:
    grid = _inference(attacks=("inversion",), privacy=("none",), protection=("none", "secagg+"))
    rows = {r["protection"]: r for r in run_grid(grid, tmp_path)}
    plain, hidden = (json.loads(rows[p]["metrics"]) for p in ("none", "secagg+"))
    assert rows["none"]["knowledge"] == "the server: one client's update"
    assert "aggregate of all clients" in rows["secagg+"]["knowledge"]
    assert plain["psnr"] > 60  # one record's step: the record comes back (observed 140 dB)
    assert hidden["psnr"] < plain["psnr"] - 60  # matching the sum of five: a blur (33 dB)
    assert float(rows["none"]["attack_success"]) == plain["psnr"]
    # The README's caveat: the sum still hands back a record whose ReLU unit fired alone.
    assert hidden["psnr_analytic"] > 100  # observed 163 dB: exact


def test_inference_cells_fill_the_privacy_table_and_the_audit_stays_below_the_accountant(
    tmp_path: Path,
) -> None:
    grid = _inference(
        attacks=("membership", "lira", "audit"),
        privacy=("none", "local-dp:2"),
        protection=("none",),
        attack_params={"lira": {"shadows": 4}, "audit": {"canaries": 400}},
    )
    rows = run_grid(grid, tmp_path)
    by = {(r["attack"], r["privacy"]): json.loads(r["metrics"]) for r in rows}
    for attack in ("membership", "lira"):
        assert 0.0 <= by[(attack, "local-dp:2")]["auc"] <= 1.0
        assert by[(attack, "none")]["auc"] > by[(attack, "local-dp:2")]["auc"]
    dp_audit = by[("audit", "local-dp:2")]
    assert dp_audit["epsilon_audited_run"] == pytest.approx(2.0, rel=0.02)
    assert 0 < dp_audit["epsilon_lower_bound"] <= dp_audit["epsilon_audited_run"]
    # Without noise the same canaries give a bound no DP run at ε = 2 may reach.
    assert by[("audit", "none")]["epsilon_lower_bound"] > 2.0
    assert by[("audit", "none")]["epsilon"] == "inf"
    table = (tmp_path / "privacy.md").read_text()
    assert "| local-dp:2 | none |" in table and "LiRA TPR at 0.1 % FPR" in table
    assert (tmp_path / "privacy.png").read_bytes()[:4] == b"\x89PNG"


def test_inference_parameters_are_checked_when_the_grid_loads(tmp_path: Path) -> None:
    bad = tmp_path / "lab.toml"
    text = (EXAMPLE.parent / "inference.toml").read_text()
    bad.write_text(text.replace("lira = { shadows = 4 }", "lira = { shadows = 1 }"))
    with pytest.raises(ConfigError, match="shadows must be >= 2"):
        load_grid(bad)
    bad.write_text(text.replace("lira = { shadows = 4 }", "lira = { shadow = 8 }"))
    with pytest.raises(ConfigError, match="unknown key"):
        load_grid(bad)


def test_membership_of_one_clients_records_depends_on_what_the_server_sees(
    tmp_path: Path,
) -> None:
    grid = _inference(attacks=("membership",), privacy=("none",), protection=("none", "secagg+"))
    rows = {r["protection"]: json.loads(r["metrics"]) for r in run_grid(grid, tmp_path)}
    plain, hidden = rows["none"], rows["secagg+"]
    # The global model is the same up to quantisation: so is what it leaks.
    assert plain["auc"] == pytest.approx(hidden["auc"], abs=0.01)
    # In plaintext the server holds hospital 0's own last local model, which fits its records.
    assert plain["auc_client_view"] > hidden["auc_client_view"] + 0.03  # observed 0.553 vs 0.493


def test_grid_keys_are_overridden_from_the_command_line_like_every_other_key() -> None:
    """``--set grid.KEY=VALUE`` (and ``grid.TABLE.KEY``) reaches the grid, the rest the run;
    a grid key that does not exist is refused as it would be in the file."""
    inference = EXAMPLE.parent / "inference.toml"
    grid = load_grid(
        inference,
        [
            "grid.seeds=[7]",
            "grid.privacy=['distributed-dp:2']",
            "grid.sum_dp.rounds=9",
            "grid.attack_params.lira.shadows=16",
            "run.rounds=2",
        ],
    )
    assert grid.seeds == (7,) and grid.privacy == ("distributed-dp:2",)
    assert grid.sum_dp is not None and grid.sum_dp["rounds"] == 9
    assert grid.attack_params["lira"]["shadows"] == 16
    assert grid.base["run"]["rounds"] == 2
    with pytest.raises(ConfigError, match=r"unknown key\(s\) grid\.sead"):
        load_grid(inference, ["grid.sead=[1]"])
