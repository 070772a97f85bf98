"""Error-correcting reconstruction of Shamir shares (Berlekamp-Welch decoding).

Shamir shares of a degree-(t-1) polynomial are a Reed-Solomon codeword, so m shares of which
at most e = (m - t) // 2 are wrong still determine the secret, and decoding also says which
ones were wrong. The masking server needs both: a holder that returns a bad share must neither
abort the round nor corrupt the sum silently, and it should be named.

Decoding solves one linear system of m equations over GF(p) (O(m^3) field operations), so it
is the slow path: the server first combines t shares as usual and decodes only when the
rebuilt secret fails its check (commitment or public key).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from secagg.crypto.shamir import PRIME, Share, interpolate_at, lagrange_at


@dataclass(frozen=True, repr=False)
class Decoded:
    """The corrected secret and the x-coordinates of the shares that were wrong."""

    secret: bytes
    wrong_xs: tuple[int, ...]

    def __repr__(self) -> str:
        return f"Decoded(secret=<hidden>, wrong_xs={self.wrong_xs})"


def disagreeing(
    basis: Sequence[Share], others: Sequence[Share], *, prime: int = PRIME
) -> tuple[int, ...]:
    """x-coordinates of the ``others`` that do not lie on the polynomial through ``basis``.

    Once a secret rebuilt from ``basis`` has passed its check, ``basis`` is known good, so
    every share that disagrees with it is a wrong one. The common case (all agree) costs one
    random linear combination, ``sum_h r_h (y_h - f(x_h)) = 0``, instead of one interpolation
    per share: with secret random ``r_h`` a wrong share passes with probability 1/p. Only
    when it fails is each share interpolated, to name the wrong ones.
    """
    if not others:
        return ()
    xs = tuple(s.x for s in basis)
    r, m = _random_combination(xs, tuple(s.x for s in others), prime)
    lhs = sum(ri * s.y for ri, s in zip(r, others, strict=True))
    rhs = sum(mi * s.y for mi, s in zip(m, basis, strict=True))
    if (lhs - rhs) % prime == 0:
        return ()
    return tuple(
        share.x for share in others if interpolate_at(basis, share.x, prime=prime) != share.y
    )


@lru_cache(maxsize=1024)
def _random_combination(
    xs: tuple[int, ...], points: tuple[int, ...], prime: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Secret weights r_h for the checked points and m_i = sum_h r_h l_i(x_h) for the basis.

    Cached per (basis, checked) x-sets: the server checks many owners against the same sets.
    The weights come from the OS CSPRNG and never leave this process.
    """
    r = tuple(secrets.randbelow(prime - 1) + 1 for _ in points)
    m = [0] * len(xs)
    for weight, point in zip(r, points, strict=True):
        for i, coefficient in enumerate(lagrange_at(xs, point, prime)):
            m[i] += weight * coefficient
    return r, tuple(v % prime for v in m)


def _solve(rows: list[list[int]], p: int) -> list[int] | None:
    """One solution of the augmented system ``rows`` mod p (free variables 0), or None."""
    n_cols = len(rows[0]) - 1
    pivots: list[int] = []
    r = 0
    for c in range(n_cols):
        pivot = next((i for i in range(r, len(rows)) if rows[i][c] % p), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        inv = pow(rows[r][c], -1, p)
        rows[r] = [v * inv % p for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c] % p:
                f = rows[i][c]
                rows[i] = [(a - f * b) % p for a, b in zip(rows[i], rows[r], strict=True)]
        pivots.append(c)
        r += 1
        if r == len(rows):
            break
    if any(row[-1] % p for row in rows[r:]):
        return None  # inconsistent: more errors than the decoder can correct
    solution = [0] * n_cols
    for i, c in enumerate(pivots):
        solution[c] = rows[i][-1]
    return solution


def _divide(numerator: list[int], denominator: list[int], p: int) -> tuple[list[int], bool]:
    """Quotient of two polynomials (coefficients lowest first) and whether it is exact."""
    num = list(numerator)
    deg_d = len(denominator) - 1
    inv_lead = pow(denominator[-1], -1, p)
    quotient = [0] * max(len(num) - deg_d, 1)
    for i in range(len(num) - 1 - deg_d, -1, -1):
        coef = num[i + deg_d] * inv_lead % p
        quotient[i] = coef
        if coef:
            for j, d in enumerate(denominator):
                num[i + j] = (num[i + j] - coef * d) % p
    return quotient, not any(num[:deg_d])


def _evaluate(coefficients: Sequence[int], x: int, p: int) -> int:
    y = 0
    for c in reversed(coefficients):
        y = (y * x + c) % p
    return y


def decode(
    shares: Sequence[Share], threshold: int, secret_bytes: int = 32, *, prime: int = PRIME
) -> Decoded | None:
    """The secret behind ``shares`` despite up to ``(len(shares) - threshold) // 2`` wrong ones.

    Returns None when no polynomial of degree < ``threshold`` agrees with all but that many
    shares, or when its value at 0 is not a ``secret_bytes``-byte secret.
    """
    m = len(shares)
    if m < threshold or len({s.x for s in shares}) != m:
        return None
    errors = (m - threshold) // 2
    q_terms = errors + threshold
    rows = []
    for share in shares:
        x, y = share.x % prime, share.y % prime
        powers = [pow(x, j, prime) for j in range(q_terms)]
        # Q(x) - y * (e_0 + ... + e_{e-1} x^{e-1}) = y * x^e
        row = powers + [-y * powers[j] % prime for j in range(errors)]
        row.append(y * pow(x, errors, prime) % prime)
        rows.append(row)
    solution = _solve(rows, prime)
    if solution is None:
        return None
    q, e = solution[:q_terms], [*solution[q_terms:], 1]
    polynomial, exact = _divide(q, e, prime)
    if not exact or any(polynomial[threshold:]):
        return None
    wrong = tuple(s.x for s in shares if _evaluate(polynomial, s.x, prime) != s.y % prime)
    if len(wrong) > errors:
        return None
    secret = polynomial[0]
    if secret.bit_length() > 8 * secret_bytes:
        return None
    return Decoded(secret.to_bytes(secret_bytes, "big"), wrong)
