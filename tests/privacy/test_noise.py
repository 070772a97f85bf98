"""The DP noise source: a keyed CSPRNG whose draws are Gaussian, and whose key is everything."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from secagg.config import PrivacySection, TrainingSection
from secagg.data import ClientData
from secagg.errors import PrivacyError
from secagg.models import build_model, get_flat_params
from secagg.privacy.noise import NoiseSource
from secagg.training import LocalTrainer


def test_gaussian_draws_are_standard_normal() -> None:
    draws = NoiseSource.from_seed(1).for_round(0).gaussian(200_001)
    assert draws.shape == (200_001,) and draws.dtype == np.float64
    assert abs(draws.mean()) < 0.01 and abs(draws.std() - 1) < 0.01
    assert stats.kstest(draws, "norm").pvalue > 1e-3
    # Box-Muller on 53-bit uniforms: nothing infinite, tails stop near 8.6 sigma
    assert np.isfinite(draws).all() and np.abs(draws).max() < 8.6


def test_poisson_masks_include_each_record_at_the_rate() -> None:
    noise = NoiseSource.from_seed(2).for_round(0)
    masks = np.stack([noise.poisson_mask(1000, 0.1) for _ in range(200)])
    assert abs(masks.mean() - 0.1) < 0.005
    assert noise.poisson_mask(50, 1.0).all()  # q = 1: everyone, every step


def test_each_round_and_each_key_draws_afresh() -> None:
    source = NoiseSource.from_seed(3)
    first, again = source.for_round(0).gaussian(4096), source.for_round(0).gaussian(4096)
    np.testing.assert_array_equal(first, again)  # one key and round: the same stream
    for other in (source.for_round(1), NoiseSource.from_seed(4).for_round(0)):
        assert abs(np.corrcoef(first, other.gaussian(4096))[0, 1]) < 0.1
    a, b = NoiseSource.fresh().for_round(0), NoiseSource.fresh().for_round(0)
    assert abs(np.corrcoef(a.gaussian(4096), b.gaussian(4096))[0, 1]) < 0.1
    assert "key" in repr(source) and source._key.hex() not in repr(source)


def test_a_noise_key_is_32_bytes_and_a_seed_an_unsigned_64_bit_integer() -> None:
    with pytest.raises(PrivacyError, match="32 bytes"):
        NoiseSource(b"short")
    with pytest.raises(PrivacyError, match="2\\^64"):
        NoiseSource.from_seed(-1)


def _dp_trainer(noise: NoiseSource | None, seed: int = 0) -> LocalTrainer:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    data = ClientData("h", X, y, X[:10], y[:10])
    return LocalTrainer(
        data,
        lambda: build_model("logreg", 5, 2, seed=1),
        TrainingSection(batch_size=10, lr=0.1),
        PrivacySection(mode="local-dp", noise_multiplier=1.0),
        rounds=2,
        seed=seed,
        noise=noise,
    )


def test_the_trainer_draws_its_sampling_and_noise_from_its_source_alone() -> None:
    """Same key, same update whatever the seed; another key, another update; no source:
    the key derives from the seed (simulations)."""
    params = get_flat_params(build_model("logreg", 5, 2, seed=1))

    def update(noise: NoiseSource | None, seed: int = 0) -> np.ndarray:
        return _dp_trainer(noise, seed).train(params, 0).update

    key = NoiseSource.fresh()._key
    np.testing.assert_array_equal(
        update(NoiseSource(key), seed=0), update(NoiseSource(key), seed=99)
    )
    assert not np.array_equal(update(NoiseSource(key)), update(NoiseSource.fresh()))
    np.testing.assert_array_equal(update(None, seed=5), update(NoiseSource.from_seed(5)))
