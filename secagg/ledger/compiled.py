"""The committed contract artifacts (ABI + bytecode), so the package needs no Node at run time.

``contracts/compile.js`` writes them from the Solidity sources with a pinned solc-js; a test
recompiles and compares them byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from secagg.errors import LedgerError

LEDGER = "SecAggLedger"
REWARD_TOKEN = "SecAggRewardToken"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: name, ABI, creation and runtime bytecode, compiler used."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str


@cache
def load_artifact(name: str) -> Artifact:
    """Read ``secagg/ledger/artifacts/<name>.json``."""
    path = resources.files("secagg.ledger").joinpath("artifacts", f"{name}.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LedgerError(
            f"contract artifact {name}.json is missing from secagg/ledger/artifacts; "
            "run `npm ci --prefix contracts && node contracts/compile.js`"
        ) from None
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler_version=data["compiler"]["version"],
    )
