"""Exact discrete Gaussian noise N_Z(0, σ²), driven by a CSPRNG keystream.

Why exact: a mechanism's privacy proof is about the distribution it samples, and a
floating-point sampler samples something else. Mironov (CCS 2012) broke textbook Laplace
implementations through the gaps and uneven spacing of their floating-point outputs, and Jin et
al. (S&P 2022) did the same to Gaussian samplers (Box-Muller, rounded normals) through their
support and precision: outputs that one neighbouring dataset can produce and the other cannot
reveal it outright, whatever the nominal ε. Integer noise for secure aggregation has to be
sampled as an exact distribution on the integers, not rounded from a float.

The sampler is Algorithm 3 of Canonne, Kamath and Steinke, "The Discrete Gaussian for
Differential Privacy" (NeurIPS 2020), with t = floor(σ) + 1: draw Y from the discrete Laplace
P(y) ∝ exp(-|y|/t) (a uniform U in {0..t-1} kept with probability exp(-U/t), plus t times a
geometric count of Bernoulli(exp(-1)) successes, a sign bit, and a restart on "-0"), then keep
Y with probability exp(-(|Y| - σ²/t)² / (2σ²)). Candidates are processed in numpy batches;
Python loops only over rejection rounds.

Exactness argument. Every random decision consumes uniform 64-bit keystream words
(:meth:`~secagg.crypto.prg.Keystream.words`, AES-CTR), never numpy's RNG:

* uniform integers in [0, m) reject words w >= floor(2^64/m)·m, then take w mod m;
* a Bernoulli(exp(-γ)) trial compares U < exp(-γ) lazily, where a word k stands for
  U ∈ [k/2^64, (k+1)/2^64). A float64 estimate p̃ of exp(-γ) with a rigorous error margin
  (:data:`FLOAT_RELATIVE_MARGIN`, :data:`FLOAT_ABSOLUTE_MARGIN`) decides all but ~2^-30 of the
  trials; the rest are decided exactly by :func:`_exact_bernoulli_exp`: interval bounds on
  exp(-γ) from :mod:`decimal` (correctly rounded ``exp``) at a precision that grows with the
  number of bits of U read so far, more words of U drawn from the same stream until U's
  interval lies on one side. Each decision is therefore exactly ``U < exp(-γ)`` for a uniform
  real U, i.e. exactly Bernoulli(exp(-γ)), whichever path decides it.

Why the float margin is rigorous (u = 2^-53): γ is computed from exact integers and the
Fraction σ² by float64 operations each with relative error ≤ u. For the acceptance test,
with a = σ²/t ≤ σ and x = |d|/σ = sqrt(2γ), d = |Y| - a: the rounding of a, |Y| and the
subtraction perturb d by ≤ u(|Y| + a + |d|)(1 + u) ≤ 2u(a + |d|)(1 + u); squaring and dividing
add ≤ 3u relative. Altogether |γ̃ - γ| ≤ u(7γ + 2·sqrt(2γ)) + O(u²), below 2^-40 for
γ ≤ 700. exp(-γ̃) then differs from exp(-γ) by a factor within e^(±2^-40), plus the libm/SIMD
exp error (a few ulps). A relative margin of 2^-30 leaves a factor > 2^9 of slack, which also
covers the rounding of the bounds themselves; the absolute 2^-60 keeps the upper bound
positive. For γ̃ > 700 (so γ > 699 and exp(-γ) < 2^-1008) the float path uses the bounds
[0, 2^-960 + 2^-60]: it never accepts, and rejects whenever U ≥ 2^-53. σ² is restricted to
[2^-100, 2^100] so that no intermediate underflows or overflows (outside that range the noise
is either identically zero or beyond int64 anyway).
"""

from __future__ import annotations

import decimal
import functools
import math
import numbers
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from secagg.crypto.prg import Keystream
from secagg.errors import PrivacyError

#: Relative error margin of the float64 estimate of exp(-γ) (rigorous need: ~2^-40).
FLOAT_RELATIVE_MARGIN = 2.0**-30
#: Absolute error margin of the same estimate (covers exp(-γ) below float64's normal range).
FLOAT_ABSOLUTE_MARGIN = 2.0**-60
#: Range of σ² accepted: keeps every float64 intermediate normal and every sample in int64.
MIN_SIGMA_SQUARED = Fraction(1, 2**100)
MAX_SIGMA_SQUARED = Fraction(2**100)

#: Beyond this γ̃ the float path takes exp(-γ) ∈ [0, _TINY] (true value < 2^-1008 < _TINY).
_EXP_CUTOFF = 700.0
_TINY = 2.0**-960
_U53 = 2.0**-53
_SHIFT = np.uint64(11)
_TWO64 = 1 << 64
_ONE = Fraction(1)
#: Candidates per batch: large enough to amortise numpy's per-call cost, small enough for L2.
_BLOCK = 1 << 16
#: exp(-γ) < 2^-bits whenever γ > (7/10)·bits, since ln 2 < 0.7.
_LN2_ABOVE = Fraction(7, 10)


def sample_discrete_gaussian(
    stream: Keystream, sigma_squared: Fraction | int | float, count: int
) -> np.ndarray:
    """``count`` i.i.d. draws from N_Z(0, σ²), sampled exactly from ``stream`` (int64).

    σ² is taken exactly (a float through ``Fraction(value)``). The stream is consumed; how
    many words a call uses is random, so draws of one call are not a prefix of a longer one.
    """
    sigma2 = _exact_variance(sigma_squared)
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
        raise PrivacyError(f"discrete Gaussian count must be an integer >= 0, got {count!r}")
    count = int(count)
    out = np.empty(count, dtype=np.int64)
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1  # floor(σ) + 1, exactly
    shift, two_sigma2 = sigma2 / t, 2 * sigma2
    shift_f, two_sigma2_f = float(shift), float(two_sigma2)
    rate = _expected_yield(float(sigma2), t)
    filled = 0
    while filled < count:
        need = count - filled
        y = _discrete_laplace(stream, t, min(_BLOCK, math.ceil(need / rate * 1.1) + 16))
        magnitude = np.abs(y)
        d = magnitude.astype(np.float64) - shift_f
        gamma = d * d / two_sigma2_f

        def exact_gamma(i: int, magnitude: np.ndarray = magnitude) -> Fraction:
            return (int(magnitude[i]) - shift) ** 2 / two_sigma2

        kept = y[_bernoulli_exp(stream, gamma, y.size, exact_gamma)][:need]
        out[filled : filled + kept.size] = kept
        filled += kept.size
    return out


def discrete_gaussian_pmf(sigma_squared: float, support: np.ndarray) -> np.ndarray:
    """P(X = x) for X ~ N_Z(0, σ²) at the integers ``support`` (float64; tests, accounting).

    The normaliser is the sum of exp(-x²/2σ²) over |x| ≤ 12σ + 10 (the rest is < e^-72 of
    it); past 2^20 terms it is the Poisson-summation form sqrt(2πσ²)(1 + 2Σ e^(-2π²σ²k²)),
    equal to the full sum to float precision.
    """
    s2 = float(sigma_squared)
    if isinstance(sigma_squared, bool) or not math.isfinite(s2) or s2 <= 0:
        raise PrivacyError(f"discrete Gaussian σ² must be finite and > 0, got {sigma_squared!r}")
    x = np.asarray(support, dtype=np.float64)
    if not np.array_equal(x, np.round(x)):
        raise PrivacyError("the discrete Gaussian pmf is defined on integers only")
    sigma = math.sqrt(s2)
    reach = math.ceil(12 * sigma + 10)
    if reach <= 1 << 20:
        grid = np.arange(-reach, reach + 1, dtype=np.float64)
        norm = float(np.exp(-grid * grid / (2 * s2)).sum())
    else:
        norm = math.sqrt(2 * math.pi * s2) * (
            1 + 2 * sum(math.exp(-2 * math.pi**2 * s2 * k * k) for k in (1, 2, 3))
        )
    return np.exp(-x * x / (2 * s2)) / norm


def _exact_variance(value: object) -> Fraction:
    """σ² as an exact Fraction, refusing what is not a finite number in the supported range."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise PrivacyError(f"discrete Gaussian σ² must be a real number, got {value!r}")
    if isinstance(value, Fraction):
        sigma2 = value
    elif isinstance(value, numbers.Rational):  # int, numpy integers
        sigma2 = Fraction(int(value.numerator), int(value.denominator))
    else:
        as_float = float(value)  # exact for float32/float64
        if not math.isfinite(as_float):
            raise PrivacyError(f"discrete Gaussian σ² must be finite, got {value!r}")
        sigma2 = Fraction(as_float)
    if sigma2 <= 0:
        raise PrivacyError(f"discrete Gaussian σ² must be > 0, got {value!r}")
    if not MIN_SIGMA_SQUARED <= sigma2 <= MAX_SIGMA_SQUARED:
        raise PrivacyError(f"discrete Gaussian σ² must be in [2^-100, 2^100], got {value!r}")
    return sigma2


@functools.lru_cache(maxsize=64)
def _expected_yield(sigma2: float, t: int) -> float:
    """Expected accepted samples per candidate drawn (only sizes batches; need not be exact)."""
    decay = math.exp(-1 / t)
    keep_uniform = (1 - math.exp(-1)) / (t * (1 - decay))  # E[exp(-U/t)]
    keep_sign = 1 - (1 - decay) / 2  # the "-0" restart
    step = max(1, t // 512)
    y = np.arange(0, 40 * t + 1, step, dtype=np.float64)
    weights = np.exp(-y / t - (y - sigma2 / t) ** 2 / (2 * sigma2))
    accept = (1 - decay) / (1 + decay) * (weights[0] + 2 * step * weights[1:].sum())
    return max(1e-3, min(1.0, keep_uniform * keep_sign * accept))


def _discrete_laplace(stream: Keystream, t: int, n: int) -> np.ndarray:
    """Up to ``n`` i.i.d. draws with P(y) ∝ exp(-|y|/t) (CKS Algorithm 2 with s = 1), int64."""
    if t == 1:  # U = 0 and exp(-0/1) = 1: nothing to draw
        u = np.zeros(n, dtype=np.int64)
    else:
        u = _uniform_below(stream, t, n)

        def exact_gamma(i: int) -> Fraction:
            return Fraction(int(u[i]), t)

        u = u[_bernoulli_exp(stream, u.astype(np.float64) / t, n, exact_gamma)]
    v = _geometric(stream, u.size)
    if v.size and int(v.max()) > ((1 << 62) - t) // t:  # probability < e^-2000: never
        raise PrivacyError("discrete Laplace draw beyond int64; σ² too large")
    x = u + t * v
    negative = _random_bits(stream, x.size)
    y = np.where(negative, -x, x)
    return y[~(negative & (x == 0))]


def _uniform_below(stream: Keystream, m: int, n: int) -> np.ndarray:
    """``n`` exactly uniform integers in [0, m) (1 ≤ m < 2^63), by rejection on 64-bit words."""
    limit = (_TWO64 // m) * m
    out = np.empty(n, dtype=np.uint64)
    filled = 0
    while filled < n:
        words = stream.words(n - filled)
        if limit < _TWO64:
            words = words[words < np.uint64(limit)]
        np.remainder(words, np.uint64(m), out=out[filled : filled + words.size])
        filled += words.size
    return out.astype(np.int64)


def _geometric(stream: Keystream, n: int) -> np.ndarray:
    """``n`` counts of Bernoulli(exp(-1)) successes before the first failure (int64)."""
    v = np.zeros(n, dtype=np.int64)
    alive = np.arange(n)
    while alive.size:
        alive = alive[_bernoulli_exp(stream, 1.0, alive.size, _gamma_one)]
        v[alive] += 1
    return v


def _gamma_one(_: int) -> Fraction:
    return _ONE


def _random_bits(stream: Keystream, n: int) -> np.ndarray:
    """``n`` uniform bits (bool), 64 from each keystream word."""
    words = stream.words((n + 63) // 64)
    return np.unpackbits(words.view(np.uint8), count=n).astype(bool)


def _bernoulli_exp(
    stream: Keystream,
    gamma: np.ndarray | float,
    n: int,
    exact_gamma: Callable[[int], Fraction],
) -> np.ndarray:
    """``n`` independent Bernoulli(exp(-γ_i)) decisions, each exactly ``U_i < exp(-γ_i)``.

    ``gamma`` is the float64 estimate (an array of n values, or one for all); ``exact_gamma(i)``
    gives γ_i exactly, needed only when the float margin cannot decide (see module doc).
    """
    words = stream.words(n)
    relative, absolute = FLOAT_RELATIVE_MARGIN, FLOAT_ABSOLUTE_MARGIN
    if isinstance(gamma, float):
        if gamma > _EXP_CUTOFF:
            low, high = 0.0, _TINY + absolute
        else:
            p = math.exp(-gamma)
            low, high = p * (1.0 - relative) - absolute, p * (1.0 + relative) + absolute
        bounds: tuple[np.ndarray | float, np.ndarray | float] = (low, high)
    else:
        p = np.exp(-gamma)
        low_a, high_a = p * (1.0 - relative), p * (1.0 + relative)
        low_a -= absolute
        high_a += absolute
        huge = gamma > _EXP_CUTOFF
        if huge.any():
            low_a[huge], high_a[huge] = 0.0, _TINY + absolute
        bounds = (low_a, high_a)
    # The top 53 bits j of a word: U ∈ [j·2^-53, (j+1)·2^-53), both ends exact in float64.
    u_low = (words >> _SHIFT).astype(np.float64)
    u_low *= _U53
    accept = (u_low + _U53) <= bounds[0]
    undecided = ~accept & (u_low < bounds[1])
    for i in np.flatnonzero(undecided):
        accept[i] = _exact_bernoulli_exp(stream, exact_gamma(int(i)), int(words[i]))
    return accept


def _exact_bernoulli_exp(stream: Keystream, gamma: Fraction, word: int) -> bool:
    """``U < exp(-γ)`` decided exactly; U's first 64 bits are ``word``, more come from stream."""
    if gamma == 0:
        return True  # U < 1 always
    prefix, bits = word, 64
    while True:
        low, high = _exp_neg_scaled(gamma, bits)
        if prefix + 1 <= low:  # U < (prefix + 1)/2^bits ≤ exp(-γ)
            return True
        if prefix >= high:  # U ≥ prefix/2^bits ≥ exp(-γ)
            return False
        prefix = (prefix << 64) | int(stream.words(1)[0])
        bits += 64


@functools.lru_cache(maxsize=4096)
def _exp_neg_scaled(gamma: Fraction, bits: int) -> tuple[int, int]:
    """Integers low ≤ 2^bits·exp(-γ) ≤ high, at most ~2 apart, for γ > 0.

    Decimal's division and ``exp`` are correctly rounded at precision P, so the computed value
    is within a factor 1 ± (γ + 1)·10^(1-P) of exp(-γ) (argument rounding plus result
    rounding); the bounds widen that tenfold. P grows with ``bits`` so the bounds stay tight.
    """
    if gamma > _LN2_ABOVE * bits:  # exp(-γ) < 2^-bits
        return 0, 1
    whole_digits = len(str(gamma.numerator // gamma.denominator + 1))
    precision = (bits * 30103) // 100000 + 15 + whole_digits + 5
    context = decimal.Context(
        prec=precision,
        rounding=decimal.ROUND_HALF_EVEN,
        Emin=decimal.MIN_EMIN,
        Emax=decimal.MAX_EMAX,
        traps=[],
    )
    argument = context.divide(decimal.Decimal(gamma.numerator), decimal.Decimal(gamma.denominator))
    value = Fraction(context.exp(context.minus(argument)))
    eta = (gamma + 1) / 10 ** (precision - 2)
    low, high = value * (1 - eta), value * (1 + eta)
    return (
        (low.numerator << bits) // low.denominator,
        -((-high.numerator << bits) // high.denominator),
    )
