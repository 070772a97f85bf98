"""DP on the sum: central-dp and distributed-dp through the whole engine.

Each hospital adds an integer share of the noise before secure aggregation hides its input,
sized so that the honest survivors alone carry the target: these tests check that the sum
the server decodes holds exactly that noise, that what cannot be protected is refused by
name, that a wrapped sum is rejected rather than decoded, and that ε is charged for the
noise actually present.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from secagg.config import Config, apply_overrides, config_from_dict, load_config
from secagg.errors import ConfigError, WrapError
from secagg.privacy.integer_encoding import centred_lift
from secagg.privacy.noise import NoiseSource
from secagg.protection.dropout import DropoutSchedule
from secagg.protection.noisy_sum import NoisySumProtection, ShareSource, make_noisy_sum
from secagg.simulation import run_simulation
from secagg.simulation.federation import Federation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "distributed_dp.toml"


def config(*overrides: str) -> Config:
    base = asdict(load_config(EXAMPLE))
    return config_from_dict(apply_overrides(base, ["run.rounds=3", *overrides]))


def noisy_sum(cfg: Config, n: int = 5, dim: int = 300, seed: int = 0) -> NoisySumProtection:
    sizes = dict.fromkeys(range(n), 100)
    sources = {i: NoiseSource.from_seed(seed * 100 + i) for i in range(n)}
    rounds = {i: iter(range(10**6)) for i in range(n)}

    def share(i: int) -> ShareSource:
        return lambda count, var: (
            sources[i].for_round(next(rounds[i])).discrete_gaussian(count, var)
        )

    return make_noisy_sum(
        cfg,
        sizes,
        dim,
        seed,
        {i: share(i) for i in range(n)},
        server_noise=NoiseSource.from_seed(999),
    )


# ---- what cannot be protected is refused by name ----------------------------------------


def test_distributed_dp_without_a_protection_that_hides_each_update_is_refused():
    with pytest.raises(ConfigError, match="needs a protection that hides each update"):
        config("protection.mode=none")


def test_a_record_level_round_is_one_step_and_local_epochs_are_refused():
    with pytest.raises(ConfigError, match=re.escape("set training.local_epochs = 1")):
        config("training.local_epochs=3")
    config("training.local_epochs=3", "privacy.unit=client")  # DP-FedAvg trains locally


def test_a_rule_that_needs_each_update_is_refused():
    with pytest.raises(ConfigError, match=re.escape("aggregation.rule must be 'fedavg'")):
        config("aggregation.rule=median")


def test_colluders_that_leave_no_honest_share_are_refused():
    cfg = config("privacy.colluding_clients=5")
    with pytest.raises(ConfigError, match="leaves no honest noise share"):
        noisy_sum(cfg)


# ---- the noise the server decodes is the noise the accountant counts ---------------------


def test_the_sum_holds_the_variance_the_accountant_assumes():
    """Zero updates: what the server decodes in the integer domain is the noise alone.

    Five honest shares of variance σ_s² each: the sum's variance must be 5 σ_s², what the
    accountant's release says (shares x share_variance), by a χ² test on the sample
    variance; half of it (a missing share) must be rejected by the same test."""
    protection = noisy_sum(config())
    plan = protection.plan
    samples = []
    for r in range(12):
        ints = {c: protection.encode(c, np.zeros(300), r) for c in range(5)}
        total = np.sum(list(ints.values()), axis=0, dtype=np.int64)
        samples.append(total)
    draws = np.concatenate(samples).astype(np.float64)
    release = plan.release(5)
    assumed = release.shares * release.share_variance
    n = draws.size

    def p_value(variance: float) -> float:
        statistic = (n - 1) * draws.var(ddof=1) / variance
        cdf = stats.chi2.cdf(statistic, n - 1)
        return 2 * min(cdf, 1 - cdf)

    assert p_value(assumed) > 1e-3
    assert p_value(assumed * 4 / 5) < 1e-6  # one share fewer than counted: caught


def test_central_dp_noise_is_added_once_by_the_aggregator():
    protection = noisy_sum(config("privacy.mode=central-dp", "protection.mode=none"))
    ints = {c: protection.encode(c, np.zeros(300), 0) for c in range(5)}
    assert all(not v.any() for v in ints.values())  # the clients add nothing
    outcome = protection.aggregate(
        {c: np.zeros(300) for c in range(5)}, dict.fromkeys(range(5), 1.0), DropoutSchedule({}), 0
    )
    assert outcome.update is not None and np.abs(outcome.update).max() > 0


# ---- survivors and ε --------------------------------------------------------------------


def test_more_honest_survivors_than_t_add_noise_and_spend_less():
    cfg = config("protection.threshold=4")
    full = noisy_sum(cfg)
    short = noisy_sum(cfg)
    updates = {c: np.zeros(300) for c in range(5)}
    weights = dict.fromkeys(range(5), 1.0)
    all_in = full.aggregate(updates, weights, DropoutSchedule({}), 0)
    one_lost = short.aggregate(updates, weights, DropoutSchedule({"share_keys": [4]}), 0)
    assert all_in.stats["noise_shares"] == 5 and one_lost.stats["noise_shares"] == 4
    assert all_in.stats["round_epsilon"] < one_lost.stats["round_epsilon"]
    assert max(full.accountant.epsilons().values()) < max(short.accountant.epsilons().values())


def test_a_round_below_t_is_refused_by_name_and_spends_nothing():
    protection = noisy_sum(config("protection.threshold=4"))
    lost = DropoutSchedule({"share_keys": [3, 4]})
    outcome = protection.aggregate(
        {c: np.zeros(300) for c in range(5)}, dict.fromkeys(range(5), 1.0), lost, 0
    )
    assert outcome.update is None and "BelowThreshold" in outcome.aborted_reason
    assert set(protection.accountant.epsilons().values()) == {0.0}


def test_a_sparse_secagg_plus_graph_sizes_the_noise_for_the_arc_a_server_can_isolate():
    """On a ring of degree k < n − 1, two colluders at an arc's margins unmask the sum of
    t_s honest inputs alone (README, trust model): no sum is guaranteed more shares."""
    cfg = config(
        "protection.threshold=0.6",
        "protection.expected_dropout=0.1",
        "privacy.colluding_clients=10",
    )
    n = 100
    protection = noisy_sum(cfg, n=n)
    params = protection.secure_sum.params(0)  # type: ignore[union-attr]
    colluders = protection.plan.colluders
    assert params.neighbors < n - 1 and colluders == 10
    assert protection.plan.min_shares == params.share_threshold < params.threshold - colluders


# ---- wraps are caught, not decoded ------------------------------------------------------


def test_a_sum_that_wraps_is_rejected_not_decoded(monkeypatch):
    """A client that skips its range check and sends values near half the group: the sum's
    centred lift leaves [−B, B] and the round is rejected by name. With the check switched
    off the server silently decodes a wrong update."""
    protection = noisy_sum(config())
    honest_encode = protection.encode
    bound = protection.plan.spec.bound

    def lying(client: int, vector: np.ndarray, round_idx: int) -> np.ndarray:
        ints = honest_encode(client, vector, round_idx)
        if client == 0:
            ints = ints + 2 * bound  # half the group away: far outside any honest value
        return ints

    monkeypatch.setattr(protection, "encode", lying)
    updates = {c: np.zeros(300) for c in range(5)}
    weights = dict.fromkeys(range(5), 1.0)
    outcome = protection.aggregate(updates, weights, DropoutSchedule({}), 0)
    assert outcome.update is None and "WrapError" in outcome.aborted_reason
    assert set(protection.accountant.epsilons().values()) == {0.0}

    # Teeth: the same lie with the wrap check off decodes to garbage, silently.
    monkeypatch.setattr(type(protection.plan.spec), "bound", property(lambda self: 2**62))
    unchecked = protection.aggregate(updates, weights, DropoutSchedule({}), 1)
    assert unchecked.update is not None
    assert np.abs(unchecked.update).max() > 100 * np.abs(outcome_scale(protection)).max()


def outcome_scale(protection: NoisySumProtection) -> np.ndarray:
    """An honest update's size at the same plan: the noise alone."""
    fresh = noisy_sum(config(), seed=1)
    honest = fresh.aggregate(
        {c: np.zeros(300) for c in range(5)}, dict.fromkeys(range(5), 1.0), DropoutSchedule({}), 0
    )
    assert honest.update is not None
    return honest.update


def test_centred_lift_and_wrap_error_are_the_librarys(monkeypatch):
    spec = noisy_sum(config()).plan.spec
    group = np.zeros(spec.padded_dim, dtype=spec.dtype)
    group[0] = spec.modulus // 2  # −2^(b−1): as far from 0 as the group allows
    assert centred_lift(group, spec)[0] == -(spec.modulus // 2)
    from secagg.privacy.integer_encoding import decode

    with pytest.raises(WrapError, match="wrapped"):
        decode(group, spec, seed=b"s", round_idx=0)


# ---- whole runs -------------------------------------------------------------------------


def test_a_distributed_dp_run_reports_each_clients_epsilon_within_the_target():
    result = run_simulation(config("run.rounds=4"))
    eps = result.final["epsilon"]
    assert len(eps) == 5 and max(eps.values()) <= 3.0
    assert min(eps.values()) > 2.5  # the plan spends (nearly) what it was given
    assert all(r.protection["noise_shares"] == 5 for r in result.rounds)


def test_client_level_dp_fedavg_samples_clients_with_their_own_coin():
    cfg = config(
        "privacy.unit=client",
        "run.clients_per_round=2",
        "training.local_epochs=2",
        "training.lr=0.1",
        "run.rounds=6",
    )
    result = run_simulation(cfg)
    q = {c.sample_rate for c in result.clients}
    assert q == {2 / 5}
    assert max(result.final["epsilon"].values()) <= 3.0


def test_the_simulation_is_reproducible_and_a_fresh_source_is_not():
    """run.seed keys every draw of a simulation; a node's fresh source keys nothing shared."""
    cfg = config()
    a = run_simulation(cfg).params
    b = run_simulation(cfg).params
    assert np.array_equal(a, b)
    federation = Federation.load(cfg)
    shares = []
    for _ in range(2):
        client = federation.client(0, noise=NoiseSource.fresh())
        client.train(federation.initial_params(), 0)
        shares.append(client.noise_share(64, 10**6))  # type: ignore[union-attr]
    assert not np.array_equal(shares[0], shares[1])


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_he_sums_the_noisy_integers_exactly(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under HE the integers are encrypted as they are and their decrypted sum is rounded:
    the update is bit for bit the one the exact integer sum decodes to."""
    from secagg.privacy.integer_encoding import decode_integers

    cfg = config(f"protection.mode={mode}", "protection.threshold=4", "protection.he_key_bits=2048")
    protection = noisy_sum(cfg, dim=40)
    sent: dict[int, np.ndarray] = {}
    honest_encode = protection.encode

    def recording(client: int, vector: np.ndarray, round_idx: int) -> np.ndarray:
        sent[client] = honest_encode(client, vector, round_idx)
        return sent[client]

    monkeypatch.setattr(protection, "encode", recording)
    rng = np.random.default_rng(0)
    updates = {c: rng.normal(size=40) * 0.1 for c in range(5)}
    outcome = protection.aggregate(updates, dict.fromkeys(range(5), 1.0), DropoutSchedule({}), 0)
    assert outcome.update is not None
    exact = np.sum(list(sent.values()), axis=0, dtype=np.int64)
    real = decode_integers(exact, protection.plan.spec, seed=protection.seed, round_idx=0)
    np.testing.assert_array_equal(outcome.update, protection.plan.to_update(real))
