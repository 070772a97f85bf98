"""Cost of DP-SGD: one local epoch of an MLP on digits, non-private vs Opacus DP-SGD.

All are timed in the same run, interleaved, on the same data and initial weights; the ratio is
what DP costs on this machine (per-sample gradients + clipping + noise). Two DP-SGD variants
differ only in where their randomness comes from: ``dp_sgd`` as shipped (Poisson sampling and
Gaussian noise from AES-CTR keystreams, :mod:`secagg.privacy.noise`), ``dp_sgd_mersenne`` with
torch's seeded Mersenne Twister instead (what the trainer drew from before issue 18, and what
Opacus does without ``secure_mode``); their ratio is the price of noise nobody can regenerate.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from secagg.config import DataSection, PrivacySection, TrainingSection
from secagg.data import ClientData, load_federated
from secagg.models import build_model, get_flat_params
from secagg.privacy.noise import NoiseSource, RoundNoise
from secagg.training import LocalTrainer


class _MersenneRound(RoundNoise):
    """One round's draws from torch's Mersenne Twister (seeded, so anyone can regenerate them)."""

    def __init__(self, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(seed)
        self.torch_seed = seed

    def poisson_mask(self, n: int, rate: float) -> np.ndarray:
        return (torch.rand(n, generator=self._generator) < rate).numpy()

    def gaussian(self, count: int) -> np.ndarray:
        return torch.randn(count, generator=self._generator, dtype=torch.float64).numpy()


class _MersenneNoise(NoiseSource):
    """The baseline source: the same trainer plumbing, torch's generator instead of AES-CTR."""

    def __init__(self, seed: int) -> None:
        super().__init__(bytes(32))  # no key: the seed is the whole secret, and it is public
        self._seed = seed

    def for_round(self, index: int) -> RoundNoise:
        return _MersenneRound(self._seed * 1_000_003 + index)


def _one_client(seed: int) -> ClientData:
    """All of digits' training rows as one client: the largest local epoch the data allow."""
    fed = load_federated(DataSection(dataset="digits", partition="iid", clients=1), seed)
    return fed.clients[0]


def run(quick: bool) -> dict[str, Any]:
    repeats = 3 if quick else 9
    seed = 0
    client = _one_client(seed)
    hidden = [64]

    def factory() -> torch.nn.Module:
        return build_model("mlp", client.X_train.shape[1], 10, hidden=hidden, seed=seed)

    training = TrainingSection(local_epochs=1, batch_size=64, lr=0.05)
    dp = PrivacySection(mode="local-dp", noise_multiplier=1.0, max_grad_norm=1.0)
    trainers = {
        "non_private": LocalTrainer(client, factory, training, PrivacySection(), 1000, seed),
        "dp_sgd": LocalTrainer(client, factory, training, dp, 1000, seed, NoiseSource.fresh()),
        "dp_sgd_mersenne": LocalTrainer(
            client, factory, training, dp, 1000, seed, _MersenneNoise(seed)
        ),
    }
    params = get_flat_params(factory())
    for trainer in trainers.values():  # warm-up: first-call allocations, Opacus hooks
        trainer.train(params, 0)
    times: dict[str, list[float]] = {k: [] for k in trainers}
    cpu: dict[str, list[float]] = {k: [] for k in trainers}
    steps: dict[str, int] = {}
    for r in range(1, repeats + 1):
        for name, trainer in trainers.items():  # interleaved so machine noise hits both alike
            start, start_cpu = time.perf_counter(), time.process_time()
            result = trainer.train(params, r)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            steps[name] = result.steps
    median = {k: statistics.median(v) for k, v in times.items()}
    cpu_median = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "benchmark": "dp_overhead",
        "params": {
            "model": "mlp",
            "hidden": hidden,
            "dataset": "digits",
            "train_samples": int(client.num_samples),
            "features": int(client.X_train.shape[1]),
            "batch_size": training.batch_size,
            "noise_multiplier": 1.0,
            "max_grad_norm": 1.0,
            "repeats": repeats,
            "torch_threads": torch.get_num_threads(),
        },
        "results": [
            {
                "variant": name,
                "epoch_seconds_median": median[name],
                "epoch_seconds_all": times[name],
                "epoch_cpu_seconds_median": cpu_median[name],
                "steps": steps[name],
            }
            for name in trainers
        ],
        "ratios": {
            "dp_sgd_over_non_private": median["dp_sgd"] / median["non_private"],
            "dp_sgd_over_dp_sgd_mersenne": median["dp_sgd"] / median["dp_sgd_mersenne"],
            "dp_sgd_over_dp_sgd_mersenne_cpu": cpu_median["dp_sgd"] / cpu_median["dp_sgd_mersenne"],
        },
        "environment": {"numpy": np.__version__, "torch": torch.__version__},
    }
