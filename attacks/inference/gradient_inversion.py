"""Gradient inversion: reconstruct a client's training record from the update it sends.

An update from one local SGD step of learning rate η is ``−η·∇L``, so an observer of the
update holds the gradient (:func:`update_to_gradient`). How much of the record it reveals
depends on what is observed: one client's plaintext update (a single record leaks almost
exactly), the sum that secure aggregation reveals (a mixture of many records), or a DP-noised
update (noise of norm ≫ the clipped signal). The functions here take the observed gradient as
a flat vector in :func:`secagg.models.get_flat_params` layout, plus the model holding the
global parameters at which it was computed; the caller builds each observer's view.

* Label recovery, iDLG: Zhao et al., "iDLG: Improved Deep Leakage from Gradients", 2020.
* DLG: Zhu et al., "Deep Leakage from Gradients", NeurIPS 2019.
* Inverting gradients: Geiping et al., "Inverting Gradients — How easy is it to break
  privacy in federated learning?", NeurIPS 2020.
* Analytic first-layer recovery: Phong et al., "Privacy-Preserving Deep Learning via
  Additively Homomorphic Encryption", IEEE TIFS 2018 (the ``dW = δ·xᵀ`` observation).
* Per-unit recovery from a *sum*: Fowl et al., "Robbing the Fed", ICLR 2022. Secure
  aggregation does not stop it when the first layer feeds a ReLU: a unit active for only one
  record of the sum hands that record back exactly (:func:`analytic_first_layer_candidates`).

Feature space: whatever the model was trained on; the tests use digits pixels scaled to
[0, 1] (so the box prior and PSNR's data range are both 1). SSIM is a small windowed
implementation (uniform 3x3 windows, the constants of Wang et al. 2004), because
scikit-image is not installed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from secagg.errors import ConfigError, DataError
from secagg.models import num_params

# Side of the square image a 64-feature digits row is (8x8 pixels).
DIGITS_SIDE = 8


@dataclass
class Reconstruction:
    """A reconstructed record: features (1-D), its label, and the final gradient mismatch."""

    x: np.ndarray  # float32, shape (n_features,)
    label: int  # recovered (or assumed) class; argmax of the soft label for DLG without one
    match_loss: float  # the objective the attack minimised, at the returned x (lower = closer)


# --------------------------------------------------------------------------- observation


def update_to_gradient(update: np.ndarray, lr: float) -> np.ndarray:
    """Gradient implied by a one-step SGD update: ``update = −lr·∇L``, so ``∇L = −update/lr``.

    For a sum of client updates (what secure aggregation reveals) this is the sum of their
    gradients; for a DP update it is the clipped gradient plus noise.
    """
    if lr <= 0:
        raise ConfigError(f"learning rate must be > 0, got {lr}")
    return (-np.asarray(update, dtype=np.float64) / lr).astype(np.float32)


def _check_grad(grad: np.ndarray, model: nn.Module) -> np.ndarray:
    arr = np.asarray(grad)
    if arr.ndim != 1 or arr.size != num_params(model):
        raise DataError(
            f"gradient must be a 1-D vector of {num_params(model)} values (the model's flat "
            f"parameter layout), got shape {arr.shape}"
        )
    if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)):
        raise DataError("gradient must be a finite floating-point vector")
    return arr.astype(np.float32)


def _param_slices(model: nn.Module) -> dict[int, slice]:
    """Where each parameter (by ``id``) lives in the flat vector."""
    out: dict[int, slice] = {}
    offset = 0
    for p in model.parameters():
        out[id(p)] = slice(offset, offset + p.numel())
        offset += p.numel()
    return out


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def recover_label(grad: np.ndarray, model: nn.Module) -> int:
    """Label of a single-record batch from the last layer's gradient (iDLG).

    With cross-entropy, the gradient of logit ``i`` is ``softmax_i − [i = y]``: negative only
    at the true label. It is the last bias's gradient; without a bias, the last weight's row
    sums carry the same sign when the layer's input is non-negative (after a ReLU) — for a
    logistic regression on non-negative features too. The argmin is returned, which for a
    sum of many records' gradients is merely the most negative class, not a true label.
    """
    g = _check_grad(grad, model)
    linears = _linears(model)
    if not linears:
        raise ConfigError("recover_label needs a model whose last layer is nn.Linear")
    last = linears[-1]
    slices = _param_slices(model)
    if last.bias is not None:
        scores = g[slices[id(last.bias)]]
    else:
        scores = g[slices[id(last.weight)]].reshape(last.weight.shape).sum(axis=1)
    return int(np.argmin(scores))


def _first_layer_grads(grad: np.ndarray, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    g = _check_grad(grad, model)
    linears = _linears(model)
    if not linears or linears[0].bias is None:
        raise ConfigError("analytic inversion needs a model whose first layer is nn.Linear")
    first = linears[0]
    assert first.bias is not None
    slices = _param_slices(model)
    dw = g[slices[id(first.weight)]].reshape(first.weight.shape).astype(np.float64)
    db = g[slices[id(first.bias)]].astype(np.float64)
    return dw, db


def analytic_first_layer_inversion(grad: np.ndarray, model: nn.Module) -> np.ndarray:
    """Closed-form input from the first Linear layer's gradients (Phong et al. 2018).

    For one record, ``dW₁ = δ·xᵀ`` and ``db₁ = δ``, so every row ``j`` with ``δ_j ≠ 0`` gives
    ``x = dW₁[j] / db₁[j]``; the row of largest ``|δ_j|`` is the most accurate in floating
    point. This makes a single record's logistic-regression (or MLP) gradient trivially
    invertible, so it is the baseline the optimisation attacks are compared with. For a sum
    of records this row is a δ-weighted average of them; see
    :func:`analytic_first_layer_candidates` for the rows that are not.
    """
    dw, db = _first_layer_grads(grad, model)
    j = int(np.argmax(np.abs(db)))
    if db[j] == 0.0:
        raise DataError("first-layer bias gradient is all zero: nothing to invert")
    return (dw[j] / db[j]).astype(np.float32)


def analytic_first_layer_candidates(grad: np.ndarray, model: nn.Module) -> np.ndarray:
    """Every row's ``dW₁[j] / db₁[j]`` (rows with ``db₁[j] = 0`` dropped), shape (k, features).

    Why every row: in a summed gradient, row ``j`` is ``Σᵢ δᵢⱼ·xᵢ / Σᵢ δᵢⱼ``. If the first
    layer feeds a ReLU, ``δᵢⱼ = 0`` for every record whose unit ``j`` is inactive, so a unit
    active for exactly one record of the sum returns that record *exactly*, aggregation or
    not (the linear-layer leakage of Fowl et al., "Robbing the Fed", ICLR 2022, here without
    any malicious weights). Without a ReLU (logistic regression) every δᵢⱼ is non-zero and
    every row stays a mixture.
    """
    dw, db = _first_layer_grads(grad, model)
    keep = db != 0.0
    return (dw[keep] / db[keep, None]).astype(np.float32)


# --------------------------------------------------------------------------- optimisation


def _model_grads(
    model: nn.Module, x: torch.Tensor, label: torch.Tensor, soft: bool
) -> torch.Tensor:
    """Flat gradient of the model's loss on ``(x, label)``, differentiable w.r.t. x and label."""
    logits = model(x)
    if soft:
        loss = torch.sum(-F.softmax(label, dim=-1) * F.log_softmax(logits, dim=-1), dim=-1).mean()
    else:
        loss = F.cross_entropy(logits, label)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return torch.cat([g.reshape(-1) for g in grads])


def _total_variation(x: torch.Tensor, side: int) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (anisotropic TV) of square images."""
    img = x.reshape(-1, side, side)
    return (img[:, 1:, :] - img[:, :-1, :]).abs().mean() + (
        img[:, :, 1:] - img[:, :, :-1]
    ).abs().mean()


def _n_classes(model: nn.Module) -> int:
    linears = _linears(model)
    if not linears:
        raise ConfigError("the model's last layer must be nn.Linear")
    return int(linears[-1].out_features)


def dlg(
    grad: np.ndarray,
    model: nn.Module,
    n_features: int,
    label: int | None = None,
    steps: int = 30,
    lr: float = 1.0,
    optimizer: str = "lbfgs",
    seed: int = 0,
) -> Reconstruction:
    """Deep Leakage from Gradients: fit a dummy record whose gradient matches ``grad`` in L2.

    With ``label=None`` the label is optimised too, as a soft label (original DLG); passing
    :func:`recover_label`'s answer is iDLG, which converges far more reliably. ``optimizer``
    is ``"lbfgs"`` (the paper; ``steps`` L-BFGS calls of up to 20 iterations) or ``"adam"``.
    """
    target = torch.from_numpy(_check_grad(grad, model))
    if optimizer not in ("lbfgs", "adam"):
        raise ConfigError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    n_classes = _n_classes(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((1, n_features), generator=gen).requires_grad_(True)
    soft = label is None
    if label is None:
        y = torch.randn((1, n_classes), generator=gen).requires_grad_(True)
        variables = [x, y]
    else:
        y = torch.tensor([int(label)])
        variables = [x]
    opt: torch.optim.Optimizer
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(variables, lr=lr, max_iter=20, line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam(variables, lr=lr)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((_model_grads(model, x, y, soft) - target) ** 2).sum()
        # inputs=: accumulate into the dummy record only, never into the model's .grad
        torch.autograd.backward(loss, inputs=variables)
        return loss

    for _ in range(steps):
        opt.step(closure)
    final = float(((_model_grads(model, x, y, soft) - target) ** 2).sum().detach())
    out_label = int(torch.argmax(y).item()) if label is None else int(label)
    return Reconstruction(x.detach().reshape(-1).numpy().copy(), out_label, final)


def inverting_gradients(
    grad: np.ndarray,
    model: nn.Module,
    n_features: int,
    label: int | None = None,
    restarts: int = 4,
    steps: int = 400,
    lr: float = 0.1,
    tv_weight: float = 1e-2,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    side: int = DIGITS_SIDE,
    seed: int = 0,
) -> Reconstruction:
    """Geiping et al.'s attack: cosine gradient matching + TV prior, Adam, several restarts.

    Cosine rather than L2 because only the gradient's direction carries the record: its
    scale depends on the loss (and the learning rate, the DP clip). The TV prior favours
    smooth ``side``x``side`` images; ``bounds`` projects onto the valid pixel box after each
    step. The step size drops tenfold at 3/8, 5/8 and 7/8 of ``steps``. Of ``restarts``
    random initialisations the one with the lowest objective is kept (the attacker cannot
    compare with the record). ``label=None`` uses :func:`recover_label`.
    """
    target = torch.from_numpy(_check_grad(grad, model))
    if side * side != n_features:
        raise ConfigError(f"TV prior needs {side}x{side} = n_features, got {n_features}")
    if restarts < 1 or steps < 1:
        raise ConfigError("inverting_gradients needs restarts >= 1 and steps >= 1")
    y_label = recover_label(grad, model) if label is None else int(label)
    y = torch.tensor([y_label])
    target_norm = target.norm().clamp_min(1e-12)
    gen = torch.Generator().manual_seed(seed)
    milestones = [int(steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]

    def objective(x: torch.Tensor) -> torch.Tensor:
        g = _model_grads(model, x, y, soft=False)
        cos = torch.dot(g, target) / (g.norm().clamp_min(1e-12) * target_norm)
        return 1.0 - cos + tv_weight * _total_variation(x, side)

    best: Reconstruction | None = None
    for _ in range(restarts):
        x = torch.rand((1, n_features), generator=gen)
        if bounds is not None:
            lo, hi = bounds
            x = lo + (hi - lo) * x
        x.requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        for _ in range(steps):
            opt.zero_grad()
            torch.autograd.backward(objective(x), inputs=[x])
            opt.step()
            sched.step()
            if bounds is not None:
                with torch.no_grad():
                    x.clamp_(bounds[0], bounds[1])
        loss = float(objective(x).detach())
        if not np.isfinite(loss):  # a diverged restart never wins over a finite one
            loss = float("inf")
        if best is None or loss < best.match_loss:
            best = Reconstruction(x.detach().reshape(-1).numpy().copy(), y_label, loss)
    assert best is not None
    return best


# --------------------------------------------------------------------------- metrics


def _pair(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(ref, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise DataError(f"need two non-empty records of one size, got {a.shape} and {b.shape}")
    return a, b


def mse(x: np.ndarray, ref: np.ndarray) -> float:
    """Mean squared error between a reconstruction and the record, in feature space."""
    a, b = _pair(x, ref)
    return float(np.mean((a - b) ** 2))


def psnr(x: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10·log10(range² / MSE)``; inf for an exact match."""
    err = mse(x, ref)
    return float("inf") if err == 0 else float(10 * np.log10(data_range**2 / err))


def ssim(
    x: np.ndarray, ref: np.ndarray, side: int = DIGITS_SIDE, data_range: float = 1.0, win: int = 3
) -> float:
    """Mean SSIM over all ``win``x``win`` windows of two ``side``x``side`` images.

    Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity",
    IEEE TIP 2004, with uniform (not Gaussian) windows: on 8x8 images a 7x7 Gaussian window
    would leave almost no windows. K1 = 0.01, K2 = 0.03, population variances.
    """
    a, b = _pair(x, ref)
    if a.size != side * side or not 1 <= win <= side:
        raise DataError(f"ssim needs {side}x{side} images and 1 <= win <= {side}")
    a, b = a.reshape(side, side), b.reshape(side, side)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    va = np.lib.stride_tricks.sliding_window_view(a, (win, win)).reshape(-1, win * win)
    vb = np.lib.stride_tricks.sliding_window_view(b, (win, win)).reshape(-1, win * win)
    mu_a, mu_b = va.mean(1), vb.mean(1)
    var_a, var_b = va.var(1), vb.var(1)
    cov = ((va - mu_a[:, None]) * (vb - mu_b[:, None])).mean(1)
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def plot_reconstructions(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    path: str | Path,
    side: int = DIGITS_SIDE,
    titles: list[str] | None = None,
) -> Path:
    """PNG grid: originals on the top row, reconstructions below, one column per record."""
    orig = np.asarray(originals, dtype=np.float64).reshape(-1, side * side)
    rec = np.asarray(reconstructions, dtype=np.float64).reshape(-1, side * side)
    if orig.shape != rec.shape or orig.shape[0] == 0:
        raise DataError(
            f"need as many originals as reconstructions, got {orig.shape} and {rec.shape}"
        )
    if titles is not None and len(titles) != orig.shape[0]:
        raise DataError(f"need one title per column, got {len(titles)} for {orig.shape[0]}")
    from matplotlib.figure import Figure  # no pyplot: no global state, PNG via Agg

    n = orig.shape[0]
    fig = Figure(figsize=(1.4 * n + 0.6, 3.2))
    axes = fig.subplots(2, n, squeeze=False)
    lo, hi = float(min(orig.min(), rec.min())), float(max(orig.max(), rec.max()))
    for j in range(n):
        for i, (row, name) in enumerate(((orig, "original"), (rec, "reconstructed"))):
            ax = axes[i][j]
            ax.imshow(row[j].reshape(side, side), cmap="gray_r", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
        if titles is not None:
            axes[0][j].set_title(titles[j], fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png", dpi=100)
    return out
