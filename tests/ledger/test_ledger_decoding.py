"""Pure pieces, no chain: ε fixed point and revert decoding."""

from __future__ import annotations

import math

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak

from secagg.errors import LedgerBudgetError, LedgerError, LedgerInputError, LedgerStateError
from secagg.ledger import epsilon_from_fixed, epsilon_to_fixed
from secagg.ledger.compiled import LEDGER, REWARD_TOKEN, load_artifact
from secagg.ledger.revert import ERROR_CLASSES, decode_revert, error_specs, extract_revert_data

SPECS = error_specs([load_artifact(LEDGER).abi, load_artifact(REWARD_TOKEN).abi])


def _revert(signature: str, types: list[str], values: list[object]) -> bytes:
    return keccak(text=signature)[:4] + abi_encode(types, values)


@pytest.mark.parametrize(
    ("epsilon", "fixed"),
    [
        (0.0, 0),
        (3.0, 3_000_000),
        (0.1, 100_000),
        (1.25, 1_250_000),
        (1e-7, 1),
        (2.0000004, 2_000_001),
    ],
)
def test_epsilon_fixed_point_rounds_up(epsilon: float, fixed: int) -> None:
    assert epsilon_to_fixed(epsilon) == fixed
    assert epsilon_from_fixed(fixed) >= epsilon


@pytest.mark.parametrize("bad", [-0.5, math.inf, math.nan, 2.0**64])
def test_epsilon_fixed_point_refuses_what_cannot_go_on_chain(bad: float) -> None:
    with pytest.raises(LedgerInputError):
        epsilon_to_fixed(bad)


def test_every_contract_error_has_a_class_and_hint() -> None:
    declared = {spec.name for spec in SPECS.values()}
    ours = declared - {n for n in declared if n.startswith(("ERC20", "AccessControlBad"))}
    assert ours <= set(ERROR_CLASSES), ours - set(ERROR_CLASSES)


def test_custom_error_decoded_to_named_class_with_arguments() -> None:
    data = _revert(
        "EpsilonCapExceeded(address,uint64,uint64)",
        ["address", "uint64", "uint64"],
        ["0x" + "11" * 20, 3_500_000, 3_000_000],
    )
    error = decode_revert(data, SPECS, "commit(4)")
    assert isinstance(error, LedgerBudgetError)
    assert error.error_name == "EpsilonCapExceeded"
    assert error.error_args["cumulativeEpsilon"] == 3_500_000
    assert "commit(4) refused by the contract: EpsilonCapExceeded(" in str(error)
    assert "ε=3.5" in str(error)

    phase = decode_revert(
        _revert("WrongPhase(uint64,uint8,uint8)", ["uint64", "uint8", "uint8"], [9, 1, 3]),
        SPECS,
        "commit(9)",
    )
    assert isinstance(phase, LedgerStateError)
    assert phase.error_args == {"roundId": 9, "expected": "OPEN", "actual": "AGGREGATED"}


def test_standard_and_unknown_reverts() -> None:
    text = decode_revert(_revert("Error(string)", ["string"], ["nope"]), SPECS, "x")
    assert type(text) is LedgerError and "reverted: nope" in str(text)
    panic = decode_revert(_revert("Panic(uint256)", ["uint256"], [0x11]), SPECS, "x")
    assert "panic (code 0x11)" in str(panic)
    unknown = decode_revert(b"\xde\xad\xbe\xef", SPECS, "x")
    assert "unknown data 0xdeadbeef" in str(unknown)


def test_revert_bytes_found_in_web3_and_eth_tester_exceptions() -> None:
    class Web3Style(Exception):
        data = "0xdeadbeef"

    assert extract_revert_data(Web3Style("execution reverted")) == b"\xde\xad\xbe\xef"
    eth_tester_style = Exception("execution reverted: b'\\xde\\xad\\xbe\\xef'")
    assert extract_revert_data(eth_tester_style) == b"\xde\xad\xbe\xef"
    assert extract_revert_data(Exception("execution reverted: __import__('os')")) is None
    assert extract_revert_data(Exception("out of gas")) is None
