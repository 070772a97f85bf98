"""The `secagg` command: help a newcomer can read, exit code 2 and one line for every mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secagg.cli import main
from secagg.privacy import epsilon_for, noise_for

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hospitals.toml"
FAST = ["--set", "run.rounds=2", "--no-progress", "--set", "ledger.enabled=false"]
#: The shipped example as `make demo` runs it (ledger included), only shorter.
DEMO = ["--set", "run.rounds=2", "--no-progress"]


def test_help_explains_simulate_and_privacy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--set" in out and "results/" in out
    with pytest.raises(SystemExit):
        main(["privacy", "--help"])
    out = capsys.readouterr().out
    assert "--target-epsilon" in out and "--noise-multiplier" in out


def _fails_with(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["privacy.budget=3"], "unknown key 'privacy.budget'"),
        (['run.rounds="x"'], "run.rounds: expected an integer"),
        (["privacy.target_epsilon=-2"], "privacy.target_epsilon must be > 0"),
        (["data.clients=5000"], "data.clients=5000"),
        (["data.dataset=csv", "data.path=/nonexistent/patients.csv"], "/nonexistent/patients.csv"),
        (["protection.mode=secagg+", "protection.threshold=11"], "protection: threshold t = 11"),
        (["protection.mode=secagg+", "protection.neighbors=10"], "protection: neighbors must be"),
    ],
)
def test_bad_configs_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], overrides: list[str], expected: str
) -> None:
    argv = ["simulate", str(EXAMPLE), "--no-progress"]
    for item in overrides:
        argv += ["--set", item]
    _fails_with(capsys, argv, expected)


def test_absent_label_column_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    csv = tmp_path / "patients.csv"
    csv.write_text(
        "site,age,bmi,outcome\n" + "\n".join(f"s{i % 2},{i},{i % 7},{i % 2}" for i in range(40))
    )
    argv = ["simulate", str(EXAMPLE), "--no-progress"]
    for item in [
        "data.dataset=csv",
        f"data.path={json.dumps(str(csv))}",
        "data.label=diagnosis",
        "data.site_column=site",
        "data.partition=site",
        "data.clients=0",
    ]:
        argv += ["--set", item]
    _fails_with(capsys, argv, "diagnosis")


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(capsys, ["simulate", "nowhere.toml"], "config file not found")


def test_privacy_epsilon_matches_the_accountant(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["privacy", "--sample-rate", "0.01", "--steps", "1000", "--noise-multiplier", "1.1"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = epsilon_for(noise_multiplier=1.1, sample_rate=0.01, steps=1000, delta=1e-5)
    assert out["epsilon"] == pytest.approx(expected, rel=1e-12)


def test_privacy_noise_for_target_from_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "privacy",
        "--samples",
        "1000",
        "--batch-size",
        "50",
        "--epochs",
        "10",
        "--target-epsilon",
        "2",
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sample_rate"] == pytest.approx(0.05)
    assert out["steps"] == 200
    sigma = noise_for(target_epsilon=2, delta=1e-5, sample_rate=0.05, steps=200)
    assert out["noise_multiplier"] == pytest.approx(sigma)
    spent = epsilon_for(noise_multiplier=sigma, sample_rate=0.05, steps=200, delta=1e-5)
    assert spent <= 2.0


def test_privacy_on_the_sum_answers_both_ways_and_counts_honest_shares(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """σ for a target and ε for that σ agree; a distributed sum of k shares of σ²/k costs
    what a central sum of σ² costs (the shares add up), and near the Gaussian's ε."""
    sampling = ["--sample-rate", "0.05", "--steps", "300"]
    assert (
        main(
            [
                "privacy",
                "--mode",
                "distributed-dp",
                *sampling,
                "--shares",
                "4",
                "--target-epsilon",
                "3",
                "--json",
            ]
        )
        == 0
    )
    planned = json.loads(capsys.readouterr().out)
    sigma = planned["noise_multiplier"]
    assert planned["share_noise_multiplier"] == pytest.approx(sigma / 2)
    assert (
        main(
            [
                "privacy",
                "--mode",
                "central-dp",
                *sampling,
                "--noise-multiplier",
                str(sigma),
                "--json",
            ]
        )
        == 0
    )
    central = json.loads(capsys.readouterr().out)
    assert 3 * 0.99 <= central["epsilon"] <= 3.0
    gaussian = epsilon_for(noise_multiplier=sigma, sample_rate=0.05, steps=300, delta=1e-5)
    assert central["epsilon"] == pytest.approx(gaussian, rel=0.01)


def test_privacy_prints_a_runs_plan_per_client(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Path(__file__).resolve().parents[1] / "examples" / "distributed_dp.toml"
    assert main(["privacy", "--config", str(plan), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["privacy"] == "distributed-dp" and out["min_shares"] == 5
    assert len(out["epsilon"]) == 5 and max(out["epsilon"].values()) <= 3.0


def test_privacy_needs_the_sampling(capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(capsys, ["privacy", "--noise-multiplier", "1"], "give the sampling")


def test_simulate_writes_results_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["simulate", str(EXAMPLE), *DEMO, "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "final test accuracy" in printed
    assert "hospital" in printed  # the per-client ε table
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["rounds"]) == 2
    assert len(metrics["rounds"][-1]["epsilon"]) == 10
    for name in ("config.toml", "accuracy.png", "epsilon.png"):
        assert (out / name).stat().st_size > 0
    # The shipped example runs DP and SecAgg+ on the ledger, says what the protection cost
    # and ends with the audit of its on-chain record.
    assert "protection secagg+ (chain consistency)" in printed
    assert "KiB sent per client per round" in printed
    assert "audit of 2 rounds from chain and store: PASS" in printed
    assert json.loads((out / "audit.json").read_text())["verdict"] == "pass"


def test_simulate_refuses_an_output_dir_with_results_unless_overwrite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert main(["simulate", str(EXAMPLE), *FAST, "--output-dir", str(out)]) == 0
    before = (out / "metrics.json").read_text()
    capsys.readouterr()
    _fails_with(
        capsys,
        ["simulate", str(EXAMPLE), *FAST, "--output-dir", str(out)],
        "already holds results",
    )
    assert (out / "metrics.json").read_text() == before
    argv = ["simulate", str(EXAMPLE), *FAST, "--output-dir", str(out), "--overwrite"]
    assert main([*argv, "--set", "run.seed=8"]) == 0
    assert (out / "metrics.json").read_text() != before


def test_too_few_bits_for_the_clients_names_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", str(EXAMPLE), *FAST, "--set", "protection.bits=3"]
    _fails_with(capsys, argv, "protection.bits")


def test_console_script_exits_2_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "secagg.cli", "simulate", str(EXAMPLE), "--set", "run.seed=-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "secagg: error: run.seed must be >= 0, got -1"


def test_privacy_counts_the_steps_a_client_takes(capsys: pytest.CaptureFixture[str]) -> None:
    # 29 samples, batch 8: Opacus counts a Poisson epoch as ⌊29 / 8⌋ = 3 batches, and so do
    # the trainers of `secagg simulate`; the calculator must answer for the same schedule.
    argv = [
        "privacy",
        "--samples",
        "29",
        "--batch-size",
        "8",
        "--epochs",
        "5",
        "--noise-multiplier",
        "1.0",
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 15
    assert out["sample_rate"] == pytest.approx(8 / 29)
