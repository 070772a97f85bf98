"""Real vectors <-> Z_{2^b} for distributed DP: rotate, scale, round, add a noise share, wrap.

This is the integer encoding of the *distributed discrete Gaussian* mechanism (Kairouz, Liu &
Steinke, ICML 2021, "KLS" below; TFF's ``DistributedDpSumFactory``). Every client adds a share
of discrete Gaussian noise to an integer version of its update; secure aggregation reveals only
the sum, in which the honest shares add up to the noise the accountant relies on. The pipeline:

client  x in R^d (||x||_2 <= max_norm; the caller clips)
        -> pad with zeros to d' = next power of two
        -> random rotation  y = H D x / sqrt(d')   (H: Walsh-Hadamard, D: public random signs)
        -> multiply by the scale s
        -> randomized rounding to Z^d'             (record unit: plain; client unit: conditional)
        -> + the client's noise share              (discrete Gaussian, ``share_variance``)
        -> two's complement mod 2^b                (uint32 for b <= 32, else uint64)
server  modular sum -> centred lift to [-2^(b-1), 2^(b-1)) -> wrap check (|v_j| <= B)
        -> / s -> inverse rotation -> drop the padding

Why rotate. Rounding and the wrap bound act per coordinate. The rotation spreads the mass of
any vector evenly over coordinates (each becomes sub-Gaussian with parameter ||x||^2 / d'), so
the sum fits in far fewer bits than a worst-case coordinate bound (||x||_inf <= ||x||_2) would
need. The signs come from a *public* per-round seed: every client must use the same rotation
(the server inverts the rotation of the sum), and secrecy buys nothing; what matters is that
the signs are independent of the honest clients' data, so the seed should be fixed per round
and not chosen by anyone who sees the updates. The sign stream is AES-CTR
(:class:`~secagg.crypto.prg.Keystream`) keyed by HKDF(seed, context("secagg/ddp/rotation",
round)), so it is bit-identical on every platform, unlike a NumPy RNG.

Sensitivity Δ₂ (integer units, add/remove one unit of privacy).

- ``unit = "client"``: KLS's *conditional* randomized rounding. With c = s·C and ||y||_2 <= c,
  unbiased rounding R(y) satisfies ||R(y)||_2 <= Δ₂ with probability >= 1 - β_r, where
  Δ₂² = min(c² + d'/4 + sqrt(2 ln(1/β_r))·(c + sqrt(d')/2), (c + sqrt(d'))²); the rounding is
  redrawn until it does (:func:`conditional_round`). Every encoding then has norm <= Δ₂, so
  adding or removing a client moves the integer sum by at most Δ₂. The default β_r = e^-0.5
  makes sqrt(2 ln(1/β_r)) = 1 and accepts at least 39 % of draws.
- ``unit = "record"``: plain unbiased rounding R_u(y)_j = floor(y_j) + [u_j < frac(y_j)] with
  client-private uniform u (``rng``; it need not be secret). Coupling argument: fix u. The
  rounding error R_u(y)_j - y_j lies in [-u_j, 1 - u_j), an interval of length 1, so for two
  inputs |R_u(y)_j - R_u(y')_j| < |y_j - y'_j| + 1 and, by the triangle inequality in ℓ2,
  ||R_u(y) - R_u(y')||_2 < ||y - y'||_2 + sqrt(d') <= s·C + sqrt(d') (the rotation is
  orthonormal, and neighbouring datasets change the client's vector by at most C). For each
  fixed u the mechanism is therefore "integer vector of sensitivity <= Δ₂ plus discrete
  Gaussian noise", and the released distribution is the mixture over u of these, the *same*
  mixing weights on both neighbours. Rényi divergence is jointly quasi-convex, so
  D_α(E_u P_u || E_u Q_u) <= sup_u D_α(P_u || Q_u): the mixture is no less private than the
  worst fixed u. Hence Δ₂ = s·C + sqrt(d') (times 1 + 2^-30 to cover float64 rounding in the
  rotation and scaling). No conditioning is needed, and rounding stays unbiased.

Noise. Each client adds a share with variance σ_s² = (z·Δ₂)² / k (``share_variance``, an exact
:class:`~fractions.Fraction`, rounded up): any k honest shares sum to variance (z·Δ₂)², the
noise multiplier z the accountant was given. The share is drawn by the caller (a callable
count -> int64 array), keyed by a secret the server does not know.

The no-wrap bound B. For the honest sum of n' <= n encodings, coordinate j of the centred sum
is  s·(H D X / sqrt(d'))_j + E_j + N_j  with X = Σ x_i (||X|| <= n·max_norm), E_j the summed
rounding errors (|E_j| < n, each error lies in (-1, 1); deterministic, so it also holds for the
conditional rounding) and N_j the summed noise shares.

- Rotation: for a fixed j, (H D X)_j = Σ_i (H_ji D_i) X_i is a Rademacher sum (the signs are
  shared, so the rotation of the sum is the sum of the rotations), sub-Gaussian with parameter
  ||X||² / d' after the 1/sqrt(d') (Hoeffding): s²·n²·max_norm² / d' after scaling.
- Noise: the discrete Gaussian N_Z(0, σ²) is σ²-sub-Gaussian (Canonne, Kamath & Steinke 2020,
  Cor. 9), so the sum of n independent shares has parameter n·σ_s².
- The signs and the noise are independent, so their sum is sub-Gaussian with parameter
  V = s²n²max_norm²/d' + n·σ_s², and P(|·| >= t) <= 2 exp(-t²/(2V)). A union bound over the d'
  coordinates gives

      B = ceil( n + sqrt(2·V·ln(2d'/β)) ),   every |v_j| <= B except with probability <= β.

  (The brief's form, s·n·max_norm·sqrt(2 ln(4d'/β)/d') + n + sqrt(2·n·σ_s²·ln(4d'/β)), splits β
  between the two events; it is also valid, but looser by up to sqrt(2) in the sum of the two
  terms, since sqrt(a + b) <= sqrt(a) + sqrt(b) and one event costs ln(2d'/β) not ln(4d'/β).)

Scale and the guard bit. s is the largest scale with B <= 2^(b-2) (bisection; B grows with s,
nearly linearly). An honest sum then lies in [-B, B]; a value outside it after the centred lift
means the sum wrapped or a client sent something out of range, and :func:`decode` rejects the
round (:class:`~secagg.errors.WrapError`). A wrap can pass unseen only if the true value
travels at least 2^b - B >= 3B, so a mistake by one bound or one client is caught. It is no
proof of honesty: a client may still shift the sum by anything that keeps it within [-B, B].
The scale is capped at s·max_norm <= 2^52, so every scaled coordinate, its floor and fraction
are exact in float64. A larger scale means finer rounding: the ratio Δ₂/(s·C) ("inflation",
how much rounding raises the sensitivity and so the noise) must stay <= 1.05, or the spec is
refused with the smallest ``bits`` that would do.

All derived numbers are recomputed on every party from the public spec. They need not agree to
the last bit across platforms (libm's log may differ by an ulp): s is rounded down to 30
significant bits, and the only value that must match exactly, the sign vector, comes from AES.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Integral, Real

import numpy as np

from secagg.crypto.kdf import derive_key, encode_context
from secagg.crypto.prg import Keystream
from secagg.errors import PrivacyError, WrapError
from secagg.quantize import modular_sum

MAX_BITS = 64
#: Largest Δ₂ / (s·C) accepted: rounding may raise the sensitivity (and the noise) by <= 5 %.
MAX_INFLATION = 1.05
#: Conditional rounding redraws at most this often; failing all is a probability <= β_r^1000.
MAX_ROUNDING_TRIES = 1000
#: Largest s·max_norm: float64 resolves unit steps (floor, fraction) exactly below 2^53.
MAX_SCALED = float(2**52)
UNITS = ("record", "client")
#: A noise share: count -> int64 array of that many draws (discrete Gaussian, share_variance).
NoiseShare = Callable[[int], np.ndarray]

_ROTATION = b"secagg/ddp/rotation"
#: Relative margin on the record-level Δ₂ for float64 error in rotation and scaling.
_FLOAT_SLACK = 2.0**-30
#: Relative margin on computed bounds (B, share variance): float error is ~2^-50 relative.
_ROUND_UP = 1.0 + 2.0**-40
#: Significant bits kept in s, so parties with slightly different libm agree on it.
_SCALE_BITS = 30
#: Largest |noise share| accepted from the callable: keeps the int64 sum from overflowing.
_MAX_SHARE = 2**62


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise PrivacyError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _real(value: object, name: str, *, low: float, high: float, open_low: bool = True) -> float:
    """A finite float in (low, high) (or [low, high) with open_low=False), else PrivacyError."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if open_low else v >= low) and v < high
    if not ok:
        bracket = "(" if open_low else "["
        raise PrivacyError(
            f"{name} must be a finite number in {bracket}{low:g}, {high:g}), got {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


def padded_dimension(dim: int) -> int:
    """d': the Walsh-Hadamard rotation works on the next power of two >= dim."""
    return 1 << (dim - 1).bit_length()


@dataclass(frozen=True)
class _Calibration:
    """What one ``bits`` allows: the scale and the numbers derived from it."""

    scale: float
    sensitivity: float
    share_variance: Fraction
    bound: int


@dataclass(frozen=True)
class IntegerSpec:
    """The public parameters of the integer encoding, identical on every client and the server.

    ``dim`` d: length of the real vector. ``clients`` n: the most summands one sum may hold.
    ``clip`` C: ℓ2 bound of the unit of privacy (one record's gradient for ``unit="record"``,
    one client's whole update for ``unit="client"``). ``max_norm``: ℓ2 bound of one client's
    whole real vector (C times the largest batch for record level; C, or less, for client
    level). ``bits`` b: group Z_{2^b}. ``noise_multiplier`` z: the honest noise std is z·Δ₂.
    ``shares`` k <= n: how many honest noise shares the guarantee relies on; each share has
    variance (z·Δ₂)²/k. ``beta``: failure probability of the no-wrap bound. ``rounding_beta``:
    KLS's β for conditional rounding (client unit only).

    Derived (see the module docstring): :attr:`padded_dim`, :attr:`scale`,
    :attr:`l2_sensitivity`, :attr:`share_variance`, :attr:`bound`, :attr:`inflation`.
    """

    dim: int
    clients: int
    clip: float
    max_norm: float
    bits: int
    noise_multiplier: float
    shares: int
    unit: str
    beta: float = 2.0**-40
    rounding_beta: float = math.exp(-0.5)
    _calibration: _Calibration | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "dim", _positive_int(self.dim, "dim"))
        set_(self, "clients", _positive_int(self.clients, "clients"))
        set_(self, "clip", _real(self.clip, "clip", low=0.0, high=math.inf))
        set_(self, "max_norm", _real(self.max_norm, "max_norm", low=0.0, high=math.inf))
        bits = self.bits
        if isinstance(bits, bool) or not isinstance(bits, Integral) or not 2 <= bits <= MAX_BITS:
            raise PrivacyError(f"bits must be an integer in [2, {MAX_BITS}], got {bits!r}")
        set_(self, "bits", int(bits))
        set_(
            self,
            "noise_multiplier",
            _real(
                self.noise_multiplier, "noise_multiplier", low=0.0, high=math.inf, open_low=False
            ),
        )
        set_(self, "shares", _positive_int(self.shares, "shares"))
        if self.shares > self.clients:
            raise PrivacyError(
                f"shares = {self.shares} exceeds clients = {self.clients}: the noise cannot "
                "rely on more honest shares than there are summands"
            )
        if self.unit not in UNITS:
            raise PrivacyError(f"unit must be one of {UNITS}, got {self.unit!r}")
        set_(self, "beta", _real(self.beta, "beta", low=0.0, high=1.0))
        set_(self, "rounding_beta", _real(self.rounding_beta, "rounding_beta", low=0.0, high=1.0))
        if self.unit == "client" and self.max_norm > self.clip:
            raise PrivacyError(
                f"unit 'client' makes the client's whole vector the unit of privacy, so "
                f"max_norm ({self.max_norm:g}) must be <= clip ({self.clip:g}); set max_norm = clip"
            )
        calibration = self._calibrate(self.bits)
        inflation = self._inflation_of(calibration)
        if inflation > MAX_INFLATION:
            need = self._bits_needed()
            what = (
                f"the sum of {self.clients} clients' {self.dim}-dim vectors (max_norm "
                f"{self.max_norm:g}, clip {self.clip:g}, z {self.noise_multiplier:g}, "
                f"{self.shares} shares, unit {self.unit!r})"
            )
            fix = (
                f"needs bits >= {need}"
                if need is not None
                else f"cannot fit even in bits = {MAX_BITS}; split the clients into smaller "
                "groups (fewer summands per sum) or lower max_norm"
            )
            why = (
                f"no scale keeps the no-wrap bound B <= 2^{self.bits - 2}"
                if math.isinf(inflation)
                else f"the best scale leaves rounding inflation Δ₂/(s·C) = {inflation:.3g} "
                f"> {MAX_INFLATION}"
            )
            raise PrivacyError(
                f"protection.bits = {self.bits} is too few: {what} {fix} (at bits = "
                f"{self.bits} {why})"
            )
        set_(self, "_calibration", calibration)

    # -- calibration -------------------------------------------------------------------------

    def _sensitivity_at(self, scale: float) -> float:
        c, d = scale * self.clip, float(self.padded_dim)
        if self.unit == "record":
            return (c + math.sqrt(d)) * (1.0 + _FLOAT_SLACK)
        t = math.sqrt(2.0 * math.log(1.0 / self.rounding_beta))
        return math.sqrt(min(c * c + d / 4 + t * (c + math.sqrt(d) / 2), (c + math.sqrt(d)) ** 2))

    def _variance_at(self, sensitivity: float) -> Fraction:
        z = self.noise_multiplier
        if z == 0:
            return Fraction(0)
        return Fraction((z * sensitivity) ** 2 / self.shares * _ROUND_UP)

    def _bound_at(self, scale: float, share_variance: Fraction) -> int:
        n, d = self.clients, self.padded_dim
        rotation = (scale * n * self.max_norm) ** 2 / d
        noise = n * float(share_variance)
        log_term = math.log(2 * d) - math.log(self.beta)
        return math.ceil((n + math.sqrt(2.0 * (rotation + noise) * log_term)) * _ROUND_UP)

    def _at(self, scale: float) -> _Calibration:
        sensitivity = self._sensitivity_at(scale)
        variance = self._variance_at(sensitivity)
        return _Calibration(scale, sensitivity, variance, self._bound_at(scale, variance))

    def _calibrate(self, bits: int) -> _Calibration | None:
        """The largest scale with B <= 2^(bits-2) (capped at s·max_norm <= 2^52), or None."""
        cap = 1 << (bits - 2)
        s_max = MAX_SCALED / self.max_norm
        if self._at(s_max).bound <= cap:
            return self._at(s_max)
        lo, hi = 0.0, s_max
        if self._at(lo).bound > cap:
            return None
        for _ in range(400):
            mid = (lo + hi) / 2
            if not lo < mid < hi or hi - lo <= lo * 2.0**-45:
                break
            if self._at(mid).bound <= cap:
                lo = mid
            else:
                hi = mid
        mantissa, exponent = math.frexp(lo)
        scale = math.ldexp(math.floor(mantissa * 2**_SCALE_BITS), exponent - _SCALE_BITS)
        return self._at(scale) if scale > 0 else None

    def _inflation_of(self, calibration: _Calibration | None) -> float:
        if calibration is None or calibration.scale <= 0:
            return math.inf
        return calibration.sensitivity / (calibration.scale * self.clip)

    def _bits_needed(self) -> int | None:
        """Fewest bits whose best scale keeps the inflation <= MAX_INFLATION, or None."""
        for bits in range(2, MAX_BITS + 1):
            if self._inflation_of(self._calibrate(bits)) <= MAX_INFLATION:
                return bits
        return None

    @property
    def _cal(self) -> _Calibration:
        assert self._calibration is not None  # set in __post_init__ or the spec was refused
        return self._calibration

    # -- derived quantities ------------------------------------------------------------------

    @property
    def padded_dim(self) -> int:
        """d' = the next power of two >= d: the Walsh-Hadamard transform needs it."""
        return padded_dimension(self.dim)

    @property
    def scale(self) -> float:
        """s: integer units per real unit; the largest with B <= 2^(b-2)."""
        return self._cal.scale

    @property
    def l2_sensitivity(self) -> float:
        """Δ₂ in integer units: how far adding/removing one unit of privacy moves the sum."""
        return self._cal.sensitivity

    @property
    def share_variance(self) -> Fraction:
        """σ_s² = (z·Δ₂)²/k, a dyadic rational rounded up: the variance of one client's share."""
        return self._cal.share_variance

    @property
    def bound(self) -> int:
        """B: an honest centred sum has every |coordinate| <= B except with probability beta."""
        return self._cal.bound

    @property
    def inflation(self) -> float:
        """Δ₂ / (s·C): how much rounding raises the sensitivity (and the noise) over s·C."""
        return self._inflation_of(self._cal)

    @property
    def norm_limit_squared(self) -> int:
        """floor(Δ₂²): conditional rounding accepts an integer vector with ||r||² <= this."""
        return math.floor(Fraction(self.l2_sensitivity) ** 2)

    @property
    def dtype(self) -> np.dtype:
        """Word holding encoded values: uint32 for bits <= 32, uint64 otherwise."""
        return np.dtype(np.uint32) if self.bits <= 32 else np.dtype(np.uint64)

    @property
    def modulus(self) -> int:
        """2^bits, the order of the group encodings are summed in."""
        return 1 << self.bits


# -- rotation -------------------------------------------------------------------------------


def rotation_signs(seed: bytes, round_idx: int, padded_dim: int) -> np.ndarray:
    """The round's public ±1 diagonal D (float64, length ``padded_dim``), from AES-CTR.

    Keyed by HKDF(seed, context("secagg/ddp/rotation", round)): the same seed and round give
    the same signs on every party and platform; another round gives an independent rotation.
    """
    if not isinstance(seed, bytes) or not seed:
        raise PrivacyError("the rotation seed must be non-empty bytes (the round's public seed)")
    if isinstance(round_idx, bool) or not isinstance(round_idx, int) or not 0 <= round_idx < 2**64:
        raise PrivacyError(f"round_idx must be an integer in [0, 2^64), got {round_idx!r}")
    if (
        isinstance(padded_dim, bool)
        or not isinstance(padded_dim, int)
        or padded_dim < 1
        or padded_dim & (padded_dim - 1)
    ):
        raise PrivacyError(f"padded_dim must be a power of two >= 1, got {padded_dim!r}")
    stream = Keystream(derive_key(seed, info=encode_context(_ROTATION, round_idx)))
    words = stream.words(-(-padded_dim // 64))
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:padded_dim]
    return 1.0 - 2.0 * bits.astype(np.float64)


def _fwht(a: np.ndarray) -> np.ndarray:
    """Unnormalised Walsh-Hadamard transform along the last axis (a new float64 array).

    log2(n) butterfly passes, each one vectorised over all pairs by viewing the array as
    (rows, blocks, 2, half): O(n log n) with no Python loop over elements.
    """
    n = a.shape[-1]
    out = np.array(a, dtype=np.float64, copy=True).reshape(-1, n)
    rows, half = out.shape[0], 1
    while half < n:
        view = out.reshape(rows, -1, 2, half)
        top = view[:, :, 0, :].copy()
        bottom = view[:, :, 1, :]
        view[:, :, 0, :] += bottom
        np.subtract(top, bottom, out=bottom)
        half *= 2
    return out.reshape(a.shape)


def _check_rotation(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    signs_arr = np.asarray(signs)
    n = signs_arr.shape[-1] if signs_arr.ndim == 1 else 0
    if n < 1 or n & (n - 1):
        raise PrivacyError(
            f"signs must be a 1-D array whose length is a power of two, got shape "
            f"{signs_arr.shape}; use rotation_signs()"
        )
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != n:
        raise PrivacyError(
            f"the vector to rotate has shape {arr.shape} but the rotation has length {n}; "
            "pad it to the spec's padded_dim first"
        )
    return arr


def rotate(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """y = H·D·x / sqrt(d') along the last axis: orthonormal, so ||y|| = ||x||."""
    arr = _check_rotation(x, signs)
    return _fwht(arr * signs) / math.sqrt(arr.shape[-1])


def unrotate(y: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """x = D·H·y / sqrt(d'), the inverse of :func:`rotate` (H is symmetric, H·H = d'·I)."""
    arr = _check_rotation(y, signs)
    out = _fwht(arr) / math.sqrt(arr.shape[-1])
    out *= signs
    return out


# -- rounding -------------------------------------------------------------------------------


def stochastic_round(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unbiased randomized rounding to int64: floor(v) + [u < frac(v)], u uniform in [0, 1).

    Exact for |v| <= 2^52 (floor and fraction are exact in float64). The error lies in
    [-u, 1 - u), which is what the record-level coupling argument uses.
    """
    arr = np.asarray(values, dtype=np.float64)
    floor = np.floor(arr)
    frac = arr - floor
    floor += rng.random(arr.shape) < frac
    return floor.astype(np.int64)


def _squared_norm(r: np.ndarray) -> int:
    """||r||² exactly (Python integers: int64 squares of large entries would overflow)."""
    values = r.tolist()
    return sum(map(operator.mul, values, values))


def conditional_round(
    values: np.ndarray, spec: IntegerSpec, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """KLS conditional randomized rounding: redraw until ||R(v)||_2 <= Δ₂; (result, tries).

    For ||v|| <= s·C each draw is accepted with probability >= 1 - rounding_beta, so giving up
    after :data:`MAX_ROUNDING_TRIES` means the input was not within the norm bound.
    """
    limit = spec.norm_limit_squared
    for tries in range(1, MAX_ROUNDING_TRIES + 1):
        rounded = stochastic_round(values, rng)
        if _squared_norm(rounded) <= limit:
            return rounded, tries
    raise PrivacyError(
        f"conditional rounding found no integer vector within Δ₂ = {spec.l2_sensitivity:.6g} "
        f"in {MAX_ROUNDING_TRIES} tries; the scaled input norm "
        f"{float(np.linalg.norm(values)):.6g} must be <= s·clip = {spec.scale * spec.clip:.6g}"
    )


# -- client side ----------------------------------------------------------------------------


def _client_vector(x: np.ndarray, spec: IntegerSpec) -> np.ndarray:
    """``x`` as float64 of shape (dim,), finite, with ||x||_2 <= max_norm, else PrivacyError."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise PrivacyError(f"the vector to encode must be real numbers, got dtype {arr.dtype}")
    if arr.shape != (spec.dim,):
        raise PrivacyError(
            f"the vector to encode has shape {arr.shape}, the spec expects ({spec.dim},)"
        )
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise PrivacyError(
            f"the vector to encode holds {int(bad.sum())} NaN/inf value(s), first at index "
            f"{int(np.argmax(bad))}; a diverged update has no encoding"
        )
    norm = float(np.linalg.norm(arr))
    if norm > spec.max_norm * (1 + 1e-9):
        raise PrivacyError(
            f"the vector to encode has l2 norm {norm:.6g} > max_norm = {spec.max_norm:.6g}; "
            "clip it first (the sensitivity and the no-wrap bound assume the clip)"
        )
    return arr


def _check_integers(values: object, count: int, what: str) -> np.ndarray:
    """An int64 copy of an integer vector of length ``count`` within ±2^62, else PrivacyError.

    The range keeps the int64 sums it enters from overflowing; an honest noise share is
    nowhere near it.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu" or arr.shape != (count,):
        raise PrivacyError(
            f"{what} must be an integer array of shape ({count},), got {arr.dtype} with "
            f"shape {arr.shape}"
        )
    if arr.size and (int(arr.max()) >= _MAX_SHARE or int(arr.min()) <= -_MAX_SHARE):
        raise PrivacyError(f"{what} holds values beyond ±2^62; it is not a noise draw")
    return arr.astype(np.int64)


def encode_integers(
    x: np.ndarray,
    spec: IntegerSpec,
    *,
    seed: bytes,
    round_idx: int,
    rng: np.random.Generator,
    noise: NoiseShare | None,
) -> np.ndarray:
    """The client's signed integer vector (int64, length padded_dim), before the mod map.

    Pads, rotates, scales and rounds ``x`` (plain rounding for the record unit, conditional
    for the client unit), then adds ``noise(padded_dim)`` if given. HE back ends sum these
    exactly; :func:`encode` maps them into Z_{2^b} for masking. ``rng`` drives the rounding
    only: the privacy argument holds for every rounding draw, so it need not be secret.
    """
    values = _client_vector(x, spec)
    d_pad = spec.padded_dim
    padded = np.zeros(d_pad, dtype=np.float64)
    padded[: spec.dim] = values
    scaled = rotate(padded, rotation_signs(seed, round_idx, d_pad))
    scaled *= spec.scale
    if spec.unit == "client":
        rounded, _ = conditional_round(scaled, spec, rng)
    else:
        rounded = stochastic_round(scaled, rng)
    if noise is not None:
        rounded += _check_integers(noise(d_pad), d_pad, "the noise share")
    return rounded


def to_group(signed: np.ndarray, bits: int) -> np.ndarray:
    """Signed int64 -> representatives in [0, 2^bits) (two's complement mod 2^bits), in the
    word :func:`secagg.quantize.modular_sum` and the masking sum use (uint32 / uint64)."""
    if bits == 64:
        return signed.astype(np.int64).view(np.uint64)
    reduced = np.bitwise_and(signed, np.int64((1 << bits) - 1))
    return reduced.astype(np.uint32 if bits <= 32 else np.uint64)


def encode(
    x: np.ndarray,
    spec: IntegerSpec,
    *,
    seed: bytes,
    round_idx: int,
    rng: np.random.Generator,
    noise: NoiseShare | None,
) -> np.ndarray:
    """The client's encoding as group elements mod 2^bits (``spec.dtype``, length padded_dim).

    :func:`encode_integers` then two's complement; sum them with :func:`sum_group` (or mask
    them first: masks cancel in the same group).
    """
    signed = encode_integers(x, spec, seed=seed, round_idx=round_idx, rng=rng, noise=noise)
    return to_group(signed, spec.bits)


def sum_group(vectors: Iterable[np.ndarray], bits: int) -> np.ndarray:
    """Sum encodings mod 2^bits (:func:`secagg.quantize.modular_sum`)."""
    return modular_sum(vectors, bits)


# -- server side ----------------------------------------------------------------------------


def decode_integers(
    signed_total: np.ndarray,
    spec: IntegerSpec,
    *,
    seed: bytes,
    round_idx: int,
    added: np.ndarray | None = None,
) -> np.ndarray:
    """The real sum (float64, length dim) from the signed integer sum, after the wrap check.

    ``signed_total`` is the exact sum of :func:`encode_integers` outputs (int64; an HE sum, or
    :func:`centred_lift` of a modular sum). Any |v_j| > B raises
    :class:`~secagg.errors.WrapError`: an honest sum stays within B except with probability
    beta, so the sum wrapped or a client sent an out-of-range value. ``added`` (int64, length
    padded_dim), e.g. the server's own noise under central DP, is added *after* the check:
    only the clients' sum can wrap, and the server's draw is not theirs to be blamed for.
    """
    arr = np.asarray(signed_total)
    if arr.dtype.kind != "i" or arr.shape != (spec.padded_dim,):
        raise PrivacyError(
            f"decode_integers takes the signed integer sum, an int64 array of shape "
            f"({spec.padded_dim},), got {arr.dtype} with shape {arr.shape}; for group "
            "elements mod 2^b use decode() (or centred_lift() first)"
        )
    bound = spec.bound
    over = (arr > bound) | (arr < -bound)
    if over.any():
        largest = max(int(arr.max()), -int(arr.min()))
        raise WrapError(
            f"{int(over.sum())} of {arr.size} coordinates of the decoded sum exceed the "
            f"no-wrap bound B = {bound} (largest |value| {largest}): the sum wrapped or a "
            "client sent an out-of-range value; the round is rejected"
        )
    signed = arr.astype(np.int64)
    if added is not None:
        signed = signed + _check_integers(added, spec.padded_dim, "the added integer vector")
    real = signed.astype(np.float64) / spec.scale
    return unrotate(real, rotation_signs(seed, round_idx, spec.padded_dim))[: spec.dim]


def centred_lift(total: np.ndarray, spec: IntegerSpec) -> np.ndarray:
    """Group elements mod 2^bits -> their signed representatives in [-2^(b-1), 2^(b-1))."""
    arr = np.asarray(total)
    if arr.dtype != spec.dtype or arr.shape != (spec.padded_dim,):
        raise PrivacyError(
            f"the total must be a {spec.dtype} array of shape ({spec.padded_dim},), got "
            f"{arr.dtype} with shape {arr.shape}; pass encode() outputs or their sum_group()"
        )
    if spec.bits not in (32, 64) and arr.size and int(arr.max()) >> spec.bits:
        raise PrivacyError(
            f"the total holds values >= 2^{spec.bits}; it was not encoded with bits = {spec.bits}"
        )
    # Sign-extend bit b-1: move it to the top of a uint64, then shift back arithmetically.
    shift = np.uint64(64 - spec.bits)
    signed = np.left_shift(arr.astype(np.uint64), shift).view(np.int64)
    return np.right_shift(signed, np.int64(shift))


def decode(
    total: np.ndarray,
    spec: IntegerSpec,
    *,
    seed: bytes,
    round_idx: int,
    added: np.ndarray | None = None,
) -> np.ndarray:
    """The real sum (float64, length dim) from the modular sum: centred lift, wrap check,
    (+ ``added``), divide by s, inverse rotation, drop the padding (:func:`decode_integers`)."""
    lifted = centred_lift(total, spec)
    return decode_integers(lifted, spec, seed=seed, round_idx=round_idx, added=added)
