"""A hospital's node obeys its own policy, never the coordinator's word (issue 18, item 4).

Each attack is played through the real node (:class:`~secagg.flower.node.HospitalNode`, as the
ClientApp drives it) twice: with the defence (the attack gains nothing) and with the defence
switched off by monkeypatching (the attack gains what the test asserts, as it did before).
The coordinator's moves: (a) regenerate the node's DP noise from the config it sent, (b) send
setup again so the accountant restarts, (c) send a configuration weaker than the hospital's
floor, (d) point the node at a contract of its own, with no ε cap.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr", reason="flwr is not installed: pip install -e '.[flower]'")

from flower.nodes import start_node, train, write_policy

from secagg.config import Config, load_config
from secagg.data import ClientData
from secagg.errors import ConfigError, PolicyError, PrivacyError
from secagg.flower import wire
from secagg.privacy.accounting import epsilon_for
from secagg.simulation.federation import SEED_CLIENT, Federation, derive_seed

HOSPITALS = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
#: The floor every hospital here writes: the example's own privacy settings, ε for two runs.
FLOOR = {"mode": "local-dp", "max_epsilon": 6.0, "delta": 1e-5, "max_grad_norm": 1.0}


def hospitals(*overrides: str) -> Config:
    """The hospital example, 4 clients, 3 rounds, DP to ε = 3, no protection, no ledger."""
    base = ["data.clients=4", "run.rounds=3", "protection.mode=none", "ledger.enabled=false"]
    return load_config(HOSPITALS, [*base, "protection.dropout=0.0", *overrides])


def with_privacy(config: Config, **changes: Any) -> Config:
    return replace(config, privacy=replace(config.privacy, **changes))


# ---- (a) the noise ---------------------------------------------------------------------------


def _one_step(sigma: float) -> Config:
    """Full batch (q = 1), one SGD step per round: the update is -lr (sum clip(g) + N) / n,
    so the noise N enters it additively, whatever the data."""
    config = hospitals("training.batch_size=1000", "model.name=mlp")
    return with_privacy(config, target_epsilon=None, noise_multiplier=sigma)


def _update(config: Config, data: ClientData, params: np.ndarray) -> np.ndarray:
    """Client 0's round-0 update as `secagg simulate` computes it (noise keyed by run.seed)."""
    return Federation.load(config).trainer(0, data).train(params, 0).update


def _coordinator_predicts_the_noise(config: Config, n: int, params: np.ndarray) -> np.ndarray:
    """What the coordinator computes from the config it sent and the sample count the node
    declared, and nothing else: a twin trainer on n made-up records, with and without noise."""
    stand_in = ClientData(
        "stand-in",
        np.zeros((n, 30), np.float32),
        np.zeros(n, np.int64),
        np.zeros((1, 30)),
        np.zeros(1, np.int64),
    )
    quiet = with_privacy(config, noise_multiplier=1e-12)
    return _update(config, stand_in, params) - _update(quiet, stand_in, params)


def test_the_coordinator_cannot_regenerate_a_nodes_dp_noise_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(a) A node's noise derived from run.seed: the coordinator regenerated it bit for bit
    and subtracted it, leaving the node's exact clipped gradient. Keyed on the node's own
    CSPRNG, the noise the coordinator predicts is uncorrelated with the node's."""
    config = _one_step(sigma=5.0)
    params = Federation.load(config).initial_params()

    def attack(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        node = start_node(write_policy(folder, privacy=FLOOR), config)
        update = train(node, 0, params)["update"]
        # what the noise hides (the test's oracle): the same step on the same data, no noise
        noiseless = _update(with_privacy(config, noise_multiplier=1e-12), node.data, params)
        predicted = _coordinator_predicts_the_noise(config, node.data.num_samples, params)
        return update - noiseless, predicted, update - predicted - noiseless

    noise, predicted, left = attack(tmp_path / "defended")
    assert np.std(predicted) > 1e-3 and np.std(noise) == pytest.approx(np.std(predicted), rel=0.1)
    assert abs(np.corrcoef(noise, predicted)[0, 1]) < 0.1
    assert np.std(left) > 1.2 * np.std(noise)  # subtracting the guess only adds noise

    # Defence off: the node keys its noise from run.seed, as the simulation does.
    from secagg.privacy.noise import NoiseSource

    seeded = NoiseSource.from_seed(derive_seed(config.run.seed, SEED_CLIENT, 0))
    monkeypatch.setattr(NoiseSource, "fresh", classmethod(lambda cls: seeded))
    noise, predicted, left = attack(tmp_path / "seeded")
    assert np.std(noise) > 1e-3
    assert np.abs(left).max() < 1e-6  # the noise is gone: the clipped gradient step, exactly


# ---- (b) a second setup, and a restart ---------------------------------------------------------


def _steps(node: Any) -> tuple[float, float, int]:
    t = node.trainer
    return t.noise_multiplier, t.sample_rate, t.steps_per_round


def _forget_between_processes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Defence off: each node instance keeps its spending in a folder of its own, as when the
    accountant lived in the process's memory only (a new instance starts from nothing)."""
    from secagg.flower.budget import NodeBudget

    original = NodeBudget.__init__
    instances = iter(range(1000))

    def per_instance(self: NodeBudget, folder: Path, client_id: int) -> None:
        original(self, tmp_path / "memory" / str(next(instances)), client_id)

    monkeypatch.setattr(NodeBudget, "__init__", per_instance)


def test_a_second_setup_neither_restarts_epsilon_nor_trains_a_round_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(b) A second setup message built a fresh node, whose accountant started at zero and
    accepted round 0 again. The node reads its spending from its disk: round 0 is refused,
    round 1 costs what a second round costs, and a "new run" (another config) starts at
    round 0 but keeps composing on the ε already spent."""
    config = hospitals()
    params = Federation.load(config).initial_params()

    def setup_twice(folder: Path) -> tuple[float, Any]:
        policy = write_policy(folder, privacy=FLOOR)
        first = start_node(policy, config)
        spent = train(first, 0, params)["epsilon"]
        return spent, start_node(policy, config)  # the coordinator sends setup again

    spent, second = setup_twice(tmp_path / "defended")
    with pytest.raises(PrivacyError, match="already trained round 0"):
        train(second, 0, params)
    sigma, q, steps = _steps(second)
    after = train(second, 1, params)["epsilon"]
    assert after == pytest.approx(
        epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=2 * steps, delta=1e-5)
    )
    assert after > spent
    other_run = start_node(
        tmp_path / "defended" / "policy.toml",
        replace(config, run=replace(config.run, name="again")),
    )
    assert train(other_run, 0, params)["epsilon"] == pytest.approx(
        epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=3 * steps, delta=1e-5)
    )

    _forget_between_processes(monkeypatch, tmp_path)
    spent, second = setup_twice(tmp_path / "forgetful")
    assert train(second, 0, params)["epsilon"] == spent  # round 0 again, ε from zero again


def test_a_restarted_node_continues_with_the_epsilon_on_its_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node process that dies and comes back (a new HospitalNode on the same state folder)
    continues the run with the ε it had spent; forgetting the folder would restart it."""
    config = hospitals()
    params = Federation.load(config).initial_params()

    def restart(folder: Path) -> tuple[float, float]:
        policy = write_policy(folder, privacy=FLOOR)
        before = start_node(policy, config)
        train(before, 0, params)
        spent = train(before, 1, params)["epsilon"]
        del before  # the process is gone; its state folder stays
        return spent, train(start_node(policy, config), 2, params)["epsilon"]

    spent, after = restart(tmp_path / "defended")
    node = start_node(tmp_path / "defended" / "policy.toml", config)
    sigma, q, steps = _steps(node)
    assert after == pytest.approx(
        epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=3 * steps, delta=1e-5)
    )
    assert after > spent
    saved = json.loads((tmp_path / "defended" / "state" / "budget.json").read_text())
    assert saved["history"] == [[sigma, q, 3 * steps]]
    assert list(saved["runs"].values()) == [{"rounds_trained": 3, "last_round": 2}]

    _forget_between_processes(monkeypatch, tmp_path)
    spent, after = restart(tmp_path / "forgetful")
    assert after == pytest.approx(
        epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5)
    )  # the restarted node reports one round's ε after three rounds
    assert after < spent


def test_a_run_without_dp_keeps_the_epsilon_spent_before(tmp_path: Path) -> None:
    """A round without DP spends nothing and forgets nothing: the next DP run composes on."""
    config = hospitals()
    params = Federation.load(config).initial_params()
    policy = write_policy(tmp_path, privacy={**FLOOR, "mode": "none"})
    spent = train(start_node(policy, config), 0, params)["epsilon"]
    train(start_node(policy, hospitals("privacy.mode=none")), 0, params)
    again = start_node(policy, replace(config, run=replace(config.run, name="again")))
    assert train(again, 0, params)["epsilon"] > spent


def test_a_corrupted_budget_file_stops_the_node_rather_than_reset_it(tmp_path: Path) -> None:
    config = hospitals()
    policy = write_policy(tmp_path, privacy=FLOOR)
    train(start_node(policy, config), 0, Federation.load(config).initial_params())
    (tmp_path / "state" / "budget.json").write_text('{"format": "secagg-node-budget/1", "hi')
    with pytest.raises(PolicyError, match=r"unreadable.*refuses to train"):
        start_node(policy, config)


# ---- (c) a weaker configuration ----------------------------------------------------------------

WEAKER = {
    "no DP": ({"mode": "none"}, "privacy.mode = 'none'"),
    "a larger target": ({"target_epsilon": 4.0}, "target_epsilon = 4 > the node's max_epsilon 3"),
    "less noise": ({"target_epsilon": None, "noise_multiplier": 1.35}, "spends ε = "),
    "a larger clip": ({"max_grad_norm": 5.0}, "max_grad_norm = 5 > the node's 1"),
    "a larger delta": ({"delta": 1e-3}, "delta = 0.001 > the node's 1e-05"),
    "another accountant": ({"accountant": "prv"}, "accounts with 'rdp'"),
}


@pytest.mark.parametrize("weaker", list(WEAKER))
def test_a_configuration_weaker_than_the_nodes_floor_is_refused(
    weaker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(c) The node built its trainer from whatever privacy section it was sent. Against a
    floor of local DP at ε <= 3, δ = 1e-5, clip 1, RDP, each weaker request is refused by
    name; with the floor switched off the node trains with less protection."""
    changes, refusal = WEAKER[weaker]
    floor = {**FLOOR, "max_epsilon": 3.0}
    config = hospitals()
    request = with_privacy(config, **changes)
    policy = write_policy(tmp_path, privacy=floor)
    with pytest.raises(PolicyError, match=re.escape(refusal)):
        start_node(policy, request)

    from secagg.flower.policy import NodePolicy

    monkeypatch.setattr(NodePolicy, "check_run", lambda self, config: None)
    monkeypatch.setattr(NodePolicy, "check_trainer", lambda self, trainer: None)
    node = start_node(policy, request)
    honest = Federation.load(config).trainer(0, node.data)
    t = node.trainer
    if weaker == "no DP":  # the update leaves with no noise at all: the plain SGD step
        assert t.noise_multiplier is None
        params = Federation.load(config).initial_params()
        plain = Federation.load(request).trainer(0, node.data).train(params, 0).update
        np.testing.assert_array_equal(train(node, 0, params)["update"], plain)
    elif weaker == "a larger clip":  # one record moves the update 5 times as far
        assert t.privacy.max_grad_norm == 5 * honest.privacy.max_grad_norm
    else:  # less noise than the floor's ε calibrates
        assert t.noise_multiplier < 0.95 * honest.noise_multiplier


# ---- (d) the coordinator's own contract -------------------------------------------------------


def test_a_node_commits_only_to_the_contract_and_chain_its_policy_trusts(
    tmp_path: Path, anvil_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(d) The node committed to whatever contract a round's message named: a coordinator
    that deployed its own (cap 100) took an update the consortium's cap (0.5) refuses. The
    node now refuses any contract or chain id but its policy's, before training."""
    from eth_account import Account

    from secagg.flower.keys import generate_identities, read_identity_key, write_chain_key
    from secagg.ledger.client import LedgerClient
    from secagg.ledger.providers import block_timestamp, connect
    from secagg.ledger.records import epsilon_to_fixed

    w3 = connect(anvil_url)
    admin_account, rogue_account = w3.eth.accounts[0], w3.eth.accounts[1]
    account = Account.create()
    write_chain_key(tmp_path / "chain.key", bytes(account.key))
    generate_identities([0], tmp_path / "keys")
    identity = read_identity_key(tmp_path / "keys" / "0" / "identity.key")
    w3.eth.send_transaction({"from": admin_account, "to": account.address, "value": 10**20})

    def contract(admin: str, cap: float) -> LedgerClient:
        ledger = LedgerClient.deploy(
            w3, admin=admin, epsilon_cap=epsilon_to_fixed(cap), reward_per_round=1
        )
        ledger.grant_role("AGGREGATOR_ROLE", admin)
        ledger.register(account.address, identity.public)
        now = block_timestamp(w3)
        ledger.open_round(
            1,
            model_hash=bytes(32),
            config_hash=bytes(32),
            commit_deadline=now + 3600,
            unmask_deadline=now + 7200,
            participants=[account.address],
        )
        return ledger

    consortium, rogue = contract(admin_account, 0.5), contract(rogue_account, 100.0)
    config = hospitals(
        "protection.mode=ckks", "ledger.enabled=true", f'ledger.rpc_url="{anvil_url}"'
    )
    keys = {
        "key": str(tmp_path / "keys" / "0" / "identity.key"),
        "directory": str(tmp_path / "keys" / "identities.json"),
        "chain_key": str(tmp_path / "chain.key"),
        "he_key_holder": True,
    }
    node_config = {  # the same keys the older way too, as secagg deploy writes them
        "identity-key": keys["key"],
        "identities": keys["directory"],
        "chain-key": keys["chain_key"],
        "he-key-holder": True,
    }
    trusted = {"rpc_url": anvil_url, "chain_id": w3.eth.chain_id, "contract": consortium.address}
    policy = write_policy(tmp_path, identity=keys, privacy=FLOOR, ledger=trusted)
    params = Federation.load(config).initial_params()

    def round_on(node: Any, ledger: LedgerClient, round_idx: int) -> dict[str, Any]:
        meta = {
            "round": round_idx,
            "top_weight": 1e6,
            "contract": ledger.address,
            "deploy_block": ledger.from_block,
            "store": str(tmp_path / "store"),
            "chain_round": 1,
        }
        signed_key = node.setup_reply[1]["he_public_key"]  # as the key holder sent it
        blobs = {"params": wire.f32(params), "he_public_key": signed_key}
        info, sent = node.on_train(meta, blobs)
        return {**info, "sent": sorted(sent)}

    elsewhere = {**trusted, "chain_id": w3.eth.chain_id + 1}  # the same address, another chain
    node = start_node(
        write_policy(tmp_path / "h", identity=keys, privacy=FLOOR, ledger=elsewhere),
        config,
        client_ids="0,1,2",
        **node_config,
    )
    with pytest.raises(PolicyError, match=f"chain id {w3.eth.chain_id} is not the trusted"):
        round_on(node, consortium, 0)
    node = start_node(policy, config, client_ids="0,1,2", **node_config)
    with pytest.raises(PolicyError, match="is not the trusted 0x"):
        round_on(node, rogue, 0)
    assert rogue.epsilon_spent(account.address) == 0  # nothing reached the rogue contract
    assert not (tmp_path / "state" / "budget.json").exists()  # and nothing was spent
    honest = round_on(node, consortium, 0)  # the consortium's cap holds: the update stays home
    assert honest["sent"] == [] and honest["refused"].startswith("LedgerBudgetError")

    # Defence off: the node takes the message's word for the contract.
    from secagg.flower.policy import NodePolicy

    monkeypatch.setattr(NodePolicy, "check_ledger", lambda self, contract, chain_id: None)
    node = start_node(policy, config, client_ids="0,1,2", **node_config)
    rogue_round = round_on(node, rogue, 1)
    assert rogue_round["sent"] == ["submission"] and "refused" not in rogue_round
    assert rogue.epsilon_spent(account.address) > epsilon_to_fixed(0.5)  # past the real cap


# ---- (e) less hiding than the hospital accepts -----------------------------------------------

#: The protection floor a hospital writes: hiding modes only, signed masking rounds, gamma
#: and t at least the library's defaults, and the consortium's HE key holder by id.
HIDING = {
    "modes": ["secagg", "secagg+", "ckks", "paillier"],
    "consistency": "signatures",
    "min_colluding_fraction": 0.1,
    "min_threshold": 0.6,
}


@pytest.mark.parametrize(
    "weaker",
    [
        "protection.mode=none",
        "protection.consistency=none",
        "protection.max_colluding_fraction=0.0",
        "protection.threshold=0.51",
    ],
    ids=["in the clear", "unsigned", "no colluders", "a smaller t"],
)
def test_a_run_that_hides_the_update_less_than_the_policy_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weaker: str
) -> None:
    from secagg.flower.keys import generate_identities

    config = hospitals("protection.mode=secagg+", weaker)
    directory = generate_identities([0, 1, 2, 3], tmp_path / "keys")
    keys = {
        "identity-key": str(tmp_path / "keys" / "0" / "identity.key"),
        "identities": str(directory),
    }
    policy = write_policy(tmp_path, privacy=FLOOR, protection=HIDING)
    with pytest.raises(PolicyError, match="refuses the run: protection"):
        start_node(policy, config, **keys)
    # Defence off: the node takes the run's word for how its update is hidden.
    from secagg.flower.policy import NodePolicy

    monkeypatch.setattr(NodePolicy, "check_protection", lambda self, config, clients: None)
    node = start_node(policy, config, **keys)
    if weaker == "protection.mode=none":  # the coordinator then reads the update in the clear
        info = train(node, 0, Federation.load(config).initial_params())
        assert info["update"].shape == (node.dim,) and np.abs(info["update"]).max() > 0
    else:
        assert node.config.protection == config.protection  # accepted as sent


def test_a_node_encrypts_only_under_the_key_holder_its_policy_names(tmp_path: Path) -> None:
    """The coordinator has client 1 (a colluder) generate and sign an HE key and forwards it
    as the consortium's: client 0, whose policy names client 2, refuses to encrypt under it;
    with a policy that names no key holder it encrypts, and client 1 decrypts its update."""
    from secagg import he
    from secagg.errors import UnknownSenderError
    from secagg.flower.keys import generate_identities
    from secagg.he.attest import Submission

    config = hospitals("protection.mode=ckks")
    directory = str(generate_identities([0, 1, 2, 3], tmp_path / "keys"))

    def node(c: int, folder: str, key_holder: bool = False, named: bool = True) -> Any:
        floor = {**HIDING, "he_key_holder": 2} if named else HIDING
        policy = write_policy(tmp_path / folder, client_id=c, privacy=FLOOR, protection=floor)
        return start_node(
            policy,
            config,
            **{
                "client-id": c,
                "identity-key": str(tmp_path / "keys" / str(c) / "identity.key"),
                "identities": directory,
                "he-key-holder": key_holder,
            },
        )

    colluder = node(1, "colluder", key_holder=True)
    forged_key = colluder.setup_reply[1]["he_public_key"]
    params = Federation.load(config).initial_params()
    blobs = {"params": wire.f32(params), "he_public_key": forged_key}
    with pytest.raises(UnknownSenderError, match="the key holder is client 2"):
        node(0, "victim").on_train({"round": 0, "top_weight": 1e6}, blobs)

    victim = node(0, "unguarded", named=False)  # the defence off: any registered key holder
    _, sent = victim.on_train({"round": 0, "top_weight": 1e6}, blobs)
    ciphertext = Submission.from_bytes(sent["submission"]).ciphertext
    assert colluder.key_holder is not None
    secret = colluder.key_holder.secret_key
    public = he.load_public_key(colluder.key_holder.public_bytes)
    values = secret.decrypt(public.deserialize_vector(ciphertext))
    assert values.shape == (victim.dim + 1,) and np.abs(values).max() > 0  # the victim's encoding


#: DP on the sum a node refuses by name, whatever its policy: what it cannot check, and what
#: is not built on Flower yet (distributed DP over masking runs: test_flower_sum_dp).
SUM_REFUSED = {
    "central-dp": (
        ["privacy.mode=central-dp"],
        "trusts the coordinator to add the noise to the sum, and a node cannot check",
    ),
    "distributed-dp over HE": (
        ["privacy.mode=distributed-dp", "protection.mode=ckks"],
        "'distributed-dp' over protection.mode = 'ckks' is not built yet on Flower nodes",
    ),
    "distributed-dp with the ledger": (
        ["privacy.mode=distributed-dp", "protection.mode=secagg+", "ledger.enabled=true"],
        "'distributed-dp' with ledger.enabled is not built yet on Flower nodes",
    ),
}


@pytest.mark.parametrize("refused", list(SUM_REFUSED))
def test_a_node_refuses_dp_on_the_sum_by_name(refused: str, tmp_path: Path) -> None:
    """A node says what it refuses instead of training with less noise than the run planned:
    central DP (it cannot check that the coordinator adds the noise), and distributed DP
    where it is not built yet (over HE, with the ledger); even a policy that admits runs
    without DP does not admit these."""
    overrides, refusal = SUM_REFUSED[refused]
    request = with_privacy(hospitals(*overrides), unit="client", target_epsilon=3.0)
    policy = write_policy(tmp_path, privacy={**FLOOR, "mode": "none"})
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        start_node(policy, request)
