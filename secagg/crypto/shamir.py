"""Shamir secret sharing of short secrets (keys, seeds) over the prime field GF(2^521 - 1).

Why this field: it must be larger than the 2^256 possible 32-byte secrets so a secret is one
field element, and the Mersenne prime 2^521 - 1 is a famous, easily checked prime (no magic
constant to trust). A share value is 66 bytes; shares are few (one per neighbour), so the
extra size over a 257-bit prime does not matter.

A share's x-coordinate identifies its holder and must be non-zero (the secret sits at x = 0).
Coefficients come from :mod:`secrets`. :func:`combine` uses exactly ``threshold`` shares and
raises :class:`~secagg.errors.CryptoError` on too few or duplicate x-coordinates, and when the
interpolated value does not fit the expected secret length (which catches most bad shares).
:func:`interpolate_at` evaluates the polynomial through given points anywhere, so a caller that
has recovered a secret can tell which other holders' shares are consistent with it.

Every function takes an optional keyword ``prime`` (default :data:`PRIME`) so that the
sharing can be studied exhaustively over a small field in tests; the protocol always uses the
default, and the wire format (:class:`Share` value bytes) is defined for it only.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from secagg.errors import CryptoError

PRIME = 2**521 - 1
#: Bytes of one encoded share value (an element of GF(PRIME)).
VALUE_BYTES = (PRIME.bit_length() + 7) // 8
#: Longest secret that is always smaller than PRIME.
MAX_SECRET_BYTES = (PRIME.bit_length() - 1) // 8


@dataclass(frozen=True, repr=False)
class Share:
    """One point (x, y) of the sharing polynomial; ``repr`` hides y (it is secret material)."""

    x: int
    y: int

    def value_bytes(self) -> bytes:
        """The fixed-width big-endian encoding of y (x travels implicitly, as the holder id)."""
        return self.y.to_bytes(VALUE_BYTES, "big")

    @classmethod
    def from_value_bytes(cls, x: int, data: bytes) -> Share:
        if len(data) != VALUE_BYTES:
            raise CryptoError(f"a share value is {VALUE_BYTES} bytes, got {len(data)}")
        y = int.from_bytes(data, "big")
        if y >= PRIME:
            raise CryptoError("a share value is not a field element (>= 2^521 - 1)")
        return cls(_check_x(x), y)

    def __repr__(self) -> str:
        return f"Share(x={self.x}, y=<hidden>)"


def _check_x(x: int, prime: int = PRIME) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or not 0 < x < prime:
        raise CryptoError(f"share x-coordinates must be integers in [1, p), got {x!r}")
    return x


def _check_prime(prime: int) -> None:
    # Not a primality test (the caller vouches for that); it catches a swapped argument.
    if not isinstance(prime, int) or isinstance(prime, bool) or prime < 2:
        raise CryptoError(f"the field modulus must be a prime >= 2, got {prime!r}")


def split(secret: bytes, threshold: int, xs: Sequence[int], *, prime: int = PRIME) -> list[Share]:
    """Shares of ``secret`` at the given x-coordinates; any ``threshold`` of them recover it."""
    _check_prime(prime)
    if len(secret) > MAX_SECRET_BYTES:
        raise CryptoError(f"secrets are at most {MAX_SECRET_BYTES} bytes, got {len(secret)}")
    if int.from_bytes(secret, "big") >= prime:  # never for the default field (2^520 < PRIME)
        raise CryptoError(f"the secret is not an element of GF({prime})")
    for x in xs:
        _check_x(x, prime)
    if len(set(xs)) != len(xs):
        raise CryptoError("share x-coordinates must be distinct")
    if not 1 <= threshold <= len(xs):
        raise CryptoError(
            f"threshold must be between 1 and the number of shares ({len(xs)}), got {threshold}"
        )
    # coefficients[0] is the secret; the others are uniform in GF(p).
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(prime) for _ in range(threshold - 1)]
    shares = []
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % prime
        shares.append(Share(x, y))
    return shares


def lagrange_at_zero(xs: tuple[int, ...], *, prime: int = PRIME) -> tuple[int, ...]:
    """Lagrange coefficients that interpolate at x = 0 from points at ``xs``.

    l_i = prod_{j != i} x_j / (x_j - x_i). The products are exact small-integer products;
    all denominators are inverted with one modular exponentiation (batch inversion), which
    matters because a server interpolates once per client. Cached per (x-set, prime) as well.
    """
    return _lagrange_at_zero(tuple(xs), prime)


@lru_cache(maxsize=4096)
def _lagrange_at_zero(xs: tuple[int, ...], prime: int) -> tuple[int, ...]:
    numerators, denominators = [], []
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                numerator *= xj
                denominator *= xj - xi
        numerators.append(numerator % prime)
        denominators.append(denominator % prime)
    return tuple(
        n * d % prime for n, d in zip(numerators, _batch_inverse(denominators, prime), strict=True)
    )


def interpolate_at(shares: Sequence[Share], x: int, *, prime: int = PRIME) -> int:
    """Value at ``x`` of the unique polynomial of degree ``len(shares) - 1`` through ``shares``.

    Exact Lagrange interpolation, l_i(x) = prod_{j != i} (x - x_j) / (x_i - x_j), with the
    denominators inverted together (batch inversion) and the coefficients cached per
    (x-set, x, prime). A point may sit at x = 0 (e.g. a reconstructed secret), so a caller
    can check a holder's share against the polynomial fixed by the secret and t - 1 shares,
    or against t other shares. Raises :class:`~secagg.errors.CryptoError` on no points,
    duplicate x-coordinates, or coordinates outside [0, prime).
    """
    _check_prime(prime)
    if not shares:
        raise CryptoError("interpolation needs at least one share")
    for point in (*(s.x for s in shares), x):
        if not isinstance(point, int) or isinstance(point, bool) or not 0 <= point < prime:
            raise CryptoError(f"x-coordinates must be integers in [0, p), got {point!r}")
    xs = tuple(s.x for s in shares)
    if len(set(xs)) != len(xs):
        raise CryptoError("duplicate share x-coordinates: each holder's share counts once")
    coefficients = lagrange_at(xs, x, prime)
    # Exact sum of products, one reduction at the end (as in combine).
    return sum(c * s.y for c, s in zip(coefficients, shares, strict=True)) % prime


@lru_cache(maxsize=4096)
def lagrange_at(xs: tuple[int, ...], x: int, prime: int) -> tuple[int, ...]:
    """l_i(x) for distinct ``xs``: numerators from prefix/suffix products, denominators once.

    The denominators prod_{j != i} (x_i - x_j) depend on ``xs`` alone, so they are inverted
    once per x-set (:func:`_barycentric_weights`) and shared by every point evaluated
    against it: a server checking many holders' shares against one set pays O(t) per point.
    """
    differences = [(x - xj) % prime for xj in xs]
    prefix, suffix = [1], [1]
    for d in differences:
        prefix.append(prefix[-1] * d % prime)
    for d in reversed(differences):
        suffix.append(suffix[-1] * d % prime)
    suffix.reverse()  # suffix[i] = prod_{j >= i} (x - x_j)
    weights = _barycentric_weights(xs, prime)
    return tuple(prefix[i] * suffix[i + 1] % prime * weights[i] % prime for i in range(len(xs)))


@lru_cache(maxsize=1024)
def _barycentric_weights(xs: tuple[int, ...], prime: int) -> tuple[int, ...]:
    """1 / prod_{j != i} (x_i - x_j) for every i, with one modular exponentiation."""
    denominators = []
    for i, xi in enumerate(xs):
        denominator = 1
        for j, xj in enumerate(xs):
            if i != j:
                denominator *= xi - xj
        denominators.append(denominator % prime)
    return tuple(_batch_inverse(denominators, prime))


def _batch_inverse(values: Sequence[int], prime: int = PRIME) -> list[int]:
    """Modular inverses of non-zero ``values`` with a single exponentiation (Montgomery)."""
    prefix = [1]
    for v in values:
        prefix.append(prefix[-1] * v % prime)
    inverse = pow(prefix[-1], -1, prime)
    result = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        result[i] = inverse * prefix[i] % prime
        inverse = inverse * values[i] % prime
    return result


def combine(
    shares: Sequence[Share], threshold: int, secret_bytes: int = 32, *, prime: int = PRIME
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
    xs = tuple(_check_x(x, prime) for x in all_xs[:threshold])
    # Exact sum of products, one reduction at the end: reductions dominate the cost.
    coefficients = lagrange_at_zero(xs, prime=prime)
    total = sum(c * s.y for c, s in zip(coefficients, used, strict=True)) % prime
    if total.bit_length() > 8 * secret_bytes:
        raise CryptoError(
            f"the shares do not interpolate to a {secret_bytes}-byte secret: "
            "at least one share is wrong or belongs to another secret"
        )
    return total.to_bytes(secret_bytes, "big")
