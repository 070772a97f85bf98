"""Attested HE sums on chain: each co-signing hospital attests the sum's digest from its own
account (``attestSum``), the key holder reads the pedigree from the chain, the audit checks it.

Issue 18 item 1 with the ledger: the aggregator holds the public key and can pass one
client's ciphertext plus encryptions of zero off as a sum; the chain is where the key holder
learns whether at least t hospitals added up the survivors' committed ciphertexts and got
this very sum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.he_round import padded_with_zeros, switch_off_the_gate

from secagg.aggregation import FedAvg
from secagg.config import load_config
from secagg.errors import (
    BelowThresholdError,
    LedgerAccessError,
    LedgerDeadlineError,
    LedgerReplayError,
    LedgerStateError,
)
from secagg.he.attest import Submission, digest
from secagg.ledger import he_attestation
from secagg.ledger.audit import audit_run
from secagg.ledger.session import LedgerSession
from secagg.protection.he import HESum
from secagg.simulation import run_simulation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
IDS = list(range(6))
DIM = 12


def test_a_hospital_attests_one_sum_per_round_while_the_round_is_unmasking(consortium) -> None:  # type: ignore[no-untyped-def]
    c, (first, second, third, *_) = consortium, consortium.participants
    c.open_round(1, [first, second])
    with pytest.raises(LedgerStateError, match="WrongPhase"):  # before the survivors
        first.attest_sum(1, c.digest("sum"))
    for member in (first, second):
        member.commit(
            1, blob_hash=c.digest(member.sender_address), share_root=bytes(32), cumulative_epsilon=0
        )
    c.aggregator.post_survivors(1, [first.sender_address, second.sender_address], [])
    receipt = first.attest_sum(1, c.digest("sum"))
    assert [e.name for e in receipt.events] == ["SumAttested"]
    with pytest.raises(LedgerReplayError, match="SumAlreadyAttested"):
        first.attest_sum(1, c.digest("another sum"))
    with pytest.raises(LedgerAccessError, match="NotInRound"):
        third.attest_sum(1, c.digest("sum"))
    with pytest.raises(LedgerAccessError):
        c.outsider.attest_sum(1, c.digest("sum"))
    c.pass_deadline(1, "unmask")
    with pytest.raises(LedgerDeadlineError, match="DeadlinePassed"):
        second.attest_sum(1, c.digest("sum"))


def test_the_key_holder_reading_the_chain_never_decrypts_a_victim_padded_with_zeros(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The survivors' ciphertexts are committed and attested on chain; the aggregator then
    hands the key holder the victim's ciphertext plus encryptions of zero as the sum."""
    config = load_config(EXAMPLE, ["protection.mode=ckks", "ledger.enabled=true"])
    session = LedgerSession(config, IDS, tmp_path / "store")
    he_sum = HESum(config, IDS, DIM, seed=1, ledger=session)
    rng = np.random.default_rng(0)
    encodings = {c: FedAvg().encode(rng.uniform(-1, 1, DIM - 1), 0.5, 1.0) for c in IDS}
    session.round_trained(0, np.zeros(DIM - 1), dict.fromkeys(IDS), dict.fromkeys(IDS, 1.0), {})
    chain_round, victim = session.rounds[0].chain_round, 3
    aggregator = he_sum.aggregator(0)
    for c in IDS:
        message = he_sum.client(c).submit(0, encodings[c])
        assert session.commit_blob(0, c, Submission.from_bytes(message).ciphertext, bytes(32))
        aggregator.receive(c, message)
    he_sum._attest_on_chain(0, aggregator.included, IDS)  # every hospital attests the real sum
    victims = Submission.from_bytes(he_sum.client(victim).submit(1, encodings[victim]))
    fake = padded_with_zeros(he_sum, victims.ciphertext, he_sum.threshold).serialize()
    pedigree = he_attestation.attested_sum(session.admin, chain_round, digest(fake))
    assert not pedigree.attesters and len(pedigree.contributions) == len(IDS)
    with pytest.raises(BelowThresholdError, match="0 client"):
        he_sum.key_holder.decrypt_attested(pedigree, fake)

    switch_off_the_gate(monkeypatch)
    recovered = he_sum.key_holder.decrypt_attested(pedigree, fake)
    assert np.abs(recovered - encodings[victim]).max() <= he_sum.public_key.params.error_bound(4)


@pytest.fixture(scope="module")
def unattested_run(tmp_path_factory: pytest.TempPathFactory) -> LedgerSession:
    """A CKKS round decrypted with no attestation on chain: the hospitals never attested and
    the key holder decrypted anyway (it colludes, or has no gate)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LedgerSession, "attest_sum", lambda self, round_idx, c, d: None)
        switch_off_the_gate(patch)
        config = load_config(
            EXAMPLE,
            ["protection.mode=ckks", "ledger.enabled=true", "run.rounds=1", "protection.dropout=0"],
        )
        result = run_simulation(config, output_dir=tmp_path_factory.mktemp("he") / "run")
    assert result.rounds[0].included and result.ledger_session is not None
    return result.ledger_session


def test_the_audit_names_the_aggregator_of_a_sum_decrypted_without_its_pedigree(
    unattested_run: LedgerSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = unattested_run
    report = audit_run(session.admin, session.store)
    failures = [c for c in report.failures() if c.check == he_attestation.CHECK]
    assert [(c.round, c.participant) for c in failures] == [(1, session.describe()["aggregator"])]
    assert "0 participant(s) attested" in failures[0].detail

    monkeypatch.setattr(he_attestation, "check_attestations", lambda *args: None)
    assert audit_run(session.admin, session.store).passed  # the decryption goes unnoticed


def test_an_honest_encrypted_run_passes_the_attestation_check(tmp_path: Path) -> None:
    config = load_config(
        EXAMPLE, ["protection.mode=paillier", "ledger.enabled=true", "run.rounds=1"]
    )
    result = run_simulation(config, output_dir=tmp_path / "run")
    checks = [c for c in result.audit["checks"] if c["check"] == he_attestation.CHECK]
    assert [c["ok"] for c in checks] == [True]
    assert result.rounds[0].ledger["gas_median_by_operation"]["attestSum"] > 0
