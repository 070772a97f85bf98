"""How client updates reach the aggregator: one module per ``protection.mode``, one registry.

- ``none`` (:mod:`.plain`): in the clear;
- ``secagg`` / ``secagg+`` (:mod:`.masking`): pairwise masking;
- ``ckks`` / ``paillier`` (:mod:`.he`): homomorphic encryption.

Every hiding mode is a :class:`~secagg.protection.base.SecureSum` wrapped in
:class:`~secagg.protection.base.HiddenFedAvg`, so FedAvg's encoding and checks exist once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secagg.aggregation import AggregationRule, FedAvg
from secagg.aggregation.norm_bound import NormBound
from secagg.config import Config
from secagg.crypto.identity import IdentityDirectory
from secagg.errors import ConfigError
from secagg.protection.base import (
    AggregateOutcome,
    HiddenFedAvg,
    Protection,
    SecureSum,
    SumOutcome,
)
from secagg.protection.he import HESum
from secagg.protection.masking import MaskingSum
from secagg.protection.plain import PlainProtection

if TYPE_CHECKING:
    from secagg.ledger.session import LedgerSession
    from secagg.masking.session import Session

#: Hiding modes by ``protection.mode`` name.
SECURE_SUMS: dict[str, type[MaskingSum] | type[HESum]] = {
    mode: cls for cls in (MaskingSum, HESum) for mode in cls.MODES
}
#: Every mode ``protection.mode`` accepts (config.CHOICES lists the same names).
MODES = ("none", *SECURE_SUMS)


def hiding_rule(config: Config, rule: AggregationRule) -> tuple[FedAvg, NormBound | None]:
    """The linear rule a hiding mode sums with, and the norm bound clients clip to first.

    Refuses rules that need every individual update (they cannot run on a hidden sum).
    """
    mode = config.protection.mode
    norm_bound = None
    if isinstance(rule, NormBound):
        # Linear after clipping: each client clips its own update, the sum is FedAvg's, and
        # the server checks the mean's norm.
        norm_bound, rule = rule, FedAvg()
    if rule.needs_individual_updates or not isinstance(rule, FedAvg):
        raise ConfigError(
            f"aggregation.rule = {rule.name!r} needs every individual update, which "
            f"protection.mode = {mode!r} hides; use protection.mode = 'none', or rule "
            "'fedavg' or 'norm-bound'"
        )
    if mode not in SECURE_SUMS:
        raise ConfigError(f"protection.mode = {mode!r} is not one of: {', '.join(MODES)}")
    return rule, norm_bound


def make_protection(
    config: Config,
    rule: AggregationRule,
    client_ids: list[int],
    dim: int,
    seed: int,
    ledger: LedgerSession | None = None,
    *,
    identities: IdentityDirectory | None = None,
    he_public_key: bytes | None = None,
    he_key_holder: int | None = None,
    session: Session | None = None,
) -> Protection:
    """The protection named by ``protection.mode``, refusing impossible combinations.

    ``dim`` is the length of one update; hiding modes sum ``dim + 1`` values (the weight).
    ``ledger``: record every round on chain (keys and survivor set read from it).
    Keys that live elsewhere (a deployment, :mod:`secagg.flower`): ``identities``, the
    clients' registered signing keys; ``he_public_key``, the key holder's public key signed
    with its identity (HE), and ``he_key_holder``, the one client whose signature on it this
    party accepts (a node's policy; None: any registered client); ``session``, the run's
    session the clients agreed (masking; :mod:`secagg.masking.session`). Without them a
    simulation makes them here.
    """
    mode = config.protection.mode
    if mode == "none":
        return PlainProtection(rule)
    linear, norm_bound = hiding_rule(config, rule)
    secure_sum: MaskingSum | HESum
    if mode in MaskingSum.MODES:
        secure_sum = MaskingSum(config, client_ids, dim + 1, seed, ledger, identities, session)
    else:
        secure_sum = HESum(
            config,
            client_ids,
            dim + 1,
            seed,
            ledger,
            he_public_key,
            identities,
            key_holder=he_key_holder,
        )
    return HiddenFedAvg(mode, linear, secure_sum, config.protection.clip_range, norm_bound)


__all__ = [
    "MODES",
    "AggregateOutcome",
    "HiddenFedAvg",
    "Protection",
    "SecureSum",
    "SumOutcome",
    "hiding_rule",
    "make_protection",
]
