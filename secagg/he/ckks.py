"""CKKS (TenSEAL / Microsoft SEAL): approximate additively homomorphic sums of float vectors.

A vector of d floats is split over ceil(d / slots) ciphertexts, ``slots = N / 2`` values each
(N = ``poly_modulus_degree``). Only additions are needed, so the modulus chain is as shallow as
it gets: the data primes that hold the sum, plus one special prime at the key level (TenSEAL
always makes relinearisation keys, which need it; they are never serialised).

No threshold decryption. TenSEAL has none: the secret key is one object, and whoever holds it
(a client elected key holder, or a separate key authority) can decrypt *any* ciphertext under
that key, including a single client's update it intercepts, not only the sum. Privacy against
the key holder therefore rests on it never seeing individual ciphertexts (they go to the
aggregator), and privacy against the aggregator on it never holding the secret key. The two
must not collude. The aggregator's context has no secret key; loading a public key frame that
carries one is refused.

Decryption noise flooding. A raw CKKS decryption is ``Δ·m + e``: whoever sees the decrypted
sum and holds its ciphertext (the aggregator, in this protocol) can compute ``e`` and then the
secret key by linear algebra (Li and Micciancio, "On the Security of Homomorphic Encryption on
Approximate Numbers", EUROCRYPT 2021), and with it every client's update. So
:meth:`CKKSSecretKey.decrypt` adds fresh Gaussian noise of standard deviation

    sigma = E · sqrt(R) · 2^(s/2)         E = RLWE noise bound per value (for max_summands)

to every released value (OS randomness), as OpenFHE's ``NOISE_FLOODING_DECRYPT`` does; R is
``release_budget``, the values one key may ever release, and s = ``flood_bits`` (30 by
default, OpenFHE's default). Over all R values the Rényi divergence of order 2 between what
an observer sees and a view independent of e is at most exp(R·E²/sigma²) = exp(2^-s), so a
key-recovery attack succeeding with probability p given the decryptions succeeds with at
least p²/exp(2^-s) without them. The key refuses to release more than R values. E counts the
RLWE noise (the part that carries the key), not the decoder's double-precision rounding. The
flood noise dominates the released error, so the scale Δ is chosen ~2^34 larger than the
noise alone would need: 34 more data-modulus bits, ~17 more bytes per value on the wire (n = 10,
ε = 1e-6: 46 bytes instead of 27).

Parameters. :meth:`CKKSParams.choose` picks, for a value bound B, at most n summands and a
requested precision ε (max absolute error per coordinate of the released sum):

1. the scale Δ = 2^scale_bits, the smallest with ``error_bound(n) <= ε``;
2. data primes holding n·B·Δ plus noise with a sign bit (each prime p has
   p >= 2^(bits-1), so k primes of total b bits give a modulus >= 2^(b-k));
3. the smallest N whose 128-bit bound (:data:`MAX_COEFF_BITS_128`) fits the data primes plus
   a special prime of at least 30 bits. Ciphertext bytes per value are about the data-prime
   bits / 2 (two polynomials of N coefficients carry N/2 values), whatever N is.

Error bound (canonical-embedding heuristic, as in the CKKS literature). SEAL encrypts at the
key level and divides by the special prime P, so a fresh ciphertext decrypts to
``Δ·m + r_enc + r0 + r1·s + v/P`` with r_enc, r0, r1 rounding errors (coefficients uniform in
[-1/2, 1/2]), s the uniform ternary secret and v = u·e_pk + e1 + e2·s the key-level noise
(u uniform ternary, e of standard deviation σ = 3.2). Evaluated at a root of unity, a sum of
N independent coefficients is close to complex Gaussian, exceeded in modulus by ``TAIL``
standard deviations with probability exp(-TAIL²) ≈ 2^-70. For a sum of s ciphertexts the
independent terms add in quadrature (√s), those sharing s or e_pk multiply their factor:

    noise(s) = t·√(sN/12) · (2 + t·√(2N/3))
             + t²·√(2sN/3)·σ√N / P + t·σ√(sN)·(1 + t·√(2N/3)) / P           (t = TAIL)
    encryption_error_bound(s) = noise(s) / Δ + 2·s·B·log2(N)·√N·2^-52   (double-precision FFTs)
    error_bound(s) = encryption_error_bound(s) + 8.65·sigma     (Box-Muller never exceeds 8.65)

Measured (``tests/he/test_he_ckks.py`` asserts measured <= bound). Without flooding one fresh
encryption is off by ~1.0-1.6·N/Δ over its slots (8-10x under noise(1)/Δ); with the default
flooding the released error is Gaussian with the stated sigma. B = 1, one ciphertext of
uniform[-1, 1] inputs:

    =====  ======  =====  =============  ======  ========  ==========  ========  =========
    n      ε       N      coeff bits     scale   sigma     max |err|   bound     bytes/val
    =====  ======  =====  =============  ======  ========  ==========  ========  =========
    10     1e-6    4096   (40, 39, 30)   2^72    6.8e-8    2.4e-7      5.9e-7    45.8
    100    1e-6    8192   (42, 42, 60)   2^74    1.1e-7    3.9e-7      9.3e-7    51.2
    1000   1e-6    8192   (45, 44, 60)   2^76    8.5e-8    3.5e-7      7.4e-7    53.6
    10     1e-4    4096   (36, 36, 37)   2^65    8.8e-6    3.2e-5      7.6e-5    43.3
    1000   1e-4    8192   (41, 41, 60)   2^69    1.1e-5    4.4e-5      9.5e-5    49.8
    =====  ======  =====  =============  ======  ========  ==========  ========  =========

(4 bytes per float32 value in the clear; SEAL's zstd gets within ~20% of data-bits/2.)
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi
from numpy.typing import ArrayLike

from secagg.errors import HECapacityError, HEError, TamperedMessageError
from secagg.he import wire
from secagg.he.base import (
    CONFIG_MAX_SUMMANDS,
    CONFIG_PRECISION,
    CONFIG_VALUE_BOUND,
    CapacityFromBounds,
    EncryptedVector,
    HEPublicKey,
    HESecretKey,
    check_bound,
    check_count,
    check_values,
)

SCHEME = "ckks"

#: Largest total coefficient-modulus bits for 128-bit classical security with a uniform ternary
#: secret, per ring dimension N. Source: M. Albrecht et al., "Homomorphic Encryption Security
#: Standard", HomomorphicEncryption.org, 2018, Table 1 (the figures SEAL enforces as
#: ``CoeffModulus::MaxBitCount(N, sec_level_type::tc128)``).
MAX_COEFF_BITS_128: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}
#: Ring dimensions tried, smallest first (2048 cannot fit two >= 30-bit primes plus data).
POLY_DEGREES = (4096, 8192, 16384, 32768)
MIN_PRIME_BITS = 30  # enough primes = 1 mod 2N exist at every N used (SEAL needs distinct ones)
MAX_PRIME_BITS = 60  # SEAL's limit per prime
MIN_SCALE_BITS = 20
MAX_SUMMANDS = 2**32 - 1
NOISE_SIGMA = 3.2  # SEAL's error distribution (centred binomial, standard deviation 3.2)
TAIL = 7.0  # standard deviations; exp(-49) ≈ 2^-70 per Gaussian factor and coordinate
#: Statistical security of decryption noise flooding (OpenFHE's default for CKKS).
FLOOD_BITS = 30
#: Values one key may release by decryption (summed over all decryptions) before it must be
#: replaced: e.g. 10^4 rounds of a 4·10^5-parameter model.
RELEASE_BUDGET = 2**32
#: Box-Muller on 53-bit uniforms u1 >= 2^-54 never exceeds sqrt(-2 ln 2^-54) ≈ 8.65 sigmas.
FLOOD_MAX_SIGMAS = math.sqrt(-2 * math.log(2.0**-54))
_LEN = struct.Struct(">Q")
_COUNT = struct.Struct(">I")


def _noise(poly_degree: int, summands: int, special_bits: int) -> float:
    """Bound on the noise of a sum of ``summands`` fresh ciphertexts, in plaintext units."""
    t, n, s = TAIL, float(poly_degree), float(summands)
    rounding = math.sqrt(s * n / 12)  # |sum of s uniform[-1/2,1/2] polynomials at a root|
    secret = math.sqrt(2 * n / 3)  # |s(root)| for the uniform ternary secret key
    ephemeral = math.sqrt(2 * s * n / 3)  # |sum of the s ternary u_i at a root|
    sigma = NOISE_SIGMA
    special = 2.0 ** (special_bits - 1)
    switched = t * rounding * (2 + t * secret)  # encoding + mod-switch rounding (r0 + r1·s)
    key_level = t * ephemeral * t * sigma * math.sqrt(n)  # sum u_i · e_pk
    key_level += t * sigma * math.sqrt(s * n) * (1 + t * secret)  # sum e1_i + (sum e2_i)·s
    return switched + key_level / special


def _float_error(poly_degree: int, summands: int, value_bound: float) -> float:
    """Double-precision error of encoding s values and decoding their sum (FFTs of size N)."""
    return 2 * summands * value_bound * math.log2(poly_degree) * math.sqrt(poly_degree) * 2.0**-52


def _flood_factor(flood_bits: int, release_budget: int) -> float:
    """Flooding sigma per unit of noise bound: sqrt(R)·2^(s/2) (see the module docstring)."""
    return math.sqrt(release_budget) * 2.0 ** (flood_bits / 2)


def _modulus_bits(largest: float) -> int:
    """Bits of a modulus that holds values in (-largest, largest) with a sign bit."""
    return math.ceil(math.log2(largest)) + 1


def _split_bits(total: int) -> tuple[int, ...] | None:
    """Data primes (fewest, <= 60 bits, as even as possible) whose product is >= 2^total."""
    for count in range(1, 32):
        bits = total + count  # a b-bit prime is only >= 2^(b-1): one bit of slack per prime
        if bits <= MAX_PRIME_BITS * count:
            base, extra = divmod(bits, count)
            sizes = tuple(base + 1 if i < extra else base for i in range(count))
            return sizes if min(sizes) >= MIN_PRIME_BITS else None
    return None


@dataclass(frozen=True)
class CKKSParams(CapacityFromBounds):
    """One CKKS parameter set; validated for 128-bit security and for its declared capacity.

    ``coeff_mod_bit_sizes`` lists the data primes then the special (key-level) prime.
    """

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    value_bound: float
    max_summands: int
    flood_bits: int = FLOOD_BITS
    release_budget: int = RELEASE_BUDGET

    scheme: ClassVar[str] = SCHEME

    def __post_init__(self) -> None:
        n_poly, sizes = self.poly_modulus_degree, self.coeff_mod_bit_sizes
        if n_poly not in MAX_COEFF_BITS_128 or n_poly < min(POLY_DEGREES):
            raise HEError(f"CKKS poly_modulus_degree must be one of {POLY_DEGREES}, got {n_poly!r}")
        if (
            not isinstance(sizes, tuple)
            or len(sizes) < 2
            or not all(isinstance(b, int) and MIN_PRIME_BITS <= b <= MAX_PRIME_BITS for b in sizes)
        ):
            raise HEError(
                f"CKKS coeff_mod_bit_sizes must be a tuple of >= 2 prime sizes in "
                f"[{MIN_PRIME_BITS}, {MAX_PRIME_BITS}] (data primes, then the special prime), "
                f"got {sizes!r}"
            )
        limit = MAX_COEFF_BITS_128[n_poly]
        if sum(sizes) > limit:
            raise HEError(
                f"CKKS modulus of {sum(sizes)} bits at N = {n_poly} is below 128-bit security "
                f"(at most {limit} bits, HomomorphicEncryption.org standard); use a larger N"
            )
        check_count("CKKS scale_bits", self.scale_bits, MIN_SCALE_BITS, self.data_bits)
        check_bound(self.value_bound)
        check_count(f"max_summands ({CONFIG_MAX_SUMMANDS})", self.max_summands, 1, MAX_SUMMANDS)
        check_count("CKKS flood_bits", self.flood_bits, 0, 128)
        check_count("CKKS release_budget", self.release_budget, 1, 2**64)
        largest = self.max_summands * self.value_bound * self.scale + _noise(
            n_poly, self.max_summands, self.special_bits
        )
        needed = _modulus_bits(largest) + len(self.data_bit_sizes)
        if needed > self.data_bits:
            raise HECapacityError(
                f"CKKS data primes of {self.data_bits} bits cannot hold a sum of "
                f"{self.max_summands} values up to {self.value_bound:g} at scale "
                f"2^{self.scale_bits} ({needed} bits needed): lower {CONFIG_VALUE_BOUND} or "
                f"the number of clients ({CONFIG_MAX_SUMMANDS}), or raise {CONFIG_PRECISION}"
            )

    @classmethod
    def choose(
        cls,
        value_bound: float,
        max_summands: int,
        precision: float,
        flood_bits: int = FLOOD_BITS,
        release_budget: int = RELEASE_BUDGET,
    ) -> CKKSParams:
        """Smallest 128-bit-secure parameters whose error bound for max_summands is <= precision."""
        bound = check_bound(value_bound)
        n = check_count(f"max_summands ({CONFIG_MAX_SUMMANDS})", max_summands, 1, MAX_SUMMANDS)
        if not (isinstance(precision, int | float) and math.isfinite(precision) and precision > 0):
            raise HEError(f"{CONFIG_PRECISION} must be a finite number > 0, got {precision!r}")
        check_count("CKKS flood_bits", flood_bits, 0, 128)
        check_count("CKKS release_budget", release_budget, 1, 2**64)
        # flooding adds FLOOD_MAX_SIGMAS·sigma, sigma = (noise / scale)·flood factor
        amplification = 1 + FLOOD_MAX_SIGMAS * _flood_factor(flood_bits, release_budget)
        best = math.inf
        for n_poly in POLY_DEGREES:
            headroom = precision - _float_error(n_poly, n, bound)
            if headroom <= 0:
                best = min(best, 2 * _float_error(n_poly, n, bound))
                continue
            # the special prime has >= MIN_PRIME_BITS bits: the noise bound for that is safe
            noise = _noise(n_poly, n, MIN_PRIME_BITS)
            scale_bits = max(MIN_SCALE_BITS, math.ceil(math.log2(noise * amplification / headroom)))
            data = _split_bits(_modulus_bits(n * bound * 2.0**scale_bits + noise))
            if data is None:
                continue
            special = min(MAX_PRIME_BITS, MAX_COEFF_BITS_128[n_poly] - sum(data))
            if special < MIN_PRIME_BITS:
                continue
            return cls(n_poly, (*data, special), scale_bits, bound, n, flood_bits, release_budget)
        raise HECapacityError(
            f"{CONFIG_PRECISION} = {precision:g} is out of reach for {n} clients "
            f"({CONFIG_MAX_SUMMANDS}) with {CONFIG_VALUE_BOUND} = {bound:g} at 128-bit security"
            + (f" (double precision alone allows about {best:.2g})" if best < math.inf else "")
            + f": raise {CONFIG_PRECISION}, or lower {CONFIG_VALUE_BOUND} or the number of clients"
        )

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> CKKSParams:
        try:
            return cls(
                poly_modulus_degree=fields["poly_modulus_degree"],
                coeff_mod_bit_sizes=tuple(fields["coeff_mod_bit_sizes"]),
                scale_bits=fields["scale_bits"],
                value_bound=fields["value_bound"],
                max_summands=fields["max_summands"],
                flood_bits=fields["flood_bits"],
                release_budget=fields["release_budget"],
            )
        except (KeyError, TypeError) as exc:
            raise HEError(f"CKKS public key carries malformed parameters: {exc}") from exc

    def to_fields(self) -> dict[str, Any]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
            "value_bound": self.value_bound,
            "max_summands": self.max_summands,
            "flood_bits": self.flood_bits,
            "release_budget": self.release_budget,
        }

    @property
    def data_bit_sizes(self) -> tuple[int, ...]:
        return self.coeff_mod_bit_sizes[:-1]

    @property
    def data_bits(self) -> int:
        return sum(self.data_bit_sizes)

    @property
    def special_bits(self) -> int:
        return self.coeff_mod_bit_sizes[-1]

    @property
    def scale(self) -> float:
        return 2.0**self.scale_bits

    @property
    def slots_per_ciphertext(self) -> int:
        return self.poly_modulus_degree // 2

    def encryption_error_bound(self, summands: int) -> float:
        """Bound on the error of the decrypted sum before flooding (never released)."""
        n_poly = self.poly_modulus_degree
        return _noise(n_poly, summands, self.special_bits) / self.scale + _float_error(
            n_poly, summands, self.value_bound
        )

    @property
    def flood_sigma(self) -> float:
        """Standard deviation of the Gaussian noise added to every decrypted value."""
        noise = _noise(self.poly_modulus_degree, self.max_summands, self.special_bits)
        return noise / self.scale * _flood_factor(self.flood_bits, self.release_budget)

    def error_bound(self, summands: int) -> float:
        return self.encryption_error_bound(summands) + FLOOD_MAX_SIGMAS * self.flood_sigma


def choose_params(
    value_bound: float,
    max_summands: int,
    precision: float,
    flood_bits: int = FLOOD_BITS,
    release_budget: int = RELEASE_BUDGET,
) -> CKKSParams:
    """Backend entry point: see :meth:`CKKSParams.choose`."""
    return CKKSParams.choose(value_bound, max_summands, precision, flood_bits, release_budget)


def _expected_parms_ids(params: CKKSParams) -> tuple[list[int], list[int]]:
    """SEAL's (key level, data level) parameter ids for ``params``: they hash N and primes."""
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_modulus_degree)
    parms.set_coeff_modulus(
        sealapi.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_mod_bit_sizes))
    )
    context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
    return list(context.key_parms_id()), list(context.first_parms_id())


def _check_context(context: Any, params: CKKSParams) -> None:
    seal = context.seal_context().data
    if (list(seal.key_parms_id()), list(seal.first_parms_id())) != _expected_parms_ids(params):
        raise HEError("the TenSEAL context does not use the parameters its key frame declares")


class CKKSEncryptedVector(EncryptedVector):
    """A float vector as ceil(d / slots) TenSEAL CKKS vectors."""

    params: CKKSParams

    def __init__(
        self, params: CKKSParams, key_id: bytes, length: int, summands: int, chunks: list[Any]
    ) -> None:
        super().__init__(params, key_id, length, summands)
        self._chunks = chunks  # TenSEAL vectors: never handed out (their errors are not ours)

    def _add_ciphertexts(self, other: CKKSEncryptedVector) -> None:
        for mine, theirs in zip(self._chunks, other._chunks, strict=True):
            mine.add_(theirs)

    def serialize(self) -> bytes:
        parts = [_COUNT.pack(len(self._chunks))]
        for chunk in self._chunks:
            data = chunk.serialize()
            parts += [_LEN.pack(len(data)), data]
        return wire.pack_ciphertext(
            SCHEME, self.key_id, self.length, self.summands, b"".join(parts)
        )


class CKKSPublicKey(HEPublicKey):
    """A TenSEAL context with the public key only: encrypts and adds, cannot decrypt."""

    def __init__(self, params: CKKSParams, context: Any, frame: bytes) -> None:
        if context.is_private() or context.has_secret_key():
            raise HEError("a CKKS public context must not hold the secret key")
        self.params: CKKSParams = params
        self._context, self._frame = context, frame
        self.key_id = wire.key_id_of(frame)
        self._data_parms_id = list(context.seal_context().data.first_parms_id())

    def serialize(self) -> bytes:
        return self._frame

    def encrypt(self, values: ArrayLike) -> CKKSEncryptedVector:
        vector = check_values(values, self.params.value_bound)
        slots = self.params.slots_per_ciphertext
        chunks = [
            ts.ckks_vector(self._context, vector[start : start + slots])
            for start in range(0, vector.size, slots)
        ]
        return CKKSEncryptedVector(self.params, self.key_id, vector.size, 1, chunks)

    def deserialize_vector(self, data: bytes) -> CKKSEncryptedVector:
        frame = wire.unpack_ciphertext(data, SCHEME, self.key_id)
        if frame.summands > self.params.max_summands:
            raise HECapacityError(
                f"ciphertext claims {frame.summands} summands, the parameter set holds "
                f"{self.params.max_summands}"
            )
        # The chunk count is checked against the payload's bytes and then against the
        # declared length by arithmetic: nothing is sized by the declared length itself.
        slots = self.params.slots_per_ciphertext
        reader = wire.Reader(frame.payload, "CKKS ciphertext")
        count = reader.count(_LEN.size + 1)  # each chunk: its length and at least one byte
        if count != -(-frame.length // slots):
            raise TamperedMessageError(
                f"a CKKS ciphertext of {frame.length} values holds {-(-frame.length // slots)} "
                f"chunks of {slots} values, this one declares {count}"
            )
        chunks = []
        for index in range(count):
            (size,) = reader.unpack(_LEN)
            expected = min(slots, frame.length - index * slots)
            chunks.append(self._load_chunk(reader.take(size), expected))
        reader.finish()
        return CKKSEncryptedVector(self.params, self.key_id, frame.length, frame.summands, chunks)

    def _load_chunk(self, data: bytes, expected_size: int) -> Any:
        try:
            chunk = ts.ckks_vector_from(self._context, data)
            ciphertexts = chunk.ciphertext()
            valid = (
                chunk.size() == expected_size
                and len(ciphertexts) == 1
                and ciphertexts[0].size() == 2
                and ciphertexts[0].is_ntt_form()
                and list(ciphertexts[0].parms_id()) == self._data_parms_id
                and ciphertexts[0].scale == self.params.scale
            )
        except (ValueError, RuntimeError, TypeError, IndexError) as exc:
            raise TamperedMessageError(f"CKKS ciphertext chunk does not parse: {exc}") from exc
        if not valid:
            raise TamperedMessageError(
                "CKKS ciphertext chunk has the wrong size, level or scale for this key"
            )
        return chunk


def _gaussian(size: int) -> np.ndarray:
    """Standard normal samples from the OS CSPRNG (Box-Muller on 53-bit uniforms).

    The flooding noise must be unpredictable to whoever sees the result, so not numpy's PCG64.
    """
    words = np.frombuffer(os.urandom(16 * size), dtype=np.uint64).reshape(2, size)
    uniform = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # in [2^-54, 1)
    return np.sqrt(-2.0 * np.log(uniform[0])) * np.cos(2.0 * np.pi * uniform[1])


class CKKSSecretKey(HESecretKey):
    """A TenSEAL context with the secret key; the key holder's object. Never serialised raw.

    Every decryption adds flooding noise and counts against the key's ``release_budget``.
    """

    def __init__(self, public_key: CKKSPublicKey, context: Any, released: int = 0) -> None:
        if not context.is_private():
            raise HEError("a CKKS secret context must hold the secret key")
        self.public_key: CKKSPublicKey = public_key
        self._context, self._released = context, released

    @property
    def released_values(self) -> int:
        """Values this key has released by decryption so far (see ``params.release_budget``)."""
        return self._released

    def _decrypt_raw(self, vector: EncryptedVector) -> np.ndarray:
        """Decryption without flooding: its noise reveals the key, so it must never be released."""
        if not isinstance(vector, CKKSEncryptedVector):
            raise HEError(f"a CKKS key cannot decrypt {type(vector).__name__}")
        self._check_own(vector)
        secret = self._context.secret_key()
        parts = [np.asarray(chunk.decrypt(secret), dtype=np.float64) for chunk in vector._chunks]
        return np.concatenate(parts)

    def decrypt(self, vector: EncryptedVector) -> np.ndarray:
        params = self.public_key.params
        if self._released + vector.length > params.release_budget:
            raise HECapacityError(
                f"this CKKS key has released {self._released} of its {params.release_budget} "
                f"values; decrypting {vector.length} more would exceed the budget its flooding "
                "noise is sized for: generate a new key pair"
            )
        raw = self._decrypt_raw(vector)
        self._released += vector.length
        return raw + params.flood_sigma * _gaussian(raw.size)

    def export_sealed(self, wrapping_key: bytes) -> bytes:
        material = self._context.serialize(
            save_public_key=False,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        return wire.seal_secret(
            SCHEME,
            self.public_key.key_id,
            self.public_key.serialize(),
            _LEN.pack(self._released) + material,
            wrapping_key,
        )


def generate_keys(params: CKKSParams) -> tuple[CKKSPublicKey, CKKSSecretKey]:
    """A fresh key pair; the public half is what clients and the aggregator receive as bytes."""
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        n_threads=1,
    )
    context.global_scale = params.scale
    public_bytes = context.serialize(
        save_public_key=True,
        save_secret_key=False,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    frame = wire.pack_public_key(SCHEME, params.to_fields(), public_bytes)
    public = CKKSPublicKey(params, _load_context(public_bytes), frame)
    return public, CKKSSecretKey(public, context)


def _load_context(data: bytes) -> Any:
    try:
        return ts.context_from(data, n_threads=1)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise TamperedMessageError(f"TenSEAL context does not parse: {exc}") from exc


def load_public_key(data: bytes) -> CKKSPublicKey:
    """The aggregator's (and clients') key from its bytes; refuses one carrying a secret key."""
    frame = wire.unpack_public_key(data, SCHEME)
    params = CKKSParams.from_fields(frame.params)
    context = _load_context(frame.key)
    if context.is_private() or context.has_secret_key():
        raise HEError(
            "this CKKS public key frame carries the secret key: it must never reach the aggregator"
        )
    if not context.has_public_key():
        raise HEError("this CKKS public key frame has no public key")
    _check_context(context, params)
    context.global_scale = params.scale
    return CKKSPublicKey(params, context, data)


def load_secret_key(sealed: bytes, wrapping_key: bytes) -> CKKSSecretKey:
    """Open a key sealed by :meth:`CKKSSecretKey.export_sealed` (AES-GCM under wrapping_key)."""
    public_frame, material = wire.open_secret(sealed, SCHEME, wrapping_key)
    public = load_public_key(public_frame)
    if len(material) < _LEN.size:
        raise TamperedMessageError("sealed CKKS secret key truncated")
    (released,) = _LEN.unpack_from(material)
    context = _load_context(material[_LEN.size :])
    _check_context(context, public.params)
    context.global_scale = public.params.scale
    secret = CKKSSecretKey(public, context, released)
    probe = public.encrypt(np.zeros(1))
    if abs(secret._decrypt_raw(probe)[0]) > public.params.encryption_error_bound(1):
        raise HEError("the sealed CKKS secret key does not match its public key")
    return secret
