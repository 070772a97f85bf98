"""Cost of DP-SGD: one local epoch of an MLP on digits, non-private vs Opacus DP-SGD.

Both are timed in the same run, interleaved, on the same data and initial weights; the ratio is
what DP costs on this machine (per-sample gradients + clipping + noise).
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
from secagg.training import LocalTrainer


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
    trainers = {
        "non_private": LocalTrainer(client, factory, training, PrivacySection(), 1000, seed),
        "dp_sgd": LocalTrainer(
            client,
            factory,
            training,
            PrivacySection(mode="local-dp", noise_multiplier=1.0, max_grad_norm=1.0),
            1000,
            seed,
        ),
    }
    params = get_flat_params(factory())
    for trainer in trainers.values():  # warm-up: first-call allocations, Opacus hooks
        trainer.train(params, 0)
    times: dict[str, list[float]] = {k: [] for k in trainers}
    steps: dict[str, int] = {}
    for r in range(1, repeats + 1):
        for name, trainer in trainers.items():  # interleaved so machine noise hits both alike
            start = time.perf_counter()
            result = trainer.train(params, r)
            times[name].append(time.perf_counter() - start)
            steps[name] = result.steps
    median = {k: statistics.median(v) for k, v in times.items()}
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
                "steps": steps[name],
            }
            for name in trainers
        ],
        "ratios": {"dp_sgd_over_non_private": median["dp_sgd"] / median["non_private"]},
        "environment": {"numpy": np.__version__, "torch": torch.__version__},
    }
