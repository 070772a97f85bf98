"""Shamir secret sharing of short secrets (keys, seeds), limb by limb over GF(2^31 - 1).

The field. A 32-byte secret is cut into nine 30-bit limbs (little-endian; the last holds 16
bits) and every limb is shared with its own, independent random polynomial over the prime
field GF(p), p = 2^31 - 1 (a Mersenne prime: famous, easily checked, no magic constant). A
share is therefore a vector of nine field elements, 36 bytes on the wire (nine big-endian
u32), where one element of GF(2^521 - 1) took 66.

Why it is safe. Shamir sharing is perfectly (information-theoretically) hiding over *any*
field: for each limb, any ``threshold - 1`` shares are uniformly distributed whatever the
limb's value, and the limbs' polynomials are drawn independently, so the whole vector of
``threshold - 1`` shares is uniform and independent of the secret. The size of the field does
not enter the secrecy argument; it only has to (a) hold each limb (2^30 < p), and (b) offer
one distinct non-zero x-coordinate per holder (a round names its holders 1..n, n < p).
Integrity never rested on the field either: a rebuilt secret is accepted only when it matches
a public 256-bit commitment (SHA-256 of b_u, or the X25519 public key of s_u), and
:mod:`secagg.crypto.reed_solomon` corrects and names wrong shares per limb, with the same
(m - t) // 2 bound as before and an exact (not probabilistic) check of the unused shares.

Why this field is fast. Every product of two elements is below 2^62, so all arithmetic runs
in NumPy ``int64`` without overflow, vectorised: a client evaluates its sharing polynomials at
all of its holders' points at once (one Vandermonde matrix product), and the server rebuilds
many secrets with one Lagrange vector per distinct set of holders. Matrix products split one
operand into 16-bit halves so that a sum of up to 2^16 products stays exact in ``int64``.

Randomness. Coefficients come from :mod:`secrets` (the OS CSPRNG), by rejection sampling of
31-bit words; NumPy's RNG is never used.

A share's x-coordinate identifies its holder and must be non-zero (the secret sits at x = 0).
:func:`combine` uses exactly ``threshold`` shares and raises
:class:`~secagg.errors.CryptoError` on too few or duplicate x-coordinates, and when the
interpolated limbs do not form a secret of the expected length (which catches many bad
shares; the caller's commitment check catches the rest). Every function takes an optional
keyword ``prime`` so that the sharing can be studied exhaustively over a small field in tests
(limbs are then ``prime.bit_length() - 1`` bits wide); the protocol always uses the default,
and the wire format (:data:`VALUE_BYTES`) is defined for it only.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from secagg.errors import CryptoError

PRIME = 2**31 - 1
#: Bytes of the secrets the protocol shares (X25519 private keys, self-mask seeds).
SECRET_BYTES = 32
#: Bits of one limb: every limb is a field element (2^30 < PRIME).
LIMB_BITS = 30
#: Limbs of a 32-byte secret, i.e. field elements per share.
LIMBS = -(-8 * SECRET_BYTES // LIMB_BITS)
#: Bytes of one encoded share value (LIMBS big-endian u32).
VALUE_BYTES = 4 * LIMBS
#: Products of 16-bit by 31-bit values summed this many times stay below 2^63.
_MAX_TERMS = 2**15


def limb_bits(prime: int = PRIME) -> int:
    """Bits per limb in GF(prime): the widest that always fits below the prime."""
    return prime.bit_length() - 1


def limb_count(secret_bytes: int, prime: int = PRIME) -> int:
    """Limbs (field elements) that hold a ``secret_bytes``-byte secret."""
    return max(1, -(-8 * secret_bytes // limb_bits(prime)))


def to_limbs(secret: bytes, prime: int = PRIME) -> np.ndarray:
    """The secret as little-endian limbs of :func:`limb_bits` bits (int64 field elements)."""
    value, width = int.from_bytes(secret, "big"), limb_bits(prime)
    count, mask = limb_count(len(secret), prime), (1 << width) - 1
    return np.array([(value >> (width * i)) & mask for i in range(count)], dtype=np.int64)


def from_limbs(limbs: Sequence[int] | np.ndarray, secret_bytes: int, prime: int = PRIME) -> bytes:
    """Inverse of :func:`to_limbs`; CryptoError when the limbs are not a secret of that size."""
    width = limb_bits(prime)
    value = 0
    for i, limb in enumerate(int(v) for v in limbs):
        if limb >> width:
            raise CryptoError(
                f"the shares do not interpolate to a {secret_bytes}-byte secret: "
                "at least one share is wrong or belongs to another secret"
            )
        value |= limb << (width * i)
    if value.bit_length() > 8 * secret_bytes:
        raise CryptoError(
            f"the shares do not interpolate to a {secret_bytes}-byte secret: "
            "at least one share is wrong or belongs to another secret"
        )
    return value.to_bytes(secret_bytes, "big")


@dataclass(frozen=True, repr=False)
class Share:
    """One point (x, y) of the sharing: ``y`` holds one field element per limb.

    ``repr`` hides y (it is secret material).
    """

    x: int
    y: tuple[int, ...]

    def value_bytes(self) -> bytes:
        """The fixed-width encoding of y: big-endian u32 per limb (x travels as the holder)."""
        return encode_values(np.asarray(self.y, dtype=np.int64))

    @classmethod
    def from_value_bytes(cls, x: int, data: bytes) -> Share:
        """Parse a share value; ``x`` labels the holder (a positive integer)."""
        if not isinstance(x, int) or isinstance(x, bool) or x < 1:
            raise CryptoError(f"share x-coordinates must be positive integers, got {x!r}")
        return cls(x, tuple(int(v) for v in decode_values(data)))

    def __repr__(self) -> str:
        return f"Share(x={self.x}, y=<hidden>)"


def encode_values(values: np.ndarray) -> bytes:
    """Share values (``(..., LIMBS)`` field elements) as big-endian u32 words."""
    return np.ascontiguousarray(values, dtype=">u4").tobytes()


def decode_values(data: bytes, count: int | None = None) -> np.ndarray:
    """``count`` share values (or one, shape ``(LIMBS,)``) from bytes, range-checked.

    Raises CryptoError when the length is wrong or a limb is not a field element.
    """
    expected = VALUE_BYTES * (1 if count is None else count)
    if len(data) != expected:
        raise CryptoError(f"a share value is {VALUE_BYTES} bytes, got {len(data)}")
    words = np.frombuffer(data, dtype=">u4").astype(np.int64)
    if words.size and int(words.max()) >= PRIME:
        raise CryptoError("a share value is not a vector of field elements (a limb >= 2^31 - 1)")
    return words if count is None else words.reshape(count, LIMBS)


# ---- field arithmetic on int64 arrays --------------------------------------------------------


def _check_prime(prime: int) -> None:
    # Not a primality test (the caller vouches for that); it catches a swapped argument and a
    # field too large for exact int64 products.
    if not isinstance(prime, int) or isinstance(prime, bool) or not 2 <= prime <= PRIME:
        raise CryptoError(f"the field modulus must be a prime in [2, 2^31 - 1], got {prime!r}")


def _check_x(x: int, prime: int = PRIME) -> int:
    if not isinstance(x, int | np.integer) or isinstance(x, bool) or not 0 < x < prime:
        raise CryptoError(f"share x-coordinates must be integers in [1, p), got {x!r}")
    return int(x)


def matmul_mod(a: np.ndarray, b: np.ndarray, prime: int = PRIME) -> np.ndarray:
    """``a @ b mod prime`` exactly, for int64 matrices of field elements.

    ``a`` is split into 16-bit halves, so each partial product is below 2^47 and a sum of up
    to 2^15 of them stays below 2^63 (longer inner dimensions are summed in blocks).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    inner = a.shape[-1]
    if inner > _MAX_TERMS:
        total = np.zeros((*a.shape[:-1], b.shape[-1]), dtype=np.int64)
        for start in range(0, inner, _MAX_TERMS):
            part = matmul_mod(a[..., start : start + _MAX_TERMS], b[start : start + _MAX_TERMS])
            total = (total + part) % prime
        return total
    low = (a & 0xFFFF) @ b % prime
    high = (a >> 16) @ b % prime
    return ((high << 16) % prime + low) % prime


def _product_mod(values: np.ndarray, prime: int) -> np.ndarray:
    """Product along the last axis mod prime, by pairwise halving (log-depth, vectorised)."""
    values = np.asarray(values, dtype=np.int64) % prime
    while values.shape[-1] > 1:
        if values.shape[-1] % 2:
            ones = np.ones((*values.shape[:-1], 1), dtype=np.int64)
            values = np.concatenate([values, ones], axis=-1)
        values = values[..., 0::2] * values[..., 1::2] % prime
    return values[..., 0]


def inverse_mod(values: np.ndarray, prime: int = PRIME) -> np.ndarray:
    """Elementwise inverses of non-zero field elements (Fermat: v^(p-2), vectorised)."""
    values = np.asarray(values, dtype=np.int64) % prime
    if np.any(values == 0):
        raise CryptoError("zero has no inverse: x-coordinates must be distinct")
    result = np.ones_like(values)
    base, exponent = values, prime - 2
    while exponent:
        if exponent & 1:
            result = result * base % prime
        base = base * base % prime
        exponent >>= 1
    return result


@lru_cache(maxsize=8)
def _inverse_table(size: int, prime: int) -> np.ndarray:
    """Inverses of 0..size-1 mod prime (entry 0 unused): one pass, inv(i) = -(p//i) inv(p%i)."""
    table = [0, 1] + [0] * max(0, size - 2)
    for i in range(2, size):
        table[i] = (prime - prime // i) * table[prime % i] % prime
    array = np.array(table[:size], dtype=np.int64)
    array.flags.writeable = False
    return array


def _inverse_differences(differences: np.ndarray, prime: int) -> np.ndarray:
    """Inverses of non-zero differences of x-coordinates: a table lookup when they are small."""
    largest = int(np.abs(differences).max(initial=0))
    if largest < 2**16 and largest < prime:
        # Power-of-two sizes, so that the few tables a round needs stay in the cache.
        table = _inverse_table(min(1 << max(1, largest.bit_length()), prime), prime)
        inverse = table[np.abs(differences)]
        if np.any(inverse == 0):
            raise CryptoError("duplicate share x-coordinates: each holder's share counts once")
        return np.where(differences < 0, (prime - inverse) % prime, inverse)
    return inverse_mod(differences, prime)


def _distinct_points(xs: Sequence[int], prime: int) -> np.ndarray:
    array = np.array([int(x) for x in xs], dtype=np.int64)
    if array.size and (int(array.min()) < 0 or int(array.max()) >= prime):
        raise CryptoError(f"x-coordinates must be integers in [0, p), got {list(xs)[:10]}")
    if len(set(array.tolist())) != array.size:
        raise CryptoError("duplicate share x-coordinates: each holder's share counts once")
    return array


@lru_cache(maxsize=4096)
def _barycentric_weights(xs: tuple[int, ...], prime: int) -> np.ndarray:
    """w_i = 1 / prod_{j != i} (x_i - x_j) for every i (one vectorised pass per x-set)."""
    points = np.array(xs, dtype=np.int64)
    differences = points[:, None] - points[None, :]
    np.fill_diagonal(differences, 1)
    inverse = _inverse_differences(differences, prime)
    weights = _product_mod(inverse, prime)
    weights.flags.writeable = False
    return weights


def lagrange_matrix(xs: Sequence[int], at: Sequence[int], *, prime: int = PRIME) -> np.ndarray:
    """L[h, i] = l_i(at_h): row h interpolates, from values at ``xs``, the value at ``at[h]``.

    Barycentric form l_i(x) = w_i prod_j (x - x_j) / (x - x_i), with the weights cached per
    x-set; a point of ``at`` that is one of ``xs`` gets the unit row.
    """
    _check_prime(prime)
    points = _distinct_points(xs, prime)
    targets = np.array([int(x) for x in at], dtype=np.int64)
    if targets.size and (int(targets.min()) < 0 or int(targets.max()) >= prime):
        raise CryptoError(f"x-coordinates must be integers in [0, p), got {list(at)[:10]}")
    weights = _barycentric_weights(tuple(points.tolist()), prime)
    differences = targets[:, None] - points[None, :]
    hit = differences == 0
    safe = np.where(hit, 1, differences)
    full = _product_mod(differences % prime, prime)  # prod_j (x - x_j); 0 when x is a point
    matrix = full[:, None] * _inverse_differences(safe, prime) % prime * weights[None, :] % prime
    rows = hit.any(axis=1)
    if rows.any():
        matrix[rows] = hit[rows].astype(np.int64)
    return matrix


def lagrange_at_zero(xs: Sequence[int], *, prime: int = PRIME) -> tuple[int, ...]:
    """Lagrange coefficients that interpolate at x = 0 from points at ``xs`` (cached)."""
    _check_prime(prime)
    return _lagrange_at_zero(tuple(int(x) for x in xs), prime)


@lru_cache(maxsize=4096)
def _lagrange_at_zero(xs: tuple[int, ...], prime: int) -> tuple[int, ...]:
    for x in xs:
        _check_x(x, prime)
    return tuple(int(v) for v in lagrange_matrix(xs, [0], prime=prime)[0])


def lagrange_vector_at_zero(xs: tuple[int, ...], prime: int = PRIME) -> np.ndarray:
    """:func:`lagrange_at_zero` as a read-only int64 vector (for matrix products)."""
    return _lagrange_vector(xs, prime)


@lru_cache(maxsize=4096)
def _lagrange_vector(xs: tuple[int, ...], prime: int) -> np.ndarray:
    vector = np.array(_lagrange_at_zero(xs, prime), dtype=np.int64)
    vector.flags.writeable = False
    return vector


# ---- sharing and reconstruction --------------------------------------------------------------


def random_elements(shape: tuple[int, ...], prime: int = PRIME) -> np.ndarray:
    """Uniform elements of GF(prime) from the OS CSPRNG (:mod:`secrets`), by rejection."""
    count = int(np.prod(shape, dtype=np.int64))
    bits = prime.bit_length()
    mask = (1 << bits) - 1
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        need = count - filled
        draw = np.frombuffer(secrets.token_bytes(4 * need), dtype="<u4").astype(np.int64) & mask
        good = draw[draw < prime][:need]
        out[filled : filled + good.size] = good
        filled += good.size
    return out.reshape(shape)


def vandermonde(xs: Sequence[int], degree_bound: int, prime: int = PRIME) -> np.ndarray:
    """V[h, j] = xs[h]^j mod prime for j < degree_bound."""
    points = np.array([int(x) for x in xs], dtype=np.int64)
    matrix = np.empty((points.size, degree_bound), dtype=np.int64)
    column = np.ones_like(points)
    for j in range(degree_bound):
        matrix[:, j] = column
        column = column * points % prime
    return matrix


def split_limbs(
    limbs: np.ndarray, threshold: int, xs: Sequence[int], *, prime: int = PRIME
) -> np.ndarray:
    """Shares of field-element vectors: ``limbs`` (s, L) -> y of shape (len(xs), s, L).

    Every (secret, limb) gets its own polynomial of degree ``threshold - 1`` with uniform
    coefficients; all of them are evaluated at every x at once (one Vandermonde product).
    """
    _check_prime(prime)
    limbs = np.asarray(limbs, dtype=np.int64)
    if limbs.ndim != 2:
        raise CryptoError("split_limbs takes a (secrets, limbs) array of field elements")
    if limbs.size and (int(limbs.min()) < 0 or int(limbs.max()) >= prime):
        raise CryptoError(f"the secret is not a vector of elements of GF({prime})")
    for x in xs:
        _check_x(x, prime)
    if len(set(int(x) for x in xs)) != len(xs):
        raise CryptoError("share x-coordinates must be distinct")
    if not 1 <= threshold <= len(xs):
        raise CryptoError(
            f"threshold must be between 1 and the number of shares ({len(xs)}), got {threshold}"
        )
    columns = limbs.size
    coefficients = np.empty((threshold, columns), dtype=np.int64)
    coefficients[0] = limbs.reshape(-1)  # the constant terms are the secrets
    if threshold > 1:
        coefficients[1:] = random_elements((threshold - 1, columns), prime)
    values = matmul_mod(vandermonde(xs, threshold, prime), coefficients, prime)
    return values.reshape(len(xs), *limbs.shape)


def split_many(
    secrets_: Sequence[bytes], threshold: int, xs: Sequence[int], *, prime: int = PRIME
) -> np.ndarray:
    """Shares of several equal-length secrets at ``xs``: shape (len(xs), secrets, limbs)."""
    if len({len(s) for s in secrets_}) > 1:
        raise CryptoError("split_many shares secrets of one length")
    for secret in secrets_:
        _check_secret(secret, prime)
    limbs = np.stack([to_limbs(s, prime) for s in secrets_])
    return split_limbs(limbs, threshold, xs, prime=prime)


def _check_secret(secret: bytes, prime: int) -> None:
    if not isinstance(secret, bytes) or not secret:
        raise CryptoError("a secret is a non-empty byte string")


def split(secret: bytes, threshold: int, xs: Sequence[int], *, prime: int = PRIME) -> list[Share]:
    """Shares of ``secret`` at the given x-coordinates; any ``threshold`` of them recover it."""
    _check_prime(prime)
    _check_secret(secret, prime)
    values = split_many([secret], threshold, xs, prime=prime)[:, 0, :]
    return [Share(int(x), tuple(int(v) for v in row)) for x, row in zip(xs, values, strict=True)]


def combine_limbs(xs: Sequence[int], values: np.ndarray, *, prime: int = PRIME) -> np.ndarray:
    """The limbs at x = 0 from ``values`` (len(xs), ...) at ``xs``: one Lagrange product.

    ``values`` may stack many secrets shared among the same holders, e.g. (t, owners, L).
    """
    key = tuple(_check_x(x, prime) for x in xs)
    if len(set(key)) != len(key):
        raise CryptoError("duplicate share x-coordinates: each holder's share counts once")
    weights = lagrange_vector_at_zero(key, prime)
    values = np.asarray(values, dtype=np.int64)
    flat = values.reshape(len(key), -1)
    return matmul_mod(weights[None, :], flat, prime)[0].reshape(values.shape[1:])


def combine(
    shares: Sequence[Share], threshold: int, secret_bytes: int = SECRET_BYTES, *, prime: int = PRIME
) -> bytes:
    """Recover a ``secret_bytes``-byte secret from at least ``threshold`` shares.

    Uses the first ``threshold`` shares in the order given (so callers can pick which).
    """
    _check_prime(prime)
    if threshold < 1:
        raise CryptoError(f"threshold must be at least 1, got {threshold}")
    if len(shares) < threshold:
        raise CryptoError(
            f"{len(shares)} share(s) cannot reconstruct a secret shared with threshold "
            f"{threshold}: wait for more holders or abort"
        )
    all_xs = [s.x for s in shares]
    if len(set(all_xs)) != len(all_xs):
        raise CryptoError("duplicate share x-coordinates: each holder's share counts once")
    used = shares[:threshold]
    limbs = limb_count(secret_bytes, prime)
    if any(len(s.y) != limbs for s in used):
        raise CryptoError(f"a share of a {secret_bytes}-byte secret has {limbs} limbs")
    values = np.array([s.y for s in used], dtype=np.int64)
    return from_limbs(combine_limbs(all_xs[:threshold], values, prime=prime), secret_bytes, prime)


def interpolate_at(shares: Sequence[Share], x: int, *, prime: int = PRIME) -> tuple[int, ...]:
    """Value at ``x`` (one element per limb) of the polynomials through ``shares``.

    A point may sit at x = 0 (e.g. a reconstructed secret's limbs), so a caller can check a
    holder's share against the polynomial fixed by the secret and t - 1 shares, or against t
    other shares. Raises :class:`~secagg.errors.CryptoError` on no points, duplicate
    x-coordinates, or coordinates outside [0, prime).
    """
    _check_prime(prime)
    if not shares:
        raise CryptoError("interpolation needs at least one share")
    for point in (*(s.x for s in shares), x):
        if not isinstance(point, int) or isinstance(point, bool) or not 0 <= point < prime:
            raise CryptoError(f"x-coordinates must be integers in [0, p), got {point!r}")
    row = lagrange_matrix([s.x for s in shares], [x], prime=prime)
    values = np.array([s.y for s in shares], dtype=np.int64)
    return tuple(int(v) for v in matmul_mod(row, values, prime)[0])
