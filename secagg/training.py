"""Local training on one client, optionally with DP-SGD (Opacus), and model evaluation.

One :class:`LocalTrainer` per client lives for the whole run. Each round it loads the global
parameters, trains ``training.local_epochs`` epochs on the client's own training split and
returns the parameter *difference* (what FedAvg and secure aggregation combine).

Differential privacy (``privacy.mode = "local-dp"``)
    DP-SGD as Opacus implements it, assembled from its parts rather than through
    ``PrivacyEngine.make_private`` (which derives the sample rate from a DataLoader's length
    and would re-wrap the model every round):

    * Poisson sampling with Opacus's ``UniformWithReplacementSampler``: every training
      record joins each batch independently with probability q = min(1, batch_size / n);
    * per-record gradients (``GradSampleModule``) clipped to ``privacy.max_grad_norm`` and
      Gaussian noise of std σ·max_grad_norm added to their sum (``DPOptimizer``), which is
      then divided by the *expected* batch size q·n, as Opacus does;
    * one Opacus accountant per trainer, attached to each round's optimizer by its step
      hook, so the history accumulates over rounds: after R rounds it is exactly
      ``[(σ, q, R · steps_per_round)]``, the same as a fresh accountant given that schedule.

    Steps: Opacus counts a Poisson "epoch" as ``int(1 / q)`` batches. We compute the same
    number as ``max(1, n // batch_size)`` in integer arithmetic, because ``int(1 / q)`` is
    off by one for some sizes (n = 93, batch_size = 1 gives 92). So ``steps_per_round =
    local_epochs · max(1, n // batch_size)``, and σ calibrated from ``privacy.target_epsilon``
    uses ``steps_per_round · rounds`` steps in total. A batch may be empty; the step still
    happens (noise only), as the analysis requires.

    Unit of privacy: record-level DP with respect to *this client's* training set. Each
    hospital protects each of its own patients; ε says nothing about the hospital as a whole.
    Not covered by the guarantee, and public under this design: ``num_samples`` (the FedAvg
    weight) and ``train_loss`` (a diagnostic computed on raw data: keep it on site in a real
    deployment).

    Randomness: the Poisson sampling and the Gaussian noise are drawn from the trainer's
    :class:`~secagg.privacy.noise.NoiseSource` (AES-CTR keystreams under a 256-bit key,
    through :class:`_KeyedNoiseDPOptimizer`; Opacus' σ, q and steps are unchanged). The
    guarantee holds only against parties who cannot regenerate them: a hospital's node passes
    :meth:`~secagg.privacy.noise.NoiseSource.fresh` (a key from the OS CSPRNG); without one,
    the key is derived from ``seed``, which is right for simulations and experiments only
    (whoever knows ``run.seed`` regenerates the noise and subtracts it). Floating-point
    Gaussian noise keeps the limitations listed in :mod:`secagg.privacy.noise`.

Without DP, training is plain mini-batch SGD/Adam over a seeded shuffle. Either way the
optimizer (momentum, Adam moments) starts fresh each round, as in standard FedAvg.

Determinism: all randomness of a trainer's k-th round comes from streams keyed by (noise key
or seed, k), and the global torch RNG is forked around training (so e.g. dropout layers draw
from it reproducibly, and callers' random state is left untouched). Same key (or seed, without
DP), same sequence of calls and same global parameters give bit-identical updates. The key
counts rounds trained, never the round number the caller passes, and a round number that does
not increase is refused: the accountant counts every round as fresh noise, and two updates
drawn with the same noise would cancel it in their difference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from opacus.validators import ModuleValidator
from sklearn.metrics import roc_auc_score
from torch import nn

from secagg.config import Config, PrivacySection, RunSection, TrainingSection, validate
from secagg.data import ClientData
from secagg.errors import ConfigError, DataError, PrivacyError
from secagg.models import get_flat_params, set_flat_params
from secagg.privacy.accounting import (
    HistoryEntry,
    dp_sgd_schedule,
    epsilon_of,
    epsilon_of_history,
    make_accountant,
    noise_for,
)
from secagg.privacy.noise import NoiseSource, RoundNoise

LOCAL_PRIVACY_MODES = ("none", "local-dp")

# Rows per forward pass in evaluate(): bounds memory on large test sets.
_EVAL_CHUNK = 4096

# Torch warns when a full backward hook fires on a module whose inputs need no gradient,
# which is always the case for the first layer of GradSampleModule; harmless here.
_QUIET_MESSAGES = ("Full backward hook is firing",)


@dataclass
class LocalResult:
    """What a client sends back after one round (before any protection)."""

    update: np.ndarray  # float32: local params after training minus the global params
    num_samples: int  # training samples of this client (FedAvg weight)
    train_loss: float  # mean per-example loss over this round's batches (NaN if all empty)
    epsilon: float | None  # CUMULATIVE ε spent by this client so far (None without DP)
    steps: int  # optimiser steps taken this round


def _check_settings(training: TrainingSection, privacy: PrivacySection, rounds: int) -> None:
    """Run the same checks as config loading: sections can also be built by hand."""
    if isinstance(rounds, bool) or not isinstance(rounds, int):
        raise ConfigError(f"run.rounds must be an integer, got {rounds!r}")
    # Defaults of every other section are valid, so only these three can fail here, with
    # the very messages load_config would give.
    validate(Config(run=RunSection(rounds=rounds), training=training, privacy=privacy))
    if privacy.mode not in LOCAL_PRIVACY_MODES:
        raise ConfigError(
            f"privacy.mode = {privacy.mode!r} is not supported by local training; "
            f"use one of: {', '.join(LOCAL_PRIVACY_MODES)}"
        )


@contextmanager
def _quiet_training() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in _QUIET_MESSAGES:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def _round_seeds(seed: int, rounds_trained: int) -> tuple[int, int]:
    """Independent seeds (batch shuffling, global torch RNG) for one call without DP."""
    a, _, c = np.random.SeedSequence([seed, rounds_trained]).generate_state(3, dtype=np.uint64)
    return int(a), int(c)


class _KeyedNoiseDPOptimizer(DPOptimizer):
    """Opacus' DPOptimizer with its Gaussian noise drawn from a :class:`RoundNoise`.

    Only the source of the noise differs from ``DPOptimizer.add_noise``: same std
    (σ · max_grad_norm), same shape and dtype, same processed-flag bookkeeping, so clipping,
    scaling and the accountant's step hook are Opacus' own.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, noise: RoundNoise, **kwargs: Any):
        super().__init__(optimizer, **kwargs)
        self.round_noise = noise

    def add_noise(self) -> None:
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            summed = p.summed_grad
            if std == 0:
                noise = torch.zeros_like(summed)
            else:
                draws = self.round_noise.gaussian(summed.numel()) * std
                noise = torch.from_numpy(draws).to(summed.dtype).view(summed.shape)
            p.grad = (summed + noise).view_as(p)
            _mark_as_processed(p.summed_grad)


class LocalTrainer:
    """One per client; lives for the whole run so its privacy accountant accumulates across rounds.

    ``rounds`` is the planned number of rounds: with ``privacy.target_epsilon`` σ is
    calibrated so that ``rounds`` calls of :meth:`train` spend at most that ε, and a further
    call raises :class:`~secagg.errors.PrivacyError` rather than overspend. ``noise`` is the
    source of the DP sampling and noise; without it they derive from ``seed``, for simulations
    only (see the module docstring). ``seed`` also fixes the batches of training without DP.
    """

    noise_multiplier: float | None  # σ used (given, or calibrated), None without DP
    sample_rate: float  # Poisson sampling rate q (without DP: the batch fraction)
    steps_per_round: int  # optimiser steps of every call of train()

    def __init__(
        self,
        data: ClientData,
        model_factory: Callable[[], nn.Module],
        training: TrainingSection,
        privacy: PrivacySection,
        rounds: int,
        seed: int,
        noise: NoiseSource | None = None,
    ) -> None:
        _check_settings(training, privacy, rounds)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"trainer seed must be an integer >= 0, got {seed!r}")
        n = data.num_samples
        if n == 0:
            raise DataError(f"client {data.name!r} has no training samples; it cannot train")
        self.data = data
        self.training = training
        self.privacy = privacy
        self.rounds = rounds
        self.seed = seed
        self.rounds_trained = 0
        self._last_round = -1
        self.dp = privacy.mode == "local-dp"

        batch = training.batch_size
        self.sample_rate = min(1.0, batch / n)
        self._x = torch.from_numpy(data.X_train)
        self._y = torch.from_numpy(data.y_train)
        self._model = model_factory()
        self._sampling = torch.Generator()  # batch shuffling without DP
        self._noise_source = noise if noise is not None else NoiseSource.from_seed(seed)

        if not self.dp:
            self.noise_multiplier = None
            self._batches_per_epoch = math.ceil(n / batch)
            self.steps_per_round = training.local_epochs * self._batches_per_epoch
            self._net: nn.Module = self._model
            self._accountant = None
            return

        _, self._batches_per_epoch = dp_sgd_schedule(n, batch, 1)
        self.steps_per_round = training.local_epochs * self._batches_per_epoch
        self._expected_batch_size = min(batch, n)  # = q·n exactly
        if privacy.noise_multiplier is not None:
            self.noise_multiplier = float(privacy.noise_multiplier)
        else:
            assert privacy.target_epsilon is not None  # validate() guarantees exactly one
            try:
                self.noise_multiplier = noise_for(
                    target_epsilon=privacy.target_epsilon,
                    delta=privacy.delta,
                    sample_rate=self.sample_rate,
                    steps=self.steps_per_round * rounds,
                    accountant=privacy.accountant,
                )
            except PrivacyError as exc:
                raise PrivacyError(
                    f"client {data.name!r} ({n} samples), privacy.target_epsilon: {exc}"
                ) from None
        problems = ModuleValidator.validate(self._model, strict=False)
        if problems:
            detail = "; ".join(" ".join(str(p).split()) for p in problems)
            raise PrivacyError(f"the model cannot be trained with DP-SGD: {detail}")
        with _quiet_training():
            self._net = GradSampleModule(self._model)
        self._accountant = make_accountant(privacy.accountant)

    @property
    def planned_steps(self) -> int:
        """Optimiser steps over all planned rounds (what σ was calibrated for)."""
        return self.steps_per_round * self.rounds

    def epsilon(self) -> float | None:
        """Cumulative ε spent so far at ``privacy.delta`` (None without DP, 0.0 before training)."""
        if self._accountant is None:
            return None
        return epsilon_of(self._accountant, self.privacy.delta)

    @property
    def history(self) -> list[HistoryEntry]:
        """The accountant's (σ, q, steps) entries so far (empty without DP)."""
        if self._accountant is None:
            return []
        return [(float(s), float(q), int(n)) for s, q, n in self._accountant.history]

    def epsilon_after_next_round(self) -> float | None:
        """The cumulative ε one more call of :meth:`train` would reach (None without DP)."""
        if self._accountant is None:
            return None
        assert self.noise_multiplier is not None
        history = self.history
        step = (float(self.noise_multiplier), float(self.sample_rate), self.steps_per_round)
        if history and history[-1][:2] == step[:2]:  # the accountant merges equal entries
            history[-1] = (step[0], step[1], history[-1][2] + step[2])
        else:
            history.append(step)
        return epsilon_of_history(history, self.privacy.delta, self.privacy.accountant)

    def restore(
        self, history: Sequence[HistoryEntry], rounds_trained: int, last_round: int
    ) -> None:
        """Continue from a persisted state instead of from nothing.

        ``history``: every (σ, q, steps) this client's data was ever trained with (a DP
        trainer's ε then counts them all); ``rounds_trained`` and ``last_round``: this run's
        calls so far and the last round number trained (-1: none). A node reloads these from
        its own disk before each round (see :mod:`secagg.flower.budget`), so a restart or a
        second setup neither resets ε nor trains a round again.
        """
        if rounds_trained < 0 or last_round < -1:
            raise PrivacyError(
                f"restored rounds_trained = {rounds_trained}, last_round = {last_round}: "
                "both must be counts (last_round -1 for none)"
            )
        if self._accountant is not None:
            self._accountant.history = [(float(s), float(q), int(n)) for s, q, n in history]
        self.rounds_trained = rounds_trained
        self._last_round = last_round

    def _check_params(self, global_params: np.ndarray, round_idx: int) -> np.ndarray:
        where = f"client {self.data.name!r}, round {round_idx}"
        arr = np.asarray(global_params)
        if arr.ndim != 1 or arr.dtype.kind != "f":
            raise DataError(
                f"{where}: global parameters must be a 1-D float vector, "
                f"got shape {arr.shape} dtype {arr.dtype}"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(
                f"{where}: global parameters contain {int(bad.sum())} NaN/inf value(s) "
                f"(first at index {int(np.flatnonzero(bad)[0])}); refusing to train from a "
                "diverged model"
            )
        return arr

    def _make_optimizer(self) -> torch.optim.Optimizer:
        tr = self.training
        params = list(self._model.parameters())
        if tr.optimizer == "sgd":
            return torch.optim.SGD(params, lr=tr.lr, momentum=tr.momentum)
        if tr.optimizer == "adam":
            return torch.optim.Adam(params, lr=tr.lr)
        raise ConfigError(f"training.optimizer = {tr.optimizer!r} is not one of: sgd, adam")

    def _batches(self, noise: RoundNoise) -> Iterator[torch.Tensor]:
        """Index tensors of every batch of this round.

        With DP: Poisson sampling (each record joins each batch with probability q, as
        Opacus' ``UniformWithReplacementSampler``), drawn from the round's keyed stream;
        without: a shuffle drawn from ``self._sampling``.
        """
        n = self.data.num_samples
        for _ in range(self.training.local_epochs):
            if self.dp:
                for _ in range(self._batches_per_epoch):
                    mask = noise.poisson_mask(n, self.sample_rate)
                    yield torch.from_numpy(np.flatnonzero(mask).astype(np.int64))
            else:
                order = torch.randperm(n, generator=self._sampling)
                yield from order.split(self.training.batch_size)

    def train(self, global_params: np.ndarray, round_idx: int) -> LocalResult:
        """Train one round from ``global_params``; return the update and the ε spent so far."""
        if isinstance(round_idx, bool) or not isinstance(round_idx, int) or round_idx < 0:
            raise ConfigError(f"round_idx must be an integer >= 0, got {round_idx!r}")
        if round_idx <= self._last_round:
            raise PrivacyError(
                f"client {self.data.name!r} already trained round {self._last_round}; round "
                f"{round_idx} does not come after it. A client trains each round once: a "
                "second update of one round only spends more of its budget"
            )
        params = self._check_params(global_params, round_idx)
        if (
            self.dp
            and self.privacy.target_epsilon is not None
            and self.rounds_trained >= self.rounds
        ):
            raise PrivacyError(
                f"client {self.data.name!r} already trained the {self.rounds} round(s) its "
                f"privacy.target_epsilon = {self.privacy.target_epsilon} was calibrated for; "
                "another round would exceed it (raise run.rounds to plan for more)"
            )
        set_flat_params(self._model, params)
        start = get_flat_params(self._model)  # exactly what was loaded, as float32

        # Keyed by how many rounds this trainer has run, never by a round number it is told:
        # the accountant counts every call as fresh noise, so every call must draw fresh noise.
        noise = self._noise_source.for_round(self.rounds_trained)
        sampling_seed, torch_seed = _round_seeds(self.seed, self.rounds_trained)
        self._sampling.manual_seed(sampling_seed)
        optimizer = self._make_optimizer()
        recorded_before = sum(n for _, _, n in self.history)
        if self.dp:
            assert self._accountant is not None and self.noise_multiplier is not None
            torch_seed = noise.torch_seed  # nothing of a DP round derives from the seed
            optimizer = _KeyedNoiseDPOptimizer(
                optimizer,
                noise=noise,
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=self.privacy.max_grad_norm,
                expected_batch_size=self._expected_batch_size,
                loss_reduction="mean",
                secure_mode=False,
            )
            optimizer.attach_step_hook(
                self._accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate)
            )

        loss_sum, seen, steps = 0.0, 0, 0
        self._net.train()
        with torch.random.fork_rng(devices=[]), _quiet_training():
            torch.manual_seed(torch_seed)
            for idx in self._batches(noise):
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(self._net(self._x[idx]), self._y[idx])
                loss.backward()
                optimizer.step()
                steps += 1
                if len(idx):  # an empty Poisson batch has a NaN mean loss and only adds noise
                    loss_sum += float(loss.detach()) * len(idx)
                    seen += len(idx)
            optimizer.zero_grad(set_to_none=True)  # drop per-sample gradients between rounds
        self.rounds_trained += 1
        self._last_round = round_idx

        update = get_flat_params(self._model) - start
        train_loss = loss_sum / seen if seen else float("nan")
        if not np.all(np.isfinite(update)) or (seen and not math.isfinite(train_loss)):
            raise ConfigError(
                f"client {self.data.name!r}, round {round_idx}: local training diverged "
                f"(NaN/inf loss or parameters); lower training.lr (now {self.training.lr})"
            )
        if self._accountant is not None:
            recorded = sum(n for _, _, n in self.history) - recorded_before
            if recorded != self.steps_per_round:
                raise RuntimeError(  # a bug, not a user error: the ε reported would be wrong
                    f"accountant recorded {recorded} steps this round, expected "
                    f"{self.steps_per_round}"
                )
        return LocalResult(
            update=update.astype(np.float32, copy=False),
            num_samples=self.data.num_samples,
            train_loss=train_loss,
            epsilon=self.epsilon(),
            steps=steps,
        )


def evaluate(model: nn.Module, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean cross-entropy ``loss`` and ``accuracy`` of ``model`` on (X, y).

    For two-class models also ``auc`` (ROC AUC of the softmax probability of class 1), when
    both classes occur in ``y`` and the probabilities are finite; otherwise no ``auc`` key.
    The model's train/eval mode is restored afterwards.
    """
    features = np.asarray(X)
    labels = np.asarray(y)
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise DataError(
            f"evaluate needs X of shape (n, features) and y of shape (n,), "
            f"got {features.shape} and {labels.shape}"
        )
    if len(labels) == 0:
        raise DataError("evaluate needs at least one example, got an empty set")
    if labels.dtype.kind not in "iu":
        raise DataError(f"evaluate needs integer class labels, got dtype {labels.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = torch.cat([model(chunk) for chunk in x.split(_EVAL_CHUNK)])
    finally:
        model.train(was_training)
    n_classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(
            f"labels must be class indices in 0..{n_classes - 1}, "
            f"got {labels.min()}..{labels.max()}"
        )
    target = torch.from_numpy(labels.astype(np.int64))
    metrics = {
        "loss": float(nn.functional.cross_entropy(logits, target)),
        "accuracy": float((logits.argmax(dim=1) == target).double().mean()),
    }
    if n_classes == 2 and len(np.unique(labels)) == 2:
        prob = torch.softmax(logits.double(), dim=1)[:, 1].numpy()
        if np.all(np.isfinite(prob)):
            metrics["auc"] = float(roc_auc_score(labels, prob))
    return metrics
