"""A hospital's signed ledger transaction counts on one chain only (issue 18, item 9).

Every embedded chain is a fresh eth-tester chain: the same funded deployer at nonce 0 puts
the ledger at the same address on each, and a hospital that keeps its key across runs has
the same nonces there. eth-tester gives all of them one chain id, and py-evm does not even
compare a transaction's EIP-155 chain id with its own: a commit signed for one run landed
on the next (status 1). Now each embedded chain draws its own chain id and its VM refuses a
transaction signed for another one, or for none. The attacker here re-sends the hospital's
real signed bytes with ``eth_sendRawTransaction``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import ValidationError
from web3 import Web3
from web3.types import Wei

from secagg.ledger import LedgerClient, block_timestamp, embedded_web3, epsilon_to_fixed, providers

BLOB = b"\x07" * 32


@dataclass
class Deployment:
    """One run's ledger on its own embedded chain, with the hospital registered in round 1."""

    w3: Web3
    hospital: LedgerClient


def _deploy(hospital: LocalAccount) -> Deployment:
    w3 = embedded_web3()
    admin_address, aggregator_address = w3.eth.accounts[0], w3.eth.accounts[1]
    admin = LedgerClient.deploy(w3, epsilon_cap=epsilon_to_fixed(3.0), reward_per_round=1)
    w3.eth.send_transaction({"from": admin_address, "to": hospital.address, "value": Wei(10**20)})
    admin.register(hospital.address, b"\x01" * 32)
    admin.grant_role("AGGREGATOR_ROLE", aggregator_address)
    now = block_timestamp(w3)
    admin.as_sender(aggregator_address).open_round(
        1,
        model_hash=b"\x05" * 32,
        config_hash=b"\x06" * 32,
        commit_deadline=now + 100,
        unmask_deadline=now + 200,
        participants=[hospital.address],
    )
    return Deployment(w3, admin.as_sender(hospital))


def _raw_transaction(w3: Web3, tx_hash: str) -> bytes:
    """The signed bytes of a mined transaction, as anyone reading the block has them."""
    block_number = w3.eth.get_transaction(tx_hash)["blockNumber"]  # type: ignore[arg-type]
    chain = w3.provider.ethereum_tester.backend.chain  # type: ignore[attr-defined]
    for tx in chain.get_canonical_block_by_number(block_number).transactions:
        if "0x" + tx.hash.hex() == tx_hash:
            return bytes(tx.encode())
    raise AssertionError(f"{tx_hash} is not in block {block_number}")


def _commit_on_first_replay_on_second(hospital: LocalAccount) -> tuple[Deployment, Deployment]:
    """The hospital commits on the first run's chain; the attacker re-sends its bytes to the
    second's. Returns both deployments (the replay's outcome is on the second's chain)."""
    first, second = _deploy(hospital), _deploy(hospital)
    # The precondition of the attack: the same contract address and the same nonce.
    assert first.hospital.address == second.hospital.address
    receipt = first.hospital.commit(
        1, blob_hash=BLOB, share_root=b"\x08" * 32, cumulative_epsilon=epsilon_to_fixed(1.0)
    )
    raw = _raw_transaction(first.w3, receipt.tx_hash)
    second.w3.eth.send_raw_transaction(raw)
    return first, second


def test_a_hospitals_signed_commit_does_not_replay_on_a_second_embedded_deployment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hospital = Account.create()
    with pytest.raises(ValidationError, match="signed for chain id"):
        _commit_on_first_replay_on_second(hospital)

    # Twice-run: every chain with eth-tester's one chain id (as before the fix). The same
    # bytes land on the second run's chain: the hospital "committed" there, ε and all.
    monkeypatch.setattr(providers, "new_chain_id", lambda: providers.ETH_TESTER_CHAIN_ID)
    _, second = _commit_on_first_replay_on_second(hospital)
    member = second.hospital.member(1, hospital.address)
    assert member.committed and member.blob_hash == BLOB
    assert second.hospital.epsilon_spent(hospital.address) == epsilon_to_fixed(1.0)


def _replay_across_chain_ids() -> tuple[Web3, Web3, LocalAccount]:
    """A plain value transfer signed for chain A, re-sent to chain B with another chain id."""
    a, b = embedded_web3(), embedded_web3()
    assert a.eth.chain_id != b.eth.chain_id
    hospital = Account.create()
    for w3 in (a, b):
        w3.eth.send_transaction(
            {"from": w3.eth.accounts[0], "to": hospital.address, "value": Wei(10**18)}
        )
    tx = {
        "to": a.eth.accounts[1],
        "value": 12345,
        "gas": 21000,
        "maxFeePerGas": 3 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "nonce": 0,
        "chainId": a.eth.chain_id,
    }
    raw = hospital.sign_transaction(tx).raw_transaction
    assert a.eth.wait_for_transaction_receipt(a.eth.send_raw_transaction(raw))["status"] == 1
    b.eth.send_raw_transaction(raw)
    return a, b, hospital


def test_a_chain_refuses_a_transaction_signed_for_another_chain_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="signed for chain id"):
        _replay_across_chain_ids()

    # Twice-run: distinct chain ids alone do not stop it. With py-evm's own VM, which never
    # compares the signed chain id with its own, the bytes land on the other chain.
    from eth.vm.forks.prague import PragueVM

    monkeypatch.setattr(providers, "_chain_bound_vm", lambda: PragueVM)
    _, b, hospital = _replay_across_chain_ids()
    assert b.eth.get_transaction_count(hospital.address) == 1  # the replay was mined on B


def test_a_transaction_signed_without_a_chain_id_is_refused() -> None:
    # A pre-EIP-155 signature binds no chain at all: it would replay on every chain.
    w3 = embedded_web3()
    hospital = Account.create()
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": hospital.address, "value": 10**18})
    legacy = {"to": w3.eth.accounts[1], "value": 1, "gas": 21000, "gasPrice": 3 * 10**9, "nonce": 0}
    raw = hospital.sign_transaction(legacy).raw_transaction
    with pytest.raises(ValidationError, match="chain id None"):
        w3.eth.send_raw_transaction(raw)
    assert w3.eth.get_transaction_count(hospital.address) == 0


def test_every_embedded_chain_reports_and_enforces_its_own_chain_id() -> None:
    chains = [embedded_web3() for _ in range(4)]
    ids = [w3.eth.chain_id for w3 in chains]
    assert len(set(ids)) == 4 and providers.ETH_TESTER_CHAIN_ID not in ids
    for w3, chain_id in zip(chains, ids, strict=True):
        # What web3 signs with (eth_chainId) is what the EVM checks and CHAINID returns.
        assert w3.provider.ethereum_tester.backend.chain.chain_id == chain_id  # type: ignore[attr-defined]
        assert 2**32 <= chain_id < 2**52
    # eth-tester's own transactions (unlocked accounts) carry the chain's id and go through.
    receipt = chains[0].eth.wait_for_transaction_receipt(
        chains[0].eth.send_transaction(
            {"from": chains[0].eth.accounts[0], "to": chains[0].eth.accounts[1], "value": 1}
        )
    )
    assert receipt["status"] == 1
