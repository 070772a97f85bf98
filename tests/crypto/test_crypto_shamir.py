"""Shamir sharing: any t shares recover the secret, fewer reveal nothing useful.

Secrets are shared limb by limb over GF(2^31 - 1) (see the module docstring): the secrecy
tests below run on the field-element layer (``split_limbs``) over small fields, where every
value can be counted; the byte-level tests run over the protocol's field.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, chisquare

from secagg.crypto import shamir
from secagg.errors import CryptoError


def test_the_field_is_the_mersenne_prime_2_31_minus_1_and_limbs_hold_a_32_byte_secret() -> None:
    assert shamir.PRIME == 2**31 - 1
    assert pow(3, shamir.PRIME - 1, shamir.PRIME) == 1  # Fermat check (it is a known prime)
    assert all(pow(a, shamir.PRIME - 1, shamir.PRIME) == 1 for a in (2, 5, 7, 11, 13))
    assert 2**shamir.LIMB_BITS < shamir.PRIME  # every limb is a field element
    assert shamir.LIMBS * shamir.LIMB_BITS >= 8 * shamir.SECRET_BYTES == 256
    assert shamir.VALUE_BYTES == 4 * shamir.LIMBS == 36
    # every product of two elements, and a sum of 2^15 products of 16-bit by 31-bit
    # values, fit in int64: the NumPy arithmetic is exact
    assert (shamir.PRIME - 1) ** 2 < 2**63 and 2**15 * 2**16 * shamir.PRIME < 2**63


@pytest.mark.parametrize("size", [1, 16, 32, 40])
def test_limbs_round_trip(size: int) -> None:
    for secret in (os.urandom(size), bytes(size), b"\xff" * size):
        limbs = shamir.to_limbs(secret)
        assert len(limbs) == shamir.limb_count(size) and int(limbs.max()) < 2**shamir.LIMB_BITS
        assert shamir.from_limbs(limbs, size) == secret


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 12),
    data=st.data(),
    secret=st.binary(min_size=32, max_size=32),
)
def test_any_t_subset_recovers_the_secret(n: int, data: st.DataObject, secret: bytes) -> None:
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, shamir.PRIME - 1), min_size=n, max_size=n, unique=True))
    shares = shamir.split(secret, t, xs)
    subset = data.draw(st.permutations(shares))[:t]
    assert shamir.combine(subset, t) == secret


def test_every_t_subset_of_a_small_sharing_recovers_the_secret() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, 3, [1, 2, 3, 4, 5])
    for subset in itertools.combinations(shares, 3):
        assert shamir.combine(subset, 3) == secret


def test_fewer_than_t_shares_are_refused() -> None:
    shares = shamir.split(os.urandom(32), 4, [1, 2, 3, 4, 5])
    with pytest.raises(CryptoError, match="cannot reconstruct"):
        shamir.combine(shares[:3], 4)


def test_fewer_than_t_shares_do_not_determine_the_secret() -> None:
    # Interpolating t - 1 shares as if the threshold were t - 1 gives garbage, not the secret:
    # nine uniform limbs fit 30, 30, ..., 16 bits with probability 2^-8 * 2^-15 = 2^-23.
    secret = os.urandom(32)
    shares = shamir.split(secret, 4, [1, 2, 3, 4, 5])
    with pytest.raises(CryptoError, match="do not interpolate"):
        shamir.combine(shares[:3], 3)


def test_duplicate_shares_are_refused() -> None:
    shares = shamir.split(os.urandom(32), 2, [1, 2, 3])
    with pytest.raises(CryptoError, match="duplicate"):
        shamir.combine([shares[0], shares[0]], 2)
    with pytest.raises(CryptoError, match="distinct"):
        shamir.split(os.urandom(32), 2, [1, 1, 2])


@pytest.mark.parametrize("x", [0, -1, shamir.PRIME])
def test_x_coordinates_must_be_non_zero_field_elements(x: int) -> None:
    with pytest.raises(CryptoError, match="x-coordinates"):
        shamir.split(os.urandom(32), 1, [x])


def test_threshold_must_fit_the_number_of_shares() -> None:
    with pytest.raises(CryptoError, match="threshold"):
        shamir.split(os.urandom(32), 4, [1, 2, 3])
    with pytest.raises(CryptoError, match="threshold"):
        shamir.split(os.urandom(32), 0, [1, 2, 3])


def test_share_values_round_trip_and_are_range_checked() -> None:
    share = shamir.split(os.urandom(32), 2, [7, 8])[0]
    assert shamir.Share.from_value_bytes(7, share.value_bytes()) == share
    assert len(share.value_bytes()) == shamir.VALUE_BYTES
    with pytest.raises(CryptoError, match="field element"):
        shamir.Share.from_value_bytes(7, b"\xff" * shamir.VALUE_BYTES)
    with pytest.raises(CryptoError, match="field element"):  # one limb equal to p
        shamir.Share.from_value_bytes(7, shamir.PRIME.to_bytes(4, "big") * shamir.LIMBS)
    with pytest.raises(CryptoError, match="bytes"):
        shamir.Share.from_value_bytes(7, b"\x00" * 10)
    assert "hidden" in repr(share) and str(share.y[0]) not in repr(share)


def test_a_garbled_share_is_detected() -> None:
    # A random wrong value moves every interpolated limb to a random field element, and the
    # nine fit a 32-byte secret with probability 2^-23. (A small offset in one low limb is
    # not caught here: the callers check every rebuilt secret against a commitment.)
    shares = shamir.split(os.urandom(32), 3, [1, 2, 3])
    bad = shamir.Share(shares[0].x, tuple(shamir.random_elements((shamir.LIMBS,)).tolist()))
    with pytest.raises(CryptoError, match="wrong"):
        shamir.combine([bad, shares[1], shares[2]], 3)


# --------------------------------------------------------------------------------------------
# Secrecy and freshness. Over GF(2^521 - 1) nothing about the distribution of shares can be
# observed, so these run over small prime fields (the ``prime`` keyword), where every value
# can be counted.
# --------------------------------------------------------------------------------------------

SMALL_PRIME = 7


class _ScriptedRandomness:
    """Stands in for ``shamir.random_elements``: returns scripted coefficients."""

    def __init__(self, prime: int) -> None:
        self.prime = prime
        self.queue: list[int] = []

    def __call__(self, shape: tuple[int, ...], prime: int) -> np.ndarray:
        assert prime == self.prime, "coefficients must be drawn from the whole field"
        count = int(np.prod(shape))
        values, self.queue = self.queue[:count], self.queue[count:]
        return np.array(values, dtype=np.int64).reshape(shape)


def _every_sharing(
    monkeypatch: pytest.MonkeyPatch, secret: int, threshold: int, xs: Sequence[int], prime: int
) -> Iterator[list[int]]:
    """The sharings (y per x) of ``secret`` for every choice of the t - 1 coefficients."""
    scripted = _ScriptedRandomness(prime)
    monkeypatch.setattr(shamir, "random_elements", scripted)
    for coefficients in itertools.product(range(prime), repeat=threshold - 1):
        scripted.queue = list(coefficients)
        values = shamir.split_limbs(np.array([[secret]]), threshold, xs, prime=prime)
        assert not scripted.queue, "split must draw exactly t - 1 coefficients"
        yield [int(v) for v in values[:, 0, 0]]


def test_two_splits_of_one_secret_use_fresh_randomness() -> None:
    secret, xs = os.urandom(32), [1, 2, 3, 4, 5]
    first, second = shamir.split(secret, 3, xs), shamir.split(secret, 3, xs)
    # With fresh coefficients two sharings agree at a given x with probability 2^-279;
    # reused (or secret-derived) coefficients would make them agree everywhere.
    assert all(a.y != b.y for a, b in zip(first, second, strict=True))
    assert shamir.combine(first, 3) == shamir.combine(second, 3) == secret
    # Threshold 1 has no random coefficient: every share is the secret's limbs.
    limbs = tuple(shamir.to_limbs(secret).tolist())
    assert {s.y for s in shamir.split(secret, 1, xs)} == {limbs}


def test_the_limbs_use_independent_polynomials() -> None:
    # Equal limbs must not get equal shares: each (secret, limb) has its own coefficients.
    values = shamir.split_many([bytes(32), bytes(32)], 3, [1, 2, 3, 4])
    assert values.shape == (4, 2, shamir.LIMBS)
    flat = values.reshape(4, -1)
    assert len({tuple(flat[:, j].tolist()) for j in range(flat.shape[1])}) == flat.shape[1]


@pytest.mark.parametrize("threshold", [2, 3])
def test_any_t_minus_1_shares_take_every_value_exactly_once_whatever_the_secret(
    monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    # Exhaustive over GF(7): for each secret, the p^(t-1) choices of the random coefficients
    # map one-to-one onto the p^(t-1) possible values of any t - 1 shares. So uniform
    # coefficients give uniform t - 1 shares, the same distribution for every secret:
    # perfect secrecy.
    p, xs = SMALL_PRIME, [1, 2, 3, 4, 5, 6]
    for secret in range(p):
        sharings = list(_every_sharing(monkeypatch, secret, threshold, xs, p))
        for subset in itertools.combinations(range(len(xs)), threshold - 1):
            seen = Counter(tuple(shares[i] for i in subset) for shares in sharings)
            assert len(seen) == p ** (threshold - 1) and set(seen.values()) == {1}, (secret, subset)


@pytest.mark.parametrize("threshold", [2, 3])
def test_over_a_small_field_every_t_subset_rebuilds_every_secret(
    monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    p, xs = SMALL_PRIME, [1, 2, 3, 4, 5, 6]
    for secret in range(p):
        for shares in _every_sharing(monkeypatch, secret, threshold, xs, p):
            for subset in itertools.combinations(range(len(xs)), threshold):
                points = [xs[i] for i in subset]
                values = np.array([[shares[i]] for i in subset])
                assert shamir.combine_limbs(points, values, prime=p).tolist() == [secret]


def _share_counts(secret: int, prime: int, xs: Sequence[int], splits: int) -> np.ndarray:
    """How often each value pair (y at xs[0], y at xs[1]) occurs over ``splits`` real splits
    with t = 3 among three holders (the third share is not looked at)."""
    holders = [*xs, next(x for x in range(1, prime) if x not in xs)]
    counts = np.zeros(prime * prime, dtype=np.int64)
    for _ in range(splits):
        values = shamir.split_limbs(np.array([[secret]]), 3, holders, prime=prime)
        a, b = int(values[0, 0, 0]), int(values[1, 0, 0])
        counts[a * prime + b] += 1
    return counts


@pytest.mark.parametrize("xs", [(1, 2), (3, 10)])
def test_t_minus_1_shares_from_the_real_randomness_are_uniform_and_independent_of_the_secret(
    xs: tuple[int, int],
) -> None:
    # t = 3 over GF(11): the pair of shares at two x-coordinates should be uniform over the
    # 121 value pairs for any secret. The coefficients come from the OS CSPRNG (not seeded),
    # so a correct implementation fails this with probability 1e-6 per assertion: negligible.
    p, splits = 11, 100 * 11 * 11
    counts = {secret: _share_counts(secret, p, xs, splits) for secret in (0, p - 1)}
    for secret, observed in counts.items():
        assert chisquare(observed).pvalue > 1e-6, secret  # uniform over GF(11)^2
    table = np.stack(list(counts.values()))
    assert chi2_contingency(table).pvalue > 1e-6  # the same distribution for both secrets


def test_the_secret_and_the_x_coordinates_must_lie_in_the_chosen_field() -> None:
    with pytest.raises(CryptoError, match="GF"):
        shamir.split_limbs(np.array([[SMALL_PRIME]]), 2, [1, 2], prime=SMALL_PRIME)
    with pytest.raises(CryptoError, match="x-coordinates"):
        shamir.split_limbs(np.array([[1]]), 2, [1, SMALL_PRIME], prime=SMALL_PRIME)
    with pytest.raises(CryptoError, match="modulus"):
        shamir.split(b"x", 2, [1, 2], prime=2**61 - 1)  # too large for exact int64 products


def test_lagrange_coefficients_are_computed_and_cached_per_field() -> None:
    # The coefficients at 0 interpolate f(x) = 1 and f(x) = x, so they sum to 1 and their
    # x-weighted sum is 0, in each field. Asking for the same x-set in another field must not
    # return the cached coefficients of the first one.
    xs = (1, 2, 3, 5)
    for prime in (SMALL_PRIME, 11, shamir.PRIME, 11):
        coefficients = shamir.lagrange_at_zero(xs, prime=prime)
        assert all(0 <= c < prime for c in coefficients)
        assert sum(coefficients) % prime == 1
        assert sum(c * x for c, x in zip(coefficients, xs, strict=True)) % prime == 0
    assert shamir.lagrange_at_zero(xs) == shamir.lagrange_at_zero(xs, prime=shamir.PRIME)


# --------------------------------------------------------------------------------------------
# interpolate_at: the polynomial through given shares, evaluated anywhere.
# --------------------------------------------------------------------------------------------


def _evaluate(coefficients: Sequence[int], x: int, prime: int) -> int:
    return sum(c * x**i for i, c in enumerate(coefficients)) % prime


def test_interpolate_at_agrees_with_direct_evaluation_of_every_small_polynomial() -> None:
    # Exhaustive over GF(5): every polynomial of degree <= 2, through every 3 points
    # (x = 0 included), evaluated at every field element.
    p = 5
    for coefficients in itertools.product(range(p), repeat=3):
        for xs in itertools.combinations(range(p), 3):
            points = [shamir.Share(x, (_evaluate(coefficients, x, p),)) for x in xs]
            for x in range(p):
                assert shamir.interpolate_at(points, x, prime=p) == (_evaluate(coefficients, x, p),)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 12), data=st.data(), secret=st.binary(min_size=32, max_size=32))
def test_t_shares_predict_every_other_holders_share_and_the_secret(
    n: int, data: st.DataObject, secret: bytes
) -> None:
    t = data.draw(st.integers(1, n - 1))
    xs = data.draw(st.lists(st.integers(1, shamir.PRIME - 1), min_size=n, max_size=n, unique=True))
    shares = data.draw(st.permutations(shamir.split(secret, t, xs)))
    used, others = shares[:t], shares[t:]
    for holder in others:
        assert shamir.interpolate_at(used, holder.x) == holder.y
    limbs = tuple(shamir.to_limbs(secret).tolist())
    assert shamir.interpolate_at(used, 0) == limbs
    # The reconstructed secret (at x = 0) is itself a point of the polynomial.
    anchored = [shamir.Share(0, limbs), *used[: t - 1]]
    assert all(shamir.interpolate_at(anchored, h.x) == h.y for h in others)


@pytest.mark.parametrize("tampered", [0, 2, 4])
def test_a_tampered_share_is_told_apart_from_the_consistent_ones(tampered: int) -> None:
    # Checking each holder's share against the polynomial fixed by the secret and t - 1 other
    # shares flags exactly the tampered holder: changing y_i by d moves the value at any other
    # x by d * l_i(x), and l_i(x) != 0 off the interpolation points.
    secret, t, xs = os.urandom(32), 3, [3, 5, 8, 13, 21]
    shares = shamir.split(secret, t, xs)
    y = shares[tampered].y
    shares[tampered] = shamir.Share(xs[tampered], ((y[0] + 1) % shamir.PRIME, *y[1:]))
    anchor = shamir.Share(0, tuple(shamir.to_limbs(secret).tolist()))
    flagged = set()
    for i, share in enumerate(shares):
        reference = [anchor, *(s for j, s in enumerate(shares) if j != i and j != tampered)][:t]
        if shamir.interpolate_at(reference, share.x) != share.y:
            flagged.add(i)
    assert flagged == {tampered}
    # And the tampered share, used as an interpolation point, mispredicts every other holder.
    used = [shares[tampered], *(s for j, s in enumerate(shares) if j != tampered)][:t]
    unused = [s for s in shares if s not in used]
    assert all(shamir.interpolate_at(used, s.x) != s.y for s in unused)


def test_interpolate_at_refuses_duplicate_points_and_coordinates_outside_the_field() -> None:
    shares = shamir.split(os.urandom(32), 2, [1, 2, 3])
    with pytest.raises(CryptoError, match="duplicate"):
        shamir.interpolate_at([shares[0], shares[1], shares[0]], 9)
    with pytest.raises(CryptoError, match="duplicate"):
        shamir.interpolate_at([shares[0], shamir.Share(1, shares[1].y)], 9)
    with pytest.raises(CryptoError, match="at least one"):
        shamir.interpolate_at([], 9)
    for x in (-1, shamir.PRIME):
        with pytest.raises(CryptoError, match="x-coordinates"):
            shamir.interpolate_at(shares[:2], x)
    with pytest.raises(CryptoError, match="x-coordinates"):
        shamir.interpolate_at([shamir.Share(SMALL_PRIME, 1)], 1, prime=SMALL_PRIME)


def test_matrix_products_are_exact_mod_p() -> None:
    # Against Python's big integers, including an inner dimension above 2^15 (summed in
    # blocks) and the largest field elements.
    rng = np.random.default_rng(5)
    p = shamir.PRIME
    for inner in (1, 117, 2**15 + 3):
        a = rng.integers(0, p, (3, inner), dtype=np.int64)
        b = rng.integers(0, p, (inner, 2), dtype=np.int64)
        a[0, :] = p - 1
        b[:, 0] = p - 1
        got = shamir.matmul_mod(a, b)
        for i in range(3):
            for j in range(2):
                exact = sum(int(x) * int(y) for x, y in zip(a[i], b[:, j], strict=True)) % p
                assert int(got[i, j]) == exact


def test_vectorised_lagrange_matrix_matches_the_definition() -> None:
    p, xs, at = 101, [3, 7, 20, 55], [0, 1, 7, 99]
    matrix = shamir.lagrange_matrix(xs, at, prime=p)
    for h, x in enumerate(at):
        for i, xi in enumerate(xs):
            numerator = denominator = 1
            for j, xj in enumerate(xs):
                if j != i:
                    numerator, denominator = numerator * (x - xj), denominator * (xi - xj)
            assert int(matrix[h, i]) == numerator * pow(denominator, -1, p) % p


def test_many_secrets_share_one_reconstruction() -> None:
    secrets_ = [os.urandom(32) for _ in range(5)]
    xs = list(range(1, 12))
    values = shamir.split_many(secrets_, 6, xs)  # (holders, secrets, limbs)
    limbs = shamir.combine_limbs(xs[3:9], values[3:9])
    assert [shamir.from_limbs(row, 32) for row in limbs] == secrets_
