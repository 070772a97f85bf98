"""One full round on the embedded chain, as the design's §3 runs it, and its audit trail."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3.types import Wei

from secagg.errors import (
    LedgerAccessError,
    LedgerDeadlineError,
    LedgerInputError,
    LedgerPartitionError,
    LedgerReplayError,
)
from secagg.ledger import Phase, epsilon_from_fixed, epsilon_to_fixed


def test_full_round_happy_path(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob, carol, dave, erin = c.participants
    opened = c.open_round(1)
    assert c.aggregator.round_info(1).phase is Phase.OPEN

    # Keys go on chain; every client reads its neighbours' keys from the chain.
    for p in (alice, bob, carol, dave):  # erin drops out before advertising
        c.advertise(p, 1)
    adverts = erin.key_adverts(1)  # read from the KeysAdvertised events
    assert list(adverts) == c.addresses[:4]
    assert adverts[bob.sender_address].masking_key == c.digest(f"s {bob.sender_address} 1")

    # Commits with share roots and cumulative ε; dave advertised but never commits.
    commits = [c.commit(p, 1, epsilon=e) for p, e in ((alice, 1.0), (bob, 1.25), (carol, 0.5))]
    assert alice.epsilon_spent(alice.sender_address) == epsilon_to_fixed(1.0)
    assert epsilon_from_fixed(c.admin.epsilon_spent(bob.sender_address)) == 1.25

    # After the commit deadline the aggregator posts the partition of the active clients:
    # committed survivors, and dave (keys but no commit) as dropped.
    c.pass_deadline(1)
    survivors = [alice.sender_address, bob.sender_address, carol.sender_address]
    posted = c.aggregator.post_survivors(1, survivors, [dave.sender_address])
    assert alice.survivor_set(1) == (survivors, [dave.sender_address])

    # Survivors reveal; each revealed share checks against the owner's committed root.
    shares = [
        p.post_shares(1, c.digest(f"revealed by {p.sender_address}")) for p in (alice, bob, carol)
    ]
    for owner in (alice, bob, carol):
        tree = c.share_tree(owner, 1)
        for holder in (alice, bob, carol, dave):
            leaf = c.leaf(owner, 1, holder.sender_address)
            assert c.validator.verify_share(1, owner.sender_address, leaf, tree.proof(leaf))

    # Aggregate, then rewards for the included participants only.
    aggregate = c.aggregator.post_aggregate(
        1, aggregate_cid=c.digest("cid"), aggregate_hash=c.digest("sum"), included=survivors
    )
    info = c.aggregator.round_info(1)
    assert info.phase is Phase.AGGREGATED and info.aggregate_hash == c.digest("sum")
    claims = [p.claim_reward(1) for p in (alice, bob, carol)]
    assert [alice.reward_balance(p.sender_address) for p in c.participants] == [
        c.reward,
        c.reward,
        c.reward,
        0,
        0,
    ]
    with pytest.raises(LedgerAccessError, match="NotIncluded"):
        dave.claim_reward(1)

    # The audit trail: every step of round 1, in chain order, with its arguments.
    trail = c.validator.round_events(1)
    names = [e.name for e in trail]
    assert names[0] == "RoundOpened" and names[-1] == "RewardClaimed"
    assert names.count("KeysAdvertised") == 4 and names.count("Committed") == 3
    assert names.count("SharesPosted") == 3 and names.count("RewardClaimed") == 3
    assert all(e.round_id == 1 for e in trail)
    committed = {
        e.args["participant"]: e.args["cumulativeEpsilon"] for e in trail if e.name == "Committed"
    }
    assert committed[bob.sender_address] == 1_250_000
    # State keeps the flags and roots the contract checks; the rest comes from the events.
    info = c.validator.round_info(1)
    assert (info.participant_count, info.active_count, info.committed_count) == (5, 4, 3)
    assert info.model_hash == c.digest("model 1") and info.config_hash == c.digest("config")
    record = c.validator.member(1, bob.sender_address)
    assert record.blob_hash == c.digest(f"blob {bob.sender_address} 1")
    assert record.share_root == c.share_tree(bob, 1).root
    assert record.cumulative_epsilon == 1_250_000
    assert record.shares_blob_hash == c.digest(f"revealed by {bob.sender_address}")
    assert (record.survivor, record.included, record.reward_claimed) == (True, True, True)
    assert c.validator.member(1, dave.sender_address).dropped
    survivors_event = next(e for e in trail if e.name == "SurvivorsPosted")
    assert survivors_event.args == {
        "roundId": 1,
        "survivors": survivors,
        "dropped": [dave.sender_address],
    }

    # Every operation's gas is measurable.
    for receipt in (opened, *commits, posted, *shares, aggregate, *claims):
        assert receipt.gas_used > 21_000
    assert c.admin.deployment is not None and c.admin.deployment.gas_used > 1_000_000


def test_second_round_accumulates_epsilon_and_sees_only_its_events(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice, bob = c.participants[:2]
    for round_id, epsilon in ((1, 1.0), (2, 2.0)):
        c.open_round(round_id, [alice, bob])
        for p in (alice, bob):
            c.commit(p, round_id, epsilon=epsilon)
        c.aggregator.post_survivors(round_id, [alice.sender_address, bob.sender_address], [])
    assert alice.epsilon_spent(alice.sender_address) == epsilon_to_fixed(2.0)
    assert {e.round_id for e in c.admin.round_events(2)} == {2}
    assert [e.name for e in c.admin.round_events(2)] == [
        "RoundOpened",
        "Committed",
        "Committed",
        "SurvivorsPosted",
    ]
    assert c.admin.last_round_id == 2


def test_penalty_is_deducted_from_the_next_reward(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0]
    c.validator.penalize(alice.sender_address, c.reward // 4)
    c.admin.penalize(alice.sender_address, c.reward)  # admin may penalize too
    c.open_round(1, [alice])
    c.commit(alice, 1)
    c.aggregator.post_survivors(1, [alice.sender_address], [])
    c.aggregator.post_aggregate(
        1,
        aggregate_cid=c.digest("cid"),
        aggregate_hash=c.digest("sum"),
        included=[alice.sender_address],
    )
    receipt = alice.claim_reward(1)
    claimed = next(e for e in receipt.events if e.name == "RewardClaimed")
    assert claimed.args["minted"] == 0 and claimed.args["penaltySettled"] == c.reward
    assert alice.penalty_outstanding(alice.sender_address) == c.reward // 4
    assert alice.reward_balance(alice.sender_address) == 0


def test_penalize_needs_admin_or_validator(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    for caller in (c.participants[1], c.aggregator, c.outsider):
        with pytest.raises(LedgerAccessError, match="VALIDATOR_ROLE"):
            caller.penalize(c.participants[0].sender_address, 5)
    with pytest.raises(LedgerInputError, match="ZeroPenalty"):
        c.validator.penalize(c.participants[0].sender_address, 0)


def test_registration_records_identity_key_and_role(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    alice = c.participants[0].sender_address
    assert c.outsider.identity_key(alice) == c.digest(f"ed25519 {alice}")
    assert c.outsider.has_role("PARTICIPANT_ROLE", alice)
    assert not c.outsider.has_role("PARTICIPANT_ROLE", c.outsider.sender_address)
    assert c.outsider.has_role("DEFAULT_ADMIN_ROLE", c.admin.sender_address)
    assert c.outsider.epsilon_cap == c.cap and c.outsider.reward_per_round == c.reward


def test_locally_signed_transactions(consortium) -> None:  # type: ignore[no-untyped-def]
    """A hospital signs with its own key (eth_account); the node holds nothing of it."""
    c = consortium
    key = Account.create()
    c.w3.eth.send_transaction(
        {"from": c.admin.sender_address, "to": key.address, "value": Wei(10**18)}
    )
    c.admin.register(key.address, c.digest("hospital key"))
    hospital = c.admin.as_sender(key)
    c.open_round(1, [hospital])
    receipt = c.commit(hospital, 1)
    (committed,) = [e for e in receipt.events if e.name == "Committed"]
    assert committed.args["participant"] == key.address
    with pytest.raises(LedgerReplayError, match="AlreadyCommitted"):
        c.commit(hospital, 1)


def test_rounds_spanning_several_bitmap_words(consortium) -> None:  # type: ignore[no-untyped-def]
    """Round membership is a bitmap, 32 participants per storage word: a round whose
    participants sit in different words behaves exactly like a compact one."""
    c = consortium
    fillers = [Account.create().address for _ in range(40)]  # registration indices 5..44
    for address in fillers:
        c.admin.register(address, c.digest(f"ed25519 {address}"))
    key = Account.create()
    c.w3.eth.send_transaction(
        {"from": c.admin.sender_address, "to": key.address, "value": Wei(10**18)}
    )
    c.admin.register(key.address, c.digest("far away hospital"))  # index 45: second word
    assert c.admin.participant_count() == 46
    hospital = c.admin.as_sender(key)
    alice = c.participants[0]
    a, h, idle = alice.sender_address, key.address, fillers[30]  # words 0, 1, 1
    c.open_round(1, [hospital, alice, c.admin.as_sender(idle)])
    assert c.admin.round_participants(1) == [a, idle, h]  # registration order
    c.commit(hospital, 1)
    c.commit(alice, 1)
    with pytest.raises(LedgerDeadlineError, match="CommitPhaseNotOver") as waiting:
        c.aggregator.post_survivors(1, [a, h], [])
    assert waiting.value.error_args["waitingFor"] == idle
    c.pass_deadline(1)
    with pytest.raises(LedgerPartitionError, match="NotAPartition") as left_out:
        c.aggregator.post_survivors(1, [a], [])
    assert left_out.value.error_args["offender"] == h
    c.aggregator.post_survivors(1, [h], [a])
    assert c.admin.survivor_set(1) == ([h], [a])
    info = c.admin.round_info(1)
    assert (info.participant_count, info.active_count, info.committed_count) == (3, 2, 2)
    hospital.post_shares(1, c.digest("shares"))
    c.aggregator.post_aggregate(
        1, aggregate_cid=c.digest("cid"), aggregate_hash=c.digest("sum"), included=[h]
    )
    hospital.claim_reward(1)
    assert hospital.reward_balance(h) == c.reward
    with pytest.raises(LedgerAccessError, match="NotIncluded"):
        alice.claim_reward(1)
