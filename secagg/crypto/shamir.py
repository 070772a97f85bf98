"""Shamir secret sharing of short secrets (keys, seeds) over the prime field GF(2^521 - 1).

Why this field: it must be larger than the 2^256 possible 32-byte secrets so a secret is one
field element, and the Mersenne prime 2^521 - 1 is a famous, easily checked prime (no magic
constant to trust). A share value is 66 bytes; shares are few (one per neighbour), so the
extra size over a 257-bit prime does not matter.

A share's x-coordinate identifies its holder and must be non-zero (the secret sits at x = 0).
Coefficients come from :mod:`secrets`. :func:`combine` uses exactly ``threshold`` shares and
raises :class:`~secagg.errors.CryptoError` on too few or duplicate x-coordinates, and when the
interpolated value does not fit the expected secret length (which catches most bad shares).
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


def _check_x(x: int) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or not 0 < x < PRIME:
        raise CryptoError(f"share x-coordinates must be integers in [1, p), got {x!r}")
    return x


def split(secret: bytes, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Shares of ``secret`` at the given x-coordinates; any ``threshold`` of them recover it."""
    if len(secret) > MAX_SECRET_BYTES:
        raise CryptoError(f"secrets are at most {MAX_SECRET_BYTES} bytes, got {len(secret)}")
    for x in xs:
        _check_x(x)
    if len(set(xs)) != len(xs):
        raise CryptoError("share x-coordinates must be distinct")
    if not 1 <= threshold <= len(xs):
        raise CryptoError(
            f"threshold must be between 1 and the number of shares ({len(xs)}), got {threshold}"
        )
    # coefficients[0] is the secret; the others are uniform in GF(p).
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares.append(Share(x, y))
    return shares


@lru_cache(maxsize=4096)
def lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Lagrange coefficients that interpolate at x = 0 from points at ``xs``.

    l_i = prod_{j != i} x_j / (x_j - x_i). The products are exact small-integer products;
    all denominators are inverted with one modular exponentiation (batch inversion), which
    matters because a server interpolates once per client. Cached per x-set as well.
    """
    numerators, denominators = [], []
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                numerator *= xj
                denominator *= xj - xi
        numerators.append(numerator % PRIME)
        denominators.append(denominator % PRIME)
    return tuple(
        n * d % PRIME for n, d in zip(numerators, _batch_inverse(denominators), strict=True)
    )


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """Modular inverses of non-zero ``values`` with a single exponentiation (Montgomery)."""
    prefix = [1]
    for v in values:
        prefix.append(prefix[-1] * v % PRIME)
    inverse = pow(prefix[-1], -1, PRIME)
    result = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        result[i] = inverse * prefix[i] % PRIME
        inverse = inverse * values[i] % PRIME
    return result


def combine(shares: Sequence[Share], threshold: int, secret_bytes: int = 32) -> bytes:
    """Recover a ``secret_bytes``-byte secret from at least ``threshold`` shares.

    Uses the first ``threshold`` shares in the order given (so callers can pick which).
    """
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
    xs = tuple(_check_x(x) for x in all_xs[:threshold])
    # Exact sum of products, one reduction at the end: reductions dominate the cost.
    coefficients = lagrange_at_zero(xs)
    total = sum(c * s.y for c, s in zip(coefficients, used, strict=True)) % PRIME
    if total.bit_length() > 8 * secret_bytes:
        raise CryptoError(
            f"the shares do not interpolate to a {secret_bytes}-byte secret: "
            "at least one share is wrong or belongs to another secret"
        )
    return total.to_bytes(secret_bytes, "big")
