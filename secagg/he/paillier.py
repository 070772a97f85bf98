"""Paillier (phe + gmpy2): exact sums of fixed-point values, several packed per plaintext.

Paillier is additively homomorphic over Z_n: the product of ciphertexts mod n² decrypts to
the sum of plaintexts mod n. Each plaintext here carries ``slots`` fixed-point values side by
side, so one 2·key_bits-bit ciphertext carries many coordinates and one modular multiplication
adds all of them at once.

Packing. A value |x| <= B becomes ``round(x·2^f) + offset`` with ``offset = ceil(B·2^f)``, an
integer in [0, 2·offset]; a sum of n of them lies in [0, 2·offset·n], so a slot of

    w = bit_length(2·offset·n)        (≈ f + log2 B + 1 + ceil(log2 n))

bits never carries into its neighbour. ``slots = floor((key_bits - 1) / w)`` keeps the packed
sum below 2^(key_bits-1) <= n, the key's top bit being the margin: no sum the parameter set
admits can wrap mod n. (offset <= 2^52 and n < 2^32 bound w by 86 bits, so a 2048-bit key
always holds at least 23 slots.) After decryption each slot gives
``(slot - summands·offset) / 2^f``.
Values outside [-B, B] are refused before encryption (never wrapped), and sums of more than
``max_summands`` are refused, so overflow is impossible by construction; a decrypted plaintext
with bits above the packed slots, or a slot above its largest possible value, means the
ciphertext was altered, and is reported as such.

Error. Rounding to f fractional bits errs by at most 2^-(f+1) per summand and the final
integer-to-float division by half an ulp: ``error_bound(s) = s·2^-(f+1) + s·B·2^-53``. Values
with B·2^f an integer (e.g. B = 1) at ±B are represented exactly.

Security. 2048-bit keys are the floor (refused below): about 112-bit security (NIST SP
800-57); 3072 bits match the 128 bits of the CKKS backend, at ~3x the time per ciphertext
(~2.3x per vector, as more slots fit).
phe draws primes and the encryption randomness r from the OS generator.

No threshold decryption: whoever holds the secret key (p, q) can decrypt any single
ciphertext it intercepts, not only the sum. The aggregator must never hold it, and the key
holder must never see individual ciphertexts.

Speed (d = 10,000, n = 10, B = 1, ε = 1e-6: f = 23, 28-bit slots, 73 per 2048-bit plaintext).
Encryption costs one modular exponentiation with an n-sized exponent mod n² per ciphertext,
~9 ms at 2048 bits and ~28 ms at 3072 with gmpy2: ~1.2 s per client for 137 ciphertexts
(70 kB, 1.8x the 40 kB of float32). It can be spread over a
:class:`~concurrent.futures.ProcessPoolExecutor` (``workers > 1``; spawned, not forked, so it
is safe under pytest-xdist and next to torch's threads; a pool costs ~0.3-0.7 s to start, so it
pays only for long vectors on idle cores, and a script using it needs the usual
``if __name__ == "__main__":`` guard). Addition is one multiplication mod n² per ciphertext on
raw gmpy2 integers: ~4.6 µs each (5.7 ms for 9 × 137), 1.7x faster than phe's
``EncryptedNumber`` addition (~7.8 µs; phe also uses gmpy2, but wraps every ciphertext in an
object and checks keys and exponents on each addition). Decryption uses
phe's CRT decryption: ~0.35 s for 137 ciphertexts.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import repeat
from typing import Any, ClassVar

import gmpy2
import numpy as np
import phe
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

SCHEME = "paillier"
CONFIG_KEY_BITS = "protection.he_key_bits"
CONFIG_WORKERS = "protection.he_workers"
MIN_KEY_BITS = 2048
MAX_KEY_BITS = 16384
#: Largest offset ceil(B·2^f): float64 inputs carry no more resolution, and int64 stays exact.
MAX_OFFSET = 2**52
MAX_SUMMANDS = 2**32 - 1


@dataclass(frozen=True)
class PaillierParams(CapacityFromBounds):
    """Key size and fixed-point packing of one Paillier parameter set, validated for capacity."""

    key_bits: int
    fraction_bits: int
    value_bound: float
    max_summands: int

    scheme: ClassVar[str] = SCHEME

    def __post_init__(self) -> None:
        bits = self.key_bits
        if isinstance(bits, bool) or not isinstance(bits, int) or bits % 8:
            raise HEError(f"{CONFIG_KEY_BITS} must be a whole number of bytes, got {bits!r}")
        if bits < MIN_KEY_BITS:
            raise HEError(
                f"Paillier keys of {bits} bits are refused: {CONFIG_KEY_BITS} must be at least "
                f"{MIN_KEY_BITS} (3072 for 128-bit security)"
            )
        check_count(CONFIG_KEY_BITS, bits, MIN_KEY_BITS, MAX_KEY_BITS)
        check_bound(self.value_bound)
        check_count(f"max_summands ({CONFIG_MAX_SUMMANDS})", self.max_summands, 1, MAX_SUMMANDS)
        check_count("Paillier fraction_bits", self.fraction_bits, 0, 1100)
        if self.offset > MAX_OFFSET:
            raise HECapacityError(
                f"{self.fraction_bits} fraction bits for values up to {self.value_bound:g} exceed "
                f"float64 resolution (offset > 2^52): raise {CONFIG_PRECISION} or lower "
                f"{CONFIG_VALUE_BOUND}"
            )

    @classmethod
    def choose(
        cls, value_bound: float, max_summands: int, precision: float, key_bits: int = MIN_KEY_BITS
    ) -> PaillierParams:
        """The fewest fraction bits f whose error bound for max_summands is <= precision."""
        bound = check_bound(value_bound)
        n = check_count(f"max_summands ({CONFIG_MAX_SUMMANDS})", max_summands, 1, MAX_SUMMANDS)
        if not (isinstance(precision, int | float) and math.isfinite(precision) and precision > 0):
            raise HEError(f"{CONFIG_PRECISION} must be a finite number > 0, got {precision!r}")
        per_summand = precision / n - bound * 2.0**-53
        if per_summand <= 0:
            raise HECapacityError(
                f"{CONFIG_PRECISION} = {precision:g} is below float64 resolution for a sum of "
                f"{n} values up to {bound:g} (about {n * bound * 2.0**-53:.2g}): raise "
                f"{CONFIG_PRECISION}, or lower {CONFIG_VALUE_BOUND} or the number of clients"
            )
        fraction_bits = max(0, math.ceil(-math.log2(per_summand)) - 1)
        while n * 2.0 ** -(fraction_bits + 1) + n * bound * 2.0**-53 > precision:
            fraction_bits += 1
        return cls(key_bits, fraction_bits, bound, n)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> PaillierParams:
        try:
            return cls(
                key_bits=fields["key_bits"],
                fraction_bits=fields["fraction_bits"],
                value_bound=fields["value_bound"],
                max_summands=fields["max_summands"],
            )
        except (KeyError, TypeError) as exc:
            raise HEError(f"Paillier public key carries malformed parameters: {exc}") from exc

    def to_fields(self) -> dict[str, Any]:
        return {
            "key_bits": self.key_bits,
            "fraction_bits": self.fraction_bits,
            "value_bound": self.value_bound,
            "max_summands": self.max_summands,
        }

    @property
    def offset(self) -> int:
        """ceil(B·2^f): added to every encoded value so that slots are never negative."""
        return math.ceil(math.ldexp(self.value_bound, self.fraction_bits))

    @property
    def slot_bits(self) -> int:
        return (2 * self.offset * self.max_summands).bit_length()

    @property
    def slots_per_ciphertext(self) -> int:
        return (self.key_bits - 1) // self.slot_bits

    @property
    def ciphertext_bytes(self) -> int:
        """Bytes of one ciphertext (an integer mod n²) on the wire."""
        return self.key_bits // 4

    def error_bound(self, summands: int) -> float:
        return summands * 2.0 ** -(self.fraction_bits + 1) + summands * self.value_bound * 2.0**-53


def choose_params(
    value_bound: float, max_summands: int, precision: float, key_bits: int = MIN_KEY_BITS
) -> PaillierParams:
    """Backend entry point: see :meth:`PaillierParams.choose`."""
    return PaillierParams.choose(value_bound, max_summands, precision, key_bits)


def _pack(encoded: list[int], slot_bits: int, slots: int) -> list[int]:
    """Slot i of each plaintext holds encoded[i] at bits [i·w, (i+1)·w)."""
    plaintexts = []
    for start in range(0, len(encoded), slots):
        packed = 0
        for value in reversed(encoded[start : start + slots]):
            packed = (packed << slot_bits) | value
        plaintexts.append(packed)
    return plaintexts


def _encrypt_chunk(modulus: int, plaintexts: list[int]) -> list[int]:
    """Raw Paillier encryptions (g = n + 1, fresh r from the OS); runs in pool workers."""
    key = phe.PaillierPublicKey(modulus)
    return [key.raw_encrypt(m) for m in plaintexts]


def _encrypt_all(modulus: int, plaintexts: list[int], workers: int) -> list[int]:
    if workers <= 1 or len(plaintexts) < 2:
        return _encrypt_chunk(modulus, plaintexts)
    size = math.ceil(len(plaintexts) / workers)
    parts = [plaintexts[i : i + size] for i in range(0, len(plaintexts), size)]
    # spawn, not fork: the caller may hold threads (torch, pytest-xdist's execnet)
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=len(parts), mp_context=context) as pool:
            return [c for part in pool.map(_encrypt_chunk, repeat(modulus), parts) for c in part]
    except BrokenProcessPool as exc:
        raise HEError(
            f"Paillier encryption workers died ({CONFIG_WORKERS} = {workers}); a script that "
            'encrypts with workers > 1 must run under `if __name__ == "__main__":`, as '
            "spawned processes re-import it"
        ) from exc


class PaillierEncryptedVector(EncryptedVector):
    """ceil(d / slots) Paillier ciphertexts, kept as gmpy2 integers mod n²."""

    params: PaillierParams

    def __init__(
        self,
        params: PaillierParams,
        key_id: bytes,
        length: int,
        summands: int,
        ciphertexts: list[Any],
        modulus_squared: Any,
    ) -> None:
        super().__init__(params, key_id, length, summands)
        self.ciphertexts, self._nsquare = ciphertexts, modulus_squared

    def _add_ciphertexts(self, other: PaillierEncryptedVector) -> None:
        mine, nsquare = self.ciphertexts, self._nsquare
        for i, theirs in enumerate(other.ciphertexts):
            mine[i] = mine[i] * theirs % nsquare

    def serialize(self) -> bytes:
        width = self.params.ciphertext_bytes
        payload = b"".join(int(c).to_bytes(width, "big") for c in self.ciphertexts)
        return wire.pack_ciphertext(SCHEME, self.key_id, self.length, self.summands, payload)


class PaillierPublicKey(HEPublicKey):
    """The modulus n and the packing parameters: encrypts and adds, cannot decrypt."""

    def __init__(
        self, params: PaillierParams, modulus: int, frame: bytes, workers: int = 1
    ) -> None:
        if modulus.bit_length() != params.key_bits or modulus % 2 == 0:
            raise HEError(f"Paillier modulus is not an odd {params.key_bits}-bit number")
        self.params: PaillierParams = params
        self.modulus, self._frame = modulus, frame
        self.workers = check_count(CONFIG_WORKERS, workers, 1, 1024)
        self.key_id = wire.key_id_of(frame)
        self._nsquare = gmpy2.mpz(modulus) ** 2

    def with_workers(self, workers: int) -> PaillierPublicKey:
        """The same key encrypting over ``workers`` processes (1 = in this process)."""
        return PaillierPublicKey(self.params, self.modulus, self._frame, workers)

    def serialize(self) -> bytes:
        return self._frame

    def encrypt(self, values: ArrayLike) -> PaillierEncryptedVector:
        params = self.params
        vector = check_values(values, params.value_bound)
        scaled = np.rint(np.ldexp(vector, params.fraction_bits)).astype(np.int64)
        encoded = (scaled + params.offset).tolist()
        plaintexts = _pack(encoded, params.slot_bits, params.slots_per_ciphertext)
        ciphertexts = _encrypt_all(self.modulus, plaintexts, self.workers)
        return PaillierEncryptedVector(
            params, self.key_id, vector.size, 1, [gmpy2.mpz(c) for c in ciphertexts], self._nsquare
        )

    def deserialize_vector(self, data: bytes) -> PaillierEncryptedVector:
        params = self.params
        frame = wire.unpack_ciphertext(data, SCHEME, self.key_id)
        if frame.summands > params.max_summands:
            raise HECapacityError(
                f"ciphertext claims {frame.summands} summands, the parameter set holds "
                f"{params.max_summands}"
            )
        count = math.ceil(frame.length / params.slots_per_ciphertext)
        width = params.ciphertext_bytes
        if len(frame.payload) != count * width:
            raise TamperedMessageError(
                f"Paillier ciphertext for {frame.length} values must be {count * width} bytes, "
                f"got {len(frame.payload)}"
            )
        ciphertexts = []
        for i in range(count):
            c = gmpy2.mpz(int.from_bytes(frame.payload[i * width : (i + 1) * width], "big"))
            if not 0 < c < self._nsquare or gmpy2.gcd(c, self.modulus) != 1:
                raise TamperedMessageError(f"Paillier ciphertext {i} is not a unit mod n²")
            ciphertexts.append(c)
        return PaillierEncryptedVector(
            params, self.key_id, frame.length, frame.summands, ciphertexts, self._nsquare
        )


class PaillierSecretKey(HESecretKey):
    """The factors p, q of n (phe's CRT decryption). Never serialised unencrypted."""

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        if p * q != public_key.modulus or p == q:
            raise HEError("the Paillier secret key does not match its public key")
        self.public_key: PaillierPublicKey = public_key
        self._key = phe.PaillierPrivateKey(phe.PaillierPublicKey(public_key.modulus), p, q)

    def decrypt(self, vector: EncryptedVector) -> np.ndarray:
        if not isinstance(vector, PaillierEncryptedVector):
            raise HEError(f"a Paillier key cannot decrypt {type(vector).__name__}")
        self._check_own(vector)
        params = self.public_key.params
        width, slots = params.slot_bits, params.slots_per_ciphertext
        mask, largest = (1 << width) - 1, 2 * params.offset * vector.summands
        shift, scale = vector.summands * params.offset, 1 << params.fraction_bits
        out = np.empty(vector.length, dtype=np.float64)
        for c, ciphertext in enumerate(vector.ciphertexts):
            packed = self._key.raw_decrypt(int(ciphertext))
            used = min(slots, vector.length - c * slots)
            if packed >> (width * used):
                raise TamperedMessageError(
                    f"Paillier plaintext {c} has bits beyond its {used} slots: the ciphertext "
                    "was altered or its summand count is wrong"
                )
            for i in range(used):
                slot = (packed >> (width * i)) & mask
                if slot > largest:
                    raise TamperedMessageError(
                        f"Paillier slot {c * slots + i} exceeds what {vector.summands} summands "
                        "can produce: the ciphertext was altered or its summand count is wrong"
                    )
                out[c * slots + i] = (slot - shift) / scale  # int division: correctly rounded
        return out

    def export_sealed(self, wrapping_key: bytes) -> bytes:
        width = self.public_key.params.key_bits // 8
        material = self._key.p.to_bytes(width, "big") + self._key.q.to_bytes(width, "big")
        return wire.seal_secret(
            SCHEME, self.public_key.key_id, self.public_key.serialize(), material, wrapping_key
        )


def _public_frame(params: PaillierParams, modulus: int) -> bytes:
    return wire.pack_public_key(
        SCHEME, params.to_fields(), modulus.to_bytes(params.key_bits // 8, "big")
    )


def generate_keys(
    params: PaillierParams, workers: int = 1
) -> tuple[PaillierPublicKey, PaillierSecretKey]:
    """A fresh key pair; the public half is what clients and the aggregator receive as bytes."""
    public, secret = phe.generate_paillier_keypair(n_length=params.key_bits)
    key = PaillierPublicKey(params, public.n, _public_frame(params, public.n), workers)
    return key, PaillierSecretKey(key, secret.p, secret.q)


def load_public_key(data: bytes, workers: int = 1) -> PaillierPublicKey:
    """The aggregator's (and clients') key from its bytes."""
    frame = wire.unpack_public_key(data, SCHEME)
    params = PaillierParams.from_fields(frame.params)
    if len(frame.key) != params.key_bits // 8:
        raise TamperedMessageError("Paillier public key has the wrong length for its key size")
    return PaillierPublicKey(params, int.from_bytes(frame.key, "big"), data, workers)


def load_secret_key(sealed: bytes, wrapping_key: bytes) -> PaillierSecretKey:
    """Open a key sealed by :meth:`PaillierSecretKey.export_sealed` (AES-GCM under wrapping_key)."""
    public_frame, material = wire.open_secret(sealed, SCHEME, wrapping_key)
    public = load_public_key(public_frame)
    width = public.params.key_bits // 8
    if len(material) != 2 * width:
        raise TamperedMessageError("sealed Paillier secret key has the wrong length")
    p, q = int.from_bytes(material[:width], "big"), int.from_bytes(material[width:], "big")
    return PaillierSecretKey(public, p, q)
