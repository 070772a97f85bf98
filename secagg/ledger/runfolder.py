"""Audit a run folder from what it holds, whatever chain the run used.

A run with a ledger leaves in its folder ``metrics.json`` (whose ``ledger`` section says
where the record lives: chain, contract, store, the chain's head when the run ended, who
the participants and the aggregator are) and the blob store; a run on the embedded chain
also leaves the chain itself (``chain.bin``). :func:`audit_folder`:

1. rebuilds the chain: the embedded chain is re-executed block by block from the chain file
   on a fresh embedded chain (:func:`~secagg.ledger.chainfile.replay_chain`) and must end
   at the recorded head; a JSON-RPC node must still hold the recorded head;
2. audits every round from that chain's events and the folder's store
   (:func:`~secagg.ledger.audit.audit_run`);
3. checks that what ``metrics.json`` reports about the ledger (chain id, participants,
   aggregator, and per round the included hospitals and the ε on chain) is what the chain
   says.

Paths in the record are relative to the run folder, so a copied folder is audited from its
own files. Every problem, from a missing file to a flipped byte, is a failed check naming
the round, the check and the party or file; nothing is raised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address
from web3 import Web3

from secagg.ledger.audit import AuditReport, audit_run
from secagg.ledger.chainfile import CHAIN_FILE, decode_chain_file, replay_chain
from secagg.ledger.client import LedgerClient
from secagg.ledger.providers import connect
from secagg.ledger.records import LedgerEvent, epsilon_from_fixed
from secagg.recursion import shallow_recursion
from secagg.storage import LocalBlobStore

METRICS = "metrics.json"
#: An address for read-only calls on a node without accounts: it answers views from anyone.
_READER = "0x0000000000000000000000000000000000000000"


def audit_folder(
    run_dir: str | Path | None,
    *,
    rpc_url: str | None = None,
    contract: str | None = None,
    store: str | Path | None = None,
    expected_head: str | None = None,
) -> AuditReport:
    """Audit the run in ``run_dir``; ``rpc_url``, ``contract`` and ``store`` override what
    its metrics.json records (without a folder, all three are needed). ``expected_head``: a
    block hash kept outside the folder (``secagg simulate`` prints it) that the chain must
    end at, the one anchor an editor of the whole folder cannot move."""
    report = AuditReport()
    try:
        _audit(report, Path(run_dir) if run_dir else None, rpc_url, contract, store, expected_head)
    except Exception as exc:  # the last resort: a verdict, never a traceback
        report.fail(0, "audit", f"the audit stopped: {type(exc).__name__}: {exc}")
    return report


def _audit(
    report: AuditReport,
    run_dir: Path | None,
    rpc_url: str | None,
    contract: str | None,
    store: str | Path | None,
    expected_head: str | None,
) -> None:
    metrics: dict[str, Any] = {}
    recorded: dict[str, Any] = {}
    if run_dir is not None:
        loaded = _read_metrics(report, run_dir)
        if loaded is None:
            return
        metrics = loaded
        recorded = metrics.get("ledger") or {}
        if not isinstance(recorded, dict):
            report.fail(0, "record", "its ledger section is not a table", party=METRICS)
            return
        if not recorded and not (rpc_url and contract and store):
            report.fail(0, "record", "the run had no ledger: nothing to audit", party=METRICS)
            return
    chain = rpc_url or str(recorded.get("chain", ""))
    address = contract or str(recorded.get("contract", ""))
    store_path = _store_path(store, recorded.get("store"), run_dir)
    if not (chain and address and store_path):
        report.fail(0, "record", "give --rpc-url, --contract and --store (or a results folder)")
        return
    if not is_address(address):
        report.fail(0, "record", f"{address!r} is not a contract address", party=METRICS)
        return
    w3 = _chain(report, chain, run_dir, recorded, expected_head)
    if w3 is None:
        return
    if not store_path.is_dir():
        report.fail(0, "blobs", f"the blob store {store_path} is missing", party=str(store_path))
        return
    block = recorded.get("deploy_block", 0)
    reader = w3.eth.accounts[0] if w3.eth.accounts else _READER  # eth-tester wants funds
    ledger = LedgerClient(
        w3, address, reader, from_block=block if isinstance(block, int) and block >= 0 else 0
    )
    audited = audit_run(ledger, LocalBlobStore(store_path))
    report.checks.extend(audited.checks)
    report.participants, report.aggregator = audited.participants, audited.aggregator
    if metrics:
        _check_record(report, metrics, recorded, ledger)


def _read_metrics(report: AuditReport, run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / METRICS
    try:
        with shallow_recursion():
            metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        report.fail(0, "record", f"{path} is missing: not a results folder", party=METRICS)
        return None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        report.fail(0, "record", f"{path} does not parse: {exc}", party=METRICS)
        return None
    if not isinstance(metrics, dict):
        report.fail(0, "record", f"{path} is not a JSON object", party=METRICS)
        return None
    return metrics


def _store_path(given: str | Path | None, recorded: object, run_dir: Path | None) -> Path | None:
    """The store: as given, else as recorded; a relative path is inside the run folder."""
    raw = given if given else recorded
    if not raw or not isinstance(raw, str | Path):
        return None
    path = Path(raw)
    if not path.is_absolute() and not given and run_dir is not None:
        path = run_dir / path
    return path


def _chain(
    report: AuditReport,
    chain: str,
    run_dir: Path | None,
    recorded: dict[str, Any],
    expected_head: str | None,
) -> Web3 | None:
    """The run's chain: the embedded one re-executed from the folder, or the JSON-RPC node;
    None (after a failed check) when it cannot be had or is not the one the run recorded."""
    head = recorded.get("head")
    head = head if isinstance(head, dict) else {}
    if chain == "embedded":
        if run_dir is None:
            report.fail(0, "chain", "an embedded chain is audited from its results folder")
            return None
        name = str(recorded.get("chain_file", CHAIN_FILE))
        path = run_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            report.fail(0, "chain", f"the chain file {name!r} is not inside the run folder")
            return None
        try:
            record = decode_chain_file(path.read_bytes(), name)
            w3, replayed = replay_chain(record, name)
        except FileNotFoundError:
            report.fail(0, "chain", f"{path} is missing: the run's chain is lost", party=name)
            return None
        except Exception as exc:  # LedgerRecordError, or a file that cannot be read
            report.fail(0, "chain", str(exc), party=name)
            return None
        if (replayed.number, replayed.hash) != (head.get("block"), head.get("hash")):
            report.fail(
                0,
                "chain",
                f"{name} re-executes to block {replayed.number} {replayed.hash}, {METRICS} "
                f"records the run ending at block {head.get('block')} {head.get('hash')}: "
                "one of them was cut short or edited",
                party=f"{name}, {METRICS}",
            )
            return None
        if expected_head is not None and replayed.hash != expected_head.lower():
            report.fail(
                0,
                "chain",
                f"{name} ends at {replayed.hash}, not at the head kept outside the folder "
                f"({expected_head}): the whole record was replaced",
                party=name,
            )
            return None
        report.ok(
            0,
            "chain",
            f"{len(record.blocks)} blocks of {name} re-executed (chain id {record.chain_id}) "
            f"to the recorded head {replayed.hash}",
        )
        return w3
    try:
        w3 = connect(chain)
        block = head.get("block")
        if isinstance(block, int):
            found = w3.eth.get_block(block)["hash"].to_0x_hex()
            if found != head.get("hash"):
                report.fail(
                    0,
                    "chain",
                    f"the node's block {block} is {found}, {METRICS} records {head.get('hash')}: "
                    "this node does not hold the run's chain (restarted or rewritten)",
                    party=METRICS,
                )
                return None
        if expected_head is not None:
            w3.eth.get_block(expected_head)  # type: ignore[arg-type]
    except Exception as exc:
        report.fail(0, "chain", f"{type(exc).__name__}: {exc}")
        return None
    report.ok(0, "chain", f"{chain} holds the recorded head {head.get('hash', '(none recorded)')}")
    return w3


def _check_record(
    report: AuditReport, metrics: dict[str, Any], recorded: dict[str, Any], ledger: LedgerClient
) -> None:
    """What metrics.json says about the ledger is what the chain holds."""
    before = len(report.failures())
    try:
        _compare_record(report, metrics, recorded, ledger)
    except Exception as exc:  # a malformed metrics.json: wrong types where numbers belong
        report.fail(
            0, "record", f"malformed ledger figures: {type(exc).__name__}: {exc}", party=METRICS
        )
    if len(report.failures()) == before:
        report.ok(0, "record", f"{METRICS} reports the ledger as the chain holds it")


def _compare_record(
    report: AuditReport, metrics: dict[str, Any], recorded: dict[str, Any], ledger: LedgerClient
) -> None:
    def differs(round_: int, what: str, address: str = "", party: str = "") -> None:
        who = party or report.party_of(address)
        report.fail(round_, "record", f"{METRICS} {what}", address, f"{who}, {METRICS}")

    if recorded.get("chain_id") != ledger.chain_id:
        differs(0, f"gives chain id {recorded.get('chain_id')}, the chain is {ledger.chain_id}")
    participants = recorded.get("participants") or {}
    for client in sorted(set(report.participants) | {int(c) for c in participants}):
        said, held = participants.get(str(client)), report.participants.get(client, "")
        if said != held:
            differs(
                0,
                f"gives hospital {client} the address {said}, the chain registered {held}",
                held or str(said),
                f"hospital {client}",
            )
    if recorded.get("aggregator") != report.aggregator:
        differs(
            0,
            f"gives the aggregator {recorded.get('aggregator')}, the chain granted the role "
            f"to {report.aggregator}",
            report.aggregator,
            "aggregator",
        )
    names = [str(c["name"]) for c in metrics.get("clients", [])]
    events = ledger.events()
    spent: dict[str, int] = {}
    for entry in metrics.get("rounds", []):
        figures = entry.get("ledger") or {}
        if not figures:
            continue
        chain_round = int(figures["chain_round"])
        mine = [e for e in events if e.round_id == chain_round]
        for e in mine:
            if e.name == "Committed":
                spent[e.args["participant"]] = int(e.args["cumulativeEpsilon"])
        _compare_round(report, differs, entry, figures, chain_round, mine, names, spent)


def _compare_round(
    report: AuditReport,
    differs: Any,
    entry: dict[str, Any],
    figures: dict[str, Any],
    chain_round: int,
    events: list[LedgerEvent],
    names: list[str],
    spent: dict[str, int],
) -> None:
    posted = [e for e in events if e.name == "AggregatePosted"]
    on_chain = sorted(posted[-1].args["included"]) if posted else []
    address = {names[c]: a for c, a in report.participants.items() if c < len(names)}
    said = entry.get("included", [])
    claimed = sorted(to_checksum_address(address[n]) for n in said if n in address)
    if claimed != on_chain or len(claimed) != len(said):
        for who in sorted(set(claimed) ^ set(on_chain)) or [""]:
            differs(
                chain_round,
                f"lists {', '.join(said) or 'nobody'} as included, the chain "
                f"{', '.join(report.party_of(a) for a in on_chain) or 'nobody'}",
                who,
            )
    for client, value in (figures.get("epsilon_on_chain") or {}).items():
        holder = report.participants.get(int(client), "")
        held = epsilon_from_fixed(spent.get(holder, 0))
        if abs(float(value) - held) > 1e-9:
            differs(chain_round, f"gives ε {value} on chain, the chain holds {held:g}", holder)
