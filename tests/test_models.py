"""Models: shapes, deterministic init, the flat parameter layout and Opacus compatibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.validators import ModuleValidator

from secagg.errors import ConfigError, DataError
from secagg.models import build_model, get_flat_params, num_params, set_flat_params

# (name, n_features, n_classes, hidden)
MODELS = [
    ("logreg", 30, 2, (64,)),
    ("mlp", 30, 2, (16, 8)),
    ("cnn", 64, 10, (32,)),
]


def _batch(n_features: int, n: int = 5) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(size=(n, n_features))).float()


@pytest.mark.parametrize(("name", "d", "k", "hidden"), MODELS)
def test_forward_gives_one_logit_per_class(
    name: str, d: int, k: int, hidden: tuple[int, ...]
) -> None:
    model = build_model(name, d, k, hidden=hidden, seed=0)
    out = model(_batch(d))
    assert out.shape == (5, k) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_logreg_is_one_linear_layer() -> None:
    model = build_model("logreg", 30, 2)
    assert num_params(model) == 30 * 2 + 2  # two logits even for a binary task
    assert [type(m).__name__ for m in model.modules()] == ["LogisticRegression", "Linear"]


def test_mlp_has_the_configured_hidden_layers() -> None:
    model = build_model("mlp", 10, 3, hidden=[7, 5])
    assert num_params(model) == (10 * 7 + 7) + (7 * 5 + 5) + (5 * 3 + 3)


@pytest.mark.parametrize(("name", "d", "k", "hidden"), MODELS)
def test_flat_params_round_trip(name: str, d: int, k: int, hidden: tuple[int, ...]) -> None:
    source = build_model(name, d, k, hidden=hidden, seed=1)
    target = build_model(name, d, k, hidden=hidden, seed=2)
    flat = get_flat_params(source)
    assert flat.dtype == np.float32 and flat.shape == (num_params(source),)
    assert not np.array_equal(flat, get_flat_params(target))
    set_flat_params(target, flat)
    np.testing.assert_array_equal(get_flat_params(target), flat)
    x = _batch(d)
    torch.testing.assert_close(source(x), target(x), rtol=0, atol=0)


def test_flat_order_follows_model_parameters() -> None:
    model = build_model("mlp", 4, 2, hidden=[3])
    flat = get_flat_params(model)
    expected = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    np.testing.assert_array_equal(flat, expected)


def test_flat_params_is_a_copy_and_float64_input_is_accepted() -> None:
    model = build_model("logreg", 4, 2)
    flat = get_flat_params(model)
    flat += 1.0  # must not write through into the model
    assert not np.array_equal(get_flat_params(model), flat)
    set_flat_params(model, flat.astype(np.float64))  # e.g. a float64 aggregate
    np.testing.assert_array_equal(get_flat_params(model), flat)


@pytest.mark.parametrize(("name", "d", "k", "hidden"), MODELS)
def test_init_is_deterministic_and_leaves_global_rng_alone(
    name: str, d: int, k: int, hidden: tuple[int, ...]
) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = get_flat_params(build_model(name, d, k, hidden=hidden, seed=5))
    torch.testing.assert_close(torch.rand(3), expected_next)  # global stream undisturbed
    b = get_flat_params(build_model(name, d, k, hidden=hidden, seed=5))
    c = get_flat_params(build_model(name, d, k, hidden=hidden, seed=6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")
@pytest.mark.parametrize(("name", "d", "k", "hidden"), MODELS)
def test_models_are_opacus_compatible(name: str, d: int, k: int, hidden: tuple[int, ...]) -> None:
    model = build_model(name, d, k, hidden=hidden)
    assert ModuleValidator.validate(model, strict=True) == []
    # Per-sample gradients (what DP-SGD clips) exist for every parameter.
    gsm = GradSampleModule(model)
    torch.nn.functional.cross_entropy(gsm(_batch(d, 6)), torch.arange(6) % k).backward()
    for p in model.parameters():
        per_sample = getattr(p, "grad_sample", None)  # set by Opacus' hooks
        assert per_sample is not None and per_sample.shape == (6, *p.shape)


def test_cnn_rejects_inputs_that_are_not_8x8() -> None:
    with pytest.raises(ConfigError, match=r"'cnn' needs 64 features .* got 30") as exc:
        build_model("cnn", 30, 2)
    assert "\n" not in str(exc.value)


def test_unknown_model_name_lists_the_allowed_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"model\.name = 'resnet' is not one of: logreg, mlp, cnn"
    ):
        build_model("resnet", 30, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "mlp", "hidden": []}, r"needs model\.hidden"),
        ({"name": "mlp", "hidden": [8, 0]}, r"model\.hidden sizes must be >= 1"),
        ({"name": "logreg", "n_classes": 1}, "at least 2 classes"),
        ({"name": "logreg", "n_features": 0}, "at least 1 input feature"),
    ],
)
def test_bad_model_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"n_features": 30, "n_classes": 2, **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_model(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flat", "match"),
    [
        (np.zeros(61, dtype=np.float32), "has 61 values but the model has 62 parameters"),
        (np.zeros((2, 31), dtype=np.float32), r"must be 1-D with 62 values, got shape \(2, 31\)"),
        (np.zeros(62, dtype=np.int64), "must be floating point, got dtype int64"),
        (np.r_[np.zeros(60), np.nan, np.inf].astype(np.float32), r"2 NaN/inf .* index 60"),
        (np.r_[np.zeros(61), 1e39], r"NaN/inf .* beyond float32 range"),
    ],
)
def test_set_flat_params_rejects_bad_vectors(flat: np.ndarray, match: str) -> None:
    model = build_model("logreg", 30, 2)
    before = get_flat_params(model)
    with pytest.raises(DataError, match=match) as exc:
        set_flat_params(model, flat)
    assert "\n" not in str(exc.value)
    np.testing.assert_array_equal(get_flat_params(model), before)  # left untouched
