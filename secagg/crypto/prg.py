"""The mask PRG: AES-CTR keystream expanded directly into modular integer vectors.

Masks must be computationally indistinguishable from uniform (128-bit security), so they come
from AES-128 in counter mode, keyed by HKDF output. (Flower's SecAgg+ seeds NumPy's Mersenne
Twister with a 32-bit fold of the seed: a 2^32 brute force recovers a mask. Never use NumPy's
RNG for anything secret.) The counter block starts at zero: that is safe because every key is
derived for one (shared secret, round, pair) and so encrypts exactly one stream.

Speed is the point of this module. Keystream words are written by OpenSSL into a small scratch
buffer (``update_into``, no allocation), viewed as little-endian words without a copy, and
added to or subtracted from the caller's accumulator in place, one cache-sized chunk at a time,
with no Python loop over elements. The adds then run on data still in L2; they are what remains
above the bare keystream (about 0.2-0.35x of it with AES-NI). Arithmetic runs in the native
word (mod 2^32 or 2^64); because 2^b divides the word modulus, one final ``& (2^b - 1)``
(:func:`reduce_in_place`, or ``reduce=True``) gives the result mod 2^b.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from secagg.errors import CryptoError

#: AES-128: 128-bit security, ~30 % faster than AES-256 with AES-NI.
KEY_BYTES = 16
MAX_BITS = 64
#: Scratch size; 512 KiB stays in L2 on current CPUs and amortises the per-call overhead.
CHUNK_BYTES = 512 * 1024
_ZERO_COUNTER = bytes(16)


def word_dtype(bits: int) -> np.dtype:
    """The unsigned little-endian word that holds values mod 2^bits without overflow handling."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
        raise CryptoError(f"mask bits must be an integer in [1, {MAX_BITS}], got {bits!r}")
    return np.dtype("<u4") if bits <= 32 else np.dtype("<u8")


def reduce_in_place(acc: np.ndarray, bits: int) -> None:
    """Reduce word-wrapped values mod 2^bits (a no-op when bits is the word size)."""
    if bits not in (32, 64):
        np.bitwise_and(acc, acc.dtype.type((1 << bits) - 1), out=acc)


def _keystream(key: bytes) -> CipherContext:
    if len(key) not in (16, 32):
        raise CryptoError(f"mask PRG keys are 16 or 32 bytes (AES-128/256), got {len(key)}")
    return Cipher(algorithms.AES(key), modes.CTR(_ZERO_COUNTER)).encryptor()


class MaskGenerator:
    """Adds and subtracts many PRG(key) streams into one accumulator, reusing a scratch buffer.

    Work is chunk-major: for each cache-sized slice of the accumulator, every key's next
    keystream chunk is generated and folded in before moving on, so the accumulator slice
    stays in cache across all masks instead of streaming through memory once per mask.
    One instance per party and bit width; the scratch is wiped after each call.
    """

    def __init__(self, bits: int, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.bits = bits
        self.dtype = word_dtype(bits)
        words = max(1, chunk_bytes // self.dtype.itemsize)
        self._chunk_words = words
        self._zeros = memoryview(bytes(words * self.dtype.itemsize))
        self._buffer = bytearray(words * self.dtype.itemsize)
        self._view = memoryview(self._buffer)
        self._signed = np.dtype(self.dtype.str.replace("u", "i"))
        self._words = np.frombuffer(self._buffer, dtype=self._signed)

    def add(self, acc: np.ndarray, key: bytes) -> None:
        """``acc += PRG(key)`` (mod the word size), in place."""
        self.apply(acc, add=(key,))

    def subtract(self, acc: np.ndarray, key: bytes) -> None:
        """``acc -= PRG(key)`` (mod the word size), in place."""
        self.apply(acc, subtract=(key,))

    def apply(
        self,
        acc: np.ndarray,
        add: Sequence[bytes] = (),
        subtract: Sequence[bytes] = (),
        *,
        start: np.ndarray | None = None,
        reduce: bool = False,
    ) -> None:
        """``acc = (start or acc) + sum PRG(add) - sum PRG(subtract)``, in place.

        ``start`` (same shape and dtype) seeds the accumulator slice by slice, which saves a
        separate copy pass; ``reduce=True`` also reduces mod 2^bits while each slice is hot.
        """
        self._check(acc, "accumulator")
        if not acc.flags.writeable:
            raise CryptoError("the mask accumulator is read-only; pass a writeable array")
        if start is not None:
            self._check(start, "start vector")
            if start.shape != acc.shape:
                raise CryptoError(f"start has shape {start.shape}, accumulator {acc.shape}")
        streams: list[tuple[Callable[..., object], np.ufunc]]
        streams = [(_keystream(k).update_into, np.add) for k in add]
        streams += [(_keystream(k).update_into, np.subtract) for k in subtract]
        # Arithmetic runs on signed views: two's-complement wraparound is bit-identical to the
        # unsigned one, and NumPy's signed add/subtract loops are markedly faster (SIMD).
        signed = self._signed
        acc_s = acc.view(signed)
        start_s = None if start is None else start.view(signed)
        modulus = signed.type((1 << self.bits) - 1) if reduce and self.bits % 32 else None
        step, size, item = self._chunk_words, acc.size, self.dtype.itemsize
        zeros, out, words = self._zeros, self._view, self._words
        for begin in range(0, size, step):
            count = min(step, size - begin)
            target = acc_s[begin : begin + count]
            if count < step:
                zeros, out, words = zeros[: count * item], out[: count * item], words[:count]
            base = target if start_s is None else start_s[begin : begin + count]
            for update_into, op in streams:
                update_into(zeros, out)
                op(base, words, out=target)
                base = target
            if base is not target:  # no streams: just copy the start vector
                np.copyto(target, base)
            if modulus is not None:
                np.bitwise_and(target, modulus, out=target)
        self._words.fill(0)

    def _check(self, array: np.ndarray, what: str) -> None:
        if array.dtype != self.dtype or array.ndim != 1 or not array.flags.c_contiguous:
            raise CryptoError(
                f"the mask {what} must be a contiguous 1-D {self.dtype} array "
                f"for {self.bits}-bit masks, got {array.dtype} with shape {array.shape}"
            )


def expand(key: bytes, dim: int, bits: int) -> np.ndarray:
    """A fresh mask vector PRG(key) mod 2^bits (for tests and one-off uses; allocates)."""
    acc = np.zeros(dim, dtype=word_dtype(bits))
    MaskGenerator(bits).add(acc, key)
    reduce_in_place(acc, bits)
    return acc


def fill_keystream(key: bytes, zeros: bytes | memoryview, out: bytearray | memoryview) -> None:
    """Write the bare AES-CTR keystream for ``key`` into ``out`` (``zeros``: same length).

    This is the speed floor benchmarks compare masking against: keystream generation alone,
    into preallocated buffers, with no arithmetic.
    """
    _keystream(key).update_into(zeros, out)


class Keystream:
    """PRG(key) read in order: each call returns the next words of one AES-CTR keystream.

    For consumers that draw an unknown amount of randomness bit by bit over time (DP noise,
    Poisson sampling): one key, one stream, never rewound, so no word is ever handed out twice.
    """

    def __init__(self, key: bytes) -> None:
        self._cipher = _keystream(key)

    def words(self, count: int) -> np.ndarray:
        """The next ``count`` keystream words as uniform little-endian uint64 values."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise CryptoError(f"keystream word count must be an integer >= 0, got {count!r}")
        return np.frombuffer(self._cipher.update(bytes(8 * count)), dtype="<u8")
