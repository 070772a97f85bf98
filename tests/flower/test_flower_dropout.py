"""Faults on Flower's deployment runtime: a SuperNode killed mid-round, a SuperLink restarted.

The federation (SuperLink + 4 SuperNodes with their workers, separate processes; see conftest)
runs the reduced hospital example through ``flwr run``; the test kills processes under it and
checks the round against what the same code computes in process.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="flwr is not installed: pip install -e '.[flower]'")

from flower.deployment import hospitals, wait_for_event

from secagg.flower.server_app import PARAMS_FILE
from secagg.masking.params import MASKED_INPUT
from secagg.protection import HiddenFedAvg, make_protection
from secagg.protection.masking import MaskingSum
from secagg.simulation.federation import (
    SEED_PROTECTION,
    Federation,
    apply_update,
    derive_seed,
)

pytestmark = pytest.mark.slow


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_a_supernode_killed_mid_round_is_a_dropout_and_a_superlink_restart_keeps_the_round(
    local_federation, tmp_path: Path
) -> None:
    # Without DP: a node's DP noise is keyed by the node alone (no one can recompute it), so
    # the exact comparison below runs the same pipeline minus the noise.
    config = hospitals("ledger.enabled=false", "run.rounds=2", "privacy.mode=none")
    federation = local_federation(config)
    out = tmp_path / "deployed"
    federation.submit(config, out, phase_timeout=15.0)
    # Client 3 has shared its keys; the server is about to ask for masked inputs: kill it.
    wait_for_event(out, 1, MASKED_INPUT, "sent")
    federation.kill_node(3)
    # Round 1 completes without it; once round 2 has begun, the SuperLink goes down (and the
    # ServerApp it runs with it) and comes back empty.
    wait_for_event(out, 2, "advertise_keys", "sent")
    federation.restart_superlink()

    status = json.loads((out / "deployment.json").read_text())
    assert status["status"] == "running"  # the run died mid-round 2...
    metrics = _metrics(out)  # ...and what it wrote of round 1 is whole
    names = [c["name"] for c in metrics["clients"]]
    (record,) = metrics["rounds"]
    assert record["aborted"] == ""
    assert record["included"] == names[:3]
    assert record["dropped"][MASKED_INPUT] == [names[3]]
    assert status["rounds"][0]["dropped"][MASKED_INPUT] == [3]

    # The exact sum of the three survivors' quantised inputs, computed here by the same code
    # the nodes ran (same trainers, seeds and encodings); client 3's masks must have cancelled
    # exactly, through the shares its neighbours revealed.
    fed = Federation.load(config)
    params = fed.initial_params()
    protection = make_protection(
        config, fed.rule(), fed.ids, params.size, derive_seed(config.run.seed, SEED_PROTECTION)
    )
    assert isinstance(protection, HiddenFedAvg) and isinstance(protection.secure_sum, MaskingSum)
    local = {c: fed.trainer(c).train(params, 0) for c in fed.ids}
    declared = protection.declared_weights({c: float(r.num_samples) for c, r in local.items()})
    survivors = [0, 1, 2]
    spec = protection.secure_sum.spec
    total = sum(
        protection.secure_sum.client_input(
            c, protection.encode(c, local[c].update, declared[c], 0), 0
        ).astype(np.uint64)
        for c in survivors
    ) % (1 << spec.bits)
    outcome = protection.conclude(
        protection.secure_sum.outcome(total.astype(np.uint32), survivors, {}), declared
    )
    assert outcome.update is not None
    expected = apply_update(params, outcome.update, config.aggregation.server_lr, 0)
    np.testing.assert_array_equal(np.load(out / PARAMS_FILE), expected)
