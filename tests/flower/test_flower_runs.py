"""The hospital example on Flower's deployment runtime: SuperLink + 4 SuperNodes as processes.

One federation (see conftest) serves three runs through ``flwr run``, as a deployment serves
run after run: SecAgg+ with DP, checked against ``secagg simulate``; then CKKS with the ledger
on anvil, checked by ``secagg audit``; then a run one node's policy refuses. (The heavy tests
sit in separate files so that pytest-xdist hands them to different workers.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="flwr is not installed: pip install -e '.[flower]'")

from flower.deployment import hospitals, run

from secagg.cli import main as secagg_main
from secagg.config import Config
from secagg.flower.deploy import LocalFederation
from secagg.flower.server_app import PARAMS_FILE
from secagg.protection.masking import MaskingSum
from secagg.quantize import error_bound
from secagg.simulation import run_simulation
from secagg.simulation.federation import (
    Federation,
)

pytestmark = pytest.mark.slow


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_one_federation_runs_secagg_plus_as_simulated_then_ckks_with_the_ledger(
    local_federation, tmp_path: Path, anvil_url: str
) -> None:
    """(1) SecAgg+ with DP spends `secagg simulate`'s ε and bytes, with the nodes' own noise;
    (2) the same deployment then runs CKKS with the ledger on anvil (the consortium's contract,
    which every node's policy names), and `secagg audit` passes on its results; (3) a node
    whose policy refuses the next run is a dropout, its error recorded."""
    masked = hospitals("ledger.enabled=false")
    ckks = hospitals(
        "protection.mode=ckks",
        "run.rounds=2",
        "ledger.enabled=true",
        f'ledger.rpc_url="{anvil_url}"',
        "ledger.epsilon_cap=10.0",  # a node commits the ε it ever spent: both runs' here
    )
    plain = hospitals("ledger.enabled=false", "privacy.mode=none", "run.rounds=1")
    federation = local_federation(masked, ckks, plain)
    _check_secagg_plus_with_dp(federation, masked, tmp_path / "secagg+")
    _check_ckks_with_the_ledger(federation, ckks, tmp_path / "ckks", anvil_url)
    _check_a_refusing_node_is_a_dropout(federation, plain, tmp_path / "refused")


def _check_secagg_plus_with_dp(federation: LocalFederation, config: Config, out: Path) -> None:
    assert config.protection.mode == "secagg+" and config.privacy.mode == "local-dp"
    assert config.protection.consistency == "signatures"
    _, simulated = run(federation, config, out, meanwhile=lambda: run_simulation(config))
    deployed = np.load(out / PARAMS_FILE)
    # Each node keys its DP noise itself, so the model is not the simulation's (whose noise
    # derives from run.seed): it differs by far more than the rounding of a masked sum. The
    # pipeline is the same: without DP the deployment gives the exact sum (test_flower_dropout).
    spec = MaskingSum(config, [0, 1, 2, 3], deployed.size + 1, 0).spec
    tolerance = config.run.rounds * error_bound(spec, 4)
    assert np.abs(deployed - simulated.params).max() > 100 * tolerance
    assert np.isfinite(deployed).all()
    assert not np.array_equal(deployed, Federation.load(config).initial_params())

    metrics = _metrics(out)
    names = [c.name for c in simulated.clients]
    assert [r["included"] for r in metrics["rounds"]] == [names] * config.run.rounds
    for deployed_round, simulated_round in zip(metrics["rounds"], simulated.rounds, strict=True):
        for name in names:  # each node's own accountant spent what its simulated twin did
            assert deployed_round["epsilon"][name] == pytest.approx(
                simulated_round.epsilon[name], rel=1e-9
            )
        # Our wire format inside Flower messages: exactly the in-process byte counts.
        stats = deployed_round["protection"]
        assert stats["bytes_sent_per_client"] == simulated_round.protection["bytes_sent_per_client"]
        assert stats["flower_bytes_sent_per_client"] > stats["bytes_sent_per_client"]
    assert metrics["clients"] == [
        {**c, "noise_multiplier": pytest.approx(c["noise_multiplier"])}
        for c in simulated.to_dict()["clients"]
    ]
    for plot in ("accuracy.png", "epsilon.png", "config.toml"):
        assert (out / plot).is_file()


def _check_ckks_with_the_ledger(
    federation: LocalFederation, config: Config, out: Path, anvil_url: str
) -> None:
    no_ledger = hospitals("protection.mode=ckks", "run.rounds=2", "ledger.enabled=false")
    status, simulated = run(federation, config, out, meanwhile=lambda: run_simulation(no_ledger))
    assert status["key_holder"] == 0

    metrics = _metrics(out)
    assert metrics["ledger"]["chain"] == anvil_url
    rounds = metrics["rounds"]
    assert len(rounds) == config.run.rounds and not any(r["aborted"] for r in rounds)
    for r in rounds:
        assert len(r["included"]) == 4
        # every hospital's ε is on chain, committed by the hospital's own account
        assert set(r["ledger"]["epsilon_on_chain"]) == {"0", "1", "2", "3"}
        assert r["ledger"]["gas_median_by_operation"]["postAggregate"] > 0
    # CKKS decrypts the sum up to its approximation error (1e-4 here), the nodes' own noise
    # moves the model much further from the simulated one.
    assert np.abs(np.load(out / PARAMS_FILE) - simulated.params).max() > 1e-2

    # The auditor replays every round from the chain and the store alone.
    assert secagg_main(["audit", str(out)]) == 0
    report = json.loads((out / "audit.json").read_text())
    assert report["verdict"] == "pass"
    assert {c["check"] for c in report["checks"]} >= {"aggregate", "epsilon", "model"}


def _check_a_refusing_node_is_a_dropout(
    federation: LocalFederation, config: Config, out: Path
) -> None:
    """Hospital 3 changes its policy to DP only: it refuses the run without DP by name, and
    the other three run it without it."""
    policy = Path(federation.node_configs[3]["policy"])
    policy.write_text(policy.read_text().replace('mode = "none"', 'mode = "local-dp"'))
    status, _ = run(federation, config, out)
    assert list(status["refused"]) == ["3"]
    assert status["refused"]["3"].startswith("PolicyError: client 3 refuses the run")
    names = [c["name"] for c in _metrics(out)["clients"]]
    (record,) = _metrics(out)["rounds"]
    assert record["included"] == names[:3] and not record["aborted"], json.dumps(record)
