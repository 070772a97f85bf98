"""Accounting: the ε reported is Opacus's, targets are met from below, bad input fails."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant, RDPAccountant

from secagg.errors import PrivacyError
from secagg.privacy import (
    ACCOUNTANTS,
    epsilon_for,
    epsilon_of,
    make_accountant,
    noise_for,
    rdp_floor,
)

# Opacus itself warns on valid inputs (large-α optimum, log(0) inside PRV at q = 1); our
# module silences those locally, so any warning escaping it fails these tests.
pytestmark = pytest.mark.filterwarnings("error")

DELTA = 1e-5


def _fresh(mechanism: str, sigma: float, q: float, steps: int, delta: float = DELTA) -> float:
    """ε from an untouched Opacus accountant given the whole schedule at once."""
    accountant = RDPAccountant() if mechanism == "rdp" else PRVAccountant()
    accountant.history = [(sigma, q, steps)]
    with warnings.catch_warnings():  # Opacus's own warnings are not under test here
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta=delta))


@pytest.mark.parametrize(
    ("sigma", "q", "steps"),
    [(1.0, 0.25, 20), (0.8, 1.0, 7), (2.0, 0.01, 1000), (5.0, 0.8, 20)],
)
def test_rdp_epsilon_is_exactly_opacus(sigma: float, q: float, steps: int) -> None:
    assert epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA) == _fresh(
        "rdp", sigma, q, steps
    )


@pytest.mark.parametrize(("sigma", "q", "steps"), [(1.0, 0.25, 20), (3.0, 1.0, 5)])
def test_prv_epsilon_is_exactly_opacus(sigma: float, q: float, steps: int) -> None:
    eps = epsilon_for(
        noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA, accountant="prv"
    )
    assert eps == _fresh("prv", sigma, q, steps)
    # PRV is the tighter accountant: never looser than RDP by more than its error bound.
    assert eps <= epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)


def test_zero_steps_spend_nothing() -> None:
    for accountant in ACCOUNTANTS:
        eps = epsilon_for(
            noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=DELTA, accountant=accountant
        )
        assert eps == 0.0


def test_live_accountant_with_mixed_history_matches_opacus() -> None:
    accountant = make_accountant("rdp")
    assert epsilon_of(accountant, DELTA) == 0.0
    for _ in range(30):
        accountant.step(noise_multiplier=1.1, sample_rate=0.1)
    for _ in range(10):
        accountant.step(noise_multiplier=2.0, sample_rate=0.2)
    assert accountant.history == [(1.1, 0.1, 30), (2.0, 0.2, 10)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = accountant.get_epsilon(delta=DELTA)
    assert epsilon_of(accountant, DELTA) == expected


@pytest.mark.parametrize(
    ("target", "q", "steps", "accountant"),
    [
        (1.0, 0.25, 20, "rdp"),  # the figures of tests/test_training.py
        (3.0, 0.05, 400, "rdp"),
        (0.5, 0.8, 20, "rdp"),
        (8.0, 1.0, 10, "rdp"),
        (1.0, 0.25, 20, "prv"),
    ],
)
def test_calibrated_noise_meets_the_target_from_below(
    target: float, q: float, steps: int, accountant: str
) -> None:
    sigma = noise_for(
        target_epsilon=target, delta=DELTA, sample_rate=q, steps=steps, accountant=accountant
    )
    eps = epsilon_for(
        noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA, accountant=accountant
    )
    assert eps <= target
    assert eps >= 0.99 * target  # bisection tolerance is 0.5 % of the target
    assert eps == _fresh(accountant, sigma, q, steps)


def test_a_larger_budget_needs_less_noise() -> None:
    sigmas = [
        noise_for(target_epsilon=t, delta=DELTA, sample_rate=0.1, steps=100) for t in (0.5, 1, 4)
    ]
    assert sigmas[0] > sigmas[1] > sigmas[2] > 0


@settings(max_examples=15)
@given(
    sigma=st.floats(0.6, 5.0),
    q=st.floats(0.005, 0.2),
    steps=st.integers(1, 400),
)
def test_epsilon_grows_with_steps_and_shrinks_with_noise(
    sigma: float, q: float, steps: int
) -> None:
    def eps(s: float, n: int) -> float:
        return epsilon_for(noise_multiplier=s, sample_rate=q, steps=n, delta=DELTA)

    base = eps(sigma, steps)
    assert 0 < base < math.inf
    assert eps(sigma, steps + 10) >= base
    assert eps(sigma * 1.5, steps) <= base


def test_rdp_floor_is_refused_quickly() -> None:
    floor = rdp_floor(DELTA)
    assert 0.1 < floor < 0.11  # log(1/δ)/(α−1)-ish with Opacus's largest order α = 63
    with pytest.raises(PrivacyError, match=r"unreachable.*'prv'") as info:
        noise_for(target_epsilon=0.05, delta=DELTA, sample_rate=0.5, steps=40)
    assert "\n" not in str(info.value)
    # The PRV accountant has no such floor.
    sigma = noise_for(target_epsilon=0.05, delta=DELTA, sample_rate=0.1, steps=10, accountant="prv")
    assert sigma > 1


def test_target_needing_more_than_opacus_max_sigma_is_a_privacy_error() -> None:
    # Just above the floor, σ would have to exceed Opacus's cap of 1e6.
    with pytest.raises(PrivacyError, match="unreachable") as info:
        noise_for(target_epsilon=rdp_floor(DELTA) + 1e-9, delta=DELTA, sample_rate=1.0, steps=20)
    assert "\n" not in str(info.value)


_EPS_OK: dict[str, Any] = {
    "noise_multiplier": 1.0,
    "sample_rate": 0.1,
    "steps": 10,
    "delta": DELTA,
    "accountant": "rdp",
}
_NOISE_OK: dict[str, Any] = {
    "target_epsilon": 1.0,
    "sample_rate": 0.1,
    "steps": 10,
    "delta": DELTA,
    "accountant": "rdp",
}


@pytest.mark.parametrize(
    ("function", "key", "value"),
    [
        (epsilon_for, "delta", 0.0),
        (epsilon_for, "delta", 1.0),
        (epsilon_for, "delta", -1e-5),
        (epsilon_for, "delta", math.nan),
        (epsilon_for, "noise_multiplier", 0.0),
        (epsilon_for, "noise_multiplier", -1.0),
        (epsilon_for, "noise_multiplier", math.inf),
        (epsilon_for, "sample_rate", 0.0),
        (epsilon_for, "sample_rate", 1.5),
        (epsilon_for, "steps", -1),
        (epsilon_for, "steps", 2.5),
        (epsilon_for, "accountant", "moments"),
        (noise_for, "target_epsilon", -1.0),
        (noise_for, "target_epsilon", 0.0),
        (noise_for, "target_epsilon", math.nan),
        (noise_for, "delta", 1.0),
        (noise_for, "steps", 0),
        (noise_for, "accountant", "gdp"),
        (noise_for, "sample_rate", True),
    ],
)
def test_bad_arguments_raise_a_one_line_privacy_error(function: Any, key: str, value: Any) -> None:
    kwargs = dict(_EPS_OK if function is epsilon_for else _NOISE_OK)
    kwargs[key] = value
    with pytest.raises(PrivacyError) as info:
        function(**kwargs)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_unknown_accountant_name() -> None:
    with pytest.raises(PrivacyError, match="'moments' is not one of: rdp, prv"):
        make_accountant("moments")
