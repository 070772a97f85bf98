"""Secure aggregation changes what the server sees, not the model it computes.

With 10 % dropouts per phase, a SecAgg+ run and a plaintext run with the same seed lose the
same clients (the dropout schedule belongs to the clients) and so average the same updates;
the only difference is the quantisation error, which the spec bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secagg.config import load_config
from secagg.models import build_model, get_flat_params
from secagg.protection import HiddenFedAvg, make_protection
from secagg.quantize import QuantizationSpec, error_bound
from secagg.simulation import engine, run_simulation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
COMMON = ["privacy.mode=none", "protection.dropout=0.1", "run.seed=3", "ledger.enabled=false"]


def _run(mode: str, rounds: int, *extra: str):  # type: ignore[no-untyped-def]
    cfg = load_config(EXAMPLE, [*COMMON, f"run.rounds={rounds}", f"protection.mode={mode}", *extra])
    return cfg, run_simulation(cfg)


def test_one_masked_round_equals_plaintext_within_the_quantisation_bound() -> None:
    cfg, masked = _run("secagg+", 1)
    _, plain = _run("none", 1)
    rec_m, rec_p = masked.rounds[0], plain.rounds[0]
    assert not rec_m.aborted
    assert rec_m.included == rec_p.included
    assert rec_m.dropped == rec_p.dropped
    spec = QuantizationSpec(
        bits=cfg.protection.bits, clip=cfg.protection.clip_range, max_clients=len(masked.clients)
    )
    # Weights are sample counts over the largest; the mean divides the encoded sums by Σ w.
    sizes = {c.name: c.train_samples for c in masked.clients}
    total_w = sum(sizes[n] for n in rec_m.included) / max(sizes.values())
    n = len(rec_m.included)
    bound = 2 * error_bound(spec, n) / total_w * (1 + cfg.protection.clip_range)
    diff = np.abs(masked.params.astype(np.float64) - plain.params.astype(np.float64))
    assert diff.max() <= bound + 1e-6  # + float32 storage of the parameters
    assert diff.max() > 0 or bound == 0  # it really went through the quantiser


def test_ten_percent_dropouts_give_the_plaintext_model_over_several_rounds() -> None:
    _, masked = _run("secagg+", 4)
    _, plain = _run("none", 4)
    assert any(r.dropped for r in masked.rounds)
    assert [r.included for r in masked.rounds] == [r.included for r in plain.rounds]
    np.testing.assert_allclose(masked.params, plain.params, atol=1e-4)
    assert abs(masked.final["accuracy"] - plain.final["accuracy"]) <= 1 / 100
    stats = masked.rounds[-1].protection
    assert stats["bytes_sent_per_client"] > 0
    assert set(stats["client_seconds"]) >= {"advertise_keys", "share_keys", "masked_input"}


def test_complete_graph_secagg_matches_too() -> None:
    _, masked = _run("secagg", 2)
    _, plain = _run("none", 2)
    np.testing.assert_allclose(masked.params, plain.params, atol=1e-4)


def test_too_many_dropouts_abort_the_round_and_keep_the_model() -> None:
    _, result = _run("secagg+", 2, "protection.dropout=0.6", "protection.threshold=0.9")
    aborted = [r for r in result.rounds if r.aborted]
    assert aborted, "with 60 % dropouts per phase and t = 90 % a round must abort"
    assert all("aborted" in r.aborted for r in aborted)
    assert all(r.included == [] for r in aborted)


def test_dp_and_masking_together_spend_the_same_epsilon_and_reach_the_same_model() -> None:
    # The shipped example: local DP and SecAgg+ with dropouts. Masking must cost no privacy
    # and change the model only by the quantisation error.
    cfg = load_config(EXAMPLE, ["run.rounds=3", "ledger.enabled=false"])
    assert cfg.privacy.mode == "local-dp" and cfg.protection.mode == "secagg+"
    assert cfg.protection.dropout > 0
    masked = run_simulation(cfg)
    plain = run_simulation(
        load_config(EXAMPLE, ["run.rounds=3", "protection.mode=none", "ledger.enabled=false"])
    )
    assert [r.epsilon for r in masked.rounds] == [r.epsilon for r in plain.rounds]
    assert [r.included for r in masked.rounds] == [r.included for r in plain.rounds]
    assert not any(r.aborted for r in masked.rounds)
    np.testing.assert_allclose(masked.params, plain.params, atol=1e-4)
    assert masked.rounds[0].protection["consistency"] == "signatures"


class _WeightLiar(HiddenFedAvg):
    """Client 0 declares its sample count but encodes weight -(sum of the others) + 1."""

    def encode(self, client: int, update: np.ndarray, weight: float, round_idx: int) -> np.ndarray:
        if client != 0:
            return super().encode(client, update, weight, round_idx)
        forged = np.zeros(update.size + 1)
        forged[-1] = (1.0 - self.others) * self.clip
        return forged

    def aggregate(self, updates, weights, schedule, round_idx):  # type: ignore[no-untyped-def]
        top = max(weights.values())
        self.others = sum(w / top for c, w in weights.items() if c != 0)
        return super().aggregate(updates, weights, schedule, round_idx)


def test_a_client_that_lies_about_its_weight_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue #6: a weight coordinate of -(sum of honest weights) + 1 turned a mean of ~1e-3
    # into ~1e8. The server checks the decoded weights against the declared sample counts,
    # rejects the round by name, records it, and keeps the model.
    def make_liar(config, rule, client_ids, dim, seed, ledger):  # type: ignore[no-untyped-def]
        honest = make_protection(config, rule, client_ids, dim, seed, ledger)
        return _WeightLiar(honest.name, rule, honest.secure_sum, honest.clip)

    monkeypatch.setattr(engine, "make_protection", make_liar)
    cfg = load_config(EXAMPLE, ["run.rounds=2", "privacy.mode=none", "ledger.enabled=false"])
    result = run_simulation(cfg)
    initial = build_model(
        cfg.model.name, 30, 2, hidden=cfg.model.hidden, seed=engine._derive_seed(cfg.run.seed, 1)
    )
    for record in result.rounds:
        assert record.aborted.startswith("AggregateRejectedError: the aggregate's weights sum to")
        assert len(record.included) >= 6  # the round itself completed; its sum was refused
    np.testing.assert_array_equal(result.params, get_flat_params(initial))  # model kept
