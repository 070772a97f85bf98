"""The clients of a noisy sum: what each sends before the encoding stage adds its noise share.

Both keep the shape of :class:`~secagg.simulation.clients.Client` (``train`` → a
:class:`~secagg.training.LocalResult`), so attacks and the engine drive them as any client;
their ``update`` is the vector to be summed and their ``epsilon`` is None (ε is the sum's,
counted by :class:`~secagg.privacy.sum_plan.SumAccountant`). Each draws its randomness (the
Poisson batch, the participation coin, the integer noise share) from its own
:class:`~secagg.privacy.noise.NoiseSource`: a node's is fresh from the OS, a simulation's
derives from ``run.seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.validators import ModuleValidator
from torch import nn

from secagg.data import ClientData
from secagg.errors import ConfigError, DataError, PrivacyError
from secagg.models import set_flat_params
from secagg.privacy.noise import NoiseSource, RoundNoise
from secagg.training import LocalResult, LocalTrainer, _quiet_training


class _RoundOrder:
    """Rounds in increasing order, each once: a share drawn twice would cancel in a difference."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = -1
        self.count = 0

    def next(self, round_idx: int) -> int:
        if isinstance(round_idx, bool) or not isinstance(round_idx, int) or round_idx < 0:
            raise ConfigError(f"round_idx must be an integer >= 0, got {round_idx!r}")
        if round_idx <= self.last:
            raise PrivacyError(
                f"client {self.name!r} already contributed to round {self.last}; round "
                f"{round_idx} does not come after it"
            )
        self.last = round_idx
        index = self.count
        self.count += 1
        return index


class _NoiseShares:
    """The integer noise share of the round last trained, from the client's own stream."""

    _round: RoundNoise | None = None

    def noise_share(self, count: int, variance: object) -> np.ndarray:
        """``count`` draws of N_Z(0, variance) for this round's sum (once per round)."""
        if self._round is None:
            raise PrivacyError("a noise share is drawn after the round's training, not before")
        round_noise, self._round = self._round, None
        return round_noise.discrete_gaussian(count, variance)  # type: ignore[arg-type]


class GradientSumClient(_NoiseShares):
    """``privacy.unit = "record"``: DP-FedSGD's client, one Poisson batch per round.

    Each record joins the batch with probability q = min(1, batch_size / N); its gradient
    (Opacus' per-sample machinery) is clipped to ``clip`` in ℓ2 and the clipped gradients are
    summed, so one record moves the sum by at most ``clip``. No noise here: it is added to
    the sum (by the aggregator, or as shares by the encoding stage).
    """

    steps_per_round = 1

    def __init__(
        self,
        data: ClientData,
        model_factory: Callable[[], nn.Module],
        *,
        clip: float,
        batch_size: int,
        noise: NoiseSource,
    ) -> None:
        if data.num_samples == 0:
            raise DataError(f"client {data.name!r} has no training samples; it cannot train")
        self.data = data
        self.clip = clip
        self.sample_rate = min(1.0, batch_size / data.num_samples)
        #: the sum's z, once the run's plan sets it (ClientInfo reports it)
        self.noise_multiplier: float | None = None
        self._source = noise
        self._order = _RoundOrder(data.name)
        model = model_factory()
        problems = ModuleValidator.validate(model, strict=False)
        if problems:
            detail = "; ".join(" ".join(str(p).split()) for p in problems)
            raise PrivacyError(f"the model cannot take per-record gradients: {detail}")
        self._model = model
        with _quiet_training():
            self._net = GradSampleModule(model, loss_reduction="sum")
        self._x = torch.from_numpy(data.X_train)
        self._y = torch.from_numpy(data.y_train)

    def train(self, global_params: np.ndarray, round_idx: int) -> LocalResult:
        index = self._order.next(round_idx)
        set_flat_params(self._model, np.asarray(global_params, dtype=np.float32))
        noise = self._source.for_round(index)
        self._round = noise
        batch = np.flatnonzero(noise.poisson_mask(self.data.num_samples, self.sample_rate))
        params = [p for p in self._model.parameters() if p.requires_grad]
        total = np.zeros(sum(p.numel() for p in self._model.parameters()), dtype=np.float64)
        loss_value = float("nan")
        if len(batch):
            idx = torch.from_numpy(batch.astype(np.int64))
            with torch.random.fork_rng(devices=[]), _quiet_training():
                torch.manual_seed(noise.torch_seed)
                self._net.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(
                    self._net(self._x[idx]), self._y[idx], reduction="sum"
                )
                loss.backward()
            per_record = torch.cat(
                [p.grad_sample.reshape(len(batch), -1) for p in params],  # type: ignore[attr-defined]
                dim=1,
            ).double()
            norms = per_record.norm(dim=1, keepdim=True)
            factors = torch.clamp(self.clip / (norms + 1e-12), max=1.0)
            total = (per_record * factors).sum(dim=0).numpy()
            loss_value = float(loss.detach()) / len(batch)
            for p in params:
                p.grad_sample = None  # type: ignore[attr-defined]
                p.grad = None
        if not np.all(np.isfinite(total)):
            raise ConfigError(
                f"client {self.data.name!r}, round {round_idx}: the gradients are NaN/inf"
            )
        return LocalResult(
            update=total,
            num_samples=self.data.num_samples,
            train_loss=loss_value,
            epsilon=None,
            steps=1,
        )


class ClippedUpdateClient(_NoiseShares):
    """``privacy.unit = "client"``: DP-FedAvg's client, in a round with probability q.

    The coin is the client's own (its CSPRNG), so the server cannot tell an absent client from
    a present one: both send a masked vector, an absent client's holding its noise share only.
    A present client trains locally without DP and clips its whole update to ``clip``.
    """

    def __init__(
        self,
        trainer: LocalTrainer,
        *,
        clip: float,
        sample_rate: float,
        noise: NoiseSource,
    ) -> None:
        self.trainer = trainer
        self.clip = clip
        self.sample_rate = sample_rate
        #: the sum's z, once the run's plan sets it (ClientInfo reports it)
        self.noise_multiplier: float | None = None
        self.steps_per_round = trainer.steps_per_round
        self._source = noise
        self._order = _RoundOrder(trainer.data.name)
        self.participated: list[int] = []

    def train(self, global_params: np.ndarray, round_idx: int) -> LocalResult:
        index = self._order.next(round_idx)
        noise = self._source.for_round(index)
        self._round = noise
        data = self.trainer.data
        if not bool(noise.poisson_mask(1, self.sample_rate)[0]):
            return LocalResult(
                update=np.zeros(np.asarray(global_params).size, dtype=np.float64),
                num_samples=data.num_samples,
                train_loss=float("nan"),
                epsilon=None,
                steps=0,
            )
        self.participated.append(round_idx)
        local = self.trainer.train(global_params, round_idx)
        update = local.update.astype(np.float64)
        norm = float(np.linalg.norm(update))
        if not math.isfinite(norm):
            raise ConfigError(f"client {data.name!r}, round {round_idx}: the update is NaN/inf")
        if norm > self.clip:
            update *= self.clip / norm
        return LocalResult(
            update=update,
            num_samples=local.num_samples,
            train_loss=local.train_loss,
            epsilon=None,
            steps=local.steps,
        )
