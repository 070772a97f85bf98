"""What a run is made of, built once from the config: shared by the simulation and Flower.

The in-process engine (:func:`~secagg.simulation.run_simulation`) and the Flower deployment
(:mod:`secagg.flower`) build the same things from the same config and seed: the federated
split, the model and its initial parameters, each client's trainer (with its seed, so its
batches and DP noise are the same wherever it runs), the aggregation rule, and the round's
bookkeeping (applying an update, evaluating, the round record). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch

from secagg.aggregation import AggregationRule, rule_from_config
from secagg.config import SUM_MODES, Config
from secagg.data import ClientData, FederatedDataset, load_federated
from secagg.errors import DataError
from secagg.models import build_model, get_flat_params, set_flat_params
from secagg.privacy.noise import NoiseSource
from secagg.privacy.sum_clients import ClippedUpdateClient, GradientSumClient
from secagg.training import LocalResult, LocalTrainer, evaluate


def derive_seed(*parts: int) -> int:
    """Independent 32-bit seeds per component, all from ``run.seed``."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


#: The components of a run that draw randomness, each from its own seed stream.
SEED_MODEL, SEED_CLIENT, SEED_PROTECTION, SEED_DROPOUT, SEED_ROOT = 1, 2, 3, 4, 5
#: The noisy sum's streams: each client's (its batch, coin and noise share), the aggregator's.
SEED_SUM_CLIENT, SEED_SUM_SERVER = 6, 7


@dataclass
class Federation:
    """The run's data split, model and rule; every party of a run builds the same one."""

    config: Config
    data: FederatedDataset

    @classmethod
    def load(cls, config: Config, dataset: FederatedDataset | None = None) -> Federation:
        data = dataset if dataset is not None else load_federated(config.data, config.run.seed)
        return cls(config, data)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.data.clients]

    @property
    def ids(self) -> list[int]:
        return list(range(len(self.data.clients)))

    def model(self) -> torch.nn.Module:
        """A fresh model, initialised from the run's seed (the same everywhere)."""
        c = self.config
        return build_model(
            c.model.name,
            self.data.n_features,
            self.data.n_classes,
            hidden=c.model.hidden,
            seed=derive_seed(c.run.seed, SEED_MODEL),
        )

    def initial_params(self) -> np.ndarray:
        return get_flat_params(self.model())

    def trainer(
        self,
        index: int,
        data: ClientData | None = None,
        *,
        noise: NoiseSource | None = None,
    ) -> LocalTrainer:
        """Client ``index``'s honest trainer, on its share of the split (or on ``data``).

        Its DP noise derives from ``run.seed`` unless ``noise`` is given: reproducible, and so
        for simulations only; a deployed node passes its own secret source.
        """
        c = self.config
        return LocalTrainer(
            data if data is not None else self.data.clients[index],
            self.model,
            c.training,
            c.privacy,
            rounds=c.run.rounds,
            seed=derive_seed(c.run.seed, SEED_CLIENT, index),
            noise=noise,
        )

    @property
    def noise_on_sum(self) -> bool:
        """privacy.mode central-dp or distributed-dp: the clients send clipped vectors."""
        return self.config.privacy.mode in SUM_MODES

    def client(
        self, index: int, data: ClientData | None = None, *, noise: NoiseSource | None = None
    ) -> LocalTrainer | GradientSumClient | ClippedUpdateClient:
        """Client ``index``'s honest client: a trainer, or under DP on the sum the client of
        the noisy sum (its randomness from ``noise``; from ``run.seed`` in a simulation)."""
        if not self.noise_on_sum:
            return self.trainer(index, data, noise=noise)
        c = self.config
        data = data if data is not None else self.data.clients[index]
        source = noise or NoiseSource.from_seed(derive_seed(c.run.seed, SEED_SUM_CLIENT, index))
        if c.privacy.unit == "record":
            return GradientSumClient(
                data,
                self.model,
                clip=c.privacy.max_grad_norm,
                batch_size=c.training.batch_size,
                noise=source,
            )
        plain = replace(c.privacy, mode="none")
        trainer = LocalTrainer(
            data,
            self.model,
            c.training,
            plain,
            rounds=c.run.rounds,
            seed=derive_seed(c.run.seed, SEED_CLIENT, index),
        )
        per_round = c.run.clients_per_round or len(self.data.clients)
        return ClippedUpdateClient(
            trainer,
            clip=c.privacy.max_grad_norm,
            sample_rate=min(1.0, per_round / len(self.data.clients)),
            noise=source,
        )

    def rule(self) -> AggregationRule:
        return rule_from_config(self.config.aggregation)

    def evaluate(self, params: np.ndarray) -> dict[str, float]:
        """The global test set's metrics for ``params``."""
        model = self.model()
        set_flat_params(model, params)
        return evaluate(model, self.data.X_test, self.data.y_test)


def apply_update(
    params: np.ndarray, update: np.ndarray, server_lr: float, round_idx: int
) -> np.ndarray:
    """The next global parameters: ``params + server_lr * update`` (refusing NaN or inf)."""
    if not np.all(np.isfinite(update)):
        raise DataError(f"round {round_idx}: the aggregated update contains NaN or inf")
    return (params + server_lr * update).astype(np.float32)


def declared_weights(results: Mapping[int, LocalResult]) -> dict[int, float]:
    """FedAvg weights as clients declare them in the clear: their training sample counts."""
    return {i: float(local.num_samples) for i, local in results.items()}
