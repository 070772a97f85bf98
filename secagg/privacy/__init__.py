"""Differential privacy: accountants and noise calibration (Opacus underneath).

The public surface is :func:`epsilon_for` (schedule -> ε) and :func:`noise_for` (target ε ->
σ); :func:`epsilon_of` reads a live accountant, as :class:`secagg.training.LocalTrainer` does.
"""

from secagg.privacy.accounting import (
    ACCOUNTANTS,
    dp_sgd_schedule,
    epsilon_for,
    epsilon_of,
    make_accountant,
    noise_for,
    rdp_floor,
)

__all__ = [
    "ACCOUNTANTS",
    "dp_sgd_schedule",
    "epsilon_for",
    "epsilon_of",
    "make_accountant",
    "noise_for",
    "rdp_floor",
]
