"""The ledger: a web3.py client for the SecAggLedger contract and its reward token.

The chain is the round's public bulletin board (keys, commitments, survivor set, ε spent,
aggregate) and its audit trail (events). ``LedgerClient.deploy(embedded_web3(), ...)`` runs
everything in process; ``rpc_web3(url)`` reaches a real node. Contract sources and the
compile script live in ``contracts/``; the compiled artifacts ship in
``secagg/ledger/artifacts``, so nothing here needs Node.
"""

from secagg.ledger.client import LedgerClient, Sender
from secagg.ledger.merkle import MerkleTree, share_hash, share_leaf
from secagg.ledger.providers import (
    advance_time,
    block_timestamp,
    connect,
    embedded_web3,
    rpc_web3,
)
from secagg.ledger.records import (
    EPSILON_SCALE,
    KeyAdvert,
    LedgerEvent,
    MemberRecord,
    Phase,
    RoundInfo,
    TxReceipt,
    epsilon_from_fixed,
    epsilon_to_fixed,
)

__all__ = [
    "EPSILON_SCALE",
    "KeyAdvert",
    "LedgerClient",
    "LedgerEvent",
    "MemberRecord",
    "MerkleTree",
    "Phase",
    "RoundInfo",
    "Sender",
    "TxReceipt",
    "advance_time",
    "block_timestamp",
    "connect",
    "embedded_web3",
    "epsilon_from_fixed",
    "epsilon_to_fixed",
    "rpc_web3",
    "share_hash",
    "share_leaf",
]
