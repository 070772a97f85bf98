"""Where the chain lives: the embedded eth-tester chain (default) or any JSON-RPC node.

The embedded chain (eth-tester + py-evm) runs in process with ten funded, unlocked accounts
and needs no network: simulations and tests use it. ``rpc_url`` reaches anything speaking
Ethereum JSON-RPC (anvil, geth, besu...). Moving block time is a test-only operation,
supported on the embedded chain and on nodes with ``evm_increaseTime`` (anvil, hardhat).

Every embedded chain gets its own random chain id. eth-tester gives them all the same one,
and the same funded deployer at nonce 0 puts the contract at the same address on each: a
transaction a hospital signed for one run would then be valid on every other (EIP-155 binds
a signature to the chain id, nothing else tells two such chains apart).
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware
from web3.providers.eth_tester import EthereumTesterProvider

from secagg.errors import LedgerConnectionError

#: The chain id eth-tester gives every chain it makes; never drawn by :func:`new_chain_id`.
ETH_TESTER_CHAIN_ID = 131277322940537
#: Chain ids are drawn from [2^32, 2^52): above every registered public chain's, and within
#: what wallets and JavaScript numbers hold exactly (2^53).
_CHAIN_ID_LOW, _CHAIN_ID_HIGH = 2**32, 2**52


def new_chain_id() -> int:
    """A fresh random chain id for one embedded chain (two chains collide with p ≈ 2^-52)."""
    while True:
        chain_id = _CHAIN_ID_LOW + secrets.randbelow(_CHAIN_ID_HIGH - _CHAIN_ID_LOW)
        if chain_id != ETH_TESTER_CHAIN_ID:
            return chain_id


def embedded_web3(*, chain_id: int | None = None, genesis_timestamp: int | None = None) -> Web3:
    """A fresh in-process chain (eth-tester with the py-evm backend) with its own chain id.

    ``chain_id`` (default: :func:`new_chain_id`) and ``genesis_timestamp`` (default: now) are
    given only to rebuild a recorded chain (see :mod:`secagg.ledger.chainfile`).
    """
    from eth_tester import EthereumTester, PyEVMBackend
    from web3.providers.eth_tester.defaults import API_ENDPOINTS

    chain_id = new_chain_id() if chain_id is None else chain_id
    overrides = {} if genesis_timestamp is None else {"timestamp": genesis_timestamp}
    backend = _indexed_backend()(
        genesis_parameters=PyEVMBackend.generate_genesis_params(overrides),
        vm_configuration=((0, _chain_bound_vm()),),
    )
    # eth-tester builds a new chain class for every chain, so this binds only this chain (and
    # survives snapshot reverts, which rebuild the chain from the same class).
    type(backend.chain).chain_id = chain_id
    endpoints = {namespace: dict(calls) for namespace, calls in API_ENDPOINTS.items()}
    endpoints["eth"]["chainId"] = lambda *_: chain_id  # web3's default is eth-tester's constant
    return Web3(EthereumTesterProvider(EthereumTester(backend), api_endpoints=endpoints))


@functools.cache
def _chain_bound_vm() -> type:
    """py-evm's latest VM, refusing what py-evm itself lets through: a transaction signed
    for another chain id, or for none (a pre-EIP-155 signature replays on every chain).

    The check sits in the VM state, so it holds for transactions sent to the chain and for
    the blocks of a recorded chain imported at audit time alike.
    """
    from eth.vm.forks.prague import PragueVM
    from eth.vm.forks.prague.state import PragueState
    from eth_utils import ValidationError

    class ChainBoundState(PragueState):
        def validate_transaction(self, transaction: Any) -> None:
            expected = self.execution_context.chain_id
            if transaction.chain_id != expected:
                raise ValidationError(
                    f"transaction signed for chain id {transaction.chain_id}, this chain is "
                    f"{expected}: refused (a replay from another chain)"
                )
            super().validate_transaction(transaction)

    return PragueVM.configure(__name__="ChainBoundPragueVM", _state_class=ChainBoundState)


@functools.cache
def _indexed_backend() -> type:
    """eth-tester's py-evm backend, finding a transaction through the chain database's
    hash index (which py-evm keeps for the canonical chain) instead of reading every block
    back from the head. eth_getLogs asks for each transaction's receipt, so reading a run's
    events from its first block cost time quadratic in its length: minutes for the demo's
    20 rounds when the audit replays them on a fresh chain.
    """
    from eth.exceptions import TransactionNotFound as EVMTransactionNotFound
    from eth_tester import PyEVMBackend
    from eth_tester.backends.pyevm.serializers import (
        serialize_transaction,
        serialize_transaction_receipt,
    )
    from eth_tester.exceptions import TransactionNotFound

    class IndexedPyEVMBackend(PyEVMBackend):
        def _find_transaction(self, transaction_hash: bytes) -> tuple[Any, Any, int]:
            pending = self.chain.get_block()
            for index, tx in enumerate(pending.transactions):
                if tx.hash == transaction_hash:
                    return pending, tx, index
            missing = TransactionNotFound(
                f"No transaction found for transaction hash: 0x{transaction_hash.hex()}"
            )
            try:
                number, index = self.chain.chaindb.get_transaction_index(transaction_hash)
                block = self.chain.get_canonical_block_by_number(number)
            except EVMTransactionNotFound:
                raise missing from None
            # An index entry left by a block that a snapshot revert took off the chain
            # points at whatever is there now: only a matching hash counts.
            if index >= len(block.transactions) or block.transactions[index].hash != (
                transaction_hash
            ):
                raise missing
            return block, block.transactions[index], index

        def get_transaction_by_hash(self, transaction_hash: bytes) -> Any:
            block, tx, index = self._find_transaction(transaction_hash)
            pending = block.number == self.chain.get_block().number
            return serialize_transaction(block, tx, index, pending)

        def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
            block, tx, index = self._find_transaction(transaction_hash)
            pending = block.number == self.chain.get_block().number
            receipts = block.get_receipts(self.chain.chaindb)
            return serialize_transaction_receipt(
                block, receipts, tx, index, pending, self.chain.get_vm()
            )

    return IndexedPyEVMBackend


def rpc_web3(url: str, *, timeout: float = 30.0) -> Web3:
    """A connection to the JSON-RPC node at ``url``; fails at once if it does not answer.

    The proof-of-authority middleware is added because consortium chains (Clique, QBFT)
    carry more than 32 bytes of extraData, which web3 otherwise rejects; it is harmless
    elsewhere.
    """
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    if not w3.is_connected():
        raise LedgerConnectionError(
            f"no Ethereum JSON-RPC node answers at {url}; start one or leave rpc_url empty "
            "for the embedded chain"
        )
    return w3


def connect(rpc_url: str = "") -> Web3:
    """``rpc_url`` as in the run config: empty means the embedded chain."""
    return rpc_web3(rpc_url) if rpc_url else embedded_web3()


def is_embedded(w3: Web3) -> bool:
    """True for the in-process eth-tester chain."""
    return isinstance(w3.provider, EthereumTesterProvider)


def block_timestamp(w3: Web3) -> int:
    """Timestamp of the latest block: the clock that round deadlines are measured against."""
    return int(w3.eth.get_block("latest")["timestamp"])


def advance_time(w3: Web3, seconds: int) -> None:
    """Move the chain clock: the next block is stamped ``seconds`` or more after the latest.

    For tests and simulations only (deadlines are block timestamps).
    """
    if seconds <= 0:
        raise ValueError("advance_time needs a positive number of seconds")
    target = block_timestamp(w3) + seconds
    if is_embedded(w3):
        tester: Any = w3.provider.ethereum_tester  # type: ignore[attr-defined]
        # eth-tester refuses to travel to or before the pending block's timestamp; if that is
        # already late enough, the next block is stamped at target or later anyway.
        if target > int(tester.get_block_by_number("pending")["timestamp"]):
            tester.time_travel(target)
        return
    try:
        w3.manager.request_blocking("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.manager.request_blocking("evm_mine", [])  # type: ignore[arg-type]
    except Exception as exc:
        raise LedgerConnectionError(
            f"this node cannot move time (evm_increaseTime failed: {exc}); "
            "only test nodes such as anvil support it"
        ) from exc
