"""Secure aggregation changes what the server sees, not the model it computes.

With 10 % dropouts per phase, a SecAgg+ run and a plaintext run with the same seed lose the
same clients (the dropout schedule belongs to the clients) and so average the same updates;
the only difference is the quantisation error, which the spec bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secagg.config import Config, load_config
from secagg.data import ClientData
from secagg.models import build_model, get_flat_params
from secagg.protection import HiddenFedAvg, make_protection
from secagg.quantize import QuantizationSpec, error_bound
from secagg.simulation import engine, run_simulation
from secagg.simulation.clients import HonestBuilder
from secagg.simulation.engine import RoundRecord, SimulationResult
from secagg.training import LocalTrainer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
COMMON = ["privacy.mode=none", "protection.dropout=0.1", "run.seed=3", "ledger.enabled=false"]


def _run(mode: str, rounds: int, *extra: str):  # type: ignore[no-untyped-def]
    cfg = load_config(EXAMPLE, [*COMMON, f"run.rounds={rounds}", f"protection.mode={mode}", *extra])
    return cfg, run_simulation(cfg)


def _quantisation_bound(cfg: Config, result: SimulationResult, record: RoundRecord) -> float:
    """How far one masked round's model may be from the same round in the clear: the
    quantisation error of the encoded sum, through the division by the sum of weights."""
    spec = QuantizationSpec(
        bits=cfg.protection.bits, clip=cfg.protection.clip_range, max_clients=len(result.clients)
    )
    # Weights are sample counts over the largest; the mean divides the encoded sums by Σ w.
    sizes = {c.name: c.train_samples for c in result.clients}
    total_w = sum(sizes[n] for n in record.included) / max(sizes.values())
    n = len(record.included)
    return 2 * error_bound(spec, n) / total_w * (1 + cfg.protection.clip_range)


def _largest_difference(a: SimulationResult, b: SimulationResult) -> float:
    return float(np.abs(a.params.astype(np.float64) - b.params.astype(np.float64)).max())


def test_one_masked_round_equals_plaintext_within_the_quantisation_bound() -> None:
    cfg, masked = _run("secagg+", 1)
    _, plain = _run("none", 1)
    rec_m, rec_p = masked.rounds[0], plain.rounds[0]
    assert not rec_m.aborted
    assert rec_m.included == rec_p.included
    assert rec_m.dropped == rec_p.dropped
    bound = _quantisation_bound(cfg, masked, rec_m)
    diff = _largest_difference(masked, plain)
    assert diff <= bound + 1e-6  # + float32 storage of the parameters
    assert diff > 0 or bound == 0  # it really went through the quantiser


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


def _run_keeping_accountants(
    mode: str,
) -> tuple[Config, SimulationResult, list[tuple[tuple[float, float, int], ...]]]:
    """One round of the shipped example under ``mode``; every client's accountant history."""
    trainers: list[LocalTrainer] = []

    def keep(index: int, data: ClientData, build: HonestBuilder) -> LocalTrainer:
        trainers.append(build(data))
        return trainers[-1]

    cfg = load_config(EXAMPLE, ["run.rounds=1", "ledger.enabled=false", f"protection.mode={mode}"])
    result = run_simulation(cfg, client_factory=keep)
    histories = []
    for trainer in trainers:
        assert trainer._accountant is not None
        histories.append(tuple(tuple(entry) for entry in trainer._accountant.history))
    return cfg, result, histories


@pytest.mark.slow  # three runs of the shipped example with DP: about 22 s
def test_masking_spends_no_epsilon_and_releases_the_dp_model_within_the_quantisation_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Masking is post-processing of each client's DP output. With it, every client's
    accountant records the same steps at the same σ and sampling rate as without it, and one
    round of the shipped example (local DP, SecAgg+, dropouts) reaches the DP-only model up
    to the quantisation bound. The ε half holds by construction (ε is counted before
    protection runs); the model half is what can fail: a protection that hides anything
    else than the DP update (here: each update halved) leaves every ε exactly as it was and
    moves the model past the bound."""
    cfg, masked, masked_history = _run_keeping_accountants("secagg+")
    assert cfg.privacy.mode == "local-dp" and cfg.protection.mode == "secagg+"
    assert cfg.protection.dropout > 0
    _, plain, plain_history = _run_keeping_accountants("none")
    assert masked_history == plain_history and all(masked_history)
    assert [r.epsilon for r in masked.rounds] == [r.epsilon for r in plain.rounds]
    record = masked.rounds[0]
    assert not record.aborted and record.protection["consistency"] == "signatures"
    assert record.included == plain.rounds[0].included
    bound = _quantisation_bound(cfg, masked, record)
    assert 0 < _largest_difference(masked, plain) <= bound + 1e-6

    honest_encode = HiddenFedAvg.encode

    def halved(
        self: HiddenFedAvg, client: int, update: np.ndarray, weight: float, r: int
    ) -> np.ndarray:
        return honest_encode(self, client, update / 2, weight, r)

    monkeypatch.setattr(HiddenFedAvg, "encode", halved)
    _, changed, changed_history = _run_keeping_accountants("secagg+")
    assert changed_history == plain_history
    assert [r.epsilon for r in changed.rounds] == [r.epsilon for r in plain.rounds]
    assert _largest_difference(changed, plain) > 10 * bound


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
