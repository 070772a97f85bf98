"""Turn a contract revert into a named :class:`~secagg.errors.LedgerError`.

Pure decoding, no I/O: given the revert bytes and the ABIs, find the custom error by its
4-byte selector, decode its arguments, and pick the exception class and a hint on what to do.
``extract_revert_data`` digs the bytes out of whatever web3 or eth-tester raised.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from secagg.errors import (
    LedgerAccessError,
    LedgerBudgetError,
    LedgerDeadlineError,
    LedgerError,
    LedgerInputError,
    LedgerPartitionError,
    LedgerReplayError,
    LedgerStateError,
)
from secagg.ledger.records import EPSILON_SCALE, Phase

#: Contract error name -> (exception class, what to do about it).
ERROR_CLASSES: dict[str, tuple[type[LedgerError], str]] = {
    "AccessControlUnauthorizedAccount": (
        LedgerAccessError,
        "the sender lacks the role; the admin grants it (register / grantRole)",
    ),
    "NotInRound": (LedgerAccessError, "only the round's listed participants may do this"),
    "NotASurvivor": (
        LedgerAccessError,
        "only members of the posted survivor set may do this (check survivor_set)",
    ),
    "NotIncluded": (LedgerAccessError, "the aggregate of this round did not include the caller"),
    "DeadlinePassed": (LedgerDeadlineError, "too late for this round; wait for the next one"),
    "CommitPhaseNotOver": (
        LedgerDeadlineError,
        "wait until every participant committed (waitingFor has not) or the commit deadline passed",
    ),
    "AlreadyRegistered": (LedgerReplayError, "a participant registers once; use a new address"),
    "RoundIdNotIncreasing": (
        LedgerReplayError,
        "round ids must exceed the last opened one (read last_round_id)",
    ),
    "KeysAlreadyAdvertised": (LedgerReplayError, "round keys are advertised once per round"),
    "KeysAfterCommit": (
        LedgerStateError,
        "round keys must be advertised before committing: the commit was made with the keys "
        "known then, so they cannot change or appear afterwards",
    ),
    "AlreadyCommitted": (LedgerReplayError, "a participant commits once per round"),
    "SharesAlreadyPosted": (LedgerReplayError, "revealed shares are posted once per round"),
    "AlreadyReported": (LedgerReplayError, "this (owner, holder) share was already reported"),
    "RewardAlreadyClaimed": (LedgerReplayError, "a round's reward is claimed once"),
    "SumAlreadyAttested": (LedgerReplayError, "a participant attests one sum per round"),
    "EpsilonCapExceeded": (
        LedgerBudgetError,
        "the participant's privacy budget is spent; it must stop contributing",
    ),
    "EpsilonDecreased": (
        LedgerBudgetError,
        "commit the CUMULATIVE ε, which can only grow (read epsilon_spent)",
    ),
    "NotAPartition": (
        LedgerPartitionError,
        "survivors + dropped must list every participant that advertised keys or committed "
        "exactly once, and survivors must have committed (offender: the first address that "
        "breaks this, or the first active participant left out)",
    ),
    "UnknownRound": (LedgerStateError, "no round with this id was opened"),
    "WrongPhase": (LedgerStateError, "the round is in another phase (read round_info)"),
    "SharesNotPosted": (LedgerStateError, "the holder has not posted revealed shares"),
    "NoShareRoot": (LedgerStateError, "the owner never committed a share root this round"),
    "ShareProofValid": (LedgerStateError, "the proof verifies: there is nothing to report"),
    "InvalidIdentityKey": (LedgerInputError, "give a non-zero 32-byte Ed25519 key and address"),
    "NotRegistered": (LedgerInputError, "register every listed participant first"),
    "InvalidDeadlines": (
        LedgerInputError,
        "need now < commit deadline < unmask deadline (block timestamps, seconds)",
    ),
    "EmptyParticipantList": (LedgerInputError, "a round needs at least one participant"),
    "DuplicateParticipant": (LedgerInputError, "list each participant once"),
    "ZeroPenalty": (LedgerInputError, "a penalty must be positive"),
    "UseRegister": (LedgerInputError, "participants get their role through register()"),
}

#: AccessControl role id (hex) -> role name, to say which role was missing.
ROLE_NAMES = {
    "0x" + (b"\x00" * 32).hex(): "DEFAULT_ADMIN_ROLE",
    **{
        "0x" + keccak(text=name).hex(): name
        for name in ("AGGREGATOR_ROLE", "PARTICIPANT_ROLE", "VALIDATOR_ROLE", "MINTER_ROLE")
    },
}

_ERROR_STRING = keccak(text="Error(string)")[:4]
_PANIC = keccak(text="Panic(uint256)")[:4]


@dataclass(frozen=True)
class ErrorSpec:
    """One ABI error: its name and its inputs' names and types."""

    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]


def error_specs(abis: Iterable[Iterable[Mapping[str, Any]]]) -> dict[bytes, ErrorSpec]:
    """Selector -> error spec for every ``error`` entry in the given ABIs."""
    specs: dict[bytes, ErrorSpec] = {}
    for abi in abis:
        for entry in abi:
            if entry.get("type") != "error":
                continue
            types = tuple(_abi_type(i) for i in entry["inputs"])
            selector = keccak(text=f"{entry['name']}({','.join(types)})")[:4]
            names = tuple(i["name"] or f"arg{k}" for k, i in enumerate(entry["inputs"]))
            specs[selector] = ErrorSpec(entry["name"], names, types)
    return specs


def decode_revert(data: bytes, specs: Mapping[bytes, ErrorSpec], action: str) -> LedgerError:
    """The named LedgerError for revert bytes ``data`` raised while doing ``action``.

    The bytes come from the node: arguments that do not decode (a truncated payload, an
    inflated length) give a LedgerError saying so, never a decoder's exception. eth_abi
    checks every declared length against the bytes present before reading.
    """
    try:
        return _decode_revert(data, specs, action)
    except Exception as exc:  # eth_abi's DecodingError family, a bad enum value
        return LedgerError(
            f"{action} reverted with data that does not decode (0x{data[:68].hex()}...: "
            f"{type(exc).__name__}: {exc})"
        )


def _decode_revert(data: bytes, specs: Mapping[bytes, ErrorSpec], action: str) -> LedgerError:
    selector, payload = data[:4], data[4:]
    if selector == _ERROR_STRING:
        (reason,) = abi_decode(["string"], payload)
        return LedgerError(f"{action} reverted: {reason}", error_name="Error")
    if selector == _PANIC:
        (code,) = abi_decode(["uint256"], payload)
        return LedgerError(f"{action} hit a contract panic (code {code:#x})", error_name="Panic")
    spec = specs.get(selector)
    if spec is None:
        return LedgerError(f"{action} reverted with unknown data 0x{data.hex() or '(empty)'}")
    values = abi_decode(list(spec.arg_types), payload)
    args = {
        name: _readable(spec.name, kind, value)
        for name, kind, value in zip(spec.arg_names, spec.arg_types, values, strict=True)
    }
    cls, hint = ERROR_CLASSES.get(spec.name, (LedgerError, "see the contract's NatSpec"))
    shown = ", ".join(f"{k}={_shown(k, v)}" for k, v in args.items())
    return cls(
        f"{action} refused by the contract: {spec.name}({shown}): {hint}",
        error_name=spec.name,
        error_args=args,
    )


def extract_revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes carried by a web3 or eth-tester exception, if any.

    web3 puts them in ``exc.data`` as hex (JSON-RPC nodes). eth-tester only keeps
    ``"execution reverted: b'...'"`` in the message, a Python bytes literal that is parsed
    back with ``ast.literal_eval`` (literals only, nothing is executed).
    """
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, Mapping) and isinstance(data.get("data"), str):
        return extract_revert_data(_WithData(data["data"]))
    for arg in exc.args:
        if isinstance(arg, bytes | bytearray):
            return bytes(arg)
        if isinstance(arg, str):
            text = arg.removeprefix("execution reverted: ").strip()
            if text[:2] in ("b'", 'b"'):
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    return None
                return value if isinstance(value, bytes) else None
            if text.startswith("0x"):
                try:
                    return bytes.fromhex(text[2:])
                except ValueError:
                    return None
    return None


class _WithData(Exception):
    def __init__(self, data: str) -> None:
        super().__init__()
        self.data = data


def _abi_type(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _readable(error: str, kind: str, value: Any) -> object:
    if kind == "address":
        return to_checksum_address(value)
    if kind.startswith("bytes") and isinstance(value, bytes):
        return "0x" + value.hex()
    if error == "WrongPhase" and kind == "uint8":  # the Phase enum
        return Phase(value).name
    return value


def _shown(name: str, value: object) -> str:
    if name == "neededRole" and isinstance(value, str):
        return ROLE_NAMES.get(value, value)
    if isinstance(value, int) and ("psilon" in name or name in ("cap", "recorded")):
        return f"{value} (ε={value / EPSILON_SCALE:g})"
    return str(value)
