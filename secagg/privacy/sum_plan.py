"""DP on the sum (``privacy.mode = "central-dp" | "distributed-dp"``): the plan and its ledger.

Local DP makes every client pay the whole noise on its own update. With the noise on the
*sum* it is paid once: a trusted aggregator adds it after decoding (central DP), or, without
trusting anyone, each client adds an integer share of it before secure aggregation hides its
input, so that the server only ever sees the noisy sum (distributed DP; Kairouz, Liu &
Steinke, ICML 2021). Both share one plan:

* **What is summed.** ``privacy.unit = "record"`` (DP-FedSGD): each hospital sends the sum of
  its Poisson batch's per-record gradients, each clipped to ``max_grad_norm``; the server
  takes one step with the noisy sum over the expected batch. A record's ε is the subsampled
  mechanism's at its own hospital's rate q_h = batch_size / N_h. ``privacy.unit = "client"``
  (DP-FedAvg, McMahan et al. ICLR 2018): each client joins a round with probability
  q = clients_per_round / n, a coin drawn from its own CSPRNG that the server never sees (an
  absent client sends noise only), trains locally and clips its whole update; ε is the
  client's, at rate q.
* **How it is encoded** (:mod:`secagg.privacy.integer_encoding`): rotate, scale, round, add
  the integer noise share, map into Z_2^b; the wrap check refuses a sum that left its range.
* **Who adds the noise.** Central: the aggregator, once, with variance (z·Δ₂)². Distributed:
  every client a share (z·Δ₂)²/(t − c), sized so that the honest survivors alone reach the
  target: a round completes with at least t survivors, at most c of them collude with the
  server and subtract their own shares. More honest survivors add more noise than needed;
  each round's record says how many shares it relied on, and the accountant charges the
  round with the noise actually guaranteed (its honest survivors).
* **What it costs** (:mod:`secagg.privacy.distributed_accounting`): RDP of the subsampled
  discrete Gaussian sum, composed over rounds, per client.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secagg.config import SUM_MODES, Config
from secagg.errors import ConfigError, PrivacyError
from secagg.privacy.distributed_accounting import NoisySum, epsilon, noise_multiplier_for
from secagg.privacy.integer_encoding import IntegerSpec, decode


def colluding_clients(config: Config, n: int) -> int:
    """c: ``privacy.colluding_clients``, or by default the protection's colluding fraction."""
    if config.privacy.mode != "distributed-dp":
        return 0
    given = config.privacy.colluding_clients
    if given is not None:
        return given
    return math.floor(config.protection.max_colluding_fraction * n)


@dataclass(frozen=True)
class SumPrivacyPlan:
    """Everything public about a run's noisy sums; the same on every party."""

    mode: str
    unit: str
    client_ids: tuple[int, ...]
    #: each client's sampling rate: of its records (record unit) or of itself (client unit)
    sample_rates: Mapping[int, float]
    #: records (record unit) or clients (client unit) a round's sum holds on average
    expected_contributions: float
    colluders: int
    #: t - c: honest shares a completed round is guaranteed (1 with a trusted aggregator)
    min_shares: int
    spec: IntegerSpec
    delta: float
    rounds: int
    lr: float

    @property
    def noise_multiplier(self) -> float:
        return self.spec.noise_multiplier

    @classmethod
    def build(
        cls,
        config: Config,
        sizes: Mapping[int, int],
        dim: int,
        threshold: int,
        arc: int | None = None,
    ) -> SumPrivacyPlan:
        """The plan for a run: ``sizes`` are the clients' registered training-set sizes,
        ``dim`` the model's, ``threshold`` the fewest survivors a round completes with.

        ``arc``: on a sparse SecAgg+ graph the server can unmask the sum of one arc of t_s
        honest inputs without the rest (two colluders at its margins; the README's trust
        model), so no released sum is guaranteed more than t_s honest noise shares."""
        pr = config.privacy
        if pr.mode not in SUM_MODES:
            raise ConfigError(f"privacy.mode = {pr.mode!r} does not put the noise on the sum")
        ids = tuple(sorted(sizes))
        n = len(ids)
        clip = pr.max_grad_norm
        if pr.unit == "record":
            batch = config.training.batch_size
            rates = {c: min(1.0, batch / sizes[c]) for c in ids}
            expected = float(sum(rates[c] * sizes[c] for c in ids))
            # A batch holds at most all of a client's records; its clipped sum is bounded so.
            max_norm = clip * max(sizes.values())
        else:
            per_round = config.run.clients_per_round or n
            if per_round > n:
                raise ConfigError(
                    f"run.clients_per_round = {per_round} is more than the {n} clients"
                )
            rates = {c: per_round / n for c in ids}
            expected = float(per_round)
            max_norm = clip
        colluders = colluding_clients(config, n)
        if pr.mode == "distributed-dp":
            min_shares = threshold - colluders
            if arc is not None:
                min_shares = min(min_shares, arc)
            if min_shares < 1:
                raise ConfigError(
                    f"privacy.colluding_clients = {colluders} leaves no honest noise share: a "
                    f"round completes with t = {threshold} survivors, of which t - c = "
                    f"{min_shares} are honest; raise protection.threshold or lower "
                    "privacy.colluding_clients"
                )
        else:
            min_shares = 1

        def spec_for(z: float) -> IntegerSpec:
            return IntegerSpec(
                dim=dim,
                clients=n,
                clip=clip,
                max_norm=max_norm,
                bits=config.protection.bits,
                noise_multiplier=z,
                shares=min_shares,
                unit=pr.unit,
            )

        try:
            if pr.noise_multiplier is not None:
                spec = spec_for(pr.noise_multiplier)
            else:
                assert pr.target_epsilon is not None  # validate() guarantees one of the two
                z = 1.0
                for _ in range(3):  # Δ₂ depends on the scale, the scale on z: settle both
                    spec = spec_for(z)
                    z = noise_multiplier_for(
                        target_epsilon=pr.target_epsilon,
                        delta=pr.delta,
                        sample_rate=max(rates.values()),
                        steps=config.run.rounds,
                        shares=min_shares,
                        l2_sensitivity=spec.l2_sensitivity,
                        dim=spec.padded_dim,
                    )
                spec = spec_for(z)
        except PrivacyError as exc:
            raise PrivacyError(f"privacy.mode = {pr.mode!r}: {exc}") from None
        return cls(
            mode=pr.mode,
            unit=pr.unit,
            client_ids=ids,
            sample_rates=rates,
            expected_contributions=expected,
            colluders=colluders,
            min_shares=min_shares,
            spec=spec,
            delta=pr.delta,
            rounds=config.run.rounds,
            lr=config.training.lr,
        )

    def release(self, shares: int) -> NoisySum:
        """One round's noisy sum as the accountant sees it, with ``shares`` honest shares."""
        # The spec sizes a share for min_shares (1 for the aggregator's single draw).
        return NoisySum(
            share_variance=float(self.spec.share_variance),
            shares=shares,
            l2_sensitivity=self.spec.l2_sensitivity,
            dim=self.spec.padded_dim,
        )

    def planned_epsilon(self, sample_rate: float, rounds: int | None = None) -> float:
        """ε at the plan's δ of ``rounds`` (default: all planned) releases carrying only the
        guaranteed ``min_shares`` honest shares, for a client sampled at ``sample_rate``.

        The worst case a client can plan for: it cannot check how many honest survivors a
        round will have, only that a completed round has at least ``min_shares``."""
        count = self.rounds if rounds is None else rounds
        if count <= 0:
            return 0.0
        return epsilon([(self.release(self.min_shares), sample_rate, count)], self.delta)

    def public(self) -> dict[str, Any]:
        """The plan's public figures, for the round record, the ledger and the report."""
        spec = self.spec
        return {
            "privacy": self.mode,
            "unit": self.unit,
            "noise_multiplier": self.noise_multiplier,
            "colluders": self.colluders,
            "min_shares": self.min_shares,
            "bits": spec.bits,
            "scale": spec.scale,
            "padded_dim": spec.padded_dim,
            "l2_sensitivity": spec.l2_sensitivity,
            "wrap_bound": spec.bound,
            "expected_contributions": self.expected_contributions,
            "lr": self.lr,
            # what an auditor rebuilds the encoding from (secagg audit decodes the sum again)
            "spec": {
                "dim": spec.dim,
                "clients": spec.clients,
                "clip": spec.clip,
                "max_norm": spec.max_norm,
                "bits": spec.bits,
                "noise_multiplier": spec.noise_multiplier,
                "shares": spec.shares,
                "unit": spec.unit,
            },
        }

    def to_update(self, total: np.ndarray) -> np.ndarray:
        """The model update a decoded noisy sum stands for (float32)."""
        return _update(self.unit, self.lr, self.expected_contributions, total)


@dataclass
class SumAccountant:
    """Each client's ε over the rounds released so far (aborted rounds release nothing)."""

    plan: SumPrivacyPlan
    releases: Counter[NoisySum] = field(default_factory=Counter)

    def _epsilon(self, releases: Mapping[NoisySum, int], client: int) -> float:
        if not releases:
            return 0.0
        q = self.plan.sample_rates[client]
        history = [(release, q, steps) for release, steps in releases.items()]
        return epsilon(history, self.plan.delta)

    def record(self, shares: int) -> NoisySum:
        """Charge one released round whose sum held ``shares`` honest noise shares."""
        if shares < self.plan.min_shares:
            raise PrivacyError(
                f"a round released a sum with {shares} honest noise shares, fewer than the "
                f"{self.plan.min_shares} the plan guarantees; it should have been refused"
            )
        release = self.plan.release(shares)
        self.releases[release] += 1
        return release

    def epsilons(self) -> dict[int, float]:
        """Cumulative ε per client at the plan's δ."""
        return {c: self._epsilon(self.releases, c) for c in self.plan.client_ids}

    def planned_after_next(self) -> dict[int, float]:
        """ε per client if the next round releases with only the guaranteed shares."""
        upcoming = Counter(self.releases)
        upcoming[self.plan.release(self.plan.min_shares)] += 1
        return {c: self._epsilon(upcoming, c) for c in self.plan.client_ids}

    def round_epsilon(self, release: NoisySum, client: int) -> float:
        """ε of one release alone for ``client``: what this round guaranteed by itself."""
        return self._epsilon({release: 1}, client)


def update_from_record(
    record: Mapping[str, Any], total: np.ndarray, round_idx: int
) -> np.ndarray | None:
    """The update a round's public record and its unmasked group sum stand for (the audit).

    None under central DP: the aggregator's own noise is in the update, and it is secret.
    Raises what decoding raises (a wrapped sum is :class:`~secagg.errors.WrapError`).
    """
    dp = record["dp"]
    if dp["privacy"] == "central-dp":
        return None
    spec = IntegerSpec(**dp["spec"])
    seed = bytes.fromhex(str(record["rotation_seed"]))
    real = decode(total, spec, seed=seed, round_idx=round_idx)
    return _update(dp["unit"], float(dp["lr"]), float(dp["expected_contributions"]), real)


def _update(unit: str, lr: float, expected: float, total: np.ndarray) -> np.ndarray:
    """DP-FedSGD (record unit): one step of ``lr`` along the mean clipped gradient;
    DP-FedAvg (client unit): the mean clipped update. Both means are over the expected
    count, a public number, never the count that happened to be sampled."""
    step = -lr if unit == "record" else 1.0
    return np.asarray(step * total / expected, dtype=np.float64).astype(np.float32)
