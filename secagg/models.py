"""The small torch models clients train, and their parameters as one flat vector.

Secure aggregation, quantization and robust aggregation all work on a single float vector
per client, so :func:`get_flat_params` / :func:`set_flat_params` define *the* parameter
layout: ``model.parameters()`` order, each tensor flattened row-major, float32.

Every layer is supported by Opacus' per-sample gradients (Linear, Conv2d, ReLU, max-pooling;
no BatchNorm, which mixes samples and breaks DP-SGD's per-example clipping).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from secagg.errors import ConfigError, DataError

MODEL_NAMES = ("logreg", "mlp", "cnn")

# The CNN reads each row as a 1-channel square image of this side (digits: 8x8 pixels).
CNN_SIDE = 8


class LogisticRegression(nn.Module):
    """One linear layer to ``n_classes`` logits (softmax regression; binary uses 2 logits).

    Two logits with cross-entropy rather than one with a sigmoid keeps training, metrics and
    attacks identical for binary and multiclass tasks.
    """

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MLP(nn.Module):
    """Fully connected ReLU network with the given hidden layer sizes."""

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (16, 32 channels, each ReLU + 2x2 max-pool), then a dense head.

    Input rows of 64 features are read as 1x8x8 images (8x8 -> 4x4 -> 2x2). ``hidden`` gives
    the dense head's hidden sizes (may be empty: a linear read-out).
    """

    def __init__(self, n_classes: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = MLP(32 * (CNN_SIDE // 4) ** 2, n_classes, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, CNN_SIDE, CNN_SIDE)
        return self.head(self.features(x).flatten(1))


def build_model(
    name: str, n_features: int, n_classes: int, hidden: Sequence[int] = (64,), seed: int = 0
) -> nn.Module:
    """Build model ``name`` (:data:`MODEL_NAMES`), its initial weights fixed by ``seed``.

    Initialisation runs under a forked torch RNG, so it neither depends on nor disturbs the
    global torch random state: the same seed gives the same weights anywhere in a program.
    """
    if name not in MODEL_NAMES:
        raise ConfigError(f"model.name = {name!r} is not one of: {', '.join(MODEL_NAMES)}")
    if n_features < 1:
        raise ConfigError(f"a model needs at least 1 input feature, got {n_features}")
    if n_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}")
    hidden = [int(h) for h in hidden]
    if any(h < 1 for h in hidden):
        raise ConfigError(f"model.hidden sizes must be >= 1, got {hidden}")
    if name == "mlp" and not hidden:
        raise ConfigError("model.name = 'mlp' needs model.hidden to list >= 1 layer size")
    if name == "cnn" and n_features != CNN_SIDE * CNN_SIDE:
        raise ConfigError(
            f"model.name = 'cnn' needs {CNN_SIDE * CNN_SIDE} features (an {CNN_SIDE}x{CNN_SIDE} "
            f"image, e.g. data.dataset = 'digits'), got {n_features}; use 'logreg' or 'mlp'"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "logreg":
            return LogisticRegression(n_features, n_classes)
        if name == "mlp":
            return MLP(n_features, n_classes, hidden)
        return SmallCNN(n_classes, hidden)


def num_params(model: nn.Module) -> int:
    """Length of the flat parameter vector of ``model``."""
    return sum(p.numel() for p in model.parameters())


def get_flat_params(model: nn.Module) -> np.ndarray:
    """All parameters as one new float32 vector, in ``model.parameters()`` order."""
    params = [
        p.detach().reshape(-1).to(device="cpu", dtype=torch.float32) for p in model.parameters()
    ]
    if not params:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(params).numpy().copy()


def set_flat_params(model: nn.Module, flat: np.ndarray) -> None:
    """Load a vector produced by :func:`get_flat_params` (or an aggregate of such) into ``model``.

    Raises :class:`~secagg.errors.DataError` (the vector is bad input, not a bad config) if
    it is not a 1-D floating-point vector of exactly :func:`num_params` finite values. Integer
    vectors are refused on purpose: they are usually still-quantized secure-aggregation sums.
    """
    arr = np.asarray(flat)
    expected = num_params(model)
    if arr.ndim != 1:
        raise DataError(
            f"parameter vector must be 1-D with {expected} values, got shape {arr.shape}"
        )
    if arr.dtype.kind != "f":
        raise DataError(
            f"parameter vector must be floating point, got dtype {arr.dtype} "
            "(dequantize aggregated integers first)"
        )
    if arr.size != expected:
        raise DataError(
            f"parameter vector has {arr.size} values but the model has {expected} parameters "
            "(built for a different model, dataset or hidden sizes?)"
        )
    with np.errstate(over="ignore"):
        values32 = np.array(arr, dtype=np.float32)  # a fresh, writable copy for torch
    finite = np.isfinite(values32)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise DataError(
            f"parameter vector has {int((~finite).sum())} NaN/inf value(s) or values beyond "
            f"float32 range (first at index {bad}); refusing to load a diverged model"
        )
    values = torch.from_numpy(values32)
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(values[offset : offset + n].view_as(p))
            offset += n
