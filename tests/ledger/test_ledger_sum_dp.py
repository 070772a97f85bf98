"""Distributed DP with the ledger: the chain caps each hospital's ε and the audit decodes the
noisy sum again.

The noisy sum's public record (scale, rotation seed, bits, step) is enough for anyone to turn
the unmasked group sum into the update, so an aggregator who posts any other update is
named; the ε a round may cost is committed before the round, so the contract stops a
hospital at its cap whatever the coordinator plans.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secagg.config import load_config
from secagg.protection.noisy_sum import NoisySumProtection
from secagg.simulation import SimulationResult, run_simulation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "distributed_dp.toml"
LEDGER = ["ledger.enabled=true", "run.rounds=3", "protection.threshold=4"]


def _run(*overrides: str) -> SimulationResult:
    return run_simulation(load_config(EXAMPLE, [*LEDGER, *overrides]))


def _failed(result: SimulationResult) -> set[tuple[int, str, str]]:
    return {
        (c["round"], c["check"], c.get("party", "")) for c in result.audit["checks"] if not c["ok"]
    }


def test_a_distributed_dp_run_passes_an_audit_that_decodes_every_noisy_sum() -> None:
    result = _run()
    assert result.audit["verdict"] == "pass"
    updates = [c for c in result.audit["checks"] if c["check"] == "update"]
    assert len(updates) == 3 and all("decoded noisy sum" in c["detail"] for c in updates)


def _posting(monkeypatch: pytest.MonkeyPatch, change: float) -> None:
    """The aggregator applies and posts ``change`` times the decoded update in round 2 (so
    its models follow its own update: only the decoding can give it away)."""
    original = NoisySumProtection.aggregate

    def aggregate(self, updates, weights, schedule, round_idx):  # type: ignore[no-untyped-def]
        outcome = original(self, updates, weights, schedule, round_idx)
        if round_idx == 1 and outcome.update is not None:
            outcome.update = (outcome.update * change).astype(np.float32)
        return outcome

    monkeypatch.setattr(NoisySumProtection, "aggregate", aggregate)


def test_an_aggregator_that_posts_another_update_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twice as far along the noisy gradient in round 2: the audit decodes the sum itself
    and names the aggregator; the unmasked sum itself checks out."""
    _posting(monkeypatch, 2.0)
    result = _run()
    failed = _failed(result)
    assert result.audit["verdict"] == "fail"
    assert {(r, check) for r, check, _ in failed} == {(2, "update")}
    assert all("aggregator" in party for _, _, party in failed)


def test_under_central_dp_the_same_lie_is_beyond_the_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trusted aggregator's noise is its own: the audit checks the unmasked sum and says
    the update cannot be redone. This is what trusting the aggregator means."""
    _posting(monkeypatch, 2.0)
    result = _run("privacy.mode=central-dp")
    assert result.audit["verdict"] == "pass"
    assert any("not re-derivable" in c["detail"] for c in result.audit["checks"])


def test_the_contract_stops_each_hospital_at_its_epsilon_cap() -> None:
    """Five rounds planned at ε = 3, a cap of 1.5: a hospital's commit that would pass the
    cap (at the round's guaranteed noise) is refused and its input stays home."""
    result = _run("ledger.epsilon_cap=1.5", "run.rounds=5")
    final = result.rounds[-1].ledger["epsilon_on_chain"]
    assert max(final.values()) <= 1.5
    refused = [r for r in result.rounds if r.ledger["commits_refused"]]
    assert refused, "the cap must bite before round 5"
    assert result.audit["verdict"] == "pass"
