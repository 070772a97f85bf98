"""Local training: exact ε bookkeeping, real clipping and noise, determinism, clear errors."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from torch import nn

from secagg.config import PrivacySection, TrainingSection
from secagg.data import ClientData
from secagg.errors import ConfigError, DataError, PrivacyError
from secagg.models import build_model, get_flat_params, set_flat_params
from secagg.privacy import noise_for
from secagg.training import LocalResult, LocalTrainer, evaluate

# Opacus and torch warn on harmless things; the trainer silences those locally, so any
# warning that escapes it fails these tests.
pytestmark = pytest.mark.filterwarnings("error")

DELTA = 1e-5
N_FEATURES = 10


def _blobs(n: int, seed: int = 0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Two well separated Gaussian blobs: an easy binary problem."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, N_FEATURES)) + np.where(y[:, None] == 1, 1.5, -1.5)
    return (scale * X).astype(np.float32), y.astype(np.int64)


def _client(n: int = 40, seed: int = 0, scale: float = 1.0, name: str = "h1") -> ClientData:
    X, y = _blobs(n, seed, scale)
    Xv, yv = _blobs(20, seed + 100, scale)
    return ClientData(name, X, y, Xv, yv)


def _factory(name: str = "logreg", n_features: int = N_FEATURES) -> Callable[[], nn.Module]:
    return lambda: build_model(name, n_features, 2, hidden=(8,), seed=1)


def _start(factory: Callable[[], nn.Module] | None = None) -> np.ndarray:
    return get_flat_params((factory or _factory())())


def _dp(**kwargs: Any) -> PrivacySection:
    kwargs.setdefault("delta", DELTA)
    return PrivacySection(mode="local-dp", **kwargs)


def _trainer(
    privacy: PrivacySection | None = None,
    *,
    data: ClientData | None = None,
    rounds: int = 3,
    seed: int = 0,
    factory: Callable[[], nn.Module] | None = None,
    **training: Any,
) -> LocalTrainer:
    training.setdefault("batch_size", 10)
    return LocalTrainer(
        data or _client(),
        factory or _factory(),
        TrainingSection(**training),
        privacy or PrivacySection(),
        rounds=rounds,
        seed=seed,
    )


def _fresh(mechanism: str, sigma: float, q: float, steps: int) -> float:
    """ε from an untouched Opacus accountant given the whole schedule at once."""
    accountant = RDPAccountant() if mechanism == "rdp" else PRVAccountant()
    accountant.history = [(sigma, q, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta=DELTA))


def _run(trainer: LocalTrainer, rounds: int, params: np.ndarray | None = None) -> list[LocalResult]:
    """Federated rounds with this one client: its update becomes the next global model."""
    params = _start() if params is None else params
    results = []
    for r in range(rounds):
        result = trainer.train(params, r)
        params = params + result.update
        results.append(result)
    return results


# --- (1) the ε a client reports is Opacus's, accumulated over rounds ---------------------------


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_reported_epsilon_equals_a_fresh_opacus_accountant_after_every_round(
    accountant: str,
) -> None:
    # n = 40, batch 10: q = 0.25, 4 Poisson batches per epoch, 2 epochs -> 8 steps a round.
    trainer = _trainer(_dp(noise_multiplier=1.3, accountant=accountant), local_epochs=2)
    assert trainer.sample_rate == 0.25 and trainer.steps_per_round == 8
    assert trainer.epsilon() == 0.0
    for r, result in enumerate(_run(trainer, 3)):
        assert result.steps == 8
        assert result.epsilon == _fresh(accountant, 1.3, 0.25, 8 * (r + 1))
    assert trainer._accountant is not None
    assert trainer._accountant.history == [(1.3, 0.25, 24)]  # one merged entry, all rounds
    assert trainer.epsilon() == result.epsilon


@pytest.mark.parametrize(
    ("n", "batch_size", "epochs", "steps"),
    [
        (40, 10, 1, 4),
        (45, 8, 1, 5),  # Opacus: int(1/q) = int(5.625) = 5 batches per Poisson epoch, not 6
        (40, 64, 2, 2),  # batch >= n: q = 1, one step per epoch
        (93, 1, 1, 93),  # int(1 / (1/93)) is 92 in floating point; we count 93
    ],
)
def test_steps_per_round_follow_opacus_poisson_epochs(
    n: int, batch_size: int, epochs: int, steps: int
) -> None:
    trainer = _trainer(
        _dp(noise_multiplier=1.0),
        data=_client(n),
        batch_size=batch_size,
        local_epochs=epochs,
    )
    assert trainer.sample_rate == min(1.0, batch_size / n)
    result = trainer.train(_start(), 0)
    assert result.steps == trainer.steps_per_round == steps
    assert result.epsilon == _fresh("rdp", 1.0, trainer.sample_rate, steps)


def test_plain_training_counts_shuffled_minibatches() -> None:
    trainer = _trainer(data=_client(45), batch_size=8, local_epochs=2)
    assert trainer.noise_multiplier is None and trainer.epsilon() is None
    result = trainer.train(_start(), 0)
    assert result.steps == trainer.steps_per_round == 2 * 6  # ceil(45 / 8) = 6
    assert result.epsilon is None and result.num_samples == 45


def test_empty_poisson_batches_still_step_and_are_accounted() -> None:
    # q = 1/40: about a third of the 40 batches are empty; each is still a (noise-only) step.
    trainer = _trainer(_dp(noise_multiplier=1.0), batch_size=1)
    result = trainer.train(_start(), 0)
    assert result.steps == 40
    assert math.isfinite(result.train_loss)
    assert result.epsilon == _fresh("rdp", 1.0, 1 / 40, 40)


# --- (2) a target ε is never exceeded, and is nearly reached ------------------------------------


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_target_epsilon_is_met_from_below_after_the_last_round(accountant: str) -> None:
    rounds = 5
    trainer = _trainer(_dp(target_epsilon=1.0, accountant=accountant), rounds=rounds)
    assert trainer.planned_steps == 4 * rounds
    assert trainer.noise_multiplier == noise_for(
        target_epsilon=1.0, delta=DELTA, sample_rate=0.25, steps=20, accountant=accountant
    )
    epsilons = [r.epsilon for r in _run(trainer, rounds)]
    assert all(e is not None for e in epsilons)
    assert epsilons == sorted(epsilons)  # type: ignore[type-var]
    final = epsilons[-1]
    assert final is not None and 0.99 <= final <= 1.0
    # Planned rounds are a budget: one more would overspend, so it is refused.
    with pytest.raises(PrivacyError, match=r"run\.rounds"):
        trainer.train(_start(), rounds)


def test_given_noise_multiplier_has_no_round_limit() -> None:
    trainer = _trainer(_dp(noise_multiplier=2.0), rounds=1)
    results = _run(trainer, 2)
    assert results[1].epsilon == _fresh("rdp", 2.0, 0.25, 8)


def test_unreachable_target_names_the_client_and_key() -> None:
    with pytest.raises(PrivacyError, match=r"client 'h1'.*privacy\.target_epsilon") as info:
        _trainer(_dp(target_epsilon=0.05))
    assert "\n" not in str(info.value)


# --- (3) determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("privacy", [PrivacySection(), _dp(noise_multiplier=1.0)])
def test_same_seed_same_update_bit_for_bit(privacy: PrivacySection) -> None:
    params = _start()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state(legacy=False)
    a = _trainer(privacy, seed=5).train(params, 2)
    b = _trainer(privacy, seed=5).train(params, 2)
    assert a.update.dtype == np.float32
    assert np.array_equal(a.update, b.update) and a.train_loss == b.train_loss
    assert not np.array_equal(a.update, _trainer(privacy, seed=6).train(params, 2).update)
    # The caller's random state is left alone.
    assert torch.equal(torch.get_rng_state(), torch_state)
    np_after = np.random.get_state(legacy=False)
    assert np.array_equal(np_after["state"]["key"], np_state["state"]["key"])
    assert np_after["state"]["pos"] == np_state["state"]["pos"]


def test_asking_for_the_same_round_twice_is_refused() -> None:
    trainer = _trainer(_dp(noise_multiplier=1.0))
    params = _start()
    trainer.train(params, 4)
    for again in (4, 3):
        with pytest.raises(PrivacyError, match="already trained round 4"):
            trainer.train(params, again)
    assert trainer.rounds_trained == 1  # the refused calls spent nothing


def test_two_rounds_from_the_same_model_draw_independent_noise() -> None:
    # The replay attack of issue #6: a server sends the same global model twice and
    # subtracts the two updates. With noise seeded per call, the difference keeps the noise
    # of both: std = sqrt(2) * lr * sigma * C * sqrt(steps) / B per coordinate.
    sigma, clip, lr, batch = 50.0, 1.0, 0.1, 10
    trainer = _trainer(
        _dp(noise_multiplier=sigma, max_grad_norm=clip), rounds=2, lr=lr, batch_size=batch
    )
    params = _start()
    first = trainer.train(params, 0)
    second = trainer.train(params, 1)
    expected = np.sqrt(2) * lr * sigma * clip * np.sqrt(trainer.steps_per_round) / batch
    ratio = float(np.std(first.update - second.update)) / expected
    assert 0.5 < ratio < 1.5


# --- (4) DP really clips and really adds noise --------------------------------------------------


def test_update_is_exactly_one_step_on_clipped_per_example_gradients() -> None:
    # q = 1 (every record in the one batch) and negligible noise: the update must be
    # -lr * mean_i clip(g_i, C), with g_i each record's own gradient. From all-zero weights
    # every prediction is 50/50, so each raw gradient is about |x|/2: far above C.
    data = _client(40, scale=20.0)
    lr, clip = 0.5, 0.01
    trainer = _trainer(
        _dp(noise_multiplier=1e-9, max_grad_norm=clip), data=data, batch_size=40, lr=lr
    )
    params = np.zeros_like(_start())
    update = trainer.train(params, 0).update

    model = _factory()()
    set_flat_params(model, params)
    clipped = []
    for x, y in zip(data.X_train, data.y_train, strict=True):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)[None]), torch.tensor([y]))
        loss.backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])  # type: ignore[union-attr]
        assert float(g.norm()) > 10 * clip
        clipped.append(g * min(1.0, clip / (float(g.norm()) + 1e-6)))
    expected = -lr * torch.stack(clipped).mean(0).numpy()
    np.testing.assert_allclose(update, expected, rtol=1e-4, atol=1e-7)
    assert np.linalg.norm(update) <= lr * clip * (1 + 1e-4)

    plain = _trainer(data=data, batch_size=40, lr=lr).train(params, 0).update
    assert np.linalg.norm(plain) > 100 * np.linalg.norm(update)


def test_huge_noise_dominates_the_update_at_the_expected_scale() -> None:
    # Each of the 4 steps adds N(0, (σC)^2) to the gradient sum, divided by the expected
    # batch size 10 and scaled by -lr: per coordinate std = lr·σ·C·sqrt(4)/10.
    sigma, clip, lr = 1e4, 1.0, 0.1
    expected_std = lr * sigma * clip * 2 / 10
    updates = np.concatenate(
        [
            _trainer(_dp(noise_multiplier=sigma, max_grad_norm=clip), lr=lr, seed=s)
            .train(_start(), 0)
            .update
            for s in range(8)
        ]
    )
    assert abs(updates.std() / expected_std - 1) < 0.15
    assert abs(updates.mean()) < 0.2 * expected_std
    # Without noise the same four clipped steps move the parameters by at most
    # 4 · lr · C · (40 / 10) in norm: the noise is orders of magnitude above that.
    assert np.abs(updates).max() > 100 * 4 * lr * clip * 4


# --- (5) it learns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("privacy", "optimizer", "min_accuracy"),
    [
        (PrivacySection(), "sgd", 0.95),
        (PrivacySection(), "adam", 0.95),
        (_dp(noise_multiplier=0.8, max_grad_norm=1.0), "sgd", 0.9),
    ],
)
def test_training_on_a_separable_problem_reduces_loss(
    privacy: PrivacySection, optimizer: str, min_accuracy: float
) -> None:
    trainer = _trainer(privacy, rounds=8, optimizer=optimizer, lr=0.1, momentum=0.0)
    model = _factory()()
    before = evaluate(model, *_blobs(200, seed=9))
    params = _start()
    results = _run(trainer, 8, params)
    set_flat_params(model, params + np.sum([r.update for r in results], axis=0))
    after = evaluate(model, *_blobs(200, seed=9))
    assert results[-1].train_loss < results[0].train_loss
    assert after["loss"] < before["loss"]
    assert after["accuracy"] >= min_accuracy


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_dp_works_with_every_built_in_model(name: str) -> None:
    n_features = 64 if name == "cnn" else N_FEATURES
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, n_features)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    data = ClientData("c", X, y, X[:4], y[:4])
    factory = _factory(name, n_features)
    trainer = _trainer(
        _dp(noise_multiplier=1.0), data=data, factory=factory, optimizer="adam", lr=0.01
    )
    result = trainer.train(_start(factory), 0)
    assert result.update.shape == _start(factory).shape
    assert np.all(np.isfinite(result.update)) and result.epsilon is not None


def test_a_model_opacus_cannot_handle_is_refused_in_dp_mode() -> None:
    def factory() -> nn.Module:
        return nn.Sequential(nn.Linear(N_FEATURES, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    with pytest.raises(PrivacyError, match="DP-SGD") as info:
        _trainer(_dp(noise_multiplier=1.0), factory=factory)
    assert "\n" not in str(info.value)
    _trainer(factory=factory)  # fine without DP


# --- (6) bad settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("privacy", "training", "rounds", "key"),
    [
        (_dp(target_epsilon=-1.0), {}, 3, "privacy.target_epsilon"),
        (_dp(noise_multiplier=0.0), {}, 3, "privacy.noise_multiplier"),
        (_dp(noise_multiplier=1.0, delta=1.0), {}, 3, "privacy.delta"),
        (_dp(noise_multiplier=1.0, delta=0.0), {}, 3, "privacy.delta"),
        (_dp(noise_multiplier=1.0, target_epsilon=1.0), {}, 3, "exactly one"),
        (_dp(), {}, 3, "exactly one"),
        (_dp(noise_multiplier=1.0, accountant="moments"), {}, 3, "privacy.accountant"),
        (_dp(noise_multiplier=1.0, max_grad_norm=0.0), {}, 3, "privacy.max_grad_norm"),
        (PrivacySection(mode="central-dp"), {}, 3, "privacy.mode"),
        (PrivacySection(), {"batch_size": 0}, 3, "training.batch_size"),
        (PrivacySection(), {"batch_size": -4}, 3, "training.batch_size"),
        (PrivacySection(), {"local_epochs": 0}, 3, "training.local_epochs"),
        (PrivacySection(), {"optimizer": "rmsprop"}, 3, "training.optimizer"),
        (PrivacySection(), {"lr": -0.1}, 3, "training.lr"),
        (_dp(noise_multiplier=1.0), {}, 0, "run.rounds"),
    ],
)
def test_bad_settings_raise_a_one_line_config_error(
    privacy: PrivacySection, training: dict[str, Any], rounds: int, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _trainer(privacy, rounds=rounds, **training)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_a_client_without_training_data_is_a_data_error() -> None:
    empty = ClientData("e", np.zeros((0, N_FEATURES)), np.zeros(0, np.int64), *_blobs(4))
    with pytest.raises(DataError, match="'e' has no training samples"):
        _trainer(data=empty)


def test_divergence_is_reported_with_the_setting_to_change() -> None:
    with pytest.raises(ConfigError, match=r"diverged.*training\.lr"):
        _trainer(data=_client(scale=1e20), lr=1e30).train(_start(), 0)


# --- (8) bad global parameters ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_global_params_are_refused(bad: float) -> None:
    params = _start()
    params[3] = bad
    with pytest.raises(DataError, match=r"client 'h1', round 0: .*NaN/inf.*index 3") as info:
        _trainer(_dp(noise_multiplier=1.0)).train(params, 0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "params",
    [np.zeros(5, np.float32), np.zeros((2, 11), np.float32), np.zeros(22, np.int64)],
)
def test_misshapen_global_params_are_refused(params: np.ndarray) -> None:
    with pytest.raises(DataError):
        _trainer().train(params, 0)


# --- (7) evaluate -------------------------------------------------------------------------------


def _linear(weight: list[list[float]], bias: list[float]) -> nn.Module:
    model = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weight))
        model.bias.copy_(torch.tensor(bias))
    return model


def test_evaluate_binary_agrees_with_sklearn() -> None:
    model = _linear([[0.0, 0.0], [1.0, -0.5]], [0.0, 0.2])
    X = np.array([[1, 0], [-1, 0], [0.5, 2], [2, 1], [-0.3, -1], [0, 0]], dtype=np.float32)
    y = np.array([1, 0, 0, 1, 1, 0])
    logits = X @ np.array([[0.0, 1.0], [0.0, -0.5]]) + np.array([0.0, 0.2])
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    model.train()
    metrics = evaluate(model, X, y)
    assert model.training  # mode restored
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, prob.argmax(1)))
    # Margins 1.2, -0.8, -0.3, 1.7, 0.4, 0.2: only the last row (a negative) is on the wrong
    # side of 0, yet every positive outranks every negative.
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, prob[:, 1])) == 1.0
    assert metrics["loss"] == pytest.approx(log_loss(y, prob), rel=1e-5)


def test_evaluate_multiclass_and_single_class_have_no_auc() -> None:
    model = _linear([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], [0.0, 0.0, 0.0])
    X = np.array([[2, 0], [0, 2], [-2, -2], [1, 3]], dtype=np.float32)
    metrics = evaluate(model, X, np.array([0, 1, 2, 0]))
    assert metrics["accuracy"] == 0.75 and "auc" not in metrics
    binary = _linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    single = evaluate(binary, X[:2], np.array([1, 1]))
    assert single["accuracy"] == 0.5 and "auc" not in single


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros((0, 2), np.float32), np.zeros(0, np.int64), "empty"),
        (np.zeros((3, 2), np.float32), np.zeros(2, np.int64), "shape"),
        (np.zeros((2, 2), np.float32), np.array([0, 5]), "class indices"),
        (np.zeros((2, 2), np.float32), np.array([0.0, 1.0]), "integer"),
    ],
)
def test_evaluate_rejects_bad_input(X: np.ndarray, y: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        evaluate(_linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]), X, y)
