"""Every refusal the contract promises: each test tries the forbidden call and checks both
the LedgerError subclass and the contract's custom error name in the message, then that the
state did not move.
"""

from __future__ import annotations

import pytest

from secagg.errors import (
    LedgerAccessError,
    LedgerBudgetError,
    LedgerDeadlineError,
    LedgerInputError,
    LedgerPartitionError,
    LedgerReplayError,
    LedgerStateError,
)
from secagg.ledger import Phase, block_timestamp, epsilon_to_fixed

# ----------------------------------------------------------------------------- roles


def test_only_admin_registers(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    for caller in (c.aggregator, c.participants[0], c.outsider):
        with pytest.raises(LedgerAccessError, match="AccessControlUnauthorizedAccount"):
            caller.register(c.outsider.sender_address, c.digest("key"))
    assert not c.admin.has_role("PARTICIPANT_ROLE", c.outsider.sender_address)


def test_only_aggregator_opens_rounds_and_posts_results(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    now = block_timestamp(c.w3)
    with pytest.raises(LedgerAccessError, match=r"AccessControlUnauthorizedAccount.*AGGREGATOR"):
        alice.open_round(
            1,
            model_hash=c.digest("m"),
            config_hash=c.digest("c"),
            commit_deadline=now + 100,
            unmask_deadline=now + 200,
            participants=c.addresses,
        )
    assert c.admin.last_round_id == 0
    c.open_round(1)
    c.commit(alice, 1)
    with pytest.raises(LedgerAccessError, match="AccessControlUnauthorizedAccount"):
        c.admin.post_survivors(1, [alice.sender_address], [])
    with pytest.raises(LedgerAccessError, match="AccessControlUnauthorizedAccount"):
        alice.post_aggregate(
            1, aggregate_cid=c.digest("x"), aggregate_hash=c.digest("y"), included=[]
        )


def test_unregistered_address_cannot_advertise_or_commit(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    c.open_round(1)
    with pytest.raises(LedgerAccessError, match="PARTICIPANT_ROLE"):
        c.advertise(c.outsider, 1)
    with pytest.raises(LedgerAccessError, match="PARTICIPANT_ROLE"):
        c.commit(c.outsider, 1)


def test_revoked_or_renounced_participant_loses_the_role(consortium) -> None:  # type: ignore[no-untyped-def]
    """PARTICIPANT_ROLE lives in the participant's account slot (one read per call); revoking
    or renouncing it through AccessControl must still take effect everywhere."""
    c = consortium
    alice, bob = c.participants[:2]
    a, b = alice.sender_address, bob.sender_address
    role = c.admin.role_id("PARTICIPANT_ROLE")
    c.admin._transact(c.admin.contract.functions.revokeRole(role, a), "revokeRole")
    bob._transact(bob.contract.functions.renounceRole(role, b), "renounceRole")
    assert not c.admin.has_role("PARTICIPANT_ROLE", a)
    assert not c.admin.has_role("PARTICIPANT_ROLE", b)
    with pytest.raises(LedgerInputError, match="NotRegistered"):
        c.open_round(1, [alice])
    c.open_round(1, c.participants[2:])
    for revoked in (alice, bob):
        with pytest.raises(LedgerAccessError, match="PARTICIPANT_ROLE"):
            c.commit(revoked, 1)
    with pytest.raises(LedgerReplayError, match="AlreadyRegistered"):
        c.admin.register(a, c.digest("a new key"))  # the identity key stays: no comeback
    names = [e.name for e in c.admin.events()]
    assert names.count("RoleRevoked") == 2


def test_participant_role_changes_are_standard_access_control_events(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    granted = [e for e in c.admin.events() if e.name == "RoleGranted"]
    participants = {
        e.args["account"] for e in granted if e.args["role"] == c.admin.role_id("PARTICIPANT_ROLE")
    }
    assert participants == set(c.addresses)


def test_registered_participant_outside_the_round_cannot_commit(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    c.open_round(1, [alice])
    with pytest.raises(LedgerAccessError, match="NotInRound"):
        c.commit(bob, 1)


def test_round_lists_only_registered_distinct_participants(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    with pytest.raises(LedgerInputError, match="NotRegistered"):
        c.open_round(1, [alice, c.outsider])
    with pytest.raises(LedgerInputError, match="DuplicateParticipant"):
        c.open_round(1, [alice, alice])
    with pytest.raises(LedgerInputError, match="EmptyParticipantList"):
        c.open_round(1, [])
    with pytest.raises(LedgerInputError, match="InvalidDeadlines"):
        c.open_round(1, commit_in=100, unmask_in=100)
    assert c.admin.last_round_id == 0


def test_participant_role_only_through_register(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    role = c.admin.role_id("PARTICIPANT_ROLE")
    fn = c.admin.contract.functions.grantRole(role, c.outsider.sender_address)
    with pytest.raises(LedgerInputError, match="UseRegister"):
        c.admin._transact(fn, "grantRole")  # bypasses the client's own refusal
    assert not c.admin.has_role("PARTICIPANT_ROLE", c.outsider.sender_address)
    # The override keeps AccessControl's own check for the other roles.
    with pytest.raises(LedgerAccessError, match="DEFAULT_ADMIN_ROLE"):
        c.aggregator.grant_role("AGGREGATOR_ROLE", c.outsider.sender_address)


def test_double_registration_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    with pytest.raises(LedgerReplayError, match="AlreadyRegistered"):
        c.admin.register(c.participants[0].sender_address, c.digest("another key"))
    with pytest.raises(LedgerInputError, match="InvalidIdentityKey"):
        c.admin.register(c.outsider.sender_address, b"\x00" * 32)


# ----------------------------------------------------------------------------- deadlines


def test_commit_and_advert_after_deadline_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    c.open_round(1)
    c.pass_deadline(1)
    with pytest.raises(LedgerDeadlineError, match="DeadlinePassed"):
        c.commit(alice, 1)
    with pytest.raises(LedgerDeadlineError, match="DeadlinePassed"):
        c.advertise(alice, 1)
    assert not c.admin.member(1, alice.sender_address).committed
    assert c.admin.epsilon_spent(alice.sender_address) == 0


def test_shares_after_unmask_deadline_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    c.open_round(1, [alice])
    c.commit(alice, 1)
    c.aggregator.post_survivors(1, [alice.sender_address], [])
    c.pass_deadline(1, "unmask")
    with pytest.raises(LedgerDeadlineError, match="DeadlinePassed"):
        alice.post_shares(1, c.digest("shares"))


def test_survivors_wait_for_commits_or_deadline(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    c.open_round(1, [alice, bob])
    c.commit(alice, 1)
    with pytest.raises(LedgerDeadlineError, match="CommitPhaseNotOver") as refused:
        c.aggregator.post_survivors(1, [alice.sender_address], [])
    assert refused.value.error_args["waitingFor"] == bob.sender_address
    c.pass_deadline(1)
    c.aggregator.post_survivors(1, [alice.sender_address], [])  # bob never became active


# ----------------------------------------------------------------------------- once only


def test_double_commit_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    c.open_round(1)
    c.commit(alice, 1, epsilon=1.0)
    with pytest.raises(LedgerReplayError, match="AlreadyCommitted"):
        c.commit(alice, 1, epsilon=1.5)
    assert c.admin.member(1, alice.sender_address).cumulative_epsilon == epsilon_to_fixed(1.0)


def test_double_key_advert_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    c.open_round(1)
    c.advertise(alice, 1)
    with pytest.raises(LedgerReplayError, match="KeysAlreadyAdvertised"):
        alice.advertise_keys(
            1,
            encryption_key=c.digest("c2"),
            masking_key=c.digest("s2"),
            seed_commitment=c.digest("b2"),
        )
    assert c.admin.key_adverts(1)[alice.sender_address].encryption_key != c.digest("c2")


def test_keys_cannot_appear_after_commit(consortium) -> None:  # type: ignore[no-untyped-def]
    """The masked input and the share tree were made with the keys known at commit time;
    a client that committed without keys (or with them) cannot advertise keys afterwards."""
    c = consortium
    alice = c.participants[0]
    c.open_round(1)
    c.commit(alice, 1)
    with pytest.raises(LedgerStateError, match=r"KeysAfterCommit\(roundId=1"):
        c.advertise(alice, 1)
    record = c.admin.member(1, alice.sender_address)
    assert record.committed and not record.advertised and record.key_advert is None
    assert alice.sender_address not in c.admin.key_adverts(1)
    assert "KeysAdvertised" not in [e.name for e in c.admin.round_events(1)]


def test_double_shares_and_non_survivor_shares_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    c.open_round(1, [alice, bob])
    c.commit(alice, 1)
    c.commit(bob, 1)
    c.aggregator.post_survivors(1, [alice.sender_address], [bob.sender_address])
    alice.post_shares(1, c.digest("shares"))
    with pytest.raises(LedgerReplayError, match="SharesAlreadyPosted"):
        alice.post_shares(1, c.digest("other shares"))
    with pytest.raises(LedgerAccessError, match="NotASurvivor"):
        bob.post_shares(1, c.digest("shares"))


def test_double_reward_claim_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    c.open_round(1, [alice])
    c.commit(alice, 1)
    c.aggregator.post_survivors(1, [alice.sender_address], [])
    with pytest.raises(LedgerStateError, match="WrongPhase"):
        alice.claim_reward(1)  # nothing aggregated yet
    c.aggregator.post_aggregate(
        1,
        aggregate_cid=c.digest("cid"),
        aggregate_hash=c.digest("h"),
        included=[alice.sender_address],
    )
    alice.claim_reward(1)
    with pytest.raises(LedgerReplayError, match="RewardAlreadyClaimed"):
        alice.claim_reward(1)
    assert alice.reward_balance(alice.sender_address) == c.reward


def test_survivor_set_posted_twice_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    c.open_round(1, [alice, bob])
    c.commit(alice, 1)
    c.commit(bob, 1)
    c.aggregator.post_survivors(1, [alice.sender_address], [bob.sender_address])
    with pytest.raises(LedgerStateError, match="WrongPhase"):
        c.aggregator.post_survivors(1, [alice.sender_address, bob.sender_address], [])
    assert c.admin.survivor_set(1) == ([alice.sender_address], [bob.sender_address])


def test_aggregate_posted_twice_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    c.open_round(1, [alice, bob])
    c.commit(alice, 1)
    c.commit(bob, 1)
    c.aggregator.post_survivors(1, [alice.sender_address, bob.sender_address], [])
    c.aggregator.post_aggregate(
        1,
        aggregate_cid=c.digest("cid"),
        aggregate_hash=c.digest("h"),
        included=[alice.sender_address],
    )
    with pytest.raises(LedgerStateError, match=r"WrongPhase\(roundId=1, expected=UNMASKING"):
        c.aggregator.post_aggregate(
            1,
            aggregate_cid=c.digest("other cid"),
            aggregate_hash=c.digest("other h"),
            included=[alice.sender_address, bob.sender_address],
        )
    info = c.admin.round_info(1)
    assert (info.aggregate_cid, info.aggregate_hash) == (c.digest("cid"), c.digest("h"))
    assert not c.admin.member(1, bob.sender_address).included
    assert [e.name for e in c.admin.round_events(1)].count("AggregatePosted") == 1


def test_aggregate_includes_only_distinct_survivors(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    c.open_round(1, [alice, bob])
    c.commit(alice, 1)
    c.commit(bob, 1)
    c.aggregator.post_survivors(1, [alice.sender_address], [bob.sender_address])
    kwargs = {"aggregate_cid": c.digest("cid"), "aggregate_hash": c.digest("h")}
    for included in ([bob.sender_address], [alice.sender_address, alice.sender_address]):
        with pytest.raises(LedgerAccessError, match="NotASurvivor"):
            c.aggregator.post_aggregate(1, included=included, **kwargs)


# ----------------------------------------------------------------------------- replay


def test_replayed_round_id_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    c.open_round(1)
    c.open_round(2)
    for old in (1, 2):
        with pytest.raises(LedgerReplayError, match=rf"RoundIdNotIncreasing\(roundId={old}"):
            c.open_round(old)
    assert c.admin.round_info(1).model_hash == c.digest("model 1")


def test_commit_to_finished_or_unknown_round_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    c.open_round(1, [alice, bob])
    c.commit(alice, 1)
    c.pass_deadline(1)
    c.aggregator.post_survivors(1, [alice.sender_address], [])
    c.open_round(2, [alice, bob])
    closed = r"WrongPhase\(roundId=1, expected=OPEN, actual=UNMASKING"
    with pytest.raises(LedgerStateError, match=closed):
        c.commit(bob, 1)  # a late commit replayed into the closed round
    with pytest.raises(LedgerStateError, match="UnknownRound"):
        bob.commit(7, blob_hash=c.digest("b"), share_root=c.digest("r"), cumulative_epsilon=1)
    assert c.admin.round_info(7).phase is Phase.NONE


# ----------------------------------------------------------------------------- privacy budget


def test_commit_above_epsilon_cap_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    c.open_round(1)
    with pytest.raises(LedgerBudgetError, match=r"EpsilonCapExceeded.*ε=3.5.*ε=3\)"):
        c.commit(alice, 1, epsilon=3.5)
    c.commit(alice, 1, epsilon=3.0)  # exactly at the cap is allowed


def test_decreasing_cumulative_epsilon_refused(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    c.open_round(1, [alice])
    c.commit(alice, 1, epsilon=2.0)
    c.aggregator.post_survivors(1, [alice.sender_address], [])
    c.open_round(2, [alice])
    with pytest.raises(LedgerBudgetError, match="EpsilonDecreased") as refused:
        c.commit(alice, 2, epsilon=0.5)  # a per-round ε instead of the cumulative one
    assert refused.value.error_args["recorded"] == epsilon_to_fixed(2.0)
    c.commit(alice, 2, epsilon=2.0)  # no new spend is fine


# ----------------------------------------------------------------------------- partition


@pytest.mark.parametrize(
    ("survivors", "dropped", "offender"),
    [
        ([0, 1], [], 2),  # carol (committed) and dave (keys) left out: carol named first
        ([0, 1, 2], [], 3),  # dave advertised keys: he must be listed as dropped
        ([0, 1], [3, 3], 3),  # dave listed twice (carol missing)
        ([0, 1, 2, 3], [3], 3),  # dave cannot survive: he never committed
        ([0, 1, 3], [2], 3),  # dave advertised but never committed: cannot survive
        ([0, 1, 2], [0], 0),  # alice in both sets (dave missing)
        ([0, 1, 2], [4], 4),  # erin was listed but never active
        ([0, 1, 2], [3, 5], 5),  # the outsider was never even in the round
        ([0, 1, 2, 5], [3], 5),  # ... nor can it survive
        ([0, 0, 2], [3], 0),  # alice twice
        ([0, 1], [2, 3], None),  # the valid partition, for contrast
    ],
)
def test_survivors_must_partition_active_participants(  # type: ignore[no-untyped-def]
    consortium, survivors, dropped, offender
) -> None:
    c = consortium
    alice, bob, carol, dave, _erin = c.participants
    c.open_round(1)
    for p in (alice, bob, carol):
        c.commit(p, 1)
    c.advertise(dave, 1)
    c.pass_deadline(1)
    everyone = [*c.addresses, c.outsider.sender_address]  # index 5: never in the round
    call = lambda: c.aggregator.post_survivors(  # noqa: E731
        1, [everyone[i] for i in survivors], [everyone[i] for i in dropped]
    )
    if offender is None:
        call()
        assert c.admin.round_info(1).phase is Phase.UNMASKING
        return
    with pytest.raises(LedgerPartitionError, match="NotAPartition") as refused:
        call()
    assert refused.value.error_args["offender"] == everyone[offender]
    assert c.admin.round_info(1).phase is Phase.OPEN
    assert c.admin.survivor_set(1) == ([], [])  # no mark of the refused call survives


# ----------------------------------------------------------------------------- bad shares


def test_bad_share_report_needs_a_failing_proof(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    c.open_round(1, [alice, bob])
    c.commit(alice, 1)
    c.commit(bob, 1)
    c.aggregator.post_survivors(1, [alice.sender_address, bob.sender_address], [])
    bob.post_shares(1, c.digest("bob's revealed shares"))
    tree = c.share_tree(alice, 1)
    a, b = alice.sender_address, bob.sender_address
    honest = c.share_hashes(a, b)  # alice's shares for bob, as her committed tree holds them
    proof = tree.proof(alice.share_leaf(1, owner=a, holder=b, **honest))
    with pytest.raises(LedgerStateError, match="ShareProofValid"):
        c.validator.report_bad_share(1, owner=a, holder=b, proof=proof, **honest)
    with pytest.raises(LedgerAccessError, match="VALIDATOR_ROLE"):
        alice.report_bad_share(1, owner=a, holder=b, proof=proof, **honest)
    with pytest.raises(LedgerStateError, match="SharesNotPosted"):
        c.validator.report_bad_share(1, owner=b, holder=a, proof=proof, **honest)

    forged = {**honest, "b_share_hash": c.digest("a share bob made up")}
    receipt = c.validator.report_bad_share(1, owner=a, holder=b, proof=proof, **forged)
    (event,) = [e for e in receipt.events if e.name == "BadShareReported"]
    assert event.args["holder"] == b and event.args["reporter"] == c.validator.sender_address
    # The auditor finds the holder's revealed-shares blob through its SharesPosted event.
    assert c.admin.member(1, b).shares_blob_hash == c.digest("bob's revealed shares")
    assert c.admin.bad_share_reports(b) == 1
    with pytest.raises(LedgerReplayError, match="AlreadyReported"):
        c.aggregator.report_bad_share(1, owner=a, holder=b, proof=proof, **forged)


# ----------------------------------------------------------------------------- local checks


def test_malformed_arguments_refused_before_sending(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    with pytest.raises(LedgerInputError, match="blob_hash must be exactly 32 bytes"):
        alice.commit(1, blob_hash=b"short", share_root=c.digest("r"), cumulative_epsilon=1)
    with pytest.raises(LedgerInputError, match=r"2\^64"):
        alice.commit(1, blob_hash=c.digest("b"), share_root=c.digest("r"), cumulative_epsilon=-1)
    with pytest.raises(LedgerInputError, match="cannot grant 'PARTICIPANT_ROLE'"):
        c.admin.grant_role("PARTICIPANT_ROLE", alice.sender_address)
