"""Where the chain lives: the embedded eth-tester chain (default) or any JSON-RPC node.

The embedded chain (eth-tester + py-evm) runs in process with ten funded, unlocked accounts
and needs no network: simulations and tests use it. ``rpc_url`` reaches anything speaking
Ethereum JSON-RPC (anvil, geth, besu...). Moving block time is a test-only operation,
supported on the embedded chain and on nodes with ``evm_increaseTime`` (anvil, hardhat).
"""

from __future__ import annotations

from typing import Any

from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware
from web3.providers.eth_tester import EthereumTesterProvider

from secagg.errors import LedgerConnectionError


def embedded_web3() -> Web3:
    """A fresh in-process chain (eth-tester with the py-evm backend)."""
    from eth_tester import EthereumTester, PyEVMBackend

    return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))


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
