"""Float updates <-> integers mod 2^b, so that masked vectors can be summed exactly.

Secure aggregation adds vectors in the group Z_{2^b}; masks cancel only under exact modular
arithmetic, so floats must first become integers. The pipeline is

    clip to [-clip, clip] -> multiply by ``scale`` -> unbiased stochastic rounding
    -> two's complement mod 2^b   ...   modular sum ...   -> centred lift -> divide by ``scale``

Headroom rule. The server decodes the sum as a *signed* integer in [-2^(b-1), 2^(b-1)), so the
sum of up to ``max_clients`` encoded vectors must never leave that range. Each coordinate is
rounded to at most ``levels = clip * scale`` in magnitude (stochastic rounding of a value in
[-levels, levels], with ``levels`` an integer, never leaves it), and we keep one extra unit of
slack per client on top, as the specification asks:

    levels = min(floor((2^(b-1) - 1) / max_clients) - 1, 2^52)      scale = levels / clip
    => max_clients * (clip * scale + 1) <= 2^(b-1) - 1 < 2^(b-1)

The headroom keeps *honest* sums from wrapping; it is no check on a summand. A client that
skips the clamp can send any group element, and the decoded sum shows only the sum: a summand
far outside [-levels, levels] that the others' values bring back inside passes unseen (see
:mod:`secagg.aggregation.fedavg` for why no check on the sum can see it).

The cap 2^52 matters only for b > 53: float64 inputs carry no more resolution than that, and it
keeps every intermediate (scaled value, floor, fraction) exact in float64. A spec with
``levels < 1`` (the quantisation step would exceed the clip range) is refused with the smallest
``bits`` that would work.

Stochastic rounding (round up with probability equal to the fractional part) is unbiased, so
the dequantized sum is an unbiased estimate of the clipped sum; its worst-case error is below
one unit per summand, i.e. ``n / scale`` per coordinate (:func:`error_bound`). The rounding
randomness is not secret: any seeded :class:`numpy.random.Generator` will do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from secagg.errors import QuantizationError

MAX_BITS = 64
#: Largest |clip * scale| used: float64 resolves unit steps exactly only below 2^53.
MAX_LEVELS = 2**52


def _headroom(bits: int, max_clients: int) -> int:
    """Largest per-client magnitude H with max_clients * H < 2^(bits-1)."""
    return ((1 << (bits - 1)) - 1) // max_clients


def _smallest_bits(max_clients: int) -> int | None:
    """Fewest bits that leave at least one rounding level per client, or None beyond 64."""
    for bits in range(2, MAX_BITS + 1):
        if _headroom(bits, max_clients) - 1 >= 1:
            return bits
    return None


@dataclass(frozen=True)
class QuantizationSpec:
    """How floats map into Z_{2^bits} so that ``max_clients`` encodings sum without overflow.

    ``bits`` in (1, 64] (values live in uint32 words for bits <= 32, uint64 above);
    ``clip`` > 0 bounds every coordinate; ``max_clients`` >= 1 is the most vectors one sum may
    hold. ``scale`` and ``levels`` follow from these (see the module docstring).
    """

    bits: int
    clip: float
    max_clients: int

    def __post_init__(self) -> None:
        bits, clip, n = self.bits, self.clip, self.max_clients
        if isinstance(bits, bool) or not isinstance(bits, Integral) or not 1 < bits <= MAX_BITS:
            raise QuantizationError(f"bits must be an integer in [2, {MAX_BITS}], got {bits!r}")
        if isinstance(clip, bool) or not isinstance(clip, Real) or not math.isfinite(clip):
            raise QuantizationError(f"clip must be a finite positive number, got {clip!r}")
        if clip <= 0:
            raise QuantizationError(f"clip must be a finite positive number, got {clip!r}")
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise QuantizationError(f"max_clients must be an integer >= 1, got {n!r}")
        object.__setattr__(self, "bits", int(bits))
        object.__setattr__(self, "clip", float(clip))
        object.__setattr__(self, "max_clients", int(n))
        if _headroom(self.bits, self.max_clients) - 1 < 1:
            need = _smallest_bits(self.max_clients)
            fix = (
                f"use bits >= {need} (or fewer clients per sum)"
                if need is not None
                else f"even bits={MAX_BITS} cannot; split the clients into smaller groups"
            )
            raise QuantizationError(
                f"bits={self.bits} cannot hold the sum of max_clients={self.max_clients} vectors "
                f"clipped to clip={self.clip:g} with at least one rounding level each "
                f"(scale * clip would be < 1); {fix}"
            )

    @property
    def levels(self) -> int:
        """Integer magnitude ``clip * scale`` a coordinate at ±clip is encoded as."""
        return min(_headroom(self.bits, self.max_clients) - 1, MAX_LEVELS)

    @property
    def scale(self) -> float:
        """Multiplier from float to integer units; the quantisation step is ``1 / scale``."""
        return self.levels / self.clip

    @property
    def dtype(self) -> np.dtype:
        """Word holding encoded values: uint32 for bits <= 32, uint64 otherwise."""
        return np.dtype(np.uint32) if self.bits <= 32 else np.dtype(np.uint64)

    @property
    def modulus(self) -> int:
        """2^bits, the order of the group encodings are summed in."""
        return 1 << self.bits


def _word_dtype(bits: int) -> np.dtype:
    if isinstance(bits, bool) or not isinstance(bits, Integral) or not 1 < bits <= MAX_BITS:
        raise QuantizationError(f"bits must be an integer in [2, {MAX_BITS}], got {bits!r}")
    return np.dtype(np.uint32) if bits <= 32 else np.dtype(np.uint64)


def _finite_floats(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as float64, refusing non-numeric input and NaN/inf (they have no encoding)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise QuantizationError(
            f"{what} must be a real numeric array, got dtype {arr.dtype}; convert it to float"
        )
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), arr.shape)
        raise QuantizationError(
            f"{what} holds {int(bad.sum())} NaN/inf value(s), first at index "
            f"{tuple(int(i) for i in first)}; fix the update (e.g. lower the learning rate) "
            "before quantizing"
        )
    return arr


def _round_stochastic(
    values: np.ndarray, spec: QuantizationSpec, rng: np.random.Generator
) -> np.ndarray:
    """Scale into a new buffer, clamp to ±levels, round up with probability = fractional part."""
    levels = spec.levels
    with np.errstate(over="ignore"):  # huge values become ±inf here and are clamped next
        scaled = values * spec.scale
    # Clamping the scaled value is clipping to [-clip, clip], without float round-off at the edge.
    np.clip(scaled, -levels, levels, out=scaled)
    floor = np.floor(scaled)
    scaled -= floor  # fractional part, exact in float64 since |scaled| <= 2^52
    floor += rng.random(scaled.shape) < scaled
    return floor.astype(np.int64)


def _to_group(signed: np.ndarray, spec: QuantizationSpec) -> np.ndarray:
    """Signed integers -> representatives in [0, 2^bits) (two's complement mod 2^bits)."""
    if spec.bits < 64:
        np.bitwise_and(signed, np.int64(spec.modulus - 1), out=signed)
    return signed.astype(spec.dtype)


def quantize(x: np.ndarray, spec: QuantizationSpec, rng: np.random.Generator) -> np.ndarray:
    """Encode floats as elements of Z_{2^bits} (same shape, ``spec.dtype``).

    Clips to [-clip, clip], scales, rounds stochastically (unbiased), and maps negatives to
    2^bits - |v|. NaN or inf raise :class:`QuantizationError`: clipping would silently turn
    a diverged update into a plausible-looking one.
    """
    values = _finite_floats(x, "the vector to quantize")
    # 1-D inside: NumPy turns 0-d results into scalars, which in-place ufuncs cannot write.
    encoded = _to_group(_round_stochastic(values.reshape(-1), spec, rng), spec)
    return encoded.reshape(values.shape)


def _check_group_array(array: object, bits: int, what: str) -> np.ndarray:
    """Refuse anything that is not a vector of group elements mod 2^bits."""
    dtype = _word_dtype(bits)
    if not isinstance(array, np.ndarray) or array.dtype != dtype:
        got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise QuantizationError(
            f"{what} must be a {dtype} array of {bits}-bit group elements, got {got}; "
            "pass quantize() outputs or their modular sum"
        )
    if bits not in (32, 64) and array.size and int(array.max()) >> bits:
        raise QuantizationError(
            f"{what} holds values >= 2^{bits} (max {int(array.max())}); it was not encoded "
            f"with bits={bits}, so use the spec it was quantized with"
        )
    return array


def modular_sum(vectors: Iterable[np.ndarray], bits: int) -> np.ndarray:
    """Sum encoded vectors mod 2^bits, as the unmasked aggregate would be.

    Additions wrap in the uint32/uint64 word; since 2^bits divides the word modulus one final
    reduction is enough.
    """
    dtype = _word_dtype(bits)
    total: np.ndarray | None = None
    for i, v in enumerate(vectors):
        _check_group_array(v, bits, f"vector {i}")
        if total is None:
            total = v.copy()
        elif v.shape != total.shape:
            raise QuantizationError(
                f"vector {i} has shape {v.shape} but the first has {total.shape}; "
                "every summand must have the same length"
            )
        else:
            np.add(total, v, out=total)
    if total is None:
        raise QuantizationError("modular_sum got no vectors; pass at least one encoded vector")
    if bits not in (32, 64):
        np.bitwise_and(total, dtype.type((1 << bits) - 1), out=total)
    return total


def dequantize(total: np.ndarray, spec: QuantizationSpec) -> np.ndarray:
    """Decode a (summed) encoding to float64: centred lift to [-2^(b-1), 2^(b-1)), / scale."""
    _check_group_array(total, spec.bits, "the total to dequantize")
    # Sign-extend bit b-1: shift it to the top of a uint64, then shift back arithmetically.
    shift = np.uint64(64 - spec.bits)
    signed = np.left_shift(total.astype(np.uint64), shift).view(np.int64)
    return np.right_shift(signed, np.int64(shift)) / spec.scale


def error_bound(spec: QuantizationSpec, n: int) -> float:
    """Worst-case |error| per coordinate of the dequantized sum of n encodings: n / scale.

    Each summand is off by less than one unit (clipping aside); float64 decoding adds at most
    a few ulps of the sum on top.
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or not 0 <= n <= spec.max_clients:
        raise QuantizationError(
            f"n must be an integer in [0, max_clients={spec.max_clients}], got {n!r}; sums of "
            "more vectors may overflow, so build the spec with a larger max_clients"
        )
    return int(n) / spec.scale
