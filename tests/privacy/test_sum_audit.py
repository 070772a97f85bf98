"""The one-run audit of DP on the sum, through the real pipeline (run_simulation, the integer
encoding, the secure sum and the run's accountant): it stays below the accountant when the
noise is there, and proves the accountant wrong when the shares are counted but not added.

Each audit trains a logistic regression on three hospitals for 10 rounds (about a second).
"""

from __future__ import annotations

import pytest

from secagg.errors import PrivacyError
from secagg.privacy.audit import NoisySumAuditResult, audit_noisy_sum

#: (mode, protection, target ε) of the honest audits.
CASES = [
    ("distributed-dp", "secagg", 2.0),
    ("distributed-dp", "secagg", 8.0),
    ("distributed-dp", "secagg+", 2.0),
    ("central-dp", "none", 2.0),
]


@pytest.fixture(scope="module")
def honest() -> dict[tuple[str, str, float], NoisySumAuditResult]:
    return {case: audit_noisy_sum(case[2], mode=case[0], protection=case[1]) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-eps{c[2]:g}")
def test_the_one_run_audit_of_distributed_dp_never_exceeds_its_accountant(
    honest: dict[tuple[str, str, float], NoisySumAuditResult], case: tuple[str, str, float]
) -> None:
    mode, protection, target = case
    result = honest[case]
    print(
        f"{mode} under {protection} at ε = {target:g}: audited ε >= "
        f"{result.epsilon_lower_bound:.3f}, accountant {result.epsilon_accountant:.3f} "
        f"(z {result.noise_multiplier:.3f}, {result.correct}/{result.guesses} correct)"
    )
    assert result.noise_added and (result.mode, result.protection) == (mode, protection)
    # The plan met its target: every hospital at most the target, the largest close to it.
    assert max(result.epsilon_by_hospital) == result.epsilon_accountant
    assert 0.95 * target < result.epsilon_accountant <= target * (1 + 1e-9)
    # Every round summed all three hospitals' shares (c = 0), or the aggregator's one draw.
    assert result.noise_shares == (3 if mode == "distributed-dp" else 1)
    assert 0.0 <= result.epsilon_lower_bound <= result.epsilon_accountant


def test_the_audit_of_the_noisy_sum_has_power(
    honest: dict[tuple[str, str, float], NoisySumAuditResult],
) -> None:
    """Not vacuous: with less noise (ε = 8) the same canaries prove more, and visibly."""
    loose = honest[("distributed-dp", "secagg", 8.0)].epsilon_lower_bound
    tight = honest[("distributed-dp", "secagg", 2.0)].epsilon_lower_bound
    assert loose > tight
    assert loose > 1.0  # observed 1.66 (ε = 2: 0.50)


def test_the_audit_catches_noise_shares_that_are_counted_but_not_added(
    honest: dict[tuple[str, str, float], NoisySumAuditResult],
) -> None:
    reference = honest[("distributed-dp", "secagg", 2.0)]
    broken = audit_noisy_sum(2.0, disable_noise=True)
    assert not broken.noise_added
    # The accountant charged the same three shares a round and claims the same ε ...
    assert broken.noise_shares == 3
    assert broken.epsilon_accountant == pytest.approx(reference.epsilon_accountant, rel=1e-12)
    # ... but without the shares the guesses are right but for an included canary that no
    # Poisson batch drew (observed 199 of 200), and the bound proves the claim false.
    assert broken.correct >= broken.guesses - 2
    assert broken.epsilon_lower_bound > broken.epsilon_accountant + 1  # observed 3.71 > 2.00


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"target_epsilon": 2.0, "noise_multiplier": 1.0}, "exactly one of"),
        ({"target_epsilon": 2.0, "mode": "local-dp"}, "central-dp or distributed-dp"),
        (
            {
                "target_epsilon": 2.0,
                "mode": "central-dp",
                "protection": "none",
                "disable_noise": True,
            },
            "noise shares",
        ),
    ],
)
def test_audit_noisy_sum_refuses_what_it_cannot_audit(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(PrivacyError, match=message):
        audit_noisy_sum(**kwargs)  # type: ignore[arg-type]
