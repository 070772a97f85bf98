"""The lab's privacy axis with DP on the sum (central-dp, distributed-dp): levels, the
DP-FedSGD settings of [grid.sum_dp], the cells that cannot run, and what the attacks find.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from attacks.lab import Cell, _config, load_grid, run_grid
from secagg.config import config_from_dict
from secagg.data import load_federated
from secagg.errors import ConfigError
from secagg.privacy.audit import audit_ceiling

INFERENCE = Path(__file__).resolve().parents[2] / "examples" / "inference.toml"


def _write(tmp_path: Path, old: str, new: str) -> Path:
    text = INFERENCE.read_text()
    assert old in text
    path = tmp_path / "lab.toml"
    path.write_text(text.replace(old, new))
    return path


def _cell(privacy: str, protection: str = "secagg+") -> Cell:
    return Cell("membership", "fedavg", 0.0, privacy, protection, 0)


# --------------------------------------------------------------------------- the axis


def test_the_lab_accepts_sum_modes_at_a_target_epsilon_and_runs_them_as_dp_fedsgd() -> None:
    grid = load_grid(INFERENCE)
    for level in ("distributed-dp:1", "distributed-dp:3", "distributed-dp:8", "central-dp:3"):
        assert level in grid.privacy
    assert grid.sum_dp == {"rounds": 50, "lr": 1.0, "batch_size": 32}
    config = _config(grid, _cell("distributed-dp:3"))
    assert (config.privacy.mode, config.privacy.target_epsilon) == ("distributed-dp", 3.0)
    assert config.privacy.unit == "record" and config.training.local_epochs == 1
    assert (config.run.rounds, config.training.lr, config.training.batch_size) == (50, 1.0, 32)
    assert config.privacy.colluding_clients is None  # the protection's default colluders
    # A bare mode takes the base's target; the other levels keep the base's training.
    assert _config(grid, _cell("central-dp")).privacy.target_epsilon == 4.0
    plain = _config(grid, _cell("local-dp:3"))
    assert (plain.run.rounds, plain.training.local_epochs) == (4, 10)


@pytest.mark.parametrize(
    ("level", "message"),
    [
        ("distributed-dp:abc", "write distributed-dp:EPS with EPS > 0"),
        ("distributed-dp:0", "write distributed-dp:EPS with EPS > 0"),
        ("central-dp:-2", "write central-dp:EPS with EPS > 0"),
        ("distributed-dp:inf", "write distributed-dp:EPS with EPS > 0"),
        ("distributed-dp:", "write distributed-dp:EPS with EPS > 0"),
        ("none:3", "'none' takes no ε"),
        ("distributed:3", "is not one of"),
    ],
)
def test_a_sum_mode_level_must_carry_a_positive_epsilon(
    tmp_path: Path, level: str, message: str
) -> None:
    path = _write(tmp_path, '"central-dp:3",', f'"central-dp:3", "{level}",')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_grid(path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "[grid.sum_dp]\nrounds = 50\nlr = 1.0\nbatch_size = 32",
            "",
            r"needs a \[grid\.sum_dp\] table",
        ),
        ("rounds = 50", "rounds = 0", r"grid\.sum_dp\.rounds must be an integer >= 1"),
        ("batch_size = 32 ", "batch_size = 1.5 ", r"grid\.sum_dp\.batch_size must be an integer"),
        ("lr = 1.0\nbatch", "lr = -1.0\nbatch", r"grid\.sum_dp\.lr must be a number > 0"),
        ("rounds = 50", "epochs = 50", r"grid\.sum_dp: unknown key\(s\) epochs"),
        ("rounds = 50\n", "", r"grid\.sum_dp needs rounds"),
    ],
)
def test_sum_modes_need_valid_dp_fedsgd_settings(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_grid(_write(tmp_path, old, new))


def test_distributed_dp_without_a_hiding_protection_is_not_applicable(tmp_path: Path) -> None:
    grid = replace(
        load_grid(INFERENCE, ["model.hidden=[16]"]),
        attacks=("membership",),
        rules=("fedavg", "median"),
        privacy=("distributed-dp:3", "central-dp:3"),
        protection=("none",),
        seeds=(0,),
        sum_dp={"rounds": 2, "lr": 1.0, "batch_size": 32},
    )
    rows = {(r["rule"], r["privacy"]): r for r in run_grid(grid, tmp_path)}
    for rule in ("fedavg", "median"):
        row = rows[(rule, "distributed-dp:3")]
        assert row["status"] == "n/a" and row["accuracy"] == ""
        assert "distributed-dp needs a protection that hides each update" in row["reason"]
        assert "sees every client's noise share" in row["reason"]
    assert rows[("median", "central-dp:3")]["status"] == "n/a"
    assert "aggregation.rule must be fedavg" in rows[("median", "central-dp:3")]["reason"]
    # The trusted aggregator's central DP needs no hiding: it runs.
    assert rows[("fedavg", "central-dp:3")]["status"] == "ok"
    table = (tmp_path / "table.md").read_text()
    assert "| membership | fedavg | 0.0 | distributed-dp:3 | none | n/a |" in table
    privacy = (tmp_path / "privacy.md").read_text()
    assert "| distributed-dp:3 | none | n/a |" in privacy
    assert "Not applicable:\n- distributed-dp:3 under none: distributed-dp needs" in privacy


# --------------------------------------------------------------------------- the attacks

#: A task the undefended model memorises: 10 classes of make_classification, 500 members.
#: (On digits the MLP generalises so well that the loss attack without DP reaches only
#: 0.53-0.63, too close to chance to show what DP removes.)
MEMORISED = [
    "data.dataset=synthetic",
    "data.synthetic_samples=1000",
    "data.synthetic_features=40",
    "data.synthetic_classes=10",
    "model.hidden=[64]",
    "training.local_epochs=30",
]


def _null_auc_se(members: int, outsiders: int) -> float:
    """Std of the AUC when members' and outsiders' scores share one distribution."""
    return math.sqrt((members + outsiders + 1) / (12 * members * outsiders))


def _dp_auc_bound(epsilon: float, delta: float) -> float:
    """The largest AUC of any membership test against an (ε, δ)-DP mechanism.

    Every test's ROC lies below min(e^ε·fpr + δ, 1 − e^-ε·(1 − δ − fpr)) (the hypothesis-
    testing view of DP; Kairouz, Oh & Viswanath 2015). With δ = 0 its area is e^ε/(1 + e^ε),
    i.e. 0.5 + half the largest membership advantage (e^ε − 1)/(e^ε + 1); δ raises the curve
    by at most δ everywhere, so the area by at most δ.
    """
    return math.exp(epsilon) / (1 + math.exp(epsilon)) + delta


def test_membership_auc_is_at_chance_for_epsilon_at_most_one_under_distributed_dp(
    tmp_path: Path,
) -> None:
    grid = replace(
        load_grid(INFERENCE, MEMORISED),
        attacks=("membership",),
        privacy=("none", "distributed-dp:1"),
        protection=("secagg",),
        seeds=(0,),
        sum_dp={"rounds": 30, "lr": 1.0, "batch_size": 16},
    )
    rows = {r["privacy"]: json.loads(r["metrics"]) for r in run_grid(grid, tmp_path)}
    none, dp = rows["none"], rows["distributed-dp:1"]
    data = load_federated(config_from_dict(grid.base).data, 0)
    se = _null_auc_se(sum(c.num_samples for c in data.clients), len(data.y_test))  # 0.019
    epsilon = float(dp["epsilon"])
    print(
        f"loss attack: AUC {none['auc']:.3f} without DP, {dp['auc']:.3f} under distributed-dp "
        f"at ε = {epsilon:.2f} (accuracy {none['accuracy']:.3f} vs {dp['accuracy']:.3f}; "
        f"null std {se:.3f}, DP bound on the AUC {_dp_auc_bound(epsilon, 1e-5):.3f})"
    )
    # The level's target was met (t = 3 of 5 shares sized, 5 added: observed ε = 0.74).
    assert epsilon <= 1.0
    # What DP guarantees of any attack, up to this one seed's sampling error ...
    assert dp["auc"] <= _dp_auc_bound(epsilon, 1e-5) + 3 * se
    # ... and what is observed: within the band a score with no signal stays in 99.7 % of
    # the time (observed 0.537).
    assert abs(dp["auc"] - 0.5) <= 3 * se
    # Teeth: the same attack on the undefended model is far outside that band (0.686).
    assert none["auc"] >= 0.5 + 6 * se
    assert none["auc"] - dp["auc"] >= 3 * se
    assert dp["accuracy"] > 0.12  # the DP model did learn (10 classes; observed 0.17)


def test_every_inference_cell_runs_under_dp_on_the_sum(tmp_path: Path) -> None:
    grid = replace(
        load_grid(INFERENCE, ["model.hidden=[32]"]),
        attacks=("membership", "lira", "inversion", "audit"),
        privacy=("distributed-dp:2",),
        protection=("secagg",),
        seeds=(0,),
        sum_dp={"rounds": 5, "lr": 1.0, "batch_size": 32},
        attack_params={
            "lira": {"shadows": 2},
            "inversion": {"restarts": 1, "steps": 30},
            "audit": {"canaries": 400},
        },
    )
    rows = {r["attack"]: r for r in run_grid(grid, tmp_path)}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    metrics = {a: json.loads(r["metrics"]) for a, r in rows.items()}
    epsilon = metrics["membership"]["epsilon"]
    assert 0 < epsilon <= 2.0
    for attack in ("membership", "lira"):
        assert 0.0 <= metrics[attack]["auc"] <= 1.0
    # The server reads the decoded noisy sum of the one-record round: a blur, not a record.
    assert rows["inversion"]["knowledge"] == "the server: the noisy sum of all clients (secagg)"
    assert metrics["inversion"]["inversion_sigma"] > 1.0  # the plan's z
    assert metrics["inversion"]["psnr"] < 30  # observed 15 dB (the plain record: > 60 dB)
    # The audit ran the pipeline at the level's ε and stayed below its accountant.
    audit = metrics["audit"]
    assert audit["epsilon_audited_run"] == pytest.approx(2.0, rel=0.02)
    assert 0.0 <= audit["epsilon_lower_bound"] <= audit["epsilon_audited_run"]
    # Beside it, what this audit (400 canaries, 200 guesses) certifies at best at ε = 2.
    assert audit["epsilon_ceiling"] == pytest.approx(
        audit_ceiling(audit["epsilon_audited_run"], 1e-5, 400, 100, 100)
    )
    assert 0.0 < audit["epsilon_ceiling"] < 2.0
    privacy = (tmp_path / "privacy.md").read_text()
    assert (
        "| distributed-dp:2 | secagg |" in privacy
        and "its ceiling at the accountant's ε" in privacy
    )


def test_poisoning_cells_under_dp_on_the_sum_are_not_applicable() -> None:
    """The poisoning attacks forge model updates; a DP-FedSGD client sends a clipped gradient
    sum, so those cells say why they do not run instead of crashing mid-grid."""
    from attacks.lab import Cell, _sum_not_applicable

    for mode in ("distributed-dp:3", "central-dp:3"):
        cell = Cell("backdoor", "fedavg", 0.2, mode, "secagg+", 0)
        assert "forge model updates" in _sum_not_applicable(cell)
    assert _sum_not_applicable(Cell("backdoor", "fedavg", 0.2, "local-dp:3", "secagg+", 0)) == ""
    assert (
        _sum_not_applicable(Cell("membership", "fedavg", 0.0, "distributed-dp:3", "secagg+", 0))
        == ""
    )
