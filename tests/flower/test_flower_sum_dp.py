"""Distributed DP on Flower nodes: each hospital adds its own noise share under masking.

Whole deployments run in this process (:mod:`flower.grid`: the real coordinator, the real
ClientApp and nodes, a Grid that delivers each message at once). The node's refusals are
played through the real node (:class:`~secagg.flower.node.HospitalNode`), as in
test_node_policy, with the defence switched off to show what it stops.
"""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr", reason="flwr is not installed: pip install -e '.[flower]'")

from flower.grid import Deployment
from flower.nodes import SumCoordinator, join_session, sizes_of, start_node, train, write_policy

from secagg.config import Config, load_config
from secagg.errors import ConfigError, PolicyError, PrivacyError, ProtocolError
from secagg.flower.budget import NodeBudget, SumRelease, lifetime_epsilon
from secagg.flower.node import HospitalNode
from secagg.flower.policy import NodePolicy, ProtectionFloor
from secagg.flower.server_app import PARAMS_FILE
from secagg.masking.session import SessionClient
from secagg.privacy.accounting import epsilon_for, epsilon_of_history
from secagg.privacy.integer_encoding import centred_lift
from secagg.privacy.noise import NoiseSource
from secagg.simulation import run_simulation
from secagg.simulation.federation import SEED_SUM_CLIENT, Federation, derive_seed

HOSPITALS = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
TARGET = 3.0
#: A hospital's floor for these runs: DP-SGD or distributed DP, twice the target for life.
FLOOR = {"mode": "distributed-dp", "max_epsilon": 6.0, "delta": 1e-5, "max_grad_norm": 1.0}


def ddp(*overrides: str) -> Config:
    """The hospital example, 4 clients, 2 rounds, distributed DP to ε = 3 over signed SecAgg+."""
    base = [
        "data.clients=4",
        "run.rounds=2",
        "protection.dropout=0.0",
        "ledger.enabled=false",
        "privacy.mode=distributed-dp",
        "protection.mode=secagg+",
    ]
    return load_config(HOSPITALS, [*base, *overrides])


def deploy(
    folder: Path, config: Config, floor: dict[str, Any] = FLOOR
) -> tuple[Deployment, dict[str, Any], np.ndarray]:
    """Four hospitals with ``floor`` run ``config``: the deployment, metrics.json, the model."""
    deployment = Deployment(folder, 4, floor)
    deployment.run(config, folder / "out")
    metrics = json.loads((folder / "out" / "metrics.json").read_text())
    return deployment, metrics, np.load(folder / "out" / PARAMS_FILE)


def _budget(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "state" / "budget.json").read_text())


# ---- a run -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "unit"), [("secagg+", "record"), ("secagg", "client")], ids=["secagg+", "secagg"]
)
def test_a_deployment_runs_distributed_dp_over_masking_within_each_hospitals_target(
    tmp_path: Path, mode: str, unit: str
) -> None:
    """Four nodes, two rounds, every node's share in every sum: a finite model that moved,
    each hospital's ε within the target both as the coordinator counts it (the shares the
    round held) and as the node charges itself (the guaranteed shares only), on its disk."""
    per_client = ["privacy.unit=client", "run.clients_per_round=2", "training.local_epochs=2"]
    config = ddp(f"protection.mode={mode}", *(per_client if unit == "client" else []))
    deployment, metrics, params = deploy(tmp_path, config)

    assert np.isfinite(params).all()
    assert not np.array_equal(params, Federation.load(config).initial_params())
    names = [c["name"] for c in metrics["clients"]]
    plan = deployment.node(0).protection.plan  # type: ignore[union-attr]
    assert [c["noise_multiplier"] for c in metrics["clients"]] == [plan.noise_multiplier] * 4
    for record in metrics["rounds"]:
        assert record["included"] == names and not record["aborted"], record["aborted"]
        stats = record["protection"]
        assert stats["noise_shares"] == 4 > plan.min_shares  # more honest shares than t - c
        for name in names:
            assert 0 < record["epsilon"][name] < stats["node_epsilon"][name] <= TARGET
    for c in range(4):
        saved = _budget(tmp_path / f"hospital{c}")
        assert saved["format"] == "secagg-node-budget/2" and saved["history"] == []
        (release,) = saved["sum_releases"]
        assert (release["rounds"], release["shares"]) == (2, plan.min_shares)
        assert release["sample_rate"] == deployment.node(c).trainer.sample_rate


# ---- the noise is the node's -------------------------------------------------------------


def test_a_deployed_nodes_noise_differs_from_run_to_run_and_a_simulations_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deployments of one configuration from the same parameters: every node's masked
    input of round 1 differs (its batch and its noise share are keyed by its own CSPRNG), by
    at least a noise share's spread, and so do the models; two simulations are identical.
    Teeth: keyed as the simulation keys it (from run.seed), a deployment is the simulation,
    bit for bit, so the difference is the nodes' keys and nothing else."""
    config = ddp()
    inputs: dict[tuple[int, int], np.ndarray] = {}
    opened = SessionClient.open_round

    def spy(self: SessionClient, params: Any, vector: np.ndarray, identity: Any = None) -> Any:
        inputs[self.id, params.round_id] = vector.copy()
        return opened(self, params, vector, identity)

    runs = []
    with monkeypatch.context() as m:
        m.setattr(SessionClient, "open_round", spy)
        for name in ("a", "b"):
            deployment, _, params = deploy(tmp_path / name, config)
            runs.append((dict(inputs), params))
            inputs.clear()
    (first, first_params), (second, second_params) = runs
    spec = deployment.node(0).protection.plan.spec  # type: ignore[union-attr]
    for c in range(4):
        difference = (first[c, 0].astype(np.int64) - second[c, 0].astype(np.int64)) % spec.modulus
        lifted = centred_lift(difference.astype(spec.dtype), spec)
        assert np.std(lifted) > 0.5 * np.sqrt(2 * float(spec.share_variance))
    assert np.abs(first_params - second_params).max() > 1e-3

    simulated = run_simulation(config).params
    np.testing.assert_array_equal(run_simulation(config).params, simulated)

    order = iter(range(4))  # the nodes are set up in client order
    seeded = NoiseSource.from_seed
    monkeypatch.setattr(
        NoiseSource,
        "fresh",
        classmethod(lambda cls: seeded(derive_seed(config.run.seed, SEED_SUM_CLIENT, next(order)))),
    )
    _, _, keyed_like_a_simulation = deploy(tmp_path / "seeded", config)
    np.testing.assert_array_equal(keyed_like_a_simulation, simulated)


# ---- what the node checks itself ---------------------------------------------------------


def test_a_node_refuses_a_run_whose_planned_epsilon_for_it_passes_its_policy(
    tmp_path: Path,
) -> None:
    """A run that gives z itself, too small for the hospitals' max_epsilon: every node refuses
    it by name at its first round, before it trains; the rounds abort, nothing is spent."""
    config = ddp()
    config = replace(
        config, privacy=replace(config.privacy, target_epsilon=None, noise_multiplier=0.3)
    )
    _, _, params = deploy(tmp_path, config)
    status = json.loads((tmp_path / "out" / "deployment.json").read_text())
    for r in status["rounds"]:
        assert sorted(r["refused"]) == ["0", "1", "2", "3"] and r["aborted"]
        for c, why in r["refused"].items():
            assert why.startswith(f"PolicyError: client {c} refuses the run")
            assert f"planned ε for client {c}" in why and "> the node's max_epsilon 6" in why
    np.testing.assert_array_equal(params, Federation.load(config).initial_params())
    assert not any((tmp_path / f"hospital{c}" / "state" / "budget.json").exists() for c in range(4))


def _ddp_node(folder: Path, config: Config | None = None, **sections: Any) -> HospitalNode:
    """A set-up node of an unsigned distributed-dp run, its session agreed."""
    node = start_node(
        write_policy(folder, privacy=FLOOR, **sections),
        config or ddp("protection.consistency=none"),
    )
    join_session(node)
    return node


def test_a_coordinator_that_misreports_the_sizes_is_refused_by_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator says every hospital holds ten times its records: the plan's rates
    drop and so does z. The node refuses a plan that misstates its own size; with that check
    off, its own ε check (at the rate it really samples at) refuses the plan; with both off
    it trains under a plan that spends more than its max_epsilon over the run."""
    node = _ddp_node(tmp_path)
    params = node.federation.initial_params()
    lie = SumCoordinator(node, {c: 10 * n for c, n in sizes_of(node).items()})
    with pytest.raises(ProtocolError, match="give client 0 450 training samples, it has 45"):
        lie.train(0, params)

    monkeypatch.setattr(HospitalNode, "_check_sizes", lambda self, sizes, participants: None)
    with pytest.raises(PolicyError, match=r"planned ε for client 0 .* > the node's max_epsilon"):
        lie.train(0, params)

    monkeypatch.setattr(NodePolicy, "check_sum_plan", lambda self, plan, client, q: None)
    lie.train(0, params)
    honest = SumCoordinator(node, sizes_of(node)).protection.plan
    plan = node.protection.plan  # type: ignore[union-attr]
    assert plan.noise_multiplier < 0.7 * honest.noise_multiplier
    assert plan.planned_epsilon(node.trainer.sample_rate) > FLOOR["max_epsilon"]


def test_a_node_masks_only_under_the_plan_it_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator opens the round with the parameters of another plan (sizes it told
    another node): the plan is bound into the round's digest, so the node refuses it. Without
    the binding the masking parameters do not depend on the sizes, and the node masks its
    input into a sum whose other shares were sized by another plan."""
    params = Federation.load(ddp()).initial_params()
    sizes = sizes_of(_ddp_node(tmp_path / "probe"))
    other = {**sizes, 1: 10 * sizes[1]}

    node = _ddp_node(tmp_path / "bound")
    elsewhere = SumCoordinator(node, other).request(0)
    with pytest.raises(ProtocolError, match="digest mismatch"):
        SumCoordinator(node, sizes).train(0, params, request=elsewhere)

    from secagg.flower import node as node_module

    def unbound(session: Any, text: str, sizes: Any) -> Any:
        return session

    monkeypatch.setattr(node_module, "bind_plan", unbound)
    monkeypatch.setattr("secagg.flower.sum_dp.bind_plan", unbound)
    node = _ddp_node(tmp_path / "unbound")
    reply = SumCoordinator(node, sizes).train(
        0, params, request=SumCoordinator(node, other).request(0)
    )
    assert reply["epsilon"] > 0  # accepted


def test_a_node_refuses_fewer_colluders_than_its_floor_assumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hospital assumes a quarter of the others may collude with the coordinator: a run
    that sizes the noise for no colluder is refused by name at setup (its share would be sized
    for more honest shares than the hospital trusts); one colluder, given or by default, is
    accepted. Without the floor the node plans with a smaller share."""
    floor = {
        "modes": ["secagg", "secagg+"],
        "consistency": "none",
        "min_colluding_fraction": 0.25,
    }
    assumed = ["protection.consistency=none", "protection.max_colluding_fraction=0.25"]
    policy = write_policy(tmp_path, privacy=FLOOR, protection=floor)
    with pytest.raises(PolicyError, match=r"colluding_clients = 0 < the 1 colluders this node"):
        start_node(policy, ddp(*assumed, "privacy.colluding_clients=0"))
    start_node(policy, ddp(*assumed))  # the default: ⌊0.25 · 4⌋ = 1
    trusting = start_node(policy, ddp(*assumed, "privacy.colluding_clients=1"))

    monkeypatch.setattr(ProtectionFloor, "colluder_refusals", lambda self, c, n: [])
    naive = start_node(policy, ddp(*assumed, "privacy.colluding_clients=0"))
    join_session(trusting)
    join_session(naive)
    sized = SumCoordinator(trusting, sizes_of(trusting)).protection.plan
    fewer = SumCoordinator(naive, sizes_of(naive)).protection.plan
    assert fewer.min_shares == sized.min_shares + 1
    assert fewer.spec.share_variance < sized.spec.share_variance


def test_a_local_dp_floor_refuses_distributed_dp_and_the_coordinator_refuses_what_nodes_do(
    tmp_path: Path,
) -> None:
    policy = write_policy(tmp_path, privacy={**FLOOR, "mode": "local-dp"})
    with pytest.raises(PolicyError, match="'distributed-dp', but this node trains only with"):
        start_node(policy, ddp("protection.consistency=none"))
    deployment = Deployment(tmp_path / "deployment", 4, FLOOR)
    for refused, why in [
        (ddp("privacy.mode=central-dp", "protection.mode=none"), "a node cannot check"),
        (ddp("protection.mode=ckks"), "is not built yet on Flower nodes"),
        (ddp("ledger.enabled=true"), "is not built yet on Flower nodes"),
    ]:
        with pytest.raises(ConfigError, match=why):
            deployment.run(refused, tmp_path / "out")


def test_secagg_deploy_writes_each_node_a_policy_that_admits_its_distributed_dp_runs(
    tmp_path: Path,
) -> None:
    """The one-machine shortcut's policy admits the runs it submits: a target, and a given z
    whose worst-case plan it adds to max_epsilon; no colluder, as one of them assumes."""
    from secagg.flower.deploy import admitting_floor, admitting_protection
    from secagg.flower.policy import policy_toml

    target = ddp("protection.consistency=none", "privacy.colluding_clients=0")
    given = ddp("protection.consistency=none", "run.name=given")
    given = replace(
        given, privacy=replace(given.privacy, target_epsilon=None, noise_multiplier=2.0)
    )
    floor = admitting_floor([target, given])
    assert floor.mode == "distributed-dp" and TARGET < floor.max_epsilon < 2 * TARGET
    policy = tmp_path / "policy.toml"
    policy.write_text(
        policy_toml(
            client_id=0,
            privacy=floor,
            state_folder="state",
            protection=admitting_protection([target, given], None),
        )
    )
    params = Federation.load(target).initial_params()
    for config in (target, given):
        node = start_node(policy, config)
        join_session(node)
        assert SumCoordinator(node, sizes_of(node)).train(0, params)["epsilon"] < floor.max_epsilon


# ---- the budget on disk ------------------------------------------------------------------


def test_a_restarted_node_continues_with_the_sum_releases_on_its_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that dies after round 0 comes back (a new node, a new setup and session): round
    0 again is refused, round 1 costs what a second release costs, and a DP-SGD run after
    composes on both. Forgetting the folder would report one release after two."""
    policy = write_policy(tmp_path, privacy=FLOOR)
    config = ddp("protection.consistency=none")
    params = Federation.load(config).initial_params()

    def restart(folder: Path) -> tuple[float, float | None, SumCoordinator]:
        """Round 0, a restart, then round 0 again (its ε, or None: refused)."""
        first = start_node(write_policy(folder, privacy=FLOOR), config)
        join_session(first)
        spent = SumCoordinator(first, sizes_of(first)).train(0, params)["epsilon"]
        again = start_node(folder / "policy.toml", config)
        join_session(again)
        coordinator = SumCoordinator(again, sizes_of(again))  # the new session's
        try:
            repeated = coordinator.train(0, params)["epsilon"]
        except PrivacyError as exc:
            assert "already trained round 0" in str(exc)
            repeated = None
        return spent, repeated, coordinator

    spent, repeated, coordinator = restart(tmp_path)
    assert repeated is None
    after = coordinator.train(1, params)["epsilon"]
    node, plan = coordinator.node, coordinator.protection.plan
    q = node.trainer.sample_rate
    assert after == pytest.approx(plan.planned_epsilon(q, 2)) and after > spent
    assert spent == pytest.approx(plan.planned_epsilon(q, 1))
    saved = _budget(tmp_path)
    assert [r["rounds"] for r in saved["sum_releases"]] == [2]
    assert list(saved["runs"].values()) == [{"rounds_trained": 2, "last_round": 1}]

    local = load_config(
        HOSPITALS, ["data.clients=4", "protection.mode=none", "ledger.enabled=false"]
    )
    dp_sgd = start_node(policy, local)
    t = dp_sgd.trainer
    alone = epsilon_for(
        noise_multiplier=t.noise_multiplier,
        sample_rate=t.sample_rate,
        steps=t.steps_per_round,
        delta=1e-5,
    )
    composed = train(dp_sgd, 0, params)["epsilon"]
    assert composed > max(alone, after)
    assert composed == pytest.approx(
        lifetime_epsilon(t.history, [SumRelease.of(plan.release(plan.min_shares), q, 2)], 1e-5)
    )

    from secagg.flower import budget as budget_module

    original = NodeBudget.__init__
    instances = iter(range(100))

    def per_instance(self: NodeBudget, folder: Path, client_id: int) -> None:
        original(self, tmp_path / "memory" / str(next(instances)), client_id)

    monkeypatch.setattr(budget_module.NodeBudget, "__init__", per_instance)
    spent, repeated, _ = restart(tmp_path / "forgetful")
    assert repeated == spent  # round 0 once more, ε from nothing again


def test_a_round_that_would_pass_max_epsilon_is_refused_and_spends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node has spent on earlier runs nearly all of its max_epsilon: this run's plan fits
    on its own, but the next release would take the lifetime ε past the cap. Refused by name,
    the file untouched; with the cap off the node spends past it."""
    node = _ddp_node(tmp_path)
    coordinator = SumCoordinator(node, sizes_of(node))
    plan = coordinator.protection.plan
    release = SumRelease.of(plan.release(plan.min_shares), node.trainer.sample_rate)

    def spent(rounds: int) -> float:
        return lifetime_epsilon([], [replace(release, rounds=rounds)], 1e-5)

    earlier = 1
    while spent(earlier + 1) <= FLOOR["max_epsilon"]:
        earlier += 1
    budget = tmp_path / "state" / "budget.json"
    budget.parent.mkdir(exist_ok=True)
    budget.write_text(
        json.dumps(
            {
                "format": "secagg-node-budget/2",
                "client_id": 0,
                "history": [],
                "sum_releases": [replace(release, rounds=earlier).to_json()],
                "runs": {"run-earlier": {"rounds_trained": earlier, "last_round": earlier - 1}},
            }
        )
    )
    before = budget.read_text()
    params = node.federation.initial_params()
    with pytest.raises(PolicyError, match=r"refuses round 0: it would take the ε .* > its max"):
        coordinator.train(0, params)
    assert budget.read_text() == before

    monkeypatch.setattr(NodePolicy, "check_spend", lambda self, r, now, after: None)
    assert coordinator.train(0, params)["epsilon"] == pytest.approx(spent(earlier + 1))
    assert spent(earlier + 1) > FLOOR["max_epsilon"]


def test_an_old_format_budget_file_still_loads_and_composes_with_the_sum(tmp_path: Path) -> None:
    """A format-1 file (DP-SGD history only) loads as it is; the node's first noisy sum then
    composes with that history (RDP curves added on the same orders) and the file becomes
    format 2, the history and the earlier run kept. A sum release that is not one is refused."""
    history = [[1.1, 0.05, 40]]
    budget = tmp_path / "state" / "budget.json"
    budget.parent.mkdir(parents=True)
    old = {
        "format": "secagg-node-budget/1",
        "client_id": 0,
        "history": history,
        "runs": {"run-old": {"rounds_trained": 40, "last_round": 39}},
    }
    budget.write_text(json.dumps(old))
    state = NodeBudget(tmp_path / "state", 0).load()
    assert state.history == [(1.1, 0.05, 40)] and state.sum_releases == []

    node = _ddp_node(tmp_path)
    coordinator = SumCoordinator(node, sizes_of(node))
    spent = coordinator.train(0, node.federation.initial_params())["epsilon"]
    plan = coordinator.protection.plan
    q = node.trainer.sample_rate
    before = epsilon_of_history(state.history, 1e-5)
    assert spent > max(before, plan.planned_epsilon(q, 1))
    assert spent < before + plan.planned_epsilon(q, 1)
    saved = _budget(tmp_path)
    assert saved["format"] == "secagg-node-budget/2" and saved["history"] == history
    assert saved["runs"]["run-old"] == old["runs"]["run-old"] and len(saved["runs"]) == 2
    assert saved["sum_releases"] == [SumRelease.of(plan.release(plan.min_shares), q).to_json()]

    saved["sum_releases"][0]["shares"] = 0
    budget.write_text(json.dumps(saved))
    with pytest.raises(PolicyError, match=r"unreadable.*sum release"):
        NodeBudget(tmp_path / "state", 0).load()


def test_a_nodes_train_reply_does_not_tell_the_coordinator_whether_it_was_sampled(
    tmp_path: Path,
) -> None:
    """Client-level DP-FedAvg's amplification rests on the coordinator not knowing who joined
    a round: the coin is the node's own and an absent node masks its noise share alone. Its
    reply's meta must not say it either: a raw training loss or a step count of 0 would
    (and the loss, computed on the node's data, is covered by no DP at all). Over rounds in
    which the node joined and rounds in which it did not, every reply says the same."""
    config = ddp(
        "protection.consistency=none",
        "privacy.unit=client",
        "run.clients_per_round=2",
        "run.rounds=8",
    )
    node = _ddp_node(tmp_path, config)
    coordinator = SumCoordinator(node, sizes_of(node))
    params = node.federation.initial_params()
    replies = [coordinator.train(r, params) for r in range(8)]
    joined = set(node.trainer.participated)  # type: ignore[union-attr]
    assert 0 < len(joined) < 8  # both kinds of round happened
    for reply in replies:
        assert "steps" not in reply
        assert np.isnan(reply["train_loss"])
    withheld = [{k: v for k, v in rep.items() if k != "epsilon"} for rep in replies]
    assert all(
        json.dumps(w, sort_keys=True) == json.dumps(withheld[0], sort_keys=True) for w in withheld
    )
    epsilons = [rep["epsilon"] for rep in replies]
    assert all(a < b for a, b in pairwise(epsilons))  # charged alike, joined or not
