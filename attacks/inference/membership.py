"""Membership inference: was a given record in the training set of a released model?

Two attacks, both producing one score per record where *higher means "more likely a member"*,
and the metrics to compare them (ROC, AUC, TPR at a low FPR, a log-log ROC plot):

* Loss threshold: Yeom et al., "Privacy Risk in Machine Learning", CSF 2018.
  Score = −cross-entropy of the record under the target model. Cheap and a useful baseline,
  but it confuses "easy" records with members.
* LiRA: Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022.
  Shadow models trained on random halves of a population calibrate, per record, how the
  logit-scaled confidence φ = log(p / (1 − p)) of its true class is distributed when the record
  is IN versus OUT of training. Online: likelihood ratio of two Gaussians (IN and OUT).
  Offline: only OUT shadows, score = how far φ sits in the upper tail of the OUT Gaussian.

Why TPR at low FPR: an attack that confidently identifies a few members is a real privacy
breach even when its AUC is near 0.5 (Carlini et al., §3), so report both, on log-log axes.

Shadows go through :class:`secagg.training.LocalTrainer` (see :func:`pipeline_shadow_trainer`)
so that they are trained exactly like the pipeline's clients, DP-SGD included: an attack
calibrated on differently trained shadows would understate (or overstate) the leakage. Under DP
on the sum (DP-FedSGD, record unit) they go through the pipeline's own
:class:`~secagg.privacy.sum_clients.GradientSumClient` with the run's noise on the mean (see
:func:`noisy_sum_shadow_trainer`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from secagg.config import PrivacySection, TrainingSection
from secagg.data import ClientData
from secagg.errors import ConfigError, DataError
from secagg.models import get_flat_params, set_flat_params
from secagg.privacy.noise import NoiseSource
from secagg.privacy.sum_clients import GradientSumClient
from secagg.training import LocalTrainer

# Rows per forward pass: bounds memory on large record sets.
_CHUNK = 4096
# Floor on Gaussian standard deviations: shadows that agree exactly would divide by zero.
_MIN_STD = 1e-6

ShadowTrainer = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- metrics


def roc(
    scores_members: np.ndarray, scores_nonmembers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve (fpr, tpr) and AUC of a membership score (higher = more likely member).

    All thresholds are kept (no dropped intermediate points) so :func:`tpr_at_fpr` can
    interpolate between true operating points.
    """
    members = np.asarray(scores_members, dtype=np.float64).ravel()
    nonmembers = np.asarray(scores_nonmembers, dtype=np.float64).ravel()
    if members.size == 0 or nonmembers.size == 0:
        raise DataError("roc needs at least one member and one non-member score")
    scores = np.concatenate([members, nonmembers])
    if not np.all(np.isfinite(scores)):
        raise DataError("membership scores contain NaN/inf values")
    labels = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr, float(roc_auc_score(labels, scores))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, fpr_target: float) -> float:
    """TPR reached at false-positive rate ``fpr_target``, interpolated linearly on the ROC.

    Where several points share one FPR (a vertical step) the highest TPR counts, since an
    attacker may pick that threshold; between FPRs the linear interpolation is what a
    randomised choice between the two neighbouring thresholds achieves.
    """
    if not 0.0 <= fpr_target <= 1.0:
        raise ConfigError(f"fpr_target must be in [0, 1], got {fpr_target}")
    f = np.asarray(fpr, dtype=np.float64)
    t = np.asarray(tpr, dtype=np.float64)
    if f.ndim != 1 or f.shape != t.shape or f.size == 0:
        raise DataError(f"fpr and tpr must be 1-D of one length, got {f.shape} and {t.shape}")
    unique_fpr = np.unique(f)
    best_tpr = np.array([t[f == u].max() for u in unique_fpr])
    return float(np.interp(fpr_target, unique_fpr, best_tpr))


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    path: str | Path,
    title: str = "Membership inference ROC",
) -> Path:
    """Write ROC curves (name -> (fpr, tpr, auc), as :func:`roc` returns) as a log-log PNG.

    Log-log because the low-FPR corner is what matters (Carlini et al. 2022); zero rates,
    which a log axis cannot show, are drawn at half the smallest non-zero rate of the plot.
    """
    if not curves:
        raise ConfigError("plot_roc needs at least one curve")
    from matplotlib.figure import Figure  # no pyplot: no global state, PNG via Agg

    positive = [
        v for fpr, tpr, _ in curves.values() for v in (*np.ravel(fpr), *np.ravel(tpr)) if v > 0
    ]
    floor = 0.5 * min(positive) if positive else 1e-3
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=f"{name} (AUC {auc:.3f})")
    ax.plot([floor, 1], [floor, 1], linestyle="--", color="grey", label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png", dpi=120)
    return out


# --------------------------------------------------------------------------- model outputs


def _logits(model: nn.Module, X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 logits and int64 labels of (X, y); the model's train/eval mode is restored."""
    features = np.asarray(X)
    labels = np.asarray(y)
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise DataError(
            f"need X of shape (n, features) and y of shape (n,), "
            f"got {features.shape} and {labels.shape}"
        )
    if labels.size and labels.dtype.kind not in "iu":
        raise DataError(f"need integer class labels, got dtype {labels.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [model(chunk) for chunk in x.split(_CHUNK)]
    finally:
        model.train(was_training)
    n_classes = int(parts[0].shape[1]) if parts else 0
    logits = torch.cat(parts).double() if parts else torch.zeros((0, n_classes))
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"labels must be class indices in 0..{n_classes - 1}")
    return logits, torch.from_numpy(labels.astype(np.int64))


def loss_scores(model: nn.Module, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Yeom et al. loss-threshold score of each record: −(per-record cross-entropy).

    Negated so that, like every score here, higher means "more likely a member" (members
    tend to have lower loss). ``-loss_scores(...)`` is the per-record cross-entropy itself.
    """
    logits, target = _logits(model, X, y)
    if len(target) == 0:
        return np.zeros(0)
    loss = nn.functional.cross_entropy(logits, target, reduction="none")
    return (-loss).numpy()


def logit_confidence(model: nn.Module, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """φ = log(p / (1 − p)) of each record's true class (Carlini et al. 2022, §4.3).

    Computed from logits as z_y − logsumexp(z_{j≠y}), which equals log p − log(1 − p) but
    stays finite when p rounds to 1 in floating point (exactly the records that leak most).
    The logit scaling makes φ roughly Gaussian across shadow models, which LiRA assumes.
    """
    logits, target = _logits(model, X, y)
    if len(target) == 0:
        return np.zeros(0)
    true = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).numpy()


# --------------------------------------------------------------------------- shadows


def pipeline_shadow_trainer(
    model_factory: Callable[[], nn.Module],
    training: TrainingSection,
    privacy: PrivacySection,
    rounds: int = 1,
    seed: int = 0,
) -> ShadowTrainer:
    """A ``train_shadow(X, y) -> flat params`` that trains like one pipeline client.

    Each call builds a fresh :class:`LocalTrainer` (same optimiser, batches, DP-SGD clipping
    and noise as the pipeline) and runs ``rounds`` rounds from ``model_factory()``'s weights,
    applying each update, i.e. FedAvg with this single client. Call k uses a seed derived
    from (``seed``, k), so shadows are independent yet the whole attack is reproducible.
    Use the same function (another seed) to train a target model in experiments.
    """
    calls = 0

    def train_shadow(X: np.ndarray, y: np.ndarray) -> np.ndarray:
        nonlocal calls
        trainer_seed = int(np.random.SeedSequence([seed, calls]).generate_state(1)[0])
        data = _shadow_data(X, y, calls)
        calls += 1
        trainer = LocalTrainer(data, model_factory, training, privacy, rounds, trainer_seed)
        params = get_flat_params(model_factory())
        for r in range(rounds):
            params = params + trainer.train(params, r).update
        return params

    return train_shadow


def _shadow_data(X: np.ndarray, y: np.ndarray, index: int) -> ClientData:
    """A shadow's training set as a client's (no validation rows)."""
    features = np.asarray(X, dtype=np.float32)
    return ClientData(
        name=f"shadow-{index}",
        X_train=features,
        y_train=np.asarray(y),
        X_val=np.zeros((0, features.shape[1]), dtype=np.float32),
        y_val=np.zeros(0, dtype=np.int64),
    )


def noisy_sum_shadow_trainer(
    model_factory: Callable[[], nn.Module],
    *,
    rounds: int,
    lr: float,
    sample_rate: float,
    noise_std: float,
    clip: float,
    seed: int = 0,
) -> ShadowTrainer:
    """A ``train_shadow(X, y) -> flat params`` that trains like a DP-FedSGD run (DP on the sum).

    ``rounds`` steps from ``model_factory()``'s weights. Each step, every record joins with
    probability ``sample_rate`` (the run's q_h; the batch size is q·n of the shadow's n
    records), its gradient is clipped to ``clip`` and summed (the pipeline's own
    :class:`~secagg.privacy.sum_clients.GradientSumClient`), and the model moves by
    ``−lr·(S/E + N)``, E = q·n the expected batch, N ~ N(0, ``noise_std``²) per coordinate:
    ``noise_std`` is the noise on the *mean* the run's decoded sum carried, so the shadow
    sees the run's signal-to-noise ratio at its own population size. The run's noise is a sum
    of discrete Gaussian shares in a rotated integer domain plus rounding, which at the
    run's scale is this Gaussian to within a variance far below its own (the rounding adds at
    most 1/4 integer unit² per client and coordinate; the shares, (z·Δ₂)² in those units).
    Call k uses a seed derived from (``seed``, k).
    """
    if rounds < 1 or lr <= 0 or not 0 < sample_rate <= 1 or noise_std < 0 or clip <= 0:
        raise ConfigError(
            "noisy_sum_shadow_trainer needs rounds >= 1, lr > 0, 0 < sample_rate <= 1, "
            f"noise_std >= 0 and clip > 0; got {rounds}, {lr}, {sample_rate}, {noise_std}, {clip}"
        )
    calls = 0

    def train_shadow(X: np.ndarray, y: np.ndarray) -> np.ndarray:
        nonlocal calls
        state = np.random.SeedSequence([seed, calls]).generate_state(2)
        data = _shadow_data(X, y, calls)
        calls += 1
        batch = max(1, round(sample_rate * data.num_samples))
        client = GradientSumClient(
            data,
            model_factory,
            clip=clip,
            batch_size=batch,
            noise=NoiseSource.from_seed(int(state[0])),
        )
        rng = np.random.default_rng(int(state[1]))
        params = get_flat_params(model_factory()).astype(np.float64)
        for r in range(rounds):
            total = client.train(params.astype(np.float32), r).update
            mean = total / batch + noise_std * rng.standard_normal(total.size)
            params = params - lr * mean
        return params.astype(np.float32)

    return train_shadow


class LiraAttack:
    """LiRA (Carlini et al., S&P 2022) against records of a known population.

    Usage::

        attack = LiraAttack(pop_X, pop_y, train_shadow, model_factory, n_shadows=16)
        attack.fit()                                   # trains the shadows
        s_on = attack.scores(target_params)            # online, one score per record
        s_off = attack.scores(target_params, online=False)

    ``train_shadow(X, y)`` returns a flat parameter vector (see
    :func:`pipeline_shadow_trainer`); ``model_factory()`` builds the architecture it is loaded
    into. As in the paper's code, membership is balanced: every record is IN for exactly
    ``n_shadows // 2`` shadows, and each shadow trains on about half the population.

    ``global_variance``: use one IN and one OUT variance for all records (the paper's advice
    below ~64 shadows, where per-record variances from a handful of values are too noisy);
    the means stay per record, which is where LiRA's per-example calibration comes from.
    """

    def __init__(
        self,
        population_X: np.ndarray,
        population_y: np.ndarray,
        train_shadow: ShadowTrainer,
        model_factory: Callable[[], nn.Module],
        n_shadows: int,
        seed: int = 0,
        global_variance: bool = True,
    ) -> None:
        if isinstance(n_shadows, bool) or not isinstance(n_shadows, int) or n_shadows < 2:
            raise ConfigError(f"LiRA needs n_shadows >= 2 (IN and OUT ones), got {n_shadows!r}")
        self.X = np.asarray(population_X, dtype=np.float32)
        self.y = np.asarray(population_y)
        if self.X.ndim != 2 or self.y.ndim != 1 or len(self.X) != len(self.y) or not len(self.y):
            raise DataError(
                f"population must be X (n, features) and y (n,) with n >= 1, "
                f"got {self.X.shape} and {self.y.shape}"
            )
        self.train_shadow = train_shadow
        self.model_factory = model_factory
        self.n_shadows = n_shadows
        self.global_variance = global_variance
        rng = np.random.default_rng(seed)
        order = rng.random((n_shadows, len(self.y))).argsort(axis=0)
        #: keep[k, i]: record i was in shadow k's training set
        self.keep: np.ndarray = order < n_shadows // 2
        #: phi[k, i]: φ of record i under shadow k (filled by fit)
        self.phi: np.ndarray | None = None

    def _phi_of(self, params: np.ndarray) -> np.ndarray:
        model = self.model_factory()
        set_flat_params(model, params)
        return logit_confidence(model, self.X, self.y)

    def fit(self) -> LiraAttack:
        """Train the shadows and record φ of every population record under each of them."""
        phi = np.empty(self.keep.shape)
        for k, mask in enumerate(self.keep):
            phi[k] = self._phi_of(self.train_shadow(self.X[mask], self.y[mask]))
        self.phi = phi
        return self

    def _gaussian(self, inside: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per-record mean and std of φ over the IN (or OUT) shadows."""
        assert self.phi is not None
        mask = self.keep if inside else ~self.keep
        counts = mask.sum(axis=0)
        mean = np.where(mask, self.phi, 0.0).sum(axis=0) / counts
        sq = np.where(mask, (self.phi - mean) ** 2, 0.0)
        if self.global_variance:
            std = np.full(mean.shape, np.sqrt(sq.sum() / max(1, mask.sum() - 1)))
        else:
            std = np.sqrt(sq.sum(axis=0) / np.maximum(1, counts - 1))
        return mean, np.maximum(std, _MIN_STD)

    def scores(
        self,
        target_params: np.ndarray,
        indices: Sequence[int] | np.ndarray | None = None,
        online: bool = True,
    ) -> np.ndarray:
        """Membership score of population records (all, or ``indices``) under the target.

        Online: log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²). Offline: −log of the
        one-sided p-value P[φ' ≥ φ] under the OUT Gaussian, i.e. how implausibly high the
        target's confidence is for a model that never saw the record; −log keeps resolution
        far in the tail, where a plain p-value rounds to 0.
        """
        if self.phi is None:
            raise ConfigError("call fit() before scores(): the shadows are not trained yet")
        phi = self._phi_of(np.asarray(target_params))
        idx = np.arange(len(self.y)) if indices is None else np.asarray(indices, dtype=np.int64)
        mean_out, std_out = self._gaussian(inside=False)
        if not online:
            return -stats.norm.logsf(phi[idx], loc=mean_out[idx], scale=std_out[idx])
        mean_in, std_in = self._gaussian(inside=True)
        log_in = stats.norm.logpdf(phi[idx], loc=mean_in[idx], scale=std_in[idx])
        log_out = stats.norm.logpdf(phi[idx], loc=mean_out[idx], scale=std_out[idx])
        return np.asarray(log_in - log_out)
