"""Error-correcting reconstruction: up to (m - t) / 2 wrong shares are corrected and named,
more are refused (never a wrong secret), and the fast agreement check finds every liar."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto import reed_solomon, shamir


def _shares(t: int, m: int) -> tuple[bytes, list[shamir.Share]]:
    secret = secrets.token_bytes(32)
    return secret, shamir.split(secret, t, list(range(1, m + 1)))


def _corrupt(shares: list[shamir.Share], indices: list[int]) -> list[shamir.Share]:
    """Shift one limb of each chosen share (a different limb for different shares)."""
    out = list(shares)
    for i in indices:
        y = list(out[i].y)
        limb = i % len(y)
        y[limb] = (y[limb] + 1 + i) % shamir.PRIME
        out[i] = shamir.Share(out[i].x, tuple(y))
    return out


def test_wrong_shares_in_every_limb_and_in_different_limbs_are_named() -> None:
    secret, shares = _shares(5, 15)  # corrects 5
    out = list(shares)
    # holder 0 wrong in every limb; holders 3, 7 in one limb each, different ones
    out[0] = shamir.Share(out[0].x, tuple((v + 9) % shamir.PRIME for v in out[0].y))
    for i, limb in ((3, 2), (7, 8)):
        y = list(out[i].y)
        y[limb] = (y[limb] + 1) % shamir.PRIME
        out[i] = shamir.Share(out[i].x, tuple(y))
    decoded = reed_solomon.decode(out, 5)
    assert decoded is not None and decoded.secret == secret
    assert decoded.wrong_xs == (shares[0].x, shares[3].x, shares[7].x)
    assert reed_solomon.disagreeing(shares[8:13], out[:8]) == decoded.wrong_xs


@settings(max_examples=30, deadline=None)
@given(t=st.integers(1, 8), extra=st.integers(0, 8), data=st.data())
def test_up_to_half_the_redundancy_is_corrected_and_named(
    t: int, extra: int, data: st.DataObject
) -> None:
    m = t + extra
    secret, shares = _shares(t, m)
    errors = extra // 2
    wrong = data.draw(st.lists(st.integers(0, m - 1), unique=True, max_size=errors))
    decoded = reed_solomon.decode(_corrupt(shares, wrong), t)
    assert decoded is not None
    assert decoded.secret == secret
    assert sorted(decoded.wrong_xs) == sorted(shares[i].x for i in wrong)


def test_more_wrong_shares_than_correctable_never_yield_a_wrong_secret() -> None:
    secret, shares = _shares(4, 8)  # corrects 2
    for count in (3, 4, 5):
        decoded = reed_solomon.decode(_corrupt(shares, list(range(count))), 4)
        assert decoded is None or decoded.secret != secret  # ... and callers check it
        assert decoded is None


def test_too_few_or_duplicate_shares_are_not_decoded() -> None:
    _, shares = _shares(4, 6)
    assert reed_solomon.decode(shares[:3], 4) is None
    assert reed_solomon.decode([*shares[:4], shares[0]], 4) is None


def test_the_agreement_check_finds_exactly_the_wrong_shares() -> None:
    _, shares = _shares(5, 12)
    basis, others = shares[:5], shares[5:]
    assert reed_solomon.disagreeing(basis, others) == ()
    lied = _corrupt(others, [1, 4])
    assert reed_solomon.disagreeing(basis, lied) == (others[1].x, others[4].x)
    assert reed_solomon.disagreeing(basis, []) == ()


def test_a_decoded_secret_is_hidden_from_repr() -> None:
    secret, shares = _shares(2, 4)
    decoded = reed_solomon.decode(shares, 2)
    assert decoded is not None
    assert secret.hex() not in repr(decoded)


@pytest.mark.parametrize("t", [1, 3])
def test_a_secret_too_long_for_its_width_is_refused(t: int) -> None:
    secret = secrets.token_bytes(40)
    shares = shamir.split(secret, t, [1, 2, 3, 4, 5])
    assert reed_solomon.decode(shares, t, secret_bytes=32) is None  # 11 limbs, not 9
    assert reed_solomon.decode(shamir.split(b"\xff" * 33, t, [1, 2, 3]), t, 32) is None
    decoded = reed_solomon.decode(shares, t, secret_bytes=40)
    assert decoded is not None and decoded.secret == secret
