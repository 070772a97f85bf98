"""A client that declares more training samples than it registered gains no weight.

FedAvg and norm bounding weigh updates by declared sample counts. Client 0 below trains, sends
a poisoned update and declares 10^6 samples beside hospitals of a few dozen: unchecked it is
nearly the whole mean (under norm bounding, a move of nearly ``max_norm`` by itself). The
engine caps each declaration at the count registered at setup, names the client in the round
record, and the run ends exactly where it ends when the liar declares its true count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secagg.aggregation import AdmittedWeights, SampleRegistry
from secagg.config import Config, load_config
from secagg.data import ClientData
from secagg.simulation import run_simulation
from secagg.simulation.clients import Client, HonestBuilder
from secagg.simulation.engine import SimulationResult
from secagg.simulation.federation import Federation
from secagg.training import LocalResult

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
INFLATED = 10**6
POISON = 0.5  # every coordinate of the liar's update (norm 0.5 * sqrt(62) = 3.9)


class _Poisoner:
    """Client 0: trains honestly, sends ``POISON`` everywhere and declares ``declared`` samples
    (None: its true count)."""

    def __init__(self, honest: Client, declared: int | None) -> None:
        self.honest, self.declared = honest, declared
        self.noise_multiplier = honest.noise_multiplier
        self.sample_rate = honest.sample_rate
        self.steps_per_round = honest.steps_per_round

    def train(self, global_params: np.ndarray, round_idx: int) -> LocalResult:
        local = self.honest.train(global_params, round_idx)
        count = local.num_samples if self.declared is None else self.declared
        poison = np.full_like(local.update, POISON)
        return LocalResult(poison, count, local.train_loss, local.epsilon, local.steps)


def _run(config: Config, declared: int | None) -> SimulationResult:
    def factory(index: int, data: ClientData, build: HonestBuilder) -> Client:
        client = build(data)
        return _Poisoner(client, declared) if index == 0 else client

    return run_simulation(config, client_factory=factory)


def _config(*overrides: str) -> Config:
    return load_config(
        EXAMPLE, ["ledger.enabled=false", "privacy.mode=none", "run.rounds=1", *overrides]
    )


def _registry_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        SampleRegistry, "admit", lambda self, declared: AdmittedWeights(dict(declared))
    )


def _moved(config: Config, result: SimulationResult) -> np.ndarray:
    """How far the run moved the global model."""
    return result.params.astype(np.float64) - Federation.load(config).initial_params()


def test_an_inflated_sample_count_gains_no_weight_in_fedavg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config("protection.mode=none")
    truthful = _run(config, None)
    lying = _run(config, INFLATED)
    np.testing.assert_array_equal(lying.params, truthful.params)  # the lie changed nothing
    registered = lying.clients[0].train_samples
    (reason,) = lying.rounds[0].weights_capped.values()
    assert list(lying.rounds[0].weights_capped) == [lying.clients[0].name]
    assert reason == (
        f"UnregisteredWeightError: client 0 declared 1e+06 training samples, more than the "
        f"{registered} it registered; counted as its registered {registered} (a grown dataset "
        "must be registered again)"
    )

    _registry_off(monkeypatch)
    unchecked = _run(config, INFLATED)
    # The liar is the mean: the model moves by its poison, to 1e-3 per coordinate.
    np.testing.assert_allclose(_moved(config, unchecked), POISON, atol=1e-3)
    assert np.abs(_moved(config, truthful) - POISON).max() > 0.1


@pytest.mark.parametrize("mode", ["none", "secagg+"])
def test_an_inflated_sample_count_gains_no_weight_under_norm_bounding(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Norm bounding clips the poison to max_norm = 1; a liar that declared 10^6 samples
    would then move the model by 0.99 max_norm alone. Capped, it weighs what it registered."""
    config = _config(f"protection.mode={mode}", "aggregation.rule=norm-bound")
    truthful = _run(config, None)
    lying = _run(config, INFLATED)
    np.testing.assert_array_equal(lying.params, truthful.params)
    assert list(lying.rounds[0].weights_capped) == [lying.clients[0].name]

    _registry_off(monkeypatch)
    moved = _moved(config, _run(config, INFLATED))
    clipped_poison = np.full(moved.size, 1.0 / np.sqrt(moved.size))  # POISON at norm 1
    np.testing.assert_allclose(moved, clipped_poison, atol=1e-3)
    assert np.linalg.norm(moved) >= 0.99  # nearly max_norm, from one client
    assert np.linalg.norm(_moved(config, truthful)) < 0.5
