"""`secagg audit RUN` replays the run from what its folder holds (issue 18, item 10).

Before, a run on the embedded chain could not fail its audit: the chain ended with the run,
and `secagg audit` reprinted the verdict saved at its end, so a flipped byte in any stored
blob still printed PASS; a copied folder was audited against the original's store (an
absolute path in metrics.json); a tampered aggregate named nobody, and a tampered update
crashed the aggregate check with a KeyError. Now the folder keeps the chain (chain.bin),
which the audit re-executes on a fresh embedded chain up to the head metrics.json records,
then audits every round from that chain's events and the folder's own store. Each tampering
below is done to a COPY of a finished run folder, and must fail that copy's audit naming
the round, the check and the party (or the file).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from secagg.config import load_config
from secagg.ledger import session as ledger_session
from secagg.ledger.audit import AuditReport, Check, RoundContext
from secagg.ledger.chainfile import (
    CHAIN_FILE,
    ChainRecord,
    decode_chain_file,
    encode_chain_file,
    replay_chain,
)
from secagg.ledger.records import LedgerEvent
from secagg.ledger.runfolder import audit_folder
from secagg.simulation import SimulationResult, run_simulation
from secagg.storage import Cid, LocalBlobStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
#: A small fast run: four hospitals, dropouts (recovered), the ledger on.
SMALL = ["ledger.enabled=true", "data.clients=4", "protection.dropout=0.1", "run.seed=3"]


@dataclass
class Run:
    result: SimulationResult
    folder: Path

    def events(self, name: str, chain_round: int | None = None) -> list[LedgerEvent]:
        session = self.result.ledger_session
        assert session is not None
        return [
            e
            for e in session.admin.events()
            if e.name == name and (chain_round is None or e.round_id == chain_round)
        ]

    def party(self, address: str) -> str:
        session = self.result.ledger_session
        assert session is not None
        if address == session.describe()["aggregator"]:
            return "aggregator"
        return f"hospital {session.client_of[address]}"

    @property
    def aggregator(self) -> str:
        session = self.result.ledger_session
        assert session is not None
        return str(session.describe()["aggregator"])


def _simulate(folder: Path, *overrides: str) -> Run:
    config = load_config(EXAMPLE, [*SMALL, *overrides])
    return Run(run_simulation(config, output_dir=folder), folder)


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _simulate(tmp_path_factory.mktemp("masked") / "run", "run.rounds=3")


@pytest.fixture(scope="module")
def he_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _simulate(
        tmp_path_factory.mktemp("ckks") / "run", "run.rounds=2", "protection.mode=ckks"
    )


def _copy(run: Run, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run.folder, copy)
    return copy


def _blob(folder: Path, digest: bytes) -> Path:
    return LocalBlobStore(folder / "store").path_of(Cid.from_digest(bytes(digest)))


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def _named(report: AuditReport, round_: int, check: str, participant: str, party: str) -> bool:
    return any(
        (f.round, f.check, f.participant, f.party) == (round_, check, participant, party)
        for f in report.failures()
    )


def _no_crash(report: AuditReport) -> None:
    """Every failure is a verdict about the record, never a decoder's or a lookup's crash."""
    for f in report.failures():
        assert "KeyError" not in f.detail and "Traceback" not in f.detail, f


# ---- an untouched copy ------------------------------------------------------------------


def test_an_untouched_copy_passes_its_audit_after_the_original_folder_is_deleted(
    masked_run: Run, tmp_path: Path
) -> None:
    original = tmp_path / "original"
    shutil.copytree(masked_run.folder, original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    report = audit_folder(copy)
    assert report.passed, report.summary()
    assert report.to_dict()["rounds"] == [1, 2, 3]
    chain = next(c for c in report.checks if c.check == "chain")
    assert "re-executed" in chain.detail
    recorded = json.loads((copy / "metrics.json").read_text())["ledger"]
    assert recorded["store"] == "store" and recorded["chain_file"] == CHAIN_FILE


def test_a_copy_is_audited_against_its_own_store_not_the_original_one(
    masked_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attacker edits a copy of the folder (hospital 1's committed update in round 1)
    # and hands the copy to the auditor, while the original stays where it was written.
    def tamper(run: Run, where: Path) -> AuditReport:
        copy = where / "copy"
        shutil.copytree(run.folder, copy)
        commit = run.events("Committed", 1)[0]
        _flip(_blob(copy, commit.args["blobHash"]))
        return audit_folder(copy)

    report = tamper(masked_run, tmp_path / "relative")
    assert not report.passed
    commit = masked_run.events("Committed", 1)[0]
    who = commit.args["participant"]
    assert _named(report, 1, "blobs", who, masked_run.party(who))

    # Twice-run: metrics.json with the store's absolute path (as before the fix). The copy's
    # audit reads the intact original store, and the tampered copy passes.
    monkeypatch.setattr(ledger_session, "_path_in", lambda path, run_dir: str(Path(path)))
    absolute = _simulate(tmp_path / "absolute" / "run", "run.rounds=1")
    recorded = json.loads((absolute.folder / "metrics.json").read_text())["ledger"]["store"]
    assert Path(recorded).is_absolute()
    report = tamper(absolute, tmp_path / "absolute-copy")
    assert report.passed, report.summary()


# ---- one flipped byte in each blob kind ---------------------------------------------------


@pytest.mark.parametrize(
    ("event", "field", "chain_round", "party_field"),
    [
        ("Committed", "blobHash", 2, "participant"),  # a hospital's masked input
        ("SharesPosted", "sharesBlobHash", 2, "holder"),  # a holder's revealed shares
        ("AggregatePosted", "aggregateCid", 2, None),  # the aggregate: the aggregator's
        ("AggregatePosted", "aggregateHash", 1, None),  # the update: the aggregator's
        ("RoundOpened", "modelHash", 2, None),  # the global model: the aggregator's
    ],
    ids=["masked-input", "revealed-shares", "aggregate", "update", "model"],
)
def test_a_flipped_byte_in_a_masked_runs_blob_fails_the_copys_audit_naming_the_party(
    masked_run: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    event: str,
    field: str,
    chain_round: int,
    party_field: str | None,
) -> None:
    target = masked_run.events(event, chain_round)[0]
    copy = _copy(masked_run, tmp_path)
    _flip(_blob(copy, target.args[field]))
    report = audit_folder(copy)
    assert not report.passed
    who = target.args[party_field] if party_field else masked_run.aggregator
    assert _named(report, chain_round, "blobs", who, masked_run.party(who)), report.summary()
    _no_crash(report)
    if event != "Committed":
        return
    # The sum cannot be redone without that update: the aggregate check names its owner.
    assert _named(report, chain_round, "aggregate", who, masked_run.party(who))
    # Twice-run: without that check (as before the fix), the aggregate check crashes on the
    # missing update with a KeyError and pins the failure on the aggregator instead.
    monkeypatch.setattr(RoundContext, "unavailable", lambda self, check, usable: False)
    report = audit_folder(copy)
    wrong = [f for f in report.failures() if f.check == "aggregate"]
    assert [(f.party, f.detail.split(":")[0]) for f in wrong] == [("aggregator", "KeyError")]


def test_an_untouched_copy_of_an_encrypted_run_passes_its_audit(
    he_run: Run, tmp_path: Path
) -> None:
    report = audit_folder(_copy(he_run, tmp_path))
    assert report.passed, report.summary()
    assert report.to_dict()["rounds"] == [1, 2]


@pytest.mark.parametrize(
    ("event", "field", "chain_round", "party_field"),
    [
        ("Committed", "blobHash", 2, "participant"),  # a hospital's ciphertext
        ("AggregatePosted", "aggregateCid", 1, None),  # the ciphertext sum
        ("AggregatePosted", "aggregateHash", 2, None),  # the decrypted update
        ("RoundOpened", "modelHash", 2, None),  # the global model
    ],
    ids=["ciphertext", "aggregate", "update", "model"],
)
def test_a_flipped_byte_in_an_encrypted_runs_blob_fails_the_copys_audit_naming_the_party(
    he_run: Run,
    tmp_path: Path,
    event: str,
    field: str,
    chain_round: int,
    party_field: str | None,
) -> None:
    target = he_run.events(event, chain_round)[0]
    copy = _copy(he_run, tmp_path)
    _flip(_blob(copy, target.args[field]))
    report = audit_folder(copy)
    assert not report.passed
    who = target.args[party_field] if party_field else he_run.aggregator
    assert _named(report, chain_round, "blobs", who, he_run.party(who)), report.summary()
    if event == "Committed":
        assert _named(report, chain_round, "aggregate", who, he_run.party(who))
    _no_crash(report)


# ---- the chain file ------------------------------------------------------------------------


def _chain_failure(report: AuditReport) -> Check:
    assert not report.passed
    failures = report.failures()
    assert [(f.round, f.check) for f in failures] == [(0, "chain")], report.summary()
    return failures[0]


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing"])
def test_a_damaged_chain_file_fails_the_audit_naming_it(
    masked_run: Run, tmp_path: Path, damage: str
) -> None:
    copy = _copy(masked_run, tmp_path)
    path = copy / CHAIN_FILE
    if damage == "flipped byte":
        _flip(path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()
    failure = _chain_failure(audit_folder(copy))
    assert failure.party == CHAIN_FILE


def _rewrite_chain(folder: Path, edit: object) -> ChainRecord:
    record = decode_chain_file((folder / CHAIN_FILE).read_bytes())
    assert callable(edit)
    edited = edit(record)
    (folder / CHAIN_FILE).write_bytes(encode_chain_file(edited))
    return edited


def test_a_forged_transaction_in_a_well_formed_chain_file_fails_naming_its_block(
    masked_run: Run, tmp_path: Path
) -> None:
    # The attacker rewrites hospital 2's round-2 commit inside its block (another blob
    # hash) and re-encodes a chain file that decodes fine. Re-execution refuses it: the
    # hospital's signature no longer covers the transaction.
    commit = masked_run.events("Committed", 2)[-1]
    blob_hash = bytes(commit.args["blobHash"])
    copy = _copy(masked_run, tmp_path)

    def forge(record: ChainRecord) -> ChainRecord:
        blocks = list(record.blocks)
        raw = blocks[commit.block_number]
        assert blob_hash in raw
        blocks[commit.block_number] = raw.replace(blob_hash, bytes(32))
        return ChainRecord(record.chain_id, tuple(blocks))

    _rewrite_chain(copy, forge)
    failure = _chain_failure(audit_folder(copy))
    assert f"block {commit.block_number} does not re-execute" in failure.detail
    assert failure.party == CHAIN_FILE


def _cut_before_round(folder: Path, run: Run, chain_round: int) -> None:
    """Drop every block from round ``chain_round`` on, as a coherent shorter chain file."""
    opened = run.events("RoundOpened", chain_round)[0]
    _rewrite_chain(folder, lambda r: ChainRecord(r.chain_id, r.blocks[: opened.block_number]))


def test_a_chain_file_cut_short_fails_against_the_head_metrics_json_records(
    masked_run: Run, tmp_path: Path
) -> None:
    copy = _copy(masked_run, tmp_path)
    _cut_before_round(copy, masked_run, 3)
    failure = _chain_failure(audit_folder(copy))
    assert failure.party == f"{CHAIN_FILE}, metrics.json"
    assert "cut short or edited" in failure.detail


def test_a_whole_folder_rewritten_without_its_last_round_fails_against_the_kept_head(
    masked_run: Run, tmp_path: Path
) -> None:
    # The holder of the folder drops round 3 everywhere: the chain file is cut before it
    # and metrics.json is rewritten to end where the shorter chain ends. Only a head kept
    # outside the folder (secagg simulate prints it) tells.
    kept_head = masked_run.result.ledger["head"]["hash"]
    copy = _copy(masked_run, tmp_path)
    _cut_before_round(copy, masked_run, 3)
    _, head = replay_chain(decode_chain_file((copy / CHAIN_FILE).read_bytes()))
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["ledger"]["head"] = {"block": head.number, "hash": head.hash}
    metrics["rounds"] = metrics["rounds"][:2]
    (copy / "metrics.json").write_text(json.dumps(metrics))

    failure = _chain_failure(audit_folder(copy, expected_head=kept_head))
    assert "the whole record was replaced" in failure.detail

    # Twice-run: without the kept head, the folder alone is consistent and passes, with the
    # last round gone from the record: what an auditor holding only the folder cannot see.
    report = audit_folder(copy)
    assert report.passed, report.summary()
    assert report.to_dict()["rounds"] == [1, 2]


# ---- metrics.json --------------------------------------------------------------------------


def _flip_digit(path: Path, after: str, within: int = 80) -> None:
    """Flip the lowest bit of the first digit after the text ``after`` (a digit stays one)."""
    text = path.read_bytes()
    start = text.index(after.encode()) + len(after)
    at = next(i for i in range(start, start + within) if chr(text[i]).isdigit())
    _flip(path, at)


def test_a_flipped_byte_in_metrics_json_fails_the_copys_audit_naming_what_it_misreports(
    masked_run: Run, tmp_path: Path
) -> None:
    session = masked_run.result.ledger_session
    assert session is not None
    metrics = json.loads((masked_run.folder / "metrics.json").read_text())

    def audited(edit: object) -> AuditReport:
        copy = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(masked_run.folder, copy)
        assert callable(edit)
        edit(copy / "metrics.json")
        report = audit_folder(copy)
        assert not report.passed
        _no_crash(report)
        return report

    # A hospital's address: the record no longer says who hospital 1 is.
    address = session.address_of[1]
    report = audited(lambda p: _flip_digit(p, f'"1": "{address[:2]}'))
    assert any(
        f.check == "record" and f.participant == address and "hospital 1" in f.party
        for f in report.failures()
    ), report.summary()

    # The ε on chain it reports for hospital 2 after round 2.
    assert metrics["rounds"][1]["ledger"]["epsilon_on_chain"]["2"] > 0
    report = audited(lambda p: _flip_round_epsilon(p, round_index=1, client="2"))
    assert _named(report, 2, "record", session.address_of[2], "hospital 2, metrics.json"), (
        report.summary()
    )

    # The head it records: the chain file no longer ends where metrics.json says.
    report = audited(lambda p: _flip_digit(p, '"hash": "0x'))
    assert [(f.check, f.party) for f in report.failures()] == [
        ("chain", f"{CHAIN_FILE}, metrics.json")
    ]

    # Its syntax: metrics.json itself is named.
    report = audited(lambda p: _flip(p, 0))
    assert [(f.check, f.party) for f in report.failures()] == [("record", "metrics.json")]


def _flip_round_epsilon(path: Path, round_index: int, client: str) -> None:
    """Flip one digit of ``epsilon_on_chain[client]`` in ``rounds[round_index]``."""
    text = path.read_text()
    at = 0
    for _ in range(round_index + 1):
        at = text.index('"epsilon_on_chain"', at + 1)
    key = text.index(f'"{client}": ', at) + len(f'"{client}": ')
    digit = next(i for i in range(key, key + 20) if text[i].isdigit() and text[i] != "0")
    _flip(path, len(text[:digit].encode()))


# ---- the command ---------------------------------------------------------------------------


def test_secagg_audit_of_a_tampered_copy_exits_1_and_prints_the_round_check_and_party(
    masked_run: Run, tmp_path: Path
) -> None:
    commit = masked_run.events("Committed", 2)[0]
    who = commit.args["participant"]
    copy = _copy(masked_run, tmp_path)
    audit = [sys.executable, "-m", "secagg.cli", "audit", str(copy)]
    clean = subprocess.run(audit, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "audit verdict: PASS" in clean.stdout
    _flip(_blob(copy, commit.args["blobHash"]))
    tampered = subprocess.run(audit, capture_output=True, text=True, timeout=300)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert f"round   2  FAIL  blobs [{masked_run.party(who)} {who}]" in tampered.stdout
    assert "audit verdict: FAIL" in tampered.stdout
    assert "Traceback" not in tampered.stderr
