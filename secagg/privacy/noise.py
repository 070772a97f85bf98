"""Where DP-SGD's randomness comes from: a keyed CSPRNG, never a seed another party knows.

DP-SGD's guarantee holds only against parties who cannot predict its randomness: whoever can
regenerate the noise subtracts it, and whoever knows which records joined a batch loses the
amplification that Poisson subsampling gives. So each trainer draws from a
:class:`NoiseSource`: a 256-bit key, and for the k-th call of its ``train`` a
:class:`RoundNoise` whose streams are AES-CTR keystreams (:class:`~secagg.crypto.prg.Keystream`)
under keys HKDF derives from (key, purpose, k): one for the Poisson sampling, one for the
Gaussian noise, one for exact discrete Gaussian noise, and a seed for torch's global RNG. Keys
are never reused across rounds or purposes, so no draw repeats.

Where the key comes from is the whole point:

- :meth:`NoiseSource.fresh`: 32 bytes from the operating system's CSPRNG (``secrets``). A
  hospital's node uses it (:mod:`secagg.flower.node`); nothing the coordinator sends enters it.
- :meth:`NoiseSource.from_seed`: derived from an integer seed. **Simulation only**: runs are
  reproducible, and anyone who knows the seed (``run.seed`` is in the config) regenerates the
  noise bit for bit.

Gaussian samples: Box-Muller on 53-bit uniforms in float64, then scaled and rounded to the
gradient's float32, as Opacus' ``torch.normal`` noise is (σ, q and steps are unchanged, so is
the accounting). Honest limitations of those: the tails stop at about 8.6 standard deviations
(mass beyond ≈ 1e-17, far below δ), and rounded floating-point Gaussians admit the precision
attacks of Mironov (CCS 2012) and Jin et al. (S&P 2022) that Opacus' ``secure_mode`` blunts.
Where noise is integer (added before secure aggregation), :meth:`RoundNoise.discrete_gaussian`
has neither: exact draws from the discrete Gaussian N_Z(0, σ²) on their own fourth stream
(:mod:`secagg.privacy.discrete`, Canonne, Kamath and Steinke 2020).
"""

from __future__ import annotations

import secrets
from fractions import Fraction

import numpy as np

from secagg.crypto.kdf import derive_key, encode_context
from secagg.crypto.prg import Keystream
from secagg.errors import PrivacyError
from secagg.privacy.discrete import sample_discrete_gaussian

KEY_BYTES = 32
_SAMPLING = b"secagg/dp-sgd/poisson-sampling"
_GAUSSIAN = b"secagg/dp-sgd/gaussian-noise"
_TORCH = b"secagg/dp-sgd/torch-seed"
_SEED = b"secagg/dp-sgd/simulation-seed"
_DISCRETE = b"secagg/dp/discrete-gaussian"
#: 2^-53: uniforms are k / 2^53 for 53-bit integers k (every float64 step in [0, 1)).
_ULP = float(2.0**-53)


class NoiseSource:
    """A trainer's DP randomness: one secret key, one fresh set of streams per round."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise PrivacyError(f"a noise key is {KEY_BYTES} bytes, got {len(key)!r}")
        self._key = key

    @classmethod
    def fresh(cls) -> NoiseSource:
        """A key from the OS CSPRNG: noise that no other party can regenerate."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_seed(cls, seed: int) -> NoiseSource:
        """A key derived from ``seed``: reproducible runs, for simulations only (see module doc)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise PrivacyError(f"a noise seed must be an integer in [0, 2^64), got {seed!r}")
        return cls(derive_key(seed.to_bytes(8, "big"), info=encode_context(_SEED)))

    def __repr__(self) -> str:  # never print the key
        return "NoiseSource(<key hidden>)"

    def for_round(self, index: int) -> RoundNoise:
        """The streams of the trainer's ``index``-th call (each index once, never again)."""
        return RoundNoise(
            Keystream(derive_key(self._key, info=encode_context(_SAMPLING, index))),
            Keystream(derive_key(self._key, info=encode_context(_GAUSSIAN, index))),
            int.from_bytes(
                derive_key(self._key, info=encode_context(_TORCH, index), length=8), "big"
            )
            >> 1,
            discrete=Keystream(derive_key(self._key, info=encode_context(_DISCRETE, index))),
        )


class RoundNoise:
    """One round's draws: Poisson sampling masks, Gaussian and discrete Gaussian noise, and
    torch's seed. ``discrete`` is optional so three-stream constructions keep working."""

    def __init__(
        self,
        sampling: Keystream,
        gaussian: Keystream,
        torch_seed: int,
        discrete: Keystream | None = None,
    ) -> None:
        self._sampling = sampling
        self._gaussian = gaussian
        self._discrete = discrete
        #: seed of torch's global RNG for this round (a 63-bit value)
        self.torch_seed = torch_seed

    def poisson_mask(self, n: int, rate: float) -> np.ndarray:
        """Which of ``n`` records join the next batch: each independently with prob. ``rate``."""
        return _uniforms(self._sampling, n) < rate

    def gaussian(self, count: int) -> np.ndarray:
        """``count`` independent standard normal float64 samples (Box-Muller)."""
        pairs = (count + 1) // 2
        u = _uniforms(self._gaussian, 2 * pairs)
        radius = np.sqrt(-2.0 * np.log1p(-u[:pairs]))  # 1 - u in (0, 1]: log is finite
        angle = (2.0 * np.pi) * u[pairs:]
        out = np.empty(2 * pairs, dtype=np.float64)
        np.multiply(radius, np.cos(angle), out=out[:pairs])
        np.multiply(radius, np.sin(angle), out=out[pairs:])
        return out[:count]

    def discrete_gaussian(self, count: int, sigma_squared: Fraction | int | float) -> np.ndarray:
        """``count`` exact draws from the discrete Gaussian N_Z(0, σ²) (int64; see module doc)."""
        if self._discrete is None:
            raise PrivacyError("this RoundNoise has no discrete-Gaussian stream; use for_round")
        return sample_discrete_gaussian(self._discrete, sigma_squared, count)


def _uniforms(stream: Keystream, count: int) -> np.ndarray:
    """``count`` uniform float64 values in [0, 1), 53 random bits each."""
    return (stream.words(count) >> np.uint64(11)).astype(np.float64) * _ULP
