"""The distributed-DP integer encoding: rotation, rounding, sensitivity, the no-wrap bound."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.linalg import hadamard

from secagg.crypto.kdf import derive_key, encode_context
from secagg.crypto.prg import Keystream
from secagg.errors import AggregateRejectedError, PrivacyError, WrapError
from secagg.privacy import integer_encoding as ie
from secagg.privacy.discrete import sample_discrete_gaussian
from secagg.privacy.integer_encoding import (
    IntegerSpec,
    conditional_round,
    decode,
    decode_integers,
    encode,
    encode_integers,
    rotate,
    rotation_signs,
    stochastic_round,
    sum_group,
    to_group,
    unrotate,
)

SEED = b"round-seed-public"


def _spec(**overrides: object) -> IntegerSpec:
    params: dict[str, object] = dict(
        dim=300,
        clients=4,
        clip=1.0,
        max_norm=3.0,
        bits=32,
        noise_multiplier=1.0,
        shares=3,
        unit="record",
    )
    params.update(overrides)
    return IntegerSpec(**params)  # type: ignore[arg-type]


def _clipped(rng: np.random.Generator, dim: int, norm: float) -> np.ndarray:
    x = rng.normal(size=dim)
    return x * (norm / np.linalg.norm(x))


def _noise(client: int, round_idx: int, spec: IntegerSpec) -> ie.NoiseShare:
    """An exact discrete Gaussian share (CKS sampler) from a per-client, per-round key."""
    key = derive_key(bytes([client + 1]) * 16, info=encode_context(b"test/noise", round_idx))
    stream = Keystream(key)
    return lambda count: sample_discrete_gaussian(stream, spec.share_variance, count)


# -- round trip ----------------------------------------------------------------------------


def test_round_trip_recovers_the_sum_within_the_rounding_bound_and_is_unbiased() -> None:
    spec = _spec()
    rng = np.random.default_rng(0)
    xs = [_clipped(rng, spec.dim, spec.max_norm * f) for f in (1.0, 0.5, 0.9, 0.2)]
    truth = np.sum(xs, axis=0)
    n, d_pad = len(xs), spec.padded_dim
    worst = n * math.sqrt(d_pad) / spec.scale
    errors = []
    for trial in range(300):
        encoded = [encode(x, spec, seed=SEED, round_idx=7, rng=rng, noise=None) for x in xs]
        assert all(e.dtype == np.uint32 and e.shape == (d_pad,) for e in encoded)
        decoded = decode(sum_group(encoded, spec.bits), spec, seed=SEED, round_idx=7)
        assert decoded.shape == (spec.dim,) and decoded.dtype == np.float64
        errors.append(decoded - truth)
        assert np.linalg.norm(errors[-1]) <= worst, trial
    errors_arr = np.array(errors)
    # each client's rounding error has variance <= 1/4 per rotated coordinate (integer units)
    single = np.linalg.norm(errors_arr, axis=1).mean()
    mean_error = np.linalg.norm(errors_arr.mean(axis=0))
    unbiased_scale = math.sqrt(d_pad * n / 4 / len(errors)) / spec.scale
    assert mean_error <= 1.3 * unbiased_scale
    # teeth: a biased rounding (floor: bias ~1/2 per client and coordinate) would leave a mean
    # error near n/2 * sqrt(d') / s, far above the unbiased bound
    assert 0.5 * n * math.sqrt(d_pad) / spec.scale > 20 * unbiased_scale
    assert single > 10 * mean_error


def test_client_level_round_trip_and_noise_plumbing() -> None:
    spec = _spec(unit="client", clip=1.0, max_norm=1.0, clients=5, shares=4)
    rng = np.random.default_rng(1)
    xs = [_clipped(rng, spec.dim, 1.0) for _ in range(5)]
    encoded = [encode(x, spec, seed=SEED, round_idx=3, rng=rng, noise=None) for x in xs]
    decoded = decode(sum_group(encoded, spec.bits), spec, seed=SEED, round_idx=3)
    worst = 5 * math.sqrt(spec.padded_dim) / spec.scale
    assert np.linalg.norm(decoded - np.sum(xs, axis=0)) <= worst
    # the noise share is added exactly, after the rounding
    share = _noise(0, 3, spec)(spec.padded_dim)
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    plain = encode_integers(xs[0], spec, seed=SEED, round_idx=3, rng=rng_a, noise=None)
    noisy = encode_integers(xs[0], spec, seed=SEED, round_idx=3, rng=rng_b, noise=lambda c: share)
    np.testing.assert_array_equal(noisy - plain, share)
    with pytest.raises(PrivacyError, match="noise share must be an integer array"):
        encode(xs[0], spec, seed=SEED, round_idx=3, rng=rng, noise=lambda c: np.zeros(c - 1))
    with pytest.raises(PrivacyError, match="noise share must be an integer array"):
        encode(xs[0], spec, seed=SEED, round_idx=3, rng=rng, noise=lambda c: np.zeros(c))


# -- rotation ------------------------------------------------------------------------------


def test_rotation_is_orthonormal_and_matches_hadamard() -> None:
    signs = rotation_signs(SEED, 0, 1024)
    assert signs.dtype == np.float64 and set(np.unique(signs)) == {-1.0, 1.0}
    assert 400 < (signs > 0).sum() < 624  # fair coin
    x = np.random.default_rng(2).normal(size=(3, 1024))
    y = rotate(x, signs)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1), rtol=1e-13)
    np.testing.assert_allclose(unrotate(y, signs), x, atol=1e-12, rtol=0)
    small = rotation_signs(SEED, 0, 16)
    matrix = hadamard(16) @ np.diag(small) / 4
    np.testing.assert_allclose(rotate(np.eye(16), small), (matrix @ np.eye(16)).T, atol=1e-15)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(16), atol=1e-15)
    with pytest.raises(PrivacyError, match="pad it"):
        rotate(np.ones(1000), signs)


def test_rotation_signs_are_public_deterministic_and_per_round() -> None:
    a = rotation_signs(SEED, 5, 4096)
    np.testing.assert_array_equal(a, rotation_signs(SEED, 5, 4096))
    np.testing.assert_array_equal(rotation_signs(SEED, 5, 64), a[:64])  # a prefix of one stream
    for other in (rotation_signs(SEED, 6, 4096), rotation_signs(b"another seed", 5, 4096)):
        assert abs(float(np.mean(a * other))) < 0.06  # independent: agreement ~ 1/2
    with pytest.raises(PrivacyError, match="power of two"):
        rotation_signs(SEED, 5, 100)
    with pytest.raises(PrivacyError, match="non-empty bytes"):
        rotation_signs(b"", 5, 64)


def test_rotation_spreads_a_one_hot_vector() -> None:
    d_pad = 2048
    x = np.zeros(d_pad)
    x[123] = 5.0
    y = rotate(x, rotation_signs(SEED, 1, d_pad))
    np.testing.assert_allclose(np.abs(y), 5.0 / math.sqrt(d_pad), rtol=1e-14)
    assert np.abs(y).max() == pytest.approx(np.linalg.norm(x) / math.sqrt(d_pad))


# -- sensitivity ---------------------------------------------------------------------------


def test_client_unit_rounding_stays_within_delta_and_plain_rounding_does_not() -> None:
    spec = _spec(dim=64, unit="client", clip=1.0, max_norm=1.0, clients=5, shares=4)
    c = spec.scale * spec.clip
    d_pad = spec.padded_dim
    t = math.sqrt(2 * math.log(1 / spec.rounding_beta))
    expected = math.sqrt(
        min(c * c + d_pad / 4 + t * (c + math.sqrt(d_pad) / 2), (c + math.sqrt(d_pad)) ** 2)
    )
    assert spec.l2_sensitivity == pytest.approx(expected, rel=1e-12)
    rng = np.random.default_rng(3)
    x = _clipped(rng, spec.dim, 1.0)
    y = rotate(x, rotation_signs(SEED, 0, d_pad)) * spec.scale
    limit = spec.norm_limit_squared
    plain_over, tries_total, draws = 0, 0, 400
    for _ in range(draws):
        rounded, tries = conditional_round(y, spec, rng)
        tries_total += tries
        assert int((rounded.astype(object) ** 2).sum()) <= limit
        plain = stochastic_round(y, rng)
        plain_over += int((plain.astype(object) ** 2).sum()) > limit
        assert np.all(np.abs(plain - y) < 1)
    # teeth: plain rounding leaves Δ₂ now and then, so the retry is doing something
    assert 0 < plain_over < (1 - math.exp(-0.5)) * draws
    assert tries_total > draws
    # the full client path enforces it too
    for r in range(50):
        z = encode_integers(x, spec, seed=SEED, round_idx=r, rng=rng, noise=None)
        assert int((z.astype(object) ** 2).sum()) <= limit


def test_record_unit_sensitivity_and_share_variance() -> None:
    spec = _spec()
    c = spec.scale * spec.clip
    assert spec.l2_sensitivity >= c + math.sqrt(spec.padded_dim)
    assert spec.l2_sensitivity == pytest.approx(c + math.sqrt(spec.padded_dim), rel=1e-8)
    exact = Fraction(spec.noise_multiplier * spec.l2_sensitivity) ** 2 / spec.shares
    assert isinstance(spec.share_variance, Fraction)
    assert exact <= spec.share_variance <= exact * (1 + Fraction(1, 2**30))
    # coupling: for one u, neighbouring inputs (distance s·C) round at most s·C + sqrt(d') apart
    rng = np.random.default_rng(4)
    y = rng.normal(size=spec.padded_dim) * 50
    step = rng.normal(size=spec.padded_dim)
    y2 = y + step * (c / np.linalg.norm(step))
    for _ in range(50):
        u = np.random.default_rng(int(rng.integers(2**32)))
        v = np.random.default_rng(0)
        v.bit_generator.state = u.bit_generator.state
        diff = stochastic_round(y, u) - stochastic_round(y2, v)
        assert np.linalg.norm(diff) <= spec.l2_sensitivity


# -- wrap detection ------------------------------------------------------------------------


def _honest_total(
    spec: IntegerSpec, rng: np.random.Generator, round_idx: int
) -> tuple[np.ndarray, np.ndarray]:
    xs = [_clipped(rng, spec.dim, spec.max_norm) for _ in range(spec.clients - 1)]
    encoded = [encode(x, spec, seed=SEED, round_idx=round_idx, rng=rng, noise=None) for x in xs]
    return sum_group(encoded, spec.bits), np.sum(xs, axis=0)


def test_a_huge_client_vector_is_caught_and_would_decode_wrong_unchecked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _spec()
    rng = np.random.default_rng(5)
    total, truth = _honest_total(spec, rng, 11)
    # a client that skips the norm check: its vector is 1000 times max_norm
    huge = _clipped(rng, spec.dim, 1000 * spec.max_norm)
    padded = np.zeros(spec.padded_dim)
    padded[: spec.dim] = huge
    signed = stochastic_round(
        rotate(padded, rotation_signs(SEED, 11, spec.padded_dim)) * spec.scale, rng
    )
    bad = to_group(signed, spec.bits)
    with pytest.raises(PrivacyError, match="norm"):
        encode(huge, spec, seed=SEED, round_idx=11, rng=rng, noise=None)
    full = sum_group([total, bad], spec.bits)
    with pytest.raises(WrapError, match=r"coordinates .* exceed the no-wrap bound B = ") as err:
        decode(full, spec, seed=SEED, round_idx=11)
    assert isinstance(err.value, AggregateRejectedError)
    assert "the round is rejected" in str(err.value)
    # teeth: without the check the wrapped sum decodes silently, and wrongly
    monkeypatch.setattr(IntegerSpec, "bound", property(lambda self: 2**62))
    lifted = ie.centred_lift(full, spec)
    wrong = decode_integers(lifted, spec, seed=SEED, round_idx=11)
    assert np.linalg.norm(wrong - (truth + huge)) > 100 * spec.max_norm


def test_a_shift_of_half_the_group_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec()
    rng = np.random.default_rng(6)
    total, truth = _honest_total(spec, rng, 12)
    shifted = total.copy()
    shifted[17] += np.uint32(1 << (spec.bits - 1))
    with pytest.raises(WrapError, match=r"^1 of 512 coordinates"):
        decode(shifted, spec, seed=SEED, round_idx=12)
    # the honest total itself decodes fine
    assert np.linalg.norm(decode(total, spec, seed=SEED, round_idx=12) - truth) < 1e-3
    monkeypatch.setattr(IntegerSpec, "bound", property(lambda self: 2**62))
    wrong = decode(shifted, spec, seed=SEED, round_idx=12)
    assert np.linalg.norm(wrong - truth) > 2 ** (spec.bits - 2) / spec.scale


def test_decode_integers_takes_exact_he_sums() -> None:
    spec = _spec()
    rng = np.random.default_rng(7)
    xs = [_clipped(rng, spec.dim, spec.max_norm) for _ in range(spec.clients)]
    ints = [encode_integers(x, spec, seed=SEED, round_idx=2, rng=rng, noise=None) for x in xs]
    decoded = decode_integers(np.sum(ints, axis=0), spec, seed=SEED, round_idx=2)
    bound = spec.clients * math.sqrt(spec.padded_dim) / spec.scale
    assert np.linalg.norm(decoded - np.sum(xs, axis=0)) <= bound
    too_big = np.sum(ints, axis=0)
    too_big[0] = spec.bound + 1
    with pytest.raises(WrapError, match=r"^1 of"):
        decode_integers(too_big, spec, seed=SEED, round_idx=2)
    with pytest.raises(PrivacyError, match="takes the signed integer sum"):
        decode_integers(np.zeros(spec.padded_dim), spec, seed=SEED, round_idx=2)
    group = to_group(np.sum(ints, axis=0), spec.bits)
    with pytest.raises(PrivacyError, match=r"use decode\(\)"):
        decode_integers(group, spec, seed=SEED, round_idx=2)
    # the server's own integer noise (central DP) is added after the check, exactly
    extra = np.zeros(spec.padded_dim, dtype=np.int64)
    extra[3] = 10 * spec.bound
    shifted = decode(group, spec, seed=SEED, round_idx=2, added=extra)
    signs = rotation_signs(SEED, 2, spec.padded_dim)
    expected = decoded + unrotate(extra / spec.scale, signs)[: spec.dim]
    np.testing.assert_allclose(shifted, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("bits", [20, 32, 40, 64])
def test_group_map_and_centred_lift_are_inverse(bits: int) -> None:
    spec = _spec(bits=bits)
    half = 1 << (bits - 1)
    signed = np.random.default_rng(bits).integers(-half, half, spec.padded_dim, dtype=np.int64)
    signed[:2] = (-half, half - 1)
    group = to_group(signed, bits)
    assert group.dtype == spec.dtype and int(group.max()) < 2**bits
    np.testing.assert_array_equal(ie.centred_lift(group, spec), signed)


# -- bits ----------------------------------------------------------------------------------

RECORD_CASE: dict[str, object] = dict(
    dim=9610, clients=5, clip=1.0, max_norm=180.0, noise_multiplier=1.2, shares=5, unit="record"
)


def test_bits_32_fit_the_record_level_case_and_12_are_refused_with_the_need() -> None:
    spec = IntegerSpec(bits=32, **RECORD_CASE)  # type: ignore[arg-type]
    assert spec.padded_dim == 16384
    assert spec.inflation < 1.0001
    assert spec.bound <= 2**30
    with pytest.raises(PrivacyError, match=r"protection.bits = 12 is too few") as err:
        IntegerSpec(bits=12, **RECORD_CASE)  # type: ignore[arg-type]
    need = int(str(err.value).split("needs bits >= ")[1].split()[0])
    assert 12 < need < 32
    fits = IntegerSpec(bits=need, **RECORD_CASE)  # type: ignore[arg-type]
    assert fits.inflation <= ie.MAX_INFLATION
    with pytest.raises(PrivacyError, match=f"needs bits >= {need}"):
        IntegerSpec(bits=need - 1, **RECORD_CASE)  # type: ignore[arg-type]


def test_a_sum_too_large_for_64_bits_says_split() -> None:
    with pytest.raises(PrivacyError, match="even in bits = 64; split"):
        IntegerSpec(
            dim=2**20,
            clients=2**40,
            clip=1.0,
            max_norm=1e9,
            bits=64,
            noise_multiplier=1.0,
            shares=1,
            unit="record",
        )


def test_the_bound_is_calibrated_to_the_guard_bit() -> None:
    for bits in (16, 24, 32, 48):
        spec = _spec(bits=bits, dim=200, clients=5, max_norm=4.0)
        assert spec.bound <= 2 ** (bits - 2)
        assert spec.bound > 0.99 * 2 ** (bits - 2)  # s is as large as the bound allows
        n, d_pad = spec.clients, spec.padded_dim
        v = (spec.scale * n * spec.max_norm) ** 2 / d_pad + n * float(spec.share_variance)
        assert spec.bound >= n + math.sqrt(2 * v * math.log(2 * d_pad / spec.beta))
    capped = _spec(bits=64, dim=200, max_norm=4.0)
    assert capped.scale * capped.max_norm <= 2**52  # float64 exactness cap


def test_honest_noisy_sums_stay_within_the_bound() -> None:
    spec = _spec(bits=24, dim=200, clients=5, max_norm=4.0, shares=3)
    assert spec.bound <= 2**22
    rng = np.random.default_rng(8)
    # all clients at max_norm in the same direction: the worst case for the rotation term
    x = _clipped(rng, spec.dim, spec.max_norm)
    largest = 0
    for round_idx in range(150):
        encoded = [
            encode(
                x,
                spec,
                seed=SEED,
                round_idx=round_idx,
                rng=rng,
                noise=_noise(client, round_idx, spec),
            )
            for client in range(spec.clients)
        ]
        total = sum_group(encoded, spec.bits)
        lifted = ie.centred_lift(total, spec)
        largest = max(largest, int(np.abs(lifted).max()))
        decoded = decode(total, spec, seed=SEED, round_idx=round_idx)  # never raises
        assert decoded.shape == (spec.dim,)
    assert largest <= spec.bound
    # ... and the bound is not vacuous: the observed maximum reaches a good part of it
    assert largest > 0.4 * spec.bound


# -- bad input -----------------------------------------------------------------------------


def test_bad_vectors_are_refused_by_name() -> None:
    spec = _spec()
    rng = np.random.default_rng(10)
    x = _clipped(rng, spec.dim, 1.0)
    kwargs: dict[str, object] = dict(seed=SEED, round_idx=0, rng=rng, noise=None)
    nan = x.copy()
    nan[4] = np.nan
    with pytest.raises(PrivacyError, match=r"1 NaN/inf value.*index 4"):
        encode(nan, spec, **kwargs)  # type: ignore[arg-type]
    inf = x.copy()
    inf[0] = np.inf
    with pytest.raises(PrivacyError, match="NaN/inf"):
        encode(inf, spec, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(PrivacyError, match=r"shape \(301,\), the spec expects \(300,\)"):
        encode(np.zeros(301), spec, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(PrivacyError, match="shape"):
        encode(np.zeros((1, 300)), spec, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(PrivacyError, match=r"l2 norm 3\.5 > max_norm = 3"):
        encode(x * 3.5, spec, **kwargs)  # type: ignore[arg-type]
    encode(x * 3.0, spec, **kwargs)  # type: ignore[arg-type]  # at the bound: fine
    with pytest.raises(PrivacyError, match="the total must be a uint32"):
        decode(np.zeros(spec.padded_dim, dtype=np.uint64), spec, seed=SEED, round_idx=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"unit": "batch"}, "unit must be one of"),
        ({"shares": 5}, "shares = 5 exceeds clients = 4"),
        ({"bits": 65}, "bits must be an integer in"),
        ({"clip": 0.0}, "clip must be a finite number"),
        ({"max_norm": float("nan")}, "max_norm must be a finite number"),
        ({"noise_multiplier": -1.0}, "noise_multiplier must be"),
        ({"beta": 1.0}, "beta must be"),
        ({"dim": 0}, "dim must be an integer >= 1"),
        ({"unit": "client", "max_norm": 2.0}, "max_norm .* must be <= clip"),
    ],
)
def test_bad_specs_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(PrivacyError, match=message):
        _spec(**overrides)
