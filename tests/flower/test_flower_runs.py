"""The hospital example on Flower's deployment runtime: SuperLink + 4 SuperNodes as processes.

One federation (see conftest) serves two runs through ``flwr run``, as a deployment serves run
after run: SecAgg+ with DP, checked against ``secagg simulate``; then CKKS with the ledger on
anvil, checked by ``secagg audit``. (The heavy tests sit in separate files so that
pytest-xdist hands them to different workers.)
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
    """(1) SecAgg+ with DP gives `secagg simulate`'s model; (3) the same deployment then runs
    CKKS with the ledger on anvil, and `secagg audit` passes on its results."""
    masked = hospitals("ledger.enabled=false")
    ckks = hospitals(
        "protection.mode=ckks",
        "run.rounds=2",
        "ledger.enabled=true",
        f'ledger.rpc_url="{anvil_url}"',
    )
    federation = local_federation(masked, ckks)
    _check_secagg_plus_with_dp(federation, masked, tmp_path / "secagg+")
    _check_ckks_with_the_ledger(federation, ckks, tmp_path / "ckks", anvil_url)


def _check_secagg_plus_with_dp(federation: LocalFederation, config: Config, out: Path) -> None:
    assert config.protection.mode == "secagg+" and config.privacy.mode == "local-dp"
    assert config.protection.consistency == "signatures"
    _, simulated = run(federation, config, out, meanwhile=lambda: run_simulation(config))
    deployed = np.load(out / PARAMS_FILE)
    # Same seeds, same quantisation: only floating-point summation order could differ, by at
    # most the rounding error of a masked sum per round.
    spec = MaskingSum(config, [0, 1, 2, 3], deployed.size + 1, 0).spec
    tolerance = config.run.rounds * error_bound(spec, 4)
    np.testing.assert_allclose(deployed, simulated.params, rtol=0, atol=tolerance)
    assert not np.array_equal(deployed, Federation.load(config).initial_params())

    metrics = _metrics(out)
    names = [c.name for c in simulated.clients]
    assert [r["included"] for r in metrics["rounds"]] == [names] * config.run.rounds
    for deployed_round, simulated_round in zip(metrics["rounds"], simulated.rounds, strict=True):
        assert deployed_round["accuracy"] == pytest.approx(simulated_round.accuracy, abs=1e-6)
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
    # CKKS decrypts the sum up to its approximation error: the simulated model, nearly.
    np.testing.assert_allclose(np.load(out / PARAMS_FILE), simulated.params, rtol=0, atol=1e-4)

    # The auditor replays every round from the chain and the store alone.
    assert secagg_main(["audit", str(out)]) == 0
    report = json.loads((out / "audit.json").read_text())
    assert report["verdict"] == "pass"
    assert {c["check"] for c in report["checks"]} >= {"aggregate", "epsilon", "model"}
