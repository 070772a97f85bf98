"""The same client against a real node: anvil (Foundry), installed by npm in contracts/.

Exercises what the embedded chain cannot: JSON-RPC transport, revert data as the node
returns it, locally signed raw transactions, evm_increaseTime.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from web3.types import Nonce, TxParams, Wei

from secagg.errors import LedgerBudgetError, LedgerDeadlineError, LedgerReplayError
from secagg.ledger import (
    LedgerClient,
    MerkleTree,
    Phase,
    advance_time,
    block_timestamp,
    epsilon_to_fixed,
    rpc_web3,
    share_hash,
)


def test_round_on_anvil(anvil_url: str) -> None:
    w3 = rpc_web3(anvil_url)
    admin_address, aggregator_address, _ = list(w3.eth.accounts)
    admin = LedgerClient.deploy(
        w3, admin=admin_address, epsilon_cap=epsilon_to_fixed(2.0), reward_per_round=5
    )
    admin.grant_role("AGGREGATOR_ROLE", aggregator_address)
    aggregator = admin.as_sender(aggregator_address)

    # Hospitals sign locally with their own keys; the node holds no key of theirs.
    keys = [Account.create() for _ in range(2)]
    for key in keys:
        w3.eth.send_transaction({"from": admin_address, "to": key.address, "value": Wei(10**18)})
        admin.register(key.address, share_hash(key.address.encode()))
    alice, bob = (admin.as_sender(k) for k in keys)

    now = block_timestamp(w3)
    aggregator.open_round(
        1,
        model_hash=b"\x01" * 32,
        config_hash=b"\x02" * 32,
        commit_deadline=now + 60,
        unmask_deadline=now + 120,
        participants=[alice.sender_address, bob.sender_address],
    )
    holders = [alice.sender_address, bob.sender_address]
    a = alice.sender_address
    tree = MerkleTree.from_leaves(
        alice.share_leaf(
            1,
            owner=a,
            holder=h,
            b_share_hash=share_hash(b"b" + h.encode()),
            s_share_hash=share_hash(b"s" + h.encode()),
        )
        for h in holders
    )
    commit = alice.commit(
        1, blob_hash=b"\x03" * 32, share_root=tree.root, cumulative_epsilon=epsilon_to_fixed(1.0)
    )
    assert commit.gas_used > 21_000

    # Refusals come back through JSON-RPC with their custom error decoded.
    with pytest.raises(LedgerReplayError, match="AlreadyCommitted"):
        alice.commit(1, blob_hash=b"\x03" * 32, share_root=tree.root, cumulative_epsilon=1)
    with pytest.raises(LedgerBudgetError, match="EpsilonCapExceeded"):
        bob.commit(
            1,
            blob_hash=b"\x04" * 32,
            share_root=tree.root,
            cumulative_epsilon=epsilon_to_fixed(2.5),
        )
    advance_time(w3, 61)
    with pytest.raises(LedgerDeadlineError, match="DeadlinePassed"):
        bob.commit(1, blob_hash=b"\x04" * 32, share_root=tree.root, cumulative_epsilon=1)

    aggregator.post_survivors(1, [a], [])
    leaf = tree.leaves[0]
    assert bob.verify_share(1, a, leaf, tree.proof(leaf))
    alice.post_shares(1, b"\x05" * 32)
    aggregator.post_aggregate(
        1, aggregate_cid=b"\x06" * 32, aggregate_hash=b"\x07" * 32, included=[a]
    )
    alice.claim_reward(1)
    assert alice.reward_balance(a) == 5
    assert admin.round_info(1).phase is Phase.AGGREGATED
    assert [e.name for e in bob.round_events(1)] == [
        "RoundOpened",
        "Committed",
        "SurvivorsPosted",
        "SharesPosted",
        "AggregatePosted",
        "RewardClaimed",
    ]


def test_commit_signed_for_another_chain_id_is_never_executed(anvil_url: str) -> None:
    """EIP-155: a participant's signed commit is bound to one chain id, so it cannot be
    replayed on another chain running the same ledger. (The embedded eth-tester chain does
    not check the chain id of raw transactions, which is why this runs on anvil.)"""
    w3 = rpc_web3(anvil_url)
    admin_address, aggregator_address, _ = list(w3.eth.accounts)
    admin = LedgerClient.deploy(w3, admin=admin_address, epsilon_cap=10**6, reward_per_round=1)
    admin.grant_role("AGGREGATOR_ROLE", aggregator_address)
    key = Account.create()
    w3.eth.send_transaction({"from": admin_address, "to": key.address, "value": Wei(10**18)})
    admin.register(key.address, share_hash(key.address.encode()))
    now = block_timestamp(w3)
    admin.as_sender(aggregator_address).open_round(
        1,
        model_hash=b"\x01" * 32,
        config_hash=b"\x02" * 32,
        commit_deadline=now + 60,
        unmask_deadline=now + 120,
        participants=[key.address],
    )
    call = admin.contract.functions.commit(1, b"\x03" * 32, b"\x04" * 32, 1)

    def signed_for(chain_id: int) -> bytes:
        params: TxParams = {"from": key.address, "nonce": Nonce(0), "chainId": chain_id}
        tx = call.build_transaction({**params, "gas": 200_000})
        return bytes(key.sign_transaction(tx).raw_transaction)

    try:  # a node may refuse it at once, or accept it into the pool and never mine it
        w3.eth.send_raw_transaction(signed_for(w3.eth.chain_id + 1))
    except Exception as exc:  # any refusal is the expected outcome
        assert "chain" in str(exc).lower()
    w3.manager.request_blocking("evm_mine", [])  # type: ignore[arg-type]
    assert w3.eth.get_transaction_count(key.address) == 0
    assert not admin.member(1, key.address).committed

    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed_for(w3.eth.chain_id)), timeout=30
    )
    assert receipt["status"] == 1 and admin.member(1, key.address).committed
