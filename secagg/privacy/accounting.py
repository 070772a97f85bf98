"""Privacy accounting for DP-SGD: ε spent by a schedule, and σ needed for a target ε.

Both directions run on Opacus's own accountants (``opacus.accountants``: RDP, PRV) and on its
calibration routine (:func:`opacus.accountants.utils.get_noise_multiplier`), so the numbers
here are the numbers an Opacus user would get. What this module adds:

* argument checks with one-line :class:`~secagg.errors.PrivacyError` messages, instead of
  Opacus's ``ValueError`` (or a silent ``inf``) deep inside the analysis;
* an early refusal of targets the RDP accountant can never certify: with Opacus's default
  orders (α ≤ 63) the RDP→(ε, δ) conversion has a floor (≈ 0.10 at δ = 1e-5) that no σ
  gets below, and Opacus would otherwise spend minutes doubling σ before giving up;
* caching. RDP is additive over steps, so the per-step RDP curve of one (σ, q) pair is
  computed once (with Opacus's ``compute_rdp``) and scaled by the step count: bit-identical
  to ``RDPAccountant.get_epsilon``, but a client reporting its ε after every round no longer
  pays 10-400 ms per report (Opacus's fractional-order series converges slowly near q = 0.5);
* local silencing of Opacus's known noisy warnings ("optimal order is the largest alpha",
  which only says the bound could be tighter; numpy divide-by-zero inside PRV at q = 1).

All ε here are for the Poisson-subsampled Gaussian mechanism, as Opacus accounts them:
add/remove-one-record adjacency on the dataset being sampled.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from opacus.accountants import IAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier

from secagg.errors import PrivacyError

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")

# Opacus's calibration stops bisecting once the ε it reaches is within this much below the
# target; relative to the target so that small budgets are hit as closely as large ones.
_RELATIVE_TOLERANCE = 0.005
_MAX_ABSOLUTE_TOLERANCE = 0.01

# A history entry as Opacus accountants keep it: (noise multiplier, sample rate, steps).
HistoryEntry = tuple[float, float, int]


@contextmanager
def _quiet_opacus() -> Iterator[None]:
    """Silence warnings Opacus's analysis emits on perfectly valid inputs (locally only)."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        yield


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise PrivacyError(f"accountant = {accountant!r} is not one of: {', '.join(ACCOUNTANTS)}")


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PrivacyError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise PrivacyError(f"{name} must be a finite number > 0, got {value!r}")


def _check_delta(delta: float) -> None:
    _check_positive("delta", delta)
    if delta >= 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")


def _check_sample_rate(sample_rate: float) -> None:
    _check_positive("sample_rate", sample_rate)
    if sample_rate > 1:
        raise PrivacyError(f"sample_rate must be in (0, 1], got {sample_rate!r}")


def _check_steps(steps: int, minimum: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < minimum:
        raise PrivacyError(f"steps must be an integer >= {minimum}, got {steps!r}")


def dp_sgd_schedule(samples: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """Sample rate q and step count of ``epochs`` Poisson-sampled DP-SGD epochs.

    One place for the count, so that the calculator (``secagg privacy``) and the trainer
    account for the same steps: q = min(1, batch_size / samples), and an epoch is Opacus'
    ``int(1 / q)`` batches computed exactly as ``max(1, samples // batch_size)`` (the float
    form is off by one for some sizes, e.g. 93 samples with batch 1 gives 92).
    """
    for name, value in (("samples", samples), ("batch_size", batch_size), ("epochs", epochs)):
        if value < 1:
            raise PrivacyError(f"{name} must be >= 1, got {value}")
    return min(1.0, batch_size / samples), epochs * max(1, samples // batch_size)


def make_accountant(accountant: str = "rdp") -> IAccountant:
    """A fresh Opacus accountant (``"rdp"`` or ``"prv"``) with an empty history."""
    _check_accountant(accountant)
    return RDPAccountant() if accountant == "rdp" else PRVAccountant()


@functools.lru_cache(maxsize=4096)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """Opacus's RDP curve (default orders) of one step; read-only because it is shared."""
    curve = np.asarray(
        rdp_analysis.compute_rdp(
            q=sample_rate,
            noise_multiplier=noise_multiplier,
            steps=1,
            orders=RDPAccountant.DEFAULT_ALPHAS,
        ),
        dtype=np.float64,
    )
    curve.flags.writeable = False
    return curve


def rdp_floor(delta: float) -> float:
    """Smallest ε the RDP accountant (default orders) can certify at ``delta``, for any σ.

    The RDP→(ε, δ) conversion adds a term of order log(1/δ)/(α − 1) that does not shrink
    with the noise, and Opacus stops at α = 63; targets at or below this are unreachable.
    """
    _check_delta(delta)
    with _quiet_opacus():
        eps, _ = rdp_analysis.get_privacy_spent(
            orders=RDPAccountant.DEFAULT_ALPHAS,
            rdp=np.zeros(len(RDPAccountant.DEFAULT_ALPHAS)),
            delta=delta,
        )
    return float(eps)


@functools.lru_cache(maxsize=4096)
def _epsilon_of_history(accountant: str, history: tuple[HistoryEntry, ...], delta: float) -> float:
    if not history:
        return 0.0
    with _quiet_opacus():
        if accountant == "rdp":
            # Same arithmetic as RDPAccountant.get_privacy_spent: compute_rdp(steps=s) is
            # the one-step curve times s, summed over the history with the builtin sum.
            rdp = sum([_rdp_per_step(sigma, q) * steps for sigma, q, steps in history])
            eps, _ = rdp_analysis.get_privacy_spent(
                orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta
            )
        else:
            prv = PRVAccountant()
            prv.history = list(history)
            try:
                eps = prv.get_epsilon(delta=delta)
            except (ValueError, ArithmeticError) as exc:  # numerical failure inside PRV
                raise PrivacyError(
                    f"the PRV accountant cannot evaluate this schedule ({exc}); "
                    "use accountant 'rdp'"
                ) from None
    return float(eps)


def epsilon_of(accountant: IAccountant, delta: float) -> float:
    """ε spent so far by a live Opacus accountant (0.0 before its first step).

    Equal to ``accountant.get_epsilon(delta)`` (bit-identical for RDP), but cached.
    """
    _check_delta(delta)
    mechanism = accountant.mechanism()
    _check_accountant(mechanism)
    history: Sequence[HistoryEntry] = accountant.history
    entries = tuple((float(s), float(q), int(n)) for s, q, n in history)
    return _epsilon_of_history(mechanism, entries, float(delta))


def epsilon_of_history(
    history: Sequence[HistoryEntry], delta: float, accountant: str = "rdp"
) -> float:
    """ε of an accountant history ``[(σ, q, steps), ...]`` at ``delta`` (0.0 when empty).

    The same number a live accountant holding that history reports (:func:`epsilon_of`): for
    a node that keeps its history on disk, or asks what one more round would cost.
    """
    _check_accountant(accountant)
    _check_delta(delta)
    entries = []
    for entry in history:
        if len(entry) != 3:
            raise PrivacyError(f"a history entry is (sigma, q, steps), got {entry!r}")
        sigma, q, steps = entry
        _check_positive("noise_multiplier", sigma)
        _check_sample_rate(q)
        _check_steps(steps, 1)
        entries.append((float(sigma), float(q), int(steps)))
    return _epsilon_of_history(accountant, tuple(entries), float(delta))


def epsilon_for(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """ε after ``steps`` DP-SGD steps with noise σ and Poisson sample rate q, at ``delta``.

    Equal to a fresh Opacus accountant with history ``[(σ, q, steps)]`` (``steps = 0`` → 0).
    """
    _check_accountant(accountant)
    _check_positive("noise_multiplier", noise_multiplier)
    _check_sample_rate(sample_rate)
    _check_steps(steps, 0)
    _check_delta(delta)
    if steps == 0:
        return 0.0
    history = ((float(noise_multiplier), float(sample_rate), int(steps)),)
    return _epsilon_of_history(accountant, history, float(delta))


def noise_for(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
) -> float:
    """Smallest σ (to Opacus's bisection tolerance) whose ε after ``steps`` is <= the target.

    Runs :func:`opacus.accountants.utils.get_noise_multiplier`, which only returns a σ whose
    ε is at most ``target_epsilon``; the tolerance is 0.5 % of the target (at most 0.01), so
    the ε actually spent lands within that much below it. Unreachable targets raise
    :class:`~secagg.errors.PrivacyError`.
    """
    _check_accountant(accountant)
    _check_positive("target_epsilon", target_epsilon)
    _check_delta(delta)
    _check_sample_rate(sample_rate)
    _check_steps(steps, 1)
    return _noise_for(
        float(target_epsilon), float(delta), float(sample_rate), int(steps), accountant
    )


@functools.lru_cache(maxsize=1024)
def _noise_for(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    if accountant == "rdp":
        floor = rdp_floor(delta)
        if target_epsilon <= floor:
            raise PrivacyError(
                f"target_epsilon = {target_epsilon} is unreachable: the RDP accountant cannot "
                f"certify ε <= {floor:.3f} at delta = {delta} for any noise; raise the target, "
                "raise delta, or use accountant 'prv'"
            )
    tolerance = min(_MAX_ABSOLUTE_TOLERANCE, _RELATIVE_TOLERANCE * target_epsilon)
    try:
        with _quiet_opacus():
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=tolerance,
            )
    except (ValueError, ArithmeticError) as exc:
        raise PrivacyError(
            f"target_epsilon = {target_epsilon} is unreachable with {steps} steps at sample "
            f"rate {sample_rate:.4g} and delta = {delta} ({accountant}: {exc}); raise the "
            "target, or train fewer rounds/epochs or with smaller batches"
        ) from None
    return float(sigma)
