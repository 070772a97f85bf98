"""The noisy sum: central-dp and distributed-dp on top of any way of summing.

The round is the encoding pipeline of :mod:`secagg.privacy.integer_encoding` around a secure
sum: each client rotates, scales and rounds its clipped vector, adds its integer noise share
(distributed DP), and hands the integers to the hiding mode; the server decodes the sum,
adding the whole noise itself first under central DP, and turns it into the model update
(:meth:`~secagg.privacy.sum_plan.SumPrivacyPlan.to_update`). Masking sums group elements mod
2^b; HE sums the same integers exactly (its decryption error is kept below half a unit and
rounded away); without hiding (central DP only) the server adds them in the clear.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.config import Config
from secagg.crypto.identity import IdentityDirectory
from secagg.errors import AggregateRejectedError
from secagg.privacy.integer_encoding import decode, encode_integers, padded_dimension, to_group
from secagg.privacy.noise import NoiseSource
from secagg.privacy.sum_plan import SumAccountant, SumPrivacyPlan
from secagg.protection.base import SUM_FAILURES, AggregateOutcome, HiddenFedAvg
from secagg.protection.dropout import DropoutSchedule
from secagg.protection.he import HESum, decryption_threshold
from secagg.protection.masking import MaskingSum

if TYPE_CHECKING:
    from secagg.ledger.session import LedgerSession
    from secagg.masking.session import Session

#: A client's noise share: ``share(count, variance)`` → int64 draws of N_Z(0, variance).
ShareSource = Callable[[int, Any], np.ndarray]


def rotation_seed(run_seed: int) -> bytes:
    """The public seed of the rounds' rotations: fixed by the run, known to every party.

    Whoever picks ``run.seed`` picks the rotations. That buys nothing against privacy (the
    rotation is orthogonal and data-independent; the noise and the sensitivity do not depend
    on it); at worst a rotation that concentrates a vector makes its sum wrap, which the
    wrap check rejects: a round lost, as a coordinator could lose it anyway."""
    return hashlib.sha256(b"secagg/ddp/rotation-seed" + run_seed.to_bytes(8, "big")).digest()


class NoisySumProtection:
    """One round: encode (+ noise shares), sum without looking, decode (+ central noise)."""

    def __init__(
        self,
        name: str,
        plan: SumPrivacyPlan,
        secure_sum: MaskingSum | HESum | None,
        shares: Mapping[int, ShareSource],
        *,
        seed: bytes,
        rounding_seed: int,
        server_noise: NoiseSource | None = None,
    ) -> None:
        self.name = name
        self.plan = plan
        self.secure_sum = secure_sum
        self.shares = shares
        self.seed = seed
        self.rounding_seed = rounding_seed
        self.accountant = SumAccountant(plan)
        if plan.mode == "central-dp" and server_noise is None:
            raise AggregateRejectedError("central-dp needs the aggregator's noise source")
        self.server_noise = server_noise
        self._server_rounds = 0

    def public_record(self, round_idx: int) -> dict[str, Any]:
        record = {"mode": self.name, "dp": self.plan.public(), "rotation_seed": self.seed.hex()}
        if self.secure_sum is not None:
            record |= self.secure_sum.public_record(round_idx)
        return record

    def encode(self, client: int, vector: np.ndarray, round_idx: int) -> np.ndarray:
        """The client's side: its integers, with its noise share under distributed DP."""
        noise = None
        if self.plan.mode == "distributed-dp":
            share = self.shares[client]
            variance = self.plan.spec.share_variance

            def noise(count: int) -> np.ndarray:
                return share(count, variance)

        rng = np.random.default_rng([self.rounding_seed, round_idx, client, 0xDD9])
        return encode_integers(
            vector, self.plan.spec, seed=self.seed, round_idx=round_idx, rng=rng, noise=noise
        )

    def _sum(
        self, ints: Mapping[int, np.ndarray], schedule: DropoutSchedule, round_idx: int
    ) -> tuple[np.ndarray, list[int], dict[str, Any]]:
        """The signed integer sum of the included clients' integers, and who they are."""
        spec = self.plan.spec
        if isinstance(self.secure_sum, MaskingSum):
            group = {c: to_group(v, spec.bits) for c, v in ints.items()}
            total, included, stats = self.secure_sum.sum_group(group, schedule, round_idx)
            return total, included, stats
        if isinstance(self.secure_sum, HESum):
            outcome = self.secure_sum.sum(
                {c: v.astype(np.float64) for c, v in ints.items()}, schedule, round_idx
            )
            signed = np.rint(outcome.total).astype(np.int64)
            return to_group(signed, spec.bits), outcome.included, outcome.stats
        lost = schedule.before_input()
        included = sorted(c for c in ints if c not in lost)
        start = time.perf_counter()
        signed = np.sum([ints[c] for c in included], axis=0, dtype=np.int64)
        stats = {
            "bytes_sent_per_client": float(spec.padded_dim * spec.bits / 8),
            "server_seconds": time.perf_counter() - start,
        }
        return to_group(signed, spec.bits), included, stats

    def client_input(self, client: int, vector: np.ndarray, round_idx: int) -> np.ndarray:
        """What ``client`` masks: its encoding (with its noise share) as group elements mod
        2^b, the input :meth:`MaskingSum.sum_group` sums (a deployed node's side)."""
        return to_group(self.encode(client, vector, round_idx), self.plan.spec.bits)

    def aggregate(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, float],
        schedule: DropoutSchedule,
        round_idx: int,
    ) -> AggregateOutcome:
        start = time.process_time()
        ints = {c: self.encode(c, updates[c], round_idx) for c in sorted(updates)}
        encode_seconds = (time.process_time() - start) / max(1, len(ints))
        try:
            total, included, stats = self._sum(ints, schedule, round_idx)
        except SUM_FAILURES as exc:
            return HiddenFedAvg.aborted(exc)
        return self.conclude(total, included, stats, round_idx, encode_seconds=encode_seconds)

    def conclude(
        self,
        total: np.ndarray,
        included: list[int],
        stats: dict[str, Any],
        round_idx: int,
        *,
        encode_seconds: float | None = None,
    ) -> AggregateOutcome:
        """The server's side after the secure sum: the group sum ``total`` of the ``included``
        clients' inputs -> the honest-share check, decoding (central noise first, the wrap
        check), the accountant's charge, the model update.

        :meth:`aggregate` ends here, and so does a deployment's coordinator after its masking
        round (:mod:`secagg.flower.server_app`)."""
        if not included:
            return AggregateOutcome(None, [], "every client dropped out", stats)
        plan = self.plan
        honest = 1 if plan.mode == "central-dp" else len(included) - plan.colluders
        if honest < plan.min_shares:
            return AggregateOutcome(
                None,
                included,
                f"BelowThresholdError: {len(included)} survivors hold {honest} honest noise "
                f"shares, fewer than the {plan.min_shares} the privacy plan needs",
                stats,
            )
        central = None
        if plan.mode == "central-dp":
            assert self.server_noise is not None
            draws = self.server_noise.for_round(self._server_rounds)
            self._server_rounds += 1
            central = draws.discrete_gaussian(plan.spec.padded_dim, plan.spec.share_variance)
        try:
            real = decode(total, plan.spec, seed=self.seed, round_idx=round_idx, added=central)
        except AggregateRejectedError as exc:
            return AggregateOutcome(None, included, f"{type(exc).__name__}: {exc}", stats)
        release = self.accountant.record(honest)
        update = plan.to_update(real)
        timing = {} if encode_seconds is None else {"dp_encode_seconds": encode_seconds}
        stats = {
            **stats,
            **timing,
            "noise_shares": honest,
            "noise_std_over_target": float(np.sqrt(honest / plan.min_shares)),
            "round_epsilon": max(
                self.accountant.round_epsilon(release, c) for c in plan.client_ids
            ),
        }
        return AggregateOutcome(update, included, stats=stats)


def sum_plan(
    config: Config, sizes: Mapping[int, int], dim: int, masking: MaskingSum | None = None
) -> SumPrivacyPlan:
    """The run's plan: t from the protection (the masking round's own parameters, or the HE
    decryption threshold; every client in the clear), and on a sparse SecAgg+ graph t_s."""
    n = len(sizes)
    arc = None
    if masking is not None:
        params = masking.params(0)
        threshold = params.threshold
        if params.neighbors < n - 1:
            arc = params.share_threshold
    elif config.protection.mode in HESum.MODES:
        threshold = decryption_threshold(config, n)
    else:
        threshold = n
    return SumPrivacyPlan.build(config, sizes, dim, threshold, arc)


def make_noisy_sum(
    config: Config,
    sizes: Mapping[int, int],
    dim: int,
    seed: int,
    shares: Mapping[int, ShareSource],
    ledger: LedgerSession | None = None,
    *,
    server_noise: NoiseSource | None = None,
    identities: IdentityDirectory | None = None,
    session: Session | None = None,
) -> NoisySumProtection:
    """The noisy sum of a run with ``privacy.mode`` central-dp or distributed-dp.

    ``sizes``: each client's registered training-set size (its record sampling rate);
    ``dim``: the model's; ``shares``: each client's noise-share source (distributed DP);
    ``server_noise``: the aggregator's source (central DP).
    """
    pt = config.protection
    ids = sorted(sizes)
    masking = None
    if pt.mode in MaskingSum.MODES:
        masking = MaskingSum(config, ids, padded_dimension(dim), seed, ledger, identities, session)
    plan = sum_plan(config, sizes, dim, masking)
    secure_sum: MaskingSum | HESum | None = masking
    if pt.mode in HESum.MODES:
        # HE sums the integers exactly: every summand within the wrap bound, and a
        # decryption error below half a unit, which rounding removes.
        he_config = replace(
            config,
            protection=replace(pt, clip_range=float(plan.spec.bound), he_precision=0.25),
        )
        secure_sum = HESum(
            he_config, ids, padded_dimension(dim), seed, ledger, identities=identities
        )
    return NoisySumProtection(
        pt.mode,
        plan,
        secure_sum,
        shares,
        seed=rotation_seed(config.run.seed),
        rounding_seed=seed,
        server_noise=server_noise,
    )
