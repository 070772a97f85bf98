"""Error-correcting reconstruction of Shamir shares (Berlekamp-Welch decoding), per limb.

Shamir shares of a degree-(t-1) polynomial are a Reed-Solomon codeword, so m shares of which
at most e = (m - t) // 2 are wrong still determine the secret, and decoding also says which
ones were wrong. The masking server needs both: a holder that returns a bad share must neither
abort the round nor corrupt the sum silently, and it should be named.

A share is a vector of limbs (:mod:`secagg.crypto.shamir`), each limb its own codeword over
GF(2^31 - 1). A wrong share is wrong in some limbs; each limb is decoded on its own and the
wrong holders are the union over limbs. With at most e wrong shares every limb has at most e
errors, so every limb decodes uniquely and the union has at most e holders: the guarantee is
the one of a single codeword. More than e wrong holders in total is refused (None), never
turned into a wrong secret (callers check the secret against its commitment as well).

Decoding solves one linear system of m equations over GF(p) per limb (Gaussian elimination,
vectorised over rows in NumPy), so it is the slow path: the server first combines t shares
and decodes only when the rebuilt secret fails its check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secagg.crypto.shamir import (
    PRIME,
    SECRET_BYTES,
    Share,
    from_limbs,
    lagrange_matrix,
    limb_count,
    matmul_mod,
    vandermonde,
)
from secagg.errors import CryptoError


@dataclass(frozen=True, repr=False)
class Decoded:
    """The corrected secret and the x-coordinates of the shares that were wrong."""

    secret: bytes
    wrong_xs: tuple[int, ...]

    def __repr__(self) -> str:
        return f"Decoded(secret=<hidden>, wrong_xs={self.wrong_xs})"


def disagreeing_rows(
    basis_xs: Sequence[int],
    basis_values: np.ndarray,
    other_xs: Sequence[int],
    other_values: np.ndarray,
    *,
    prime: int = PRIME,
    matrix: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the ``other`` shares that do not lie on the polynomials through the basis.

    Once a secret rebuilt from the basis has passed its check, the basis is known good, so
    every share that disagrees with it (in any limb) is a wrong one. Exact: every other
    holder's share is predicted (one Lagrange matrix product) and compared, limb by limb.
    ``matrix``: ``lagrange_matrix(basis_xs, other_xs)`` when the caller has it already.
    """
    if not len(other_xs):
        return np.zeros(0, dtype=np.int64)
    if matrix is None:
        matrix = lagrange_matrix(basis_xs, other_xs, prime=prime)
    predicted = matmul_mod(matrix, np.asarray(basis_values, dtype=np.int64), prime)
    return np.flatnonzero((predicted != np.asarray(other_values, dtype=np.int64)).any(axis=1))


def disagreeing(
    basis: Sequence[Share], others: Sequence[Share], *, prime: int = PRIME
) -> tuple[int, ...]:
    """x-coordinates of the ``others`` that do not lie on the polynomials through ``basis``."""
    if not others:
        return ()
    rows = disagreeing_rows(
        [s.x for s in basis],
        np.array([s.y for s in basis], dtype=np.int64),
        [s.x for s in others],
        np.array([s.y for s in others], dtype=np.int64),
        prime=prime,
    )
    return tuple(others[int(i)].x for i in rows)


def _solve(matrix: np.ndarray, rhs: np.ndarray, p: int) -> np.ndarray | None:
    """One solution of ``matrix @ z = rhs`` mod p (free variables 0), or None if inconsistent.

    Gauss-Jordan elimination; each pivot step updates all rows at once (int64, < 2^62).
    """
    rows = np.concatenate([matrix % p, (rhs % p)[:, None]], axis=1)
    n_rows, n_cols = rows.shape[0], rows.shape[1] - 1
    pivots: list[int] = []
    r = 0
    for c in range(n_cols):
        nonzero = np.flatnonzero(rows[r:, c])
        if not nonzero.size:
            continue
        pivot = r + int(nonzero[0])
        if pivot != r:
            rows[[r, pivot]] = rows[[pivot, r]]
        inverse = pow(int(rows[r, c]), -1, p)
        rows[r] = rows[r] * inverse % p
        factors = rows[:, c].copy()
        factors[r] = 0
        rows = (rows - factors[:, None] * rows[r][None, :] % p) % p
        pivots.append(c)
        r += 1
        if r == n_rows:
            break
    if np.any(rows[r:, -1]):
        return None  # inconsistent: more errors than the decoder can correct
    solution = np.zeros(n_cols, dtype=np.int64)
    for i, c in enumerate(pivots):
        solution[c] = rows[i, -1]
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


def decode_limb(
    xs: np.ndarray, ys: np.ndarray, threshold: int, prime: int = PRIME
) -> tuple[int, np.ndarray] | None:
    """Berlekamp-Welch for one limb: (value at 0, indices of wrong points), or None."""
    m = xs.size
    errors = (m - threshold) // 2
    q_terms = errors + threshold
    powers = vandermonde(xs.tolist(), q_terms + 1, prime)
    # Q(x) - y * (e_0 + ... + e_{e-1} x^{e-1}) = y * x^e
    left = np.concatenate([powers[:, :q_terms], (-ys[:, None] * powers[:, :errors]) % prime], 1)
    solution = _solve(left, ys * powers[:, errors] % prime, prime)
    if solution is None:
        return None
    q = [int(v) for v in solution[:q_terms]]
    e = [*(int(v) for v in solution[q_terms:]), 1]
    polynomial, exact = _divide(q, e, prime)
    if not exact or any(polynomial[threshold:]):
        return None
    coefficients = np.array(polynomial[:threshold] + [0] * (threshold - len(polynomial)))
    values = matmul_mod(vandermonde(xs.tolist(), threshold, prime), coefficients[:, None], prime)
    wrong = np.flatnonzero(values[:, 0] != ys)
    if wrong.size > errors:
        return None
    return polynomial[0], wrong


def decode(
    shares: Sequence[Share],
    threshold: int,
    secret_bytes: int = SECRET_BYTES,
    *,
    prime: int = PRIME,
) -> Decoded | None:
    """The secret behind ``shares`` despite up to ``(len(shares) - threshold) // 2`` wrong ones.

    Returns None when some limb has no polynomial of degree < ``threshold`` agreeing with all
    but that many shares, when more than that many holders are wrong over all limbs, or when
    the limbs at 0 are not a ``secret_bytes``-byte secret.
    """
    m = len(shares)
    limbs = limb_count(secret_bytes, prime)
    if m < threshold or threshold < 1 or len({s.x for s in shares}) != m:
        return None
    if any(len(s.y) != limbs for s in shares):
        return None
    xs = np.array([s.x for s in shares], dtype=np.int64)
    values = np.array([s.y for s in shares], dtype=np.int64) % prime
    wrong: set[int] = set()
    secret_limbs = []
    for limb in range(limbs):
        decoded = decode_limb(xs, values[:, limb], threshold, prime)
        if decoded is None:
            return None
        secret_limbs.append(decoded[0])
        wrong.update(int(i) for i in decoded[1])
    if len(wrong) > (m - threshold) // 2:
        return None
    try:
        secret = from_limbs(secret_limbs, secret_bytes, prime)
    except CryptoError:
        return None
    return Decoded(secret, tuple(int(xs[i]) for i in sorted(wrong)))
