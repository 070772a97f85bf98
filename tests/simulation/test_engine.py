"""The simulation engine: reproducible, accurate without DP, honest about ε with DP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from secagg.config import load_config
from secagg.errors import ConfigError
from secagg.privacy import epsilon_for
from secagg.simulation import run_simulation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"


def _hospitals(*overrides: str):  # type: ignore[no-untyped-def]
    # The ledger has its own tests (tests/ledger); here it would only slow the engine's down.
    return load_config(EXAMPLE, ["ledger.enabled=false", *overrides])


def test_same_seed_gives_identical_metrics_twice() -> None:
    cfg = _hospitals("run.rounds=3")
    a = run_simulation(cfg).to_dict()
    b = run_simulation(cfg).to_dict()
    for record in a["rounds"] + b["rounds"]:
        record.pop("seconds")
        for timing in ("server_seconds", "server_seconds_by_phase", "client_seconds"):
            record["protection"].pop(timing, None)
    assert a["protection"] == "secagg+"  # the shipped example masks its updates
    assert a == b
    c = run_simulation(_hospitals("run.rounds=3", "run.seed=8")).to_dict()
    assert c["rounds"][-1]["loss"] != a["rounds"][-1]["loss"]


def test_without_dp_the_hospitals_reach_95_percent() -> None:
    result = run_simulation(_hospitals("privacy.mode=none"))
    assert result.final["accuracy"] >= 0.95
    assert result.final["max_epsilon"] is None


def test_reported_epsilon_is_the_accountants_and_within_target() -> None:
    cfg = _hospitals("run.rounds=5", "privacy.target_epsilon=2.0", "training.local_epochs=2")
    result = run_simulation(cfg)
    for record in result.rounds:
        for info in result.clients:
            assert info.noise_multiplier is not None
            eps = record.epsilon[info.name]
            assert eps is not None and eps <= 2.0
    # After the last round, ε is exactly what Opacus' RDP accountant gives for σ, q and the
    # number of steps Opacus counts for a Poisson-sampled epoch (⌊n / batch⌋), over all rounds.
    for info in result.clients:
        per_epoch = max(1, info.train_samples // cfg.training.batch_size)
        assert info.steps_per_round == 2 * per_epoch  # two local epochs
        final = result.final["epsilon"][info.name]
        assert final is not None and final > 0
        assert info.noise_multiplier is not None
        steps = info.steps_per_round * cfg.run.rounds
        expected = epsilon_for(
            noise_multiplier=info.noise_multiplier,
            sample_rate=info.sample_rate,
            steps=steps,
            delta=cfg.privacy.delta,
        )
        assert final == pytest.approx(expected, rel=1e-9)


def test_metrics_are_written_after_every_round(tmp_path: Path) -> None:
    seen: list[int] = []

    def check(record) -> None:  # type: ignore[no-untyped-def]
        on_disk = json.loads((tmp_path / "metrics.json").read_text())
        seen.append(len(on_disk["rounds"]))

    run_simulation(_hospitals("run.rounds=3"), output_dir=tmp_path, on_round=check)
    assert seen == [1, 2, 3]
    assert (tmp_path / "accuracy.png").exists() and (tmp_path / "epsilon.png").exists()


def test_dropouts_exclude_the_same_clients_in_every_mode() -> None:
    plain = run_simulation(
        _hospitals("run.rounds=2", "privacy.mode=none", "protection.dropout=0.2")
    )
    dropped = [r.dropped for r in plain.rounds]
    assert any(any(ids for ids in d.values()) for d in dropped)
    for record in plain.rounds:
        lost = {
            c
            for p in ("advertise_keys", "share_keys", "masked_input")
            for c in record.dropped.get(p, [])
        }
        assert lost.isdisjoint(record.included)
    assert np.all(np.isfinite(plain.params))


def test_an_output_folder_with_results_is_refused_unless_overwrite(tmp_path: Path) -> None:
    cfg = _hospitals("run.rounds=1", "protection.mode=none", "privacy.mode=none")
    run_simulation(cfg, output_dir=tmp_path)
    first = (tmp_path / "metrics.json").read_text()
    with pytest.raises(ConfigError, match=r"already holds results .*metrics.json.*--overwrite"):
        run_simulation(cfg, output_dir=tmp_path)
    assert (tmp_path / "metrics.json").read_text() == first  # nothing was touched
    run_simulation(
        _hospitals("run.rounds=2", "protection.mode=none", "privacy.mode=none"),
        output_dir=tmp_path,
        overwrite=True,
    )
    assert len(json.loads((tmp_path / "metrics.json").read_text())["rounds"]) == 2
