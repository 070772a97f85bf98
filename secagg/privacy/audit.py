"""Empirical lower bounds on ε: does the DP-SGD we run leak more than the accountant says?

An accountant gives an *upper* bound on ε, computed from the noise the code is believed to
add. An audit attacks the trained model and turns the attack's success into a
high-confidence *lower* bound on ε. The two must be ordered, lower ≤ upper; a lower bound
above the accountant's ε proves a bug (in the training code or in the accounting), e.g.
noise that is counted but never added. A lower bound well below the accountant's ε proves
nothing: audits of DP-SGD through the final model only are known to be loose.

Three pieces:

* :func:`epsilon_lower_bound`: the classic bound from an attack's true/false positive
  counts over many independent trials, with exact (Clopper–Pearson) confidence intervals.
* :func:`one_run_epsilon_lower_bound`: the one-run audit of Steinke, Nasr and Jagielski,
  in which m canaries are each included with probability 1/2 in *one* training run.
  Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023.
* :func:`audit_dp_sgd`: that one-run audit applied end to end to
  :class:`secagg.training.LocalTrainer` on a small synthetic task, honest or with the noise
  deliberately switched off while the accountant still counts σ (the bug it must catch).
* :func:`audit_noisy_sum`: the same audit of DP on the sum (``privacy.mode`` central-dp or
  distributed-dp, DP-FedSGD) through the whole pipeline, :func:`~secagg.simulation.run_simulation`
  with its integer encoding, secure sum and accountant, on a few hospitals; honest, or with
  the clients' noise shares switched off while the accountant still counts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from opacus.optimizers import DPOptimizer
from scipy import special, stats
from torch import nn

from secagg.config import SUM_MODES, PrivacySection, TrainingSection
from secagg.data import ClientData, FederatedDataset
from secagg.errors import PrivacyError
from secagg.models import LogisticRegression, get_flat_params, set_flat_params
from secagg.training import LocalTrainer

# Bisection steps for the one-run bound: the bracket [0, hi] with hi <= 2**10 is narrowed
# to well below 1e-9, far finer than any ε worth reporting.
_BISECTION_STEPS = 60


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise PrivacyError(f"confidence must be a number, got {confidence!r}")
    if not 0 < confidence < 1:
        raise PrivacyError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_delta(delta: float) -> None:
    if isinstance(delta, bool) or not isinstance(delta, int | float):
        raise PrivacyError(f"delta must be a number, got {delta!r}")
    if not 0 <= delta < 1:
        raise PrivacyError(f"delta must be in [0, 1), got {delta!r}")


def _check_count(name: str, value: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise PrivacyError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def clopper_pearson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """One-sided exact bounds (lower, upper) on a binomial rate, each at ``confidence``.

    The lower bound is the ``1 − confidence`` quantile of Beta(x, n − x + 1) (0 when x = 0),
    the upper bound the ``confidence`` quantile of Beta(x + 1, n − x) (1 when x = n): exact,
    hence valid for any n, unlike a normal approximation that breaks at rates near 0 or 1,
    which is precisely where a strong attack lives.
    """
    x = _check_count("successes", successes)
    n = _check_count("trials", trials, 1)
    if x > n:
        raise PrivacyError(f"successes ({x}) cannot exceed trials ({n})")
    _check_confidence(confidence)
    lower = 0.0 if x == 0 else float(stats.beta.ppf(1 - confidence, x, n - x + 1))
    upper = 1.0 if x == n else float(stats.beta.ppf(confidence, x + 1, n - x))
    return lower, upper


def epsilon_lower_bound(
    tpr: int,
    fpr: int,
    delta: float,
    trials_pos: int,
    trials_neg: int,
    confidence: float = 0.95,
) -> float:
    """ε that an attack's counts prove at ``confidence`` for a claimed (ε, δ)-DP mechanism.

    ``tpr`` and ``fpr`` are COUNTS, not rates: ``tpr`` attacks said "member" out of
    ``trials_pos`` runs where the record was in, ``fpr`` said "member" out of ``trials_neg``
    runs where it was out (counts make the intervals exact). (ε, δ)-DP forces every test to
    satisfy TPR ≤ e^ε·FPR + δ and 1 − FPR ≤ e^ε·(1 − TPR) + δ, so

        ε ≥ max(log((TPR − δ) / FPR), log((1 − FPR − δ) / (1 − TPR))).

    Plugging in a Clopper–Pearson LOWER bound on TPR and UPPER bound on FPR makes the result
    itself a lower bound with probability ≥ ``confidence``: each one-sided interval is taken
    at 1 − (1 − confidence)/2 so that both hold together (union bound). Returns 0.0 when the
    counts give no evidence against ε = 0.
    """
    _check_delta(delta)
    _check_confidence(confidence)
    per_bound = 1 - (1 - confidence) / 2
    tpr_low, _ = clopper_pearson(tpr, trials_pos, per_bound)
    _, fpr_high = clopper_pearson(fpr, trials_neg, per_bound)
    best = 0.0
    # fpr_high > 0 and tpr_low < 1 always (finite trials), so both ratios are finite.
    if tpr_low - delta > 0:
        best = max(best, math.log((tpr_low - delta) / fpr_high))
    if 1 - fpr_high - delta > 0:
        best = max(best, math.log((1 - fpr_high - delta) / (1 - tpr_low)))
    return best


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """P[≥ v correct of r guesses] allowed by (ε, δ)-DP with m canaries (Steinke et al.).

    For δ = 0 their Theorem 3.1: the number of correct guesses is stochastically dominated
    by Binomial(r, e^ε / (1 + e^ε)), the accuracy of ε-randomized response, so the p-value
    is that binomial's upper tail at v. For δ > 0 their Appendix D adds 2·m·δ·α with
    α = max over i in 1..v of P[v − i ≤ Binomial(r, p) < v] / i (transcribed from the
    paper's listing as reproduced in public code; the arXiv text was not at hand to check).
    """
    m = _check_count("m", m)
    r = _check_count("r", r)
    v = _check_count("v", v)
    if not v <= r <= m:
        raise PrivacyError(f"need correct <= guesses <= canaries, got {v}, {r}, {m}")
    _check_delta(delta)
    p = float(special.expit(epsilon))  # e^ε / (1 + e^ε) without overflow
    tail = float(stats.binom.sf(v - 1, r, p))
    if delta == 0 or v == 0:
        return min(1.0, tail)
    # P[v − i ≤ B < v] = cdf(v − 1) − cdf(v − i − 1), for i = 1..v
    i = np.arange(1, v + 1)
    window = stats.binom.cdf(v - 1, r, p) - stats.binom.cdf(v - i - 1, r, p)
    alpha = float(np.max(window / i))
    return min(1.0, tail + alpha * delta * 2 * m)


def one_run_epsilon_lower_bound(
    scores: np.ndarray,
    included: np.ndarray,
    k_pos: int,
    k_neg: int,
    confidence: float = 0.95,
    delta: float = 0.0,
) -> float:
    """ε lower bound of the one-run audit from per-canary scores (higher = "more likely in").

    Steinke, Nasr & Jagielski (NeurIPS 2023): each of the m canaries was included in
    training independently with probability 1/2 (``included``). The auditor guesses "in" for
    the ``k_pos`` highest scores and "out" for the ``k_neg`` lowest, abstains on the rest,
    and counts v correct guesses out of r = k_pos + k_neg. The bound is the largest ε whose
    p-value (:func:`one_run_p_value`) for v is still ≤ 1 − ``confidence``: every smaller ε is
    rejected. δ = 0 is their exact randomized-response bound; δ > 0 uses their Appendix D
    correction (negligible when m·δ is small). Returns 0.0 when even ε = 0 is not rejected.

    ``k_pos`` and ``k_neg`` must be fixed before looking at the result: trying many and
    keeping the best would need a multiple-testing correction that is not applied here.
    Ties among scores are broken by canary index, which is independent of inclusion.
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included)
    if s.ndim != 1 or inc.shape != s.shape:
        raise PrivacyError(
            f"scores and included must be 1-D of equal length, got {s.shape} and {inc.shape}"
        )
    if inc.dtype != np.bool_:
        raise PrivacyError(f"included must be a boolean array, got dtype {inc.dtype}")
    if not np.all(np.isfinite(s)):
        raise PrivacyError("scores must be finite")
    m = len(s)
    k_pos = _check_count("k_pos", k_pos)
    k_neg = _check_count("k_neg", k_neg)
    if k_pos + k_neg > m:
        raise PrivacyError(f"k_pos + k_neg = {k_pos + k_neg} guesses exceed the {m} canaries")
    _check_confidence(confidence)
    _check_delta(delta)
    if k_pos + k_neg == 0:
        return 0.0
    correct = _correct_guesses(s, inc, k_pos, k_neg)
    return _one_run_bound(m, k_pos + k_neg, correct, 1 - confidence, delta)


def _one_run_bound(m: int, r: int, v: int, level: float, delta: float) -> float:
    """sup{ε ≥ 0 : p-value(ε) ≤ level}, by bisection, as the paper's own listing does.

    The δ = 0 p-value increases with ε (a binomial tail in p = e^ε/(1 + e^ε)); with δ > 0
    the bisection, like the paper's, takes the corrected p-value to be increasing too.
    """
    if one_run_p_value(m, r, v, 0.0, delta) > level:
        return 0.0
    lo, hi = 0.0, 1.0  # invariant: p(lo) <= level < p(hi)
    while one_run_p_value(m, r, v, hi, delta) <= level:
        lo, hi = hi, 2 * hi
        if hi > 2**10:  # unreachable: p-value → 1 as ε → ∞ (guards against a float quirk)
            return lo
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        if one_run_p_value(m, r, v, mid, delta) <= level:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class AuditResult:
    """Outcome of :func:`audit_dp_sgd`: the audit's lower bound next to the accountant's ε."""

    epsilon_lower_bound: float  # one-run bound, holds with probability >= confidence
    epsilon_accountant: float  # what the trainer reports (an upper bound if the code is right)
    noise_multiplier: float  # σ the accountant counted
    noise_added: bool  # False in the deliberately broken configuration
    canaries: int  # m
    included: int  # canaries actually inserted
    guesses: int  # r = k_pos + k_neg
    correct: int  # v
    delta: float
    confidence: float


def gaussian_mu(epsilon: float, delta: float) -> float:
    """μ of the Gaussian mechanism that is exactly (ε, δ)-DP (Balle & Wang 2018):
    δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2), solved for μ by bisection."""
    _check_delta(delta)
    if not 0 < epsilon < 100 or delta == 0:
        raise PrivacyError(f"the ceiling needs 0 < ε < 100 and δ > 0, got ({epsilon}, {delta})")

    def delta_of(mu: float) -> float:
        return float(
            stats.norm.cdf(-epsilon / mu + mu / 2)
            - math.exp(epsilon) * stats.norm.cdf(-epsilon / mu - mu / 2)
        )

    lo, hi = 1e-6, 1.0
    while delta_of(hi) < delta:
        hi *= 2
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) < delta else (lo, mid)
    return lo


def audit_ceiling(
    epsilon: float,
    delta: float,
    canaries: int,
    k_pos: int,
    k_neg: int,
    confidence: float = 0.95,
) -> float:
    """What the one-run audit would certify of a mechanism that spends *exactly* (ε, δ).

    The ideal observation of an exactly (ε, δ)-DP Gaussian mechanism (μ-GDP, :func:`gaussian_mu`)
    scores each canary N(μ, 1) if it was included and N(0, 1) if not, each with probability
    1/2. The auditor guesses "in" for the ``k_pos`` highest of the m scores and "out" for the
    ``k_neg`` lowest, so its expected right guesses are those of the score quantiles that
    cut off k_pos/m and k_neg/m of that mixture (exact as m grows). The ceiling is the bound
    :func:`one_run_epsilon_lower_bound` certifies from that count: an audited bound well
    below it says the audit is weak, not that the mechanism is more private than claimed.
    """
    m = _check_count("canaries", canaries, 1)
    pos, neg = _check_count("k_pos", k_pos), _check_count("k_neg", k_neg)
    r = pos + neg
    if not 0 < r <= m:
        raise PrivacyError(f"k_pos + k_neg = {r} guesses must be in [1, {m}]")
    _check_confidence(confidence)
    mu = gaussian_mu(epsilon, delta)
    norm = stats.norm

    def above(t: float) -> float:  # P(score > t) under the 50/50 mixture
        return 0.5 * float(norm.sf(t) + norm.sf(t - mu))

    def below(t: float) -> float:
        return 0.5 * float(norm.cdf(t) + norm.cdf(t - mu))

    def quantile(tail: Callable[[float], float], share: float) -> float:
        lo, hi = -40.0, 40.0 + mu
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            # ``above`` falls with t, ``below`` rises: keep the bracket around tail(t) = share
            if (tail(mid) > share) == (tail is above):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    right = 0.0
    if pos:
        t = quantile(above, pos / m)
        right += pos * 0.5 * float(norm.sf(t - mu)) / above(t)
    if neg:
        t = quantile(below, neg / m)
        right += neg * 0.5 * float(norm.cdf(t)) / below(t)
    return _one_run_bound(m, r, math.floor(right), 1 - confidence, delta)


def _broken_noise(trainer: LocalTrainer, claimed_sigma: float) -> None:
    """Make ``trainer`` add no noise while its accountant still counts ``claimed_sigma``.

    LocalTrainer builds a fresh DPOptimizer every round from ``trainer.noise_multiplier``,
    and the accountant's step hook records ``optimizer.noise_multiplier``. Setting the
    attribute to 0 alone would therefore also zero the accounted σ (ε = ∞, nothing to
    catch), so the accountant's hook factory is replaced on this instance by one that
    records the claimed σ. This reaches into the trainer's private ``_accountant`` on
    purpose: it simulates exactly the bug an audit exists to find.
    """
    accountant = trainer._accountant
    if accountant is None:
        raise PrivacyError("only a DP trainer (privacy.mode = 'local-dp') can be broken")

    def hook_factory(sample_rate: float) -> Callable[[DPOptimizer], None]:
        def hook(optimizer: DPOptimizer) -> None:
            accountant.step(
                noise_multiplier=claimed_sigma,
                sample_rate=sample_rate * optimizer.accumulated_iterations,
            )

        return hook

    accountant.get_optimizer_hook_fn = hook_factory  # shadows the method on this instance
    trainer.noise_multiplier = 0.0


def _correct_guesses(scores: np.ndarray, included: np.ndarray, k_pos: int, k_neg: int) -> int:
    """Correct guesses of "in" for the k_pos top scores and "out" for the k_neg bottom ones."""
    order = np.argsort(-scores, kind="stable")  # descending score, ties by index
    top, bottom = order[:k_pos], order[len(order) - k_neg :]
    return int(included[top].sum()) + int((~included[bottom]).sum())


def audit_dp_sgd(
    noise_multiplier: float | None = None,
    *,
    target_epsilon: float | None = None,
    disable_noise: bool = False,
    canaries: int = 1000,
    real_samples: int = 500,
    features: int = 5,
    rounds: int = 10,
    batch_size: int = 100,
    lr: float = 0.5,
    max_grad_norm: float = 1.0,
    canary_scale: float = 4.0,
    delta: float = 1e-5,
    k_pos: int = 100,
    k_neg: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
) -> AuditResult:
    """One-run audit of :class:`~secagg.training.LocalTrainer`'s DP-SGD (a few seconds).

    Task: ``real_samples`` points of a noisy linear binary problem in ``features``
    dimensions, padded with ``canaries`` extra coordinates that are zero for real data.
    Canary j is the out-of-distribution point ``canary_scale``·e_(features+j) with label 1;
    each is inserted into the client's training set independently with probability 1/2.
    This is a deliberately easy canary for a linear model: only canary j ever has a gradient
    along its own coordinate, so its inclusion shows up in one weight that nothing else
    touches, and without noise included and excluded canaries separate perfectly.

    The client trains ``rounds`` FedAvg rounds alone (the update is applied to the global
    model each round), starting from zero weights. Each canary is scored by minus its
    cross-entropy under the final model (lower loss → more likely included), and the
    one-run bound is computed at the accountant's δ with the Appendix D correction.

    ``disable_noise=True`` builds the trainer normally and then adds no noise while the
    accountant keeps counting σ (see :func:`_broken_noise`): a correct audit must then
    report a lower bound above the claimed ε, given enough canaries.

    Give σ (``noise_multiplier``) or ``target_epsilon``: the latter calibrates σ for this
    audit's own plan (``rounds`` rounds at its sample rate), as the pipeline does per client,
    so the audit checks DP-SGD at the ε a run claims.
    """
    if (noise_multiplier is None) == (target_epsilon is None):
        raise PrivacyError("audit_dp_sgd needs exactly one of noise_multiplier and target_epsilon")
    rng = np.random.default_rng(seed)
    dim = features + canaries
    x_real = rng.standard_normal((real_samples, features))
    w_true = rng.standard_normal(features)
    y_real = (x_real @ w_true + 0.5 * rng.standard_normal(real_samples) > 0).astype(np.int64)
    included = rng.random(canaries) < 0.5
    x_canary = np.zeros((canaries, dim))
    x_canary[np.arange(canaries), features + np.arange(canaries)] = canary_scale
    y_canary = np.ones(canaries, dtype=np.int64)

    x_train = np.concatenate([np.pad(x_real, ((0, 0), (0, canaries))), x_canary[included]])
    y_train = np.concatenate([y_real, y_canary[included]])
    data = ClientData(
        name="audit",
        X_train=x_train,
        y_train=y_train,
        X_val=x_train[:1],
        y_val=y_train[:1],
    )
    privacy = PrivacySection(
        mode="local-dp",
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        delta=delta,
        max_grad_norm=max_grad_norm,
    )
    training = TrainingSection(batch_size=batch_size, lr=lr)

    def factory() -> nn.Module:
        return LogisticRegression(dim, 2)

    trainer = LocalTrainer(data, factory, training, privacy, rounds=rounds, seed=seed)
    sigma = trainer.noise_multiplier
    assert sigma is not None  # local-dp always has σ
    if disable_noise:
        _broken_noise(trainer, sigma)

    model = factory()
    params = np.zeros_like(get_flat_params(model))
    for round_idx in range(rounds):
        params = params + trainer.train(params, round_idx).update
    set_flat_params(model, params)
    with torch.no_grad():
        logits = model(torch.from_numpy(x_canary.astype(np.float32)))
        losses = nn.functional.cross_entropy(logits, torch.from_numpy(y_canary), reduction="none")
    scores = -losses.double().numpy()

    correct = _correct_guesses(scores, included, k_pos, k_neg)
    bound = one_run_epsilon_lower_bound(scores, included, k_pos, k_neg, confidence, delta)
    claimed = trainer.epsilon()
    assert claimed is not None  # local-dp always has an accountant
    return AuditResult(
        epsilon_lower_bound=bound,
        epsilon_accountant=claimed,
        noise_multiplier=sigma,
        noise_added=not disable_noise,
        canaries=canaries,
        included=int(included.sum()),
        guesses=k_pos + k_neg,
        correct=correct,
        delta=delta,
        confidence=confidence,
    )


# --------------------------------------------------------------------------- DP on the sum


@dataclass(frozen=True)
class NoisySumAuditResult(AuditResult):
    """Outcome of :func:`audit_noisy_sum`; ``epsilon_accountant`` is the run's largest ε
    over the hospitals (each canary's ε is its own hospital's, at most that)."""

    mode: str  # central-dp | distributed-dp
    protection: str  # the protection mode the run summed under
    epsilon_by_hospital: tuple[float, ...]  # the run's accountant, per hospital
    noise_shares: int  # honest noise shares the accountant charged each round (min over rounds)
    rounds: int
    sample_rate: float  # the largest hospital's Poisson rate q_h = batch_size / N_h


class _SilentShares:
    """An honest noisy-sum client whose noise share is all zeros: the bug the audit must catch.

    It trains exactly like the client it wraps (the same Poisson batch and clipping); only
    :meth:`noise_share`, which the engine asks each client for, returns zeros. The round still
    completes with every survivor, so the accountant charges the shares it believes were
    added. The engine's ``client_factory`` is the seam: nothing in the library is patched.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.noise_multiplier: float | None = client.noise_multiplier
        self.sample_rate: float = client.sample_rate
        self.steps_per_round: int = client.steps_per_round

    def train(self, global_params: np.ndarray, round_idx: int) -> Any:
        return self.client.train(global_params, round_idx)

    def noise_share(self, count: int, variance: object) -> np.ndarray:
        return np.zeros(count, dtype=np.int64)


def _canary_federation(
    rng: np.random.Generator,
    *,
    hospitals: int,
    canaries: int,
    real_samples: int,
    features: int,
    canary_scale: float,
) -> tuple[FederatedDataset, np.ndarray]:
    """Real data split evenly over ``hospitals``; canary j (included w.p. 1/2) at j mod H."""
    dim = features + canaries
    w_true = rng.standard_normal(features)

    def real(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, features))
        y = (x @ w_true + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
        return np.pad(x, ((0, 0), (0, canaries))), y

    included = rng.random(canaries) < 0.5
    x_real, y_real = real(real_samples)
    clients = []
    for h in range(hospitals):
        mine = np.flatnonzero(included & (np.arange(canaries) % hospitals == h))
        x_canary = np.zeros((len(mine), dim))
        x_canary[np.arange(len(mine)), features + mine] = canary_scale
        x = np.concatenate([x_real[h::hospitals], x_canary])
        y = np.concatenate([y_real[h::hospitals], np.ones(len(mine), dtype=np.int64)])
        clients.append(ClientData(f"hospital-{h}", x, y, x[:1], y[:1]))
    x_test, y_test = real(max(1, real_samples // 2))
    dataset = FederatedDataset(
        clients=clients,
        X_test=x_test,
        y_test=y_test,
        n_features=dim,
        n_classes=2,
        feature_names=[f"x{i}" for i in range(features)] + [f"canary{j}" for j in range(canaries)],
        class_names=["0", "1"],
    )
    return dataset, included


def audit_noisy_sum(
    target_epsilon: float | None = None,
    *,
    noise_multiplier: float | None = None,
    mode: str = "distributed-dp",
    protection: str = "secagg",
    disable_noise: bool = False,
    canaries: int = 1000,
    hospitals: int = 3,
    real_samples: int = 300,
    features: int = 5,
    rounds: int = 10,
    batch_size: int = 150,
    lr: float = 1.0,
    max_grad_norm: float = 1.0,
    canary_scale: float = 4.0,
    delta: float = 1e-5,
    k_pos: int = 100,
    k_neg: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
) -> NoisySumAuditResult:
    """One-run audit of DP on the sum (DP-FedSGD, record unit) through the real pipeline.

    The task is :func:`audit_dp_sgd`'s (a noisy linear problem in ``features`` dimensions,
    padded with one private coordinate per canary; canary j is ``canary_scale``·e_(features+j)
    with label 1, included w.p. 1/2), here split over ``hospitals``: the real rows evenly,
    canary j at hospital j mod ``hospitals``. :func:`~secagg.simulation.run_simulation` trains
    ``model.name = "logreg"`` on it for ``rounds`` rounds with ``privacy.mode = mode``,
    ``privacy.unit = "record"`` and ``protection.mode = protection`` (threshold: every
    hospital; ``privacy.colluding_clients`` at its default): each hospital sums its Poisson
    batch's clipped per-record gradients, encodes them with its integer noise share (or the
    aggregator adds the whole noise, central-dp), the secure sum and the decoding are the
    engine's own, and the accountant is the run's. Give ``target_epsilon`` (the plan
    calibrates z for this run) or ``noise_multiplier``.

    Canary j is scored by how far the final model's margin W[1, c_j] − W[0, c_j] on its own
    coordinate moved from the (public) initial model's; the one-run bound at the run's δ is
    set beside the largest ε the run's accountant reports over the hospitals (each canary's ε
    is its hospital's). Canary inclusion changes its hospital's size N_h and so q_h =
    batch_size / N_h by one part in N_h, as any Poisson-sampled DP-SGD that derives its rate
    from the data does; :func:`audit_dp_sgd` shares that.

    ``disable_noise=True`` (distributed-dp only) wraps every hospital in :class:`_SilentShares`:
    the clients send zero noise shares while the accountant charges the shares it believes
    were added; a correct audit must then report a bound above the claimed ε given enough
    canaries. Central-dp's noise is the aggregator's own draw, which the engine gives no seam
    to switch off.
    """
    from secagg.config import config_from_dict
    from secagg.simulation import run_simulation
    from secagg.simulation.federation import Federation

    if (noise_multiplier is None) == (target_epsilon is None):
        raise PrivacyError(
            "audit_noisy_sum needs exactly one of noise_multiplier and target_epsilon"
        )
    if mode not in SUM_MODES:
        raise PrivacyError(f"audit_noisy_sum audits central-dp or distributed-dp, got {mode!r}")
    if disable_noise and mode != "distributed-dp":
        raise PrivacyError(
            "disable_noise switches off the clients' noise shares: a distributed-dp bug; "
            "central-dp's noise is the aggregator's"
        )
    _check_count("canaries", canaries, 1)
    _check_count("hospitals", hospitals, 1)
    _check_count("real_samples", real_samples, hospitals)
    rng = np.random.default_rng(seed)
    dataset, included = _canary_federation(
        rng,
        hospitals=hospitals,
        canaries=canaries,
        real_samples=real_samples,
        features=features,
        canary_scale=canary_scale,
    )
    privacy: dict[str, Any] = {
        "mode": mode,
        "unit": "record",
        "delta": delta,
        "max_grad_norm": max_grad_norm,
    }
    if target_epsilon is not None:
        privacy["target_epsilon"] = target_epsilon
    else:
        privacy["noise_multiplier"] = noise_multiplier
    config = config_from_dict(
        {
            "run": {"name": "audit-noisy-sum", "seed": seed, "rounds": rounds},
            "data": {"dataset": "synthetic", "clients": hospitals},
            "model": {"name": "logreg"},
            "training": {"local_epochs": 1, "batch_size": batch_size, "lr": lr},
            "privacy": privacy,
            "protection": {"mode": protection, "threshold": hospitals, "expected_dropout": 0.0},
            "aggregation": {"rule": "fedavg"},
        }
    )

    def silent(index: int, data: ClientData, build: Any) -> Any:
        return _SilentShares(build(data))

    if disable_noise:
        result = run_simulation(config, dataset=dataset, client_factory=silent)
    else:
        result = run_simulation(config, dataset=dataset)
    aborted = [r.aborted for r in result.rounds if r.aborted]
    if aborted:
        raise PrivacyError(f"the audited run aborted {len(aborted)} round(s): {aborted[0]}")

    dim = dataset.n_features
    coords = features + np.arange(canaries)

    def margins(params: np.ndarray) -> np.ndarray:
        weight = np.asarray(params[: 2 * dim], dtype=np.float64).reshape(2, dim)
        return np.asarray(weight[1, coords] - weight[0, coords])

    initial = Federation(config, dataset).initial_params()
    scores = margins(result.params) - margins(initial)
    correct = _correct_guesses(scores, included, k_pos, k_neg)
    bound = one_run_epsilon_lower_bound(scores, included, k_pos, k_neg, confidence, delta)
    by_hospital = tuple(float(e) for e in result.final["epsilon"].values() if e is not None)
    sigma = result.clients[0].noise_multiplier
    assert sigma is not None  # the engine sets the plan's z on every client
    return NoisySumAuditResult(
        epsilon_lower_bound=bound,
        epsilon_accountant=max(by_hospital),
        noise_multiplier=sigma,
        noise_added=not disable_noise,
        canaries=canaries,
        included=int(included.sum()),
        guesses=k_pos + k_neg,
        correct=correct,
        delta=delta,
        confidence=confidence,
        mode=mode,
        protection=protection,
        epsilon_by_hospital=by_hospital,
        noise_shares=min(int(r.protection.get("noise_shares", 0)) for r in result.rounds),
        rounds=rounds,
        sample_rate=max(c.sample_rate for c in result.clients),
    )
