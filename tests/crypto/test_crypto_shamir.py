"""Shamir sharing: any t shares recover the secret, fewer reveal nothing useful."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto import shamir
from secagg.errors import CryptoError


def test_the_field_is_the_mersenne_prime_2_521_minus_1() -> None:
    assert shamir.PRIME == 2**521 - 1
    assert shamir.PRIME > 2**256  # every 32-byte secret is one field element
    assert pow(3, shamir.PRIME - 1, shamir.PRIME) == 1  # Fermat check (it is a known prime)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 12),
    data=st.data(),
    secret=st.binary(min_size=32, max_size=32),
)
def test_any_t_subset_recovers_the_secret(n: int, data: st.DataObject, secret: bytes) -> None:
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 2**64), min_size=n, max_size=n, unique=True))
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
    # with overwhelming probability it does not even fit in 32 bytes.
    secret = os.urandom(32)
    shares = shamir.split(secret, 4, [1, 2, 3, 4, 5])
    with pytest.raises(CryptoError, match="do not interpolate"):
        shamir.combine(shares[:3], 3)


def test_t_minus_one_shares_are_consistent_with_any_secret() -> None:
    # Perfect secrecy: the same t - 1 share values are produced by sharings of two different
    # secrets (we exhibit the other polynomial explicitly through one extra point).
    secret, other = os.urandom(32), os.urandom(32)
    shares = shamir.split(secret, 3, [1, 2, 3])
    forged = shamir.Share(0, int.from_bytes(other, "big"))  # pretend the secret were `other`
    p = shamir.PRIME
    # The degree-2 polynomial through (0, other), shares[0], shares[1] exists and is unique,
    # so those two shares alone cannot tell `secret` from `other`.
    xs = (forged.x, shares[0].x, shares[1].x)
    ys = (forged.y, shares[0].y, shares[1].y)

    def at(x: int) -> int:
        total = 0
        for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
            term = yi
            for j, xj in enumerate(xs):
                if i != j:
                    term = term * (x - xj) * pow(xi - xj, -1, p) % p
            total = (total + term) % p
        return total

    assert at(shares[0].x) == shares[0].y and at(shares[1].x) == shares[1].y
    assert at(0) == int.from_bytes(other, "big")


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
    with pytest.raises(CryptoError, match="bytes"):
        shamir.Share.from_value_bytes(7, b"\x00" * 10)
    assert "hidden" in repr(share) and str(share.y) not in repr(share)


def test_a_garbled_share_is_detected() -> None:
    # A random wrong value moves the interpolated secret to a random field element, which
    # fits in 32 bytes with probability 2^-265. (A tiny offset might not be caught: callers
    # that can, like the server for s_u^SK, also check the result against a public key.)
    shares = shamir.split(os.urandom(32), 3, [1, 2, 3])
    bad = shamir.Share(shares[0].x, int.from_bytes(os.urandom(65), "big") % shamir.PRIME)
    with pytest.raises(CryptoError, match="wrong"):
        shamir.combine([bad, shares[1], shares[2]], 3)
