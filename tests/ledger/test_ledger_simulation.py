"""Runs with the ledger on: the chain records every round, and the audit catches every lie.

The attacks here are on the record itself (a flipped byte in any stored blob, an aggregator
that posts a wrong aggregate) and on the protocol (a server that shows clients different
survivor sets, a coordinator that keeps opening rounds past a hospital's ε budget).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from secagg.config import load_config
from secagg.crypto import shamir
from secagg.errors import BelowThresholdError, LedgerConnectionError
from secagg.ledger.audit import audit_run
from secagg.ledger.session import LedgerSession
from secagg.masking import driver
from secagg.masking.client import MaskingClient
from secagg.masking.driver import run_round
from secagg.masking.messages import UnmaskingRequest, UnmaskingResponse
from secagg.masking.params import MaskingParams
from secagg.masking.server import MaskingServer
from secagg.simulation import SimulationResult, run_simulation
from secagg.storage import Cid

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
LEDGER = ["ledger.enabled=true", "run.rounds=3", "protection.dropout=0.1", "run.seed=3"]


def _run(*overrides: str, output_dir: Path | None = None) -> SimulationResult:
    return run_simulation(load_config(EXAMPLE, [*LEDGER, *overrides]), output_dir=output_dir)


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    return _run(output_dir=tmp_path_factory.mktemp("masked") / "run")


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_masked_run_records_every_round_and_passes_its_own_audit(
    masked_run: SimulationResult,
) -> None:
    assert masked_run.audit["verdict"] == "pass"
    assert masked_run.audit["rounds"] == [1, 2, 3]
    assert any(r.dropped for r in masked_run.rounds)  # dropouts happened and were recovered
    for record in masked_run.rounds:
        gas = record.ledger["gas_median_by_operation"]
        assert gas["commit"] <= 60_000
        assert record.protection["consistency"] == "chain"
        # The ε a hospital whose update was used reports is the ε the contract holds for
        # it; a hospital that dropped before committing spent nothing more on chain.
        for i, info in enumerate(masked_run.clients):
            on_chain = record.ledger["epsilon_on_chain"][str(i)]
            reported = record.epsilon[info.name]
            assert reported is not None
            if info.name in record.included:
                assert on_chain == pytest.approx(reported, abs=1e-6)
            else:
                assert on_chain <= reported + 1e-6
    assert (masked_run.output_dir / "audit.json").is_file()  # type: ignore[operator]


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_an_encrypted_run_passes_its_audit(mode: str) -> None:
    result = _run(f"protection.mode={mode}", "run.rounds=2")
    assert result.audit["verdict"] == "pass", result.audit
    checks = {c["check"] for c in result.audit["checks"]}
    assert {"aggregate", "update", "epsilon", "model"} <= checks


def _events(run: SimulationResult, name: str) -> list:  # type: ignore[type-arg]
    session = run.ledger_session
    assert session is not None
    return [e for e in session.admin.events() if e.name == name]


@pytest.mark.parametrize(
    ("event", "field", "who"),
    [
        ("Committed", "blobHash", "participant"),  # a hospital's masked update
        ("SharesPosted", "sharesBlobHash", "holder"),  # a revealed share
        ("AggregatePosted", "aggregateCid", None),  # the posted aggregate
    ],
)
def test_flipping_one_byte_of_any_stored_blob_fails_the_audit_naming_round_and_party(
    masked_run: SimulationResult, event: str, field: str, who: str | None
) -> None:
    session = masked_run.ledger_session
    assert session is not None
    target = _events(masked_run, event)[-1]
    path = session.store.path_of(Cid.from_digest(bytes(target.args[field])))
    original = path.read_bytes()
    _flip(path)
    try:
        report = audit_run(session.aggregator, session.store)
    finally:
        path.write_bytes(original)
    assert not report.passed
    failures = report.failures()
    assert any(f.round == target.round_id for f in failures)
    if who is not None:
        assert any(f.participant == target.args[who] for f in failures)
    assert audit_run(session.aggregator, session.store).passed  # restored: passes again


def test_an_aggregator_that_posts_a_wrong_aggregate_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = LedgerSession.set_aggregate

    def lie(self: LedgerSession, round_idx: int, blob: bytes) -> None:
        forged = bytearray(blob)
        forged[0] ^= 0x01  # one unit in the first coordinate of the masked sum
        original(self, round_idx, bytes(forged) if round_idx == 1 else blob)

    monkeypatch.setattr(LedgerSession, "set_aggregate", lie)
    result = _run()
    failed = [c for c in result.audit["checks"] if not c["ok"]]
    assert result.audit["verdict"] == "fail"
    assert {(c["round"], c["check"]) for c in failed} == {(2, "aggregate")}


def test_the_contract_keeps_every_hospital_within_its_epsilon_cap() -> None:
    # The coordinator plans 5 rounds at ε = 3, the consortium caps ε at 1.5: once a
    # hospital's next commit would pass the cap, the contract refuses it and its update is
    # not used; the rounds that then have too few commits abort.
    result = _run("ledger.epsilon_cap=1.5", "run.rounds=5", "protection.dropout=0")
    final = result.rounds[-1].ledger["epsilon_on_chain"]
    assert max(final.values()) <= 1.5
    refused = [r for r in result.rounds if r.ledger["commits_refused"]]
    assert refused, "the cap must bite before round 5"
    assert all(
        "LedgerBudgetError" in why for r in refused for why in r.ledger["commits_refused"].values()
    )
    assert any(r.aborted for r in result.rounds)
    assert result.audit["verdict"] == "pass"


class _SplitViewServer(MaskingServer):
    """Tells each holder "you and client 4 survived" (the attack of issue #6)."""

    def _unmasking_requests(self) -> dict[int, UnmaskingRequest]:
        honest = super()._unmasking_requests()
        return {
            c: UnmaskingRequest(m.round_id, m.sender, c, tuple(sorted({c, 4})))
            for c, m in honest.items()
        }


def test_with_the_ledger_on_a_split_view_server_cannot_show_two_survivor_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(EXAMPLE, ["ledger.enabled=true", "protection.mode=secagg"])
    ids = list(range(5))
    session = LedgerSession(config, ids, tmp_path / "store")
    params = MaskingParams.create(ids, 8, threshold=3, neighbors=4, round_id=0)
    session.round_trained(
        0, np.zeros(4, np.float32), dict.fromkeys(ids, 0.5), {}, {"mode": "secagg"}
    )
    monkeypatch.setattr(driver, "MaskingServer", _SplitViewServer)
    inputs = {c: np.full(8, c, np.uint32) for c in ids}
    with pytest.raises(BelowThresholdError, match="names 2 clients"):
        run_round(inputs, params, board=session.masking_board(0, params.graph))
    # The chain holds the one set the server posted first, and every client read that one.
    posted = [e for e in session.admin.events() if e.name == "SurvivorsPosted"]
    assert len(posted) == 1 and len(posted[0].args["survivors"]) == 2
    assert not [e for e in session.admin.events() if e.name == "SharesPosted"]  # no share out


def test_secagg_audit_cli_replays_the_embedded_run_from_its_folder(
    masked_run: SimulationResult,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "secagg.cli", "audit", str(masked_run.output_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "audit verdict: PASS" in proc.stdout
    assert "blocks of chain.bin re-executed" in proc.stdout  # not the verdict saved at the end
    assert json.loads((masked_run.output_dir / "metrics.json").read_text())["ledger"]["contract"]  # type: ignore[operator]


def test_on_anvil_a_run_is_audited_independently_and_a_tampered_store_fails(
    anvil_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = _run(f"ledger.rpc_url={json.dumps(anvil_url)}", "run.rounds=2", output_dir=out)
    assert result.audit["verdict"] == "pass"
    audit = [sys.executable, "-m", "secagg.cli", "audit", str(out)]
    first = subprocess.run(audit, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "audit verdict: PASS" in first.stdout
    session = result.ledger_session
    assert session is not None
    commit = next(e for e in session.admin.events() if e.name == "Committed")
    _flip(session.store.path_of(Cid.from_digest(bytes(commit.args["blobHash"]))))
    second = subprocess.run(audit, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    assert f"round   {commit.round_id}  FAIL" in second.stdout
    assert commit.args["participant"] in second.stdout


def test_a_chain_that_goes_away_mid_run_stops_it_with_a_clear_error_and_keeps_finished_rounds(
    anvil_url: str, tmp_path: Path, anvil_process: subprocess.Popen[bytes]
) -> None:
    out = tmp_path / "run"

    def kill_after_first(record) -> None:  # type: ignore[no-untyped-def]
        if record.round == 1:
            anvil_process.kill()
            anvil_process.wait()

    config = load_config(EXAMPLE, [*LEDGER, f"ledger.rpc_url={json.dumps(anvil_url)}"])
    with pytest.raises(LedgerConnectionError, match="cannot be reached"):
        run_simulation(config, output_dir=out, on_round=kill_after_first)
    kept = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in kept["rounds"]] == [1]


def test_a_holder_that_reveals_a_wrong_share_is_corrected_reported_on_chain_and_audited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hospital 3 shifts the b-share it reveals for hospital 5 by one. The server corrects it
    # (the sum stays exact) and names 3; the aggregator puts the evidence on chain, where the
    # contract accepts it because the revealed share is not in 5's committed tree; the audit
    # fails naming hospital 3.
    liar, victim = 3, 5
    honest_unmask = MaskingClient._unmask

    def lying_unmask(self: MaskingClient, message: UnmaskingRequest) -> UnmaskingResponse:
        reply = honest_unmask(self, message)
        if self.id != liar or victim not in reply.seed_shares:
            return reply
        y = shamir.Share.from_value_bytes(1, reply.seed_shares[victim]).y  # first limb + 1
        value = shamir.Share(1, ((y[0] + 1) % shamir.PRIME, *y[1:])).value_bytes()
        shifted = {**reply.seed_shares, victim: value}
        return dataclasses.replace(reply, seed_shares=shifted)

    monkeypatch.setattr(MaskingClient, "_unmask", lying_unmask)
    result = _run("run.rounds=1", "protection.mode=secagg", "protection.dropout=0")
    record = result.rounds[0]
    assert not record.aborted
    assert record.protection["inconsistent_holders"] == {str(liar): [victim]}
    session = result.ledger_session
    assert session is not None
    reports = [e for e in session.admin.events() if e.name == "BadShareReported"]
    assert [(r.args["holder"], r.args["owner"]) for r in reports] == [
        (session.address_of[liar], session.address_of[victim])
    ]
    assert session.admin.bad_share_reports(session.address_of[liar]) == 1
    failed = [c for c in result.audit["checks"] if not c["ok"]]
    assert [(c["check"], c["participant"]) for c in failed] == [
        ("revealed-shares", session.address_of[liar])
    ]
