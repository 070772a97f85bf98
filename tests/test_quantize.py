"""Quantisation into Z_{2^b}: exact enough, unbiased, never overflows, refuses what it cannot do."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from secagg.errors import QuantizationError
from secagg.quantize import (
    QuantizationSpec,
    dequantize,
    error_bound,
    modular_sum,
    quantize,
)

BITS = [8, 16, 32, 64]
# float64 decoding may add a few ulps of the sum on top of the rounding bound.
ULPS = 1e-12


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


specs = st.builds(
    QuantizationSpec,
    bits=st.integers(12, 64),
    clip=st.floats(1e-3, 1e3),
    max_clients=st.integers(1, 50),
)


def _vectors(spec: QuantizationSpec, n: int, d: int, seed: int) -> np.ndarray:
    return _rng(seed).uniform(-1.2 * spec.clip, 1.2 * spec.clip, size=(n, d))


# --- the spec --------------------------------------------------------------------------------


@given(
    bits=st.integers(2, 64),
    clip=st.floats(1e-6, 1e6),
    max_clients=st.integers(1, 10**6),
)
def test_headroom_rule_holds_or_the_spec_is_refused(
    bits: int, clip: float, max_clients: int
) -> None:
    try:
        spec = QuantizationSpec(bits, clip, max_clients)
    except QuantizationError:
        assert (2 ** (bits - 1) - 1) // max_clients < 2  # not even one level per client
        return
    assert spec.levels >= 1
    assert max_clients * (spec.levels + 1) < 2 ** (bits - 1)
    assert spec.scale * spec.clip == pytest.approx(spec.levels, rel=1e-15)
    assert spec.modulus == 2**bits
    assert spec.dtype == (np.uint32 if bits <= 32 else np.uint64)


@given(max_clients=st.integers(1, 2**40))
def test_refusal_names_the_parameters_and_the_smallest_bits_that_work(max_clients: int) -> None:
    need = next(b for b in range(2, 65) if (2 ** (b - 1) - 1) // max_clients >= 2)
    QuantizationSpec(need, 0.25, max_clients)  # works
    if need == 2:  # max_clients = 1 fits the smallest group; nothing below it to refuse
        return
    with pytest.raises(QuantizationError) as info:
        QuantizationSpec(need - 1, 0.25, max_clients)
    message = str(info.value)
    assert "\n" not in message
    assert f"bits={need - 1} " in message and f"max_clients={max_clients} " in message
    assert "clip=0.25" in message and f"use bits >= {need}" in message


def test_refusal_example_from_the_docs() -> None:
    with pytest.raises(QuantizationError, match=r"bits=8 .*max_clients=100.*bits >= 9"):
        QuantizationSpec(bits=8, clip=1.0, max_clients=100)


def test_no_bit_width_is_enough_for_absurd_client_counts() -> None:
    with pytest.raises(QuantizationError, match="even bits=64 cannot"):
        QuantizationSpec(bits=64, clip=1.0, max_clients=2**62)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bits": 1}, "bits must be"),
        ({"bits": 65}, "bits must be"),
        ({"bits": 32.0}, "bits must be"),
        ({"bits": True}, "bits must be"),
        ({"clip": 0.0}, "clip must be"),
        ({"clip": -1.0}, "clip must be"),
        ({"clip": float("nan")}, "clip must be"),
        ({"clip": float("inf")}, "clip must be"),
        ({"clip": "1"}, "clip must be"),
        ({"max_clients": 0}, "max_clients must be"),
        ({"max_clients": 2.0}, "max_clients must be"),
    ],
)
def test_malformed_specs_are_refused(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"bits": 32, "clip": 1.0, "max_clients": 10, **kwargs}
    with pytest.raises(QuantizationError, match=match):
        QuantizationSpec(**args)  # type: ignore[arg-type]


def test_integer_clip_is_stored_as_float() -> None:
    spec = QuantizationSpec(bits=32, clip=2, max_clients=3)  # e.g. clip_range = 2 in TOML
    assert isinstance(spec.clip, float) and spec.clip == 2.0


def test_large_bit_widths_cap_the_scale_at_float64_resolution() -> None:
    spec = QuantizationSpec(bits=64, clip=1.0, max_clients=2)
    assert spec.levels == 2**52


# --- encode / decode -------------------------------------------------------------------------


@settings(max_examples=60)
@given(spec=specs, seed=st.integers(0, 2**32 - 1))
def test_round_trip_is_within_the_error_bound(spec: QuantizationSpec, seed: int) -> None:
    x = _vectors(spec, 1, 300, seed)[0]
    q = quantize(x, spec, _rng(seed))
    assert q.dtype == spec.dtype and q.shape == x.shape
    assert int(q.max()) < spec.modulus
    clipped = np.clip(x, -spec.clip, spec.clip)
    err = np.abs(dequantize(q, spec) - clipped)
    assert err.max() <= error_bound(spec, 1) + ULPS * spec.clip


@settings(max_examples=40)
@given(spec=specs, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_sum_of_quantized_equals_the_sum_within_the_bound(
    spec: QuantizationSpec, seed: int, data: st.DataObject
) -> None:
    n = data.draw(st.integers(1, spec.max_clients))
    xs = _vectors(spec, n, 200, seed)
    rng = _rng(seed)
    total = modular_sum((quantize(x, spec, rng) for x in xs), spec.bits)
    expected = np.clip(xs, -spec.clip, spec.clip).sum(axis=0)
    err = np.abs(dequantize(total, spec) - expected)
    assert err.max() <= error_bound(spec, n) + ULPS * n * spec.clip


@given(
    x=arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e300, 1e300)),
    bits=st.sampled_from(BITS),
)
def test_any_finite_input_encodes_in_range(x: np.ndarray, bits: int) -> None:
    spec = QuantizationSpec(bits, 1.0, 1)
    q = quantize(x, spec, _rng())
    assert int(q.max()) < spec.modulus
    assert np.all(np.abs(dequantize(q, spec)) <= spec.clip)


def test_stochastic_rounding_is_unbiased() -> None:
    spec = QuantizationSpec(bits=8, clip=1.0, max_clients=10)  # 11 levels: coarse steps
    x = np.array([0.0123, -0.4567, 0.999, -0.05, 1 / 3])
    reps = 40_000
    q = quantize(np.tile(x, reps), spec, _rng(1)).reshape(reps, -1)
    mean = dequantize(q, spec).mean(axis=0)
    step = 1 / spec.scale
    # Each draw is off by < one step; the mean's standard deviation is <= step / (2 sqrt(reps)).
    assert np.all(np.abs(mean - x) <= 5 * step / (2 * np.sqrt(reps)))
    # ... and it really is stochastic: values between grid points land on both neighbours.
    assert len(np.unique(q[:, 0])) == 2


def test_same_seed_same_encoding() -> None:
    spec = QuantizationSpec(bits=16, clip=1.0, max_clients=4)
    x = _vectors(spec, 1, 100, 3)[0]
    np.testing.assert_array_equal(quantize(x, spec, _rng(7)), quantize(x, spec, _rng(7)))


def test_shape_is_kept_and_integer_input_is_accepted() -> None:
    spec = QuantizationSpec(bits=32, clip=5.0, max_clients=2)
    q = quantize(np.arange(-6, 6).reshape(3, 4), spec, _rng())
    assert q.shape == (3, 4)
    np.testing.assert_allclose(dequantize(q, spec), np.clip(np.arange(-6, 6), -5, 5).reshape(3, 4))


def test_scalars_are_encoded_as_zero_dimensional_arrays() -> None:
    spec = QuantizationSpec(bits=16, clip=1.0, max_clients=2)
    q = quantize(np.float64(-0.25), spec, _rng())
    assert q.shape == () and q.dtype == spec.dtype
    assert abs(float(dequantize(q, spec)) + 0.25) <= error_bound(spec, 1)


def test_input_is_not_modified() -> None:
    spec = QuantizationSpec(bits=32, clip=0.1, max_clients=2)
    x = np.linspace(-1, 1, 11)
    before = x.copy()
    quantize(x, spec, _rng())
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_no_overflow_at_max_clients_with_every_value_at_the_clip_bound(
    bits: int, sign: float
) -> None:
    max_clients = 3 if bits == 8 else 50
    spec = QuantizationSpec(bits=bits, clip=0.7, max_clients=max_clients)
    rng = _rng(bits)
    d = 64
    # At the bound and beyond it, and just inside it, where stochastic rounding may round up.
    edge = sign * spec.clip * (1 - 0.5 / spec.scale / spec.clip)
    vectors = [
        quantize(np.full(d, sign * spec.clip * (1 + i % 3)), spec, rng)
        if i % 2
        else quantize(np.full(d, edge), spec, rng)
        for i in range(max_clients)
    ]
    total = dequantize(modular_sum(vectors, bits), spec)
    expected = max_clients * sign * spec.clip
    assert np.all(np.sign(total) == sign)  # no wrap-around to the other sign
    assert np.all(np.abs(total - expected) <= error_bound(spec, max_clients) + ULPS)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(bad: float) -> None:
    spec = QuantizationSpec(bits=32, clip=1.0, max_clients=2)
    x = np.array([0.1, 0.2, bad, 0.3])
    with pytest.raises(QuantizationError, match=r"1 NaN/inf value\(s\), first at index \(2,\)"):
        quantize(x, spec, _rng())


def test_non_numeric_input_is_refused() -> None:
    spec = QuantizationSpec(bits=32, clip=1.0, max_clients=2)
    with pytest.raises(QuantizationError, match="real numeric array"):
        quantize(np.array([1 + 2j]), spec, _rng())
    with pytest.raises(QuantizationError, match="real numeric array"):
        quantize(np.array(["a"]), spec, _rng())


# --- modular sums and what dequantize accepts ------------------------------------------------


@pytest.mark.parametrize("bits", [2, 8, 31, 32, 33, 64])
def test_modular_sum_matches_python_integers(bits: int) -> None:
    dtype = np.uint32 if bits <= 32 else np.uint64
    rng = _rng(bits)
    values = [
        [int(v) for v in rng.integers(0, 2**bits, size=20, dtype=np.uint64)] for _ in range(7)
    ]
    total = modular_sum([np.array(v, dtype=dtype) for v in values], bits)
    assert total.dtype == dtype
    assert total.tolist() == [sum(col) % 2**bits for col in zip(*values, strict=True)]


def test_modular_sum_does_not_modify_its_inputs() -> None:
    a = np.array([1, 2], dtype=np.uint32)
    modular_sum([a, a], 32)
    assert a.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("vectors", "bits", "match"),
    [
        ([], 32, "no vectors"),
        ([np.zeros(3, np.uint32), np.zeros(4, np.uint32)], 32, "shape"),
        ([np.zeros(3, np.uint64)], 32, "uint32 array"),
        ([np.zeros(3, np.int64)], 64, "uint64 array"),
        ([np.array([256], np.uint32)], 8, "values >= 2"),
        ([np.zeros(3, np.uint32)], 1, "bits must be"),
    ],
)
def test_modular_sum_refuses_what_is_not_a_group_vector(
    vectors: list[np.ndarray], bits: int, match: str
) -> None:
    with pytest.raises(QuantizationError, match=match):
        modular_sum(vectors, bits)


@pytest.mark.parametrize(
    ("total", "bits", "match"),
    [
        (np.zeros(3, np.float64), 32, "uint32 array"),
        (np.zeros(3, np.int32), 32, "uint32 array"),
        (np.zeros(3, np.uint64), 32, "uint32 array"),
        (np.zeros(3, np.uint32), 64, "uint64 array"),
        (np.array([0, 2**16], np.uint32), 16, "values >= 2\\^16"),
        ([0, 1], 32, "got list"),
    ],
)
def test_dequantize_refuses_wrong_dtype_or_range(total: object, bits: int, match: str) -> None:
    spec = QuantizationSpec(bits=bits, clip=1.0, max_clients=2)
    with pytest.raises(QuantizationError, match=match):
        dequantize(total, spec)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", BITS)
def test_dequantize_centres_the_group(bits: int) -> None:
    spec = QuantizationSpec(bits=bits, clip=1.0, max_clients=1)
    top = 2 ** (bits - 1)
    total = np.array([0, 1, top - 1, top, 2**bits - 1], dtype=spec.dtype)
    expected = np.array([0, 1, top - 1, -top, -1], dtype=np.float64) / spec.scale
    np.testing.assert_allclose(dequantize(total, spec), expected, rtol=1e-15)


def test_error_bound_refuses_more_clients_than_the_spec_allows() -> None:
    spec = QuantizationSpec(bits=16, clip=1.0, max_clients=4)
    assert error_bound(spec, 4) == 4 / spec.scale
    with pytest.raises(QuantizationError, match="max_clients=4"):
        error_bound(spec, 5)
