"""Membership inference: metrics on hand-made examples, and attacks on a small overfit model.

Setting: 120 synthetic records (50 features, labels from a noisy linear rule, so a model can
only fit them by memorising), a target MLP trained through the pipeline's LocalTrainer on a
random half (60 members, 60 non-members). Everything is seeded, so the AUCs are fixed numbers;
tolerances are stated in terms of the AUC's sampling error under the null hypothesis.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from attacks.inference import (
    LiraAttack,
    logit_confidence,
    loss_scores,
    noisy_sum_shadow_trainer,
    pipeline_shadow_trainer,
    plot_roc,
    roc,
    tpr_at_fpr,
)
from secagg.config import PrivacySection, TrainingSection
from secagg.data import ClientData
from secagg.errors import ConfigError, DataError
from secagg.models import build_model, get_flat_params, set_flat_params
from secagg.training import LocalTrainer

N, D = 120, 50
TRAINING = TrainingSection(local_epochs=100, batch_size=25, lr=0.05, optimizer="adam")
STRONG_DP = PrivacySection(mode="local-dp", noise_multiplier=50.0, max_grad_norm=1.0)


def null_auc_se(n_members: int, n_nonmembers: int) -> float:
    """Std of the AUC (Mann-Whitney U / n1 n2) when both score sets share one distribution."""
    return math.sqrt((n_members + n_nonmembers + 1) / (12 * n_members * n_nonmembers))


def dp_auc_bound(epsilon: float, delta: float) -> float:
    """Largest AUC any attack can reach on an (ε, δ)-DP mechanism.

    The ROC of any test is below min(e^ε fpr + δ, 1 − e^-ε (1 − δ − fpr)) (Kairouz et al.,
    ICML 2015, hypothesis-testing view of DP); integrate that curve.
    """
    fpr = np.linspace(0.0, 1.0, 100_001)
    tpr = np.minimum.reduce(
        [
            math.exp(epsilon) * fpr + delta,
            1 - math.exp(-epsilon) * (1 - delta - fpr),
            np.ones_like(fpr),
        ]
    )
    tpr = np.maximum(tpr, fpr)  # an attack can always do as well as guessing
    return float(np.sum((tpr[1:] + tpr[:-1]) / 2 * np.diff(fpr)))  # trapezoid rule


def model_factory() -> torch.nn.Module:
    return build_model("mlp", D, 2, hidden=(64,), seed=1)


def as_model(params: np.ndarray) -> torch.nn.Module:
    model = model_factory()
    set_flat_params(model, params)
    return model


@pytest.fixture(scope="module")
def population() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records, labels, and which records the target trains on."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)).astype(np.float32)
    y = ((X @ rng.normal(size=D) + 3.0 * rng.normal(size=N)) > 0).astype(np.int64)
    members = rng.random(N) < 0.5
    return X, y, members


@pytest.fixture(scope="module")
def target(population: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    X, y, members = population
    return pipeline_shadow_trainer(model_factory, TRAINING, PrivacySection(), seed=99)(
        X[members], y[members]
    )


# --------------------------------------------------------------------------- metrics


def test_roc_and_tpr_at_fpr_on_a_hand_made_example() -> None:
    # Thresholds >= 2: TPR 1/2, FPR 0; >= 1: TPR 1, FPR 1/2 (a tie); >= 0: both 1.
    fpr, tpr, auc = roc(np.array([2.0, 1.0]), np.array([1.0, 0.0]))
    assert auc == pytest.approx(3.5 / 4)  # 3 wins and one tie out of 4 pairs
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(0.5)  # the best point at FPR 0
    assert tpr_at_fpr(fpr, tpr, 0.25) == pytest.approx(0.75)  # halfway to (0.5, 1)
    assert tpr_at_fpr(fpr, tpr, 0.5) == pytest.approx(1.0)
    assert tpr_at_fpr(fpr, tpr, 1.0) == pytest.approx(1.0)


def test_tpr_at_fpr_takes_the_top_of_a_vertical_step() -> None:
    fpr = np.array([0.0, 0.0, 0.0, 0.2, 0.2, 1.0])
    tpr = np.array([0.0, 0.1, 0.3, 0.3, 0.9, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(0.3)
    assert tpr_at_fpr(fpr, tpr, 0.1) == pytest.approx(0.6)  # between (0, 0.3) and (0.2, 0.9)
    assert tpr_at_fpr(fpr, tpr, 0.6) == pytest.approx(0.95)
    with pytest.raises(ConfigError):
        tpr_at_fpr(fpr, tpr, 1.5)


def test_roc_refuses_empty_or_nan_scores() -> None:
    with pytest.raises(DataError):
        roc(np.array([]), np.array([1.0]))
    with pytest.raises(DataError):
        roc(np.array([np.nan]), np.array([1.0]))


def test_plot_roc_writes_a_png(tmp_path: Path) -> None:
    curve = roc(np.array([2.0, 1.0, 0.5]), np.array([1.0, 0.0, -1.0]))
    out = plot_roc({"toy": curve}, tmp_path / "roc.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_logit_confidence_is_log_odds_of_the_true_class() -> None:
    model = build_model("logreg", 3, 3, seed=0)
    X = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    p = torch.softmax(model(torch.from_numpy(X)).double(), dim=1).detach().numpy()[range(5), y]
    np.testing.assert_allclose(logit_confidence(model, X, y), np.log(p / (1 - p)), rtol=1e-5)


# --------------------------------------------------------------------------- attacks


def test_loss_attack_is_chance_when_members_and_nonmembers_look_alike(
    population: tuple[np.ndarray, np.ndarray, np.ndarray], target: np.ndarray
) -> None:
    # Two fresh, disjoint sets of records the target never saw, labelled "members" and
    # "non-members": the scores share one distribution, so AUC ~ 0.5 within 3 null std.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(1000, D)).astype(np.float32)
    y = rng.integers(0, 2, size=1000)
    scores = loss_scores(as_model(target), X, y)
    _, _, auc = roc(scores[:500], scores[500:])
    print(f"loss attack, same distribution: AUC {auc:.3f}")
    assert abs(auc - 0.5) <= 3 * null_auc_se(500, 500)  # 3 x 0.018


def test_loss_and_lira_attacks_on_an_overfit_model(
    population: tuple[np.ndarray, np.ndarray, np.ndarray], target: np.ndarray
) -> None:
    X, y, members = population
    se = null_auc_se(int(members.sum()), int((~members).sum()))
    loss = loss_scores(as_model(target), X, y)
    # scores are -loss: the per-record cross-entropy is their negation
    assert np.all(loss <= 0)
    fpr, tpr, auc_loss = roc(loss[members], loss[~members])
    tpr_loss = tpr_at_fpr(fpr, tpr, 0.05)

    shadow = pipeline_shadow_trainer(model_factory, TRAINING, PrivacySection(), seed=5)
    attack = LiraAttack(X, y, shadow, model_factory, n_shadows=16, seed=3).fit()
    assert np.all(
        attack.keep.sum(axis=0) == attack.n_shadows // 2
    )  # every record IN for half the shadows
    online = attack.scores(target)
    offline = attack.scores(target, online=False)
    fpr, tpr, auc_online = roc(online[members], online[~members])
    tpr_online = tpr_at_fpr(fpr, tpr, 0.05)
    _, _, auc_offline = roc(offline[members], offline[~members])
    print(
        f"overfit: loss AUC {auc_loss:.3f} (TPR@5%FPR {tpr_loss:.3f}), LiRA online AUC "
        f"{auc_online:.3f} (TPR@5%FPR {tpr_online:.3f}), offline AUC {auc_offline:.3f}"
    )
    assert auc_loss > 0.5 + 4 * se  # clearly better than chance (se ~ 0.053)
    assert auc_offline > 0.5 + 4 * se
    assert auc_online >= auc_loss
    assert tpr_online >= tpr_loss  # the low-FPR regime LiRA is designed for
    np.testing.assert_array_equal(attack.scores(target, indices=[3, 1]), online[[3, 1]])


def test_strong_dp_pushes_the_loss_attack_toward_chance(
    population: tuple[np.ndarray, np.ndarray, np.ndarray], target: np.ndarray
) -> None:
    X, y, members = population
    loss = loss_scores(as_model(target), X, y)
    _, _, auc_plain = roc(loss[members], loss[~members])

    dp_params = pipeline_shadow_trainer(model_factory, TRAINING, STRONG_DP, seed=99)(
        X[members], y[members]
    )
    loss = loss_scores(as_model(dp_params), X, y)
    _, _, auc_dp = roc(loss[members], loss[~members])
    # ε of that training run, from the pipeline's own accountant
    data = ClientData(
        "t", X[members], y[members], np.zeros((0, D), np.float32), np.zeros(0, np.int64)
    )
    trainer = LocalTrainer(data, model_factory, TRAINING, STRONG_DP, rounds=1, seed=0)
    trainer.train(np.zeros(sum(p.numel() for p in model_factory().parameters()), "f4"), 0)
    epsilon = trainer.epsilon()
    assert epsilon is not None
    bound = dp_auc_bound(epsilon, STRONG_DP.delta)
    se = null_auc_se(int(members.sum()), int((~members).sum()))
    print(
        f"loss attack: AUC {auc_plain:.3f} without DP, {auc_dp:.3f} with σ = 50 "
        f"(ε = {epsilon:.2f}, DP bound on AUC {bound:.3f})"
    )
    # One seed pair, so each AUC carries a sampling error of ~se = 0.053 (60 vs 60 records).
    # DP caps the *expected* AUC at `bound`; allow 3 se of sampling error above it, and ask
    # that DP removes most of the leak: within 3 se of chance and well below the plain AUC.
    assert auc_dp <= bound + 3 * se
    assert abs(auc_dp - 0.5) <= 3 * se
    assert auc_plain - auc_dp >= 3 * se


def test_lira_refuses_too_few_shadows_and_scores_before_fit(
    population: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, y, _ = population

    def never(X: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise AssertionError("not trained")

    with pytest.raises(ConfigError):
        LiraAttack(X, y, never, model_factory, n_shadows=1)
    with pytest.raises(ConfigError, match="fit"):
        LiraAttack(X, y, never, model_factory, n_shadows=2).scores(np.zeros(3, "f4"))


def test_membership_auc_falls_as_epsilon_falls_and_is_near_chance_at_epsilon_below_one(
    population: tuple[np.ndarray, np.ndarray, np.ndarray], target: np.ndarray
) -> None:
    # The same target training at decreasing ε (larger σ), scored by the loss attack. One
    # seed, so each AUC is a fixed number; the trend must hold point to point, and at
    # ε < 1 the AUC must be within the DP bound on any attack's AUC.
    from secagg.privacy import epsilon_for
    from secagg.privacy.accounting import dp_sgd_schedule

    X, y, members = population
    q, steps = dp_sgd_schedule(int(members.sum()), TRAINING.batch_size, TRAINING.local_epochs)
    aucs, epsilons = [], []
    for sigma in (None, 1.5, 4.0, 50.0):
        if sigma is None:
            params, eps = target, math.inf
        else:
            privacy = PrivacySection(mode="local-dp", noise_multiplier=sigma, max_grad_norm=1.0)
            params = pipeline_shadow_trainer(model_factory, TRAINING, privacy, seed=99)(
                X[members], y[members]
            )
            eps = epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5)
        scores = loss_scores(as_model(params), X, y)
        aucs.append(roc(scores[members], scores[~members])[2])
        epsilons.append(eps)
    assert epsilons == sorted(epsilons, reverse=True)
    assert all(a > b for a, b in itertools.pairwise(aucs)), aucs
    assert epsilons[-1] < 1
    assert aucs[-1] <= dp_auc_bound(epsilons[-1], 1e-5) + 3 * null_auc_se(60, 60)


def test_a_noisy_sum_shadow_steps_along_the_mean_clipped_gradient(
    population: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """DP-FedSGD's shadow: without noise and with every record drawn (q = 1), one round is
    one step of −lr times the mean of the records' gradients, each clipped to the clip."""
    X, y, _ = population
    X, y = X[:20], y[:20]

    def factory() -> torch.nn.Module:
        return build_model("logreg", D, 2, seed=4)

    clip, lr = 0.5, 0.3
    train = noisy_sum_shadow_trainer(
        factory, rounds=1, lr=lr, sample_rate=1.0, noise_std=0.0, clip=clip, seed=0
    )
    model = factory()
    start = get_flat_params(model)
    clipped = []
    for i in range(len(y)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(
            model(torch.from_numpy(X[i : i + 1])), torch.from_numpy(y[i : i + 1])
        ).backward()
        grads = [p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]
        g = torch.cat(grads).double().numpy()
        clipped.append(g * min(1.0, clip / np.linalg.norm(g)))
    expected = start - lr * np.mean(clipped, axis=0)
    np.testing.assert_allclose(train(X, y), expected, atol=1e-6)
    # With the run's noise on the mean, shadows differ call by call, reproducibly by seed.
    noisy = [
        noisy_sum_shadow_trainer(
            factory, rounds=2, lr=lr, sample_rate=0.5, noise_std=0.1, clip=clip, seed=1
        )
        for _ in range(2)
    ]
    first, second = noisy[0](X, y), noisy[0](X, y)
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(noisy[1](X, y), first)
    with pytest.raises(ConfigError):
        noisy_sum_shadow_trainer(
            factory, rounds=1, lr=lr, sample_rate=0.0, noise_std=0.0, clip=clip
        )
