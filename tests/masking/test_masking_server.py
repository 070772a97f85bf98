"""The server state machine: routing, the messages it must refuse, and when it aborts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.honest_round import HonestRound

from secagg.errors import (
    BelowThresholdError,
    PhaseError,
    ProtocolError,
    ReplayError,
    TamperedMessageError,
    UnknownSenderError,
    WrongRoundError,
)
from secagg.masking.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    KeyDirectory,
    MaskedInput,
    PublicKeys,
    ShareDelivery,
    ShareKeys,
    UnmaskingRequest,
    UnmaskingResponse,
    decode_client_message,
)
from secagg.masking.server import MaskingServer

ROUND = 3


def Round(
    n: int = 6, neighbors: int = 0, threshold: float = 0.6, *, signed: bool = True
) -> HonestRound:
    """The shared honest round with this module's round id, dimension and input seed."""
    return HonestRound(n, neighbors, threshold, round_id=ROUND, dim=5, seed=1, signed=signed)


def test_server_routes_keys_and_shares_only_between_neighbours() -> None:
    r = Round(n=12, neighbors=4)
    directories = r.advance()
    for client, message in directories.items():
        assert isinstance(message, KeyDirectory)
        assert set(message.keys) == r.params.graph.neighbors(client)
    deliveries = r.advance()
    for client, message in deliveries.items():
        assert isinstance(message, ShareDelivery)
        assert set(message.ciphertexts) == r.params.graph.neighbors(client)
    # Every survivor is shown the same whole survivor set to sign, then the signatures.
    checks = r.advance(silent=frozenset({0}))
    assert set(checks) == set(range(1, 12))
    for message in checks.values():
        assert isinstance(message, ConsistencyRequest)
        assert message.survivors == tuple(range(1, 12))
    requests = r.advance(silent=frozenset({1}))
    assert set(requests) == set(range(2, 12))
    for message in requests.values():
        assert isinstance(message, UnmaskingRequest)
        assert message.survivors == tuple(range(1, 12))  # 1's input is in the sum
        # the aggregate of every client that signed (1 did not): t or more is what it needs
        assert message.signers == tuple(range(2, 12)) and len(message.signature) == 96


def test_honest_round_outputs_the_sum() -> None:
    r = Round()
    for _ in r.params.phases:
        r.advance()
    expected = sum(r.inputs[c].astype(np.uint64) for c in range(6)) % 2**32
    np.testing.assert_array_equal(r.server.result.total, expected)
    assert r.server.result.included == list(range(6))
    assert r.server.phase == "finished"


def test_wrong_round_message_is_rejected() -> None:
    r = Round()
    reply = r.replies()[0]
    with pytest.raises(WrongRoundError, match="round 4"):
        r.server.receive(dataclasses.replace(reply, round_id=ROUND + 1))
    r.server.receive(reply)  # nothing was recorded: the genuine message is accepted


def test_message_from_an_unknown_sender_is_rejected() -> None:
    r = Round()
    reply = r.replies()[0]
    with pytest.raises(UnknownSenderError, match="not a client of this round"):
        r.server.receive(dataclasses.replace(reply, sender=42))


def test_replayed_message_is_rejected() -> None:
    r = Round()
    reply = r.replies()[0]
    r.server.receive(reply)
    with pytest.raises(ReplayError, match="already sent"):
        r.server.receive(reply)


def test_malformed_bytes_are_rejected() -> None:
    r = Round()
    data = bytearray(r.replies()[0].to_bytes())
    data[1] = 99  # unknown message type
    with pytest.raises(TamperedMessageError, match="unknown message type"):
        decode_client_message(bytes(data))


def test_message_out_of_phase_is_rejected() -> None:
    r = Round()
    early = MaskedInput(ROUND, 0, 32, np.zeros(5, np.uint32))
    with pytest.raises(PhaseError, match="advertise_keys"):
        r.server.receive(early)


def test_late_message_from_a_dropped_client_is_rejected() -> None:
    r = Round()
    replies = r.replies()
    for client, reply in replies.items():
        if client != 5:
            r.server.receive(reply)
    r.outbox = r.server.close_phase()
    assert r.server.dropped["advertise_keys"] == [5]
    with pytest.raises(PhaseError, match="advertise_keys"):
        r.server.receive(replies[5])  # the deadline has passed
    late = ShareKeys(ROUND, 5, {})
    with pytest.raises(PhaseError, match="dropped out"):
        r.server.receive(late)


def test_duplicated_or_low_order_public_keys_are_rejected() -> None:
    r = Round()
    replies = r.replies()
    r.server.receive(replies[0])
    reused = AdvertiseKeys(ROUND, 1, replies[0].keys)  # type: ignore[union-attr]
    with pytest.raises(ProtocolError, match="already used by client 0"):
        r.server.receive(reused)
    low_order = AdvertiseKeys(ROUND, 1, PublicKeys(bytes(32), b"\x09" + bytes(31)))
    with pytest.raises(TamperedMessageError, match="low-order"):
        r.server.receive(low_order)
    r.server.receive(replies[1])


def test_shares_addressed_to_a_non_neighbour_are_rejected() -> None:
    r = Round(n=10, neighbors=4)
    r.advance()
    reply = r.replies()[0]
    assert isinstance(reply, ShareKeys)
    stranger = next(c for c in range(1, 10) if c not in r.params.graph.neighbors(0))
    forged = dataclasses.replace(
        reply, ciphertexts={**reply.ciphertexts, stranger: next(iter(reply.ciphertexts.values()))}
    )
    with pytest.raises(UnknownSenderError, match="not one of its neighbours"):
        r.server.receive(forged)


def test_missing_or_malformed_share_bundles_are_rejected() -> None:
    r = Round()
    r.advance()
    reply = r.replies()[0]
    assert isinstance(reply, ShareKeys)
    first = min(reply.ciphertexts)
    missing = {k: v for k, v in reply.ciphertexts.items() if k != first}
    with pytest.raises(ProtocolError, match="no shares for neighbours"):
        r.server.receive(dataclasses.replace(reply, ciphertexts=missing))
    short = {**reply.ciphertexts, first: b"\x00" * 10}
    with pytest.raises(TamperedMessageError, match="share bundle"):
        r.server.receive(dataclasses.replace(reply, ciphertexts=short))
    r.server.receive(reply)


def test_masked_input_of_the_wrong_shape_is_rejected() -> None:
    r = Round()
    r.advance()
    r.advance()
    with pytest.raises(TamperedMessageError, match="dim = 5"):
        r.server.receive(MaskedInput(ROUND, 0, 32, np.zeros(6, np.uint32)))
    with pytest.raises(TamperedMessageError, match="bits = 32"):
        r.server.receive(MaskedInput(ROUND, 0, 16, np.zeros(5, np.uint32)))


def test_server_refuses_shares_it_did_not_ask_for() -> None:
    # A response carrying a key share of a survivor (or a b-share of a dropped client)
    # would let the server hold both secrets of one client: it is refused outright.
    r = Round()
    r.advance()
    r.advance()
    r.advance(silent=frozenset({5}))
    request = r.advance()[0]
    assert isinstance(request, UnmaskingRequest) and 5 not in request.survivors
    reply = r.replies()[0]
    assert isinstance(reply, UnmaskingResponse)
    value = next(iter(reply.key_shares.values()))
    greedy = dataclasses.replace(reply, key_shares={**reply.key_shares, 1: value})
    with pytest.raises(ProtocolError, match=r"key shares of \[1\]"):
        r.server.receive(greedy)
    greedy = dataclasses.replace(reply, seed_shares={**reply.seed_shares, 5: value})
    with pytest.raises(ProtocolError, match=r"b-shares of \[5\]"):
        r.server.receive(greedy)


def test_advertised_keys_need_a_mac_for_each_neighbour_and_no_one_else() -> None:
    r = Round(n=8, neighbors=4)
    reply = r.replies()[0]
    assert isinstance(reply, AdvertiseKeys)
    assert len(reply.tags) == len(r.params.graph.neighbors(0)) == 4
    for tags in (reply.tags[1:], (*reply.tags, bytes(16)), ()):
        with pytest.raises(ProtocolError, match="its 4 neighbours need one each"):
            r.server.receive(dataclasses.replace(reply, tags=tags))
    r.server.receive(reply)
    unsigned = Round(n=8, neighbors=4, signed=False)
    with pytest.raises(ProtocolError, match="none here"):
        unsigned.server.receive(dataclasses.replace(unsigned.replies()[0], tags=reply.tags))


def test_a_survivor_set_signature_on_another_set_is_left_out_of_the_quorum() -> None:
    r = Round()  # n = 6, t = 4
    r.advance()
    r.advance()
    checks = r.advance()
    lying = r.clients[0].handle(dataclasses.replace(checks[0], survivors=(0, 1, 2, 3, 4)))[0]
    with pytest.raises(TamperedMessageError, match="96 bytes"):
        r.server.receive(dataclasses.replace(lying, signature=b"\x01" * 64))
    r.server.receive(lying)  # a valid point: checked with the others at the deadline
    for c in range(1, 6):
        r.server.receive(r.clients[c].handle(checks[c])[0])
    requests = r.server.close_phase()
    assert r.server.invalid_signers == [0]
    assert all(m.signers == (1, 2, 3, 4, 5) for m in requests.values())
    assert r.clients[1].handle(requests[1])  # the quorum of the others verifies


def test_too_few_valid_survivor_set_signatures_abort_the_round() -> None:
    r = Round()  # n = 6, t = 4
    r.advance()
    r.advance()
    checks = r.advance()
    for c in range(6):
        shown = checks[c] if c > 2 else dataclasses.replace(checks[c], survivors=(0, 1, 2, 3, 4))
        r.server.receive(r.clients[c].handle(shown)[0])
    with pytest.raises(BelowThresholdError, match="3 valid signatures on the survivor set"):
        r.server.close_phase()
    assert r.server.invalid_signers == [0, 1, 2]


@pytest.mark.parametrize("phase", [0, 1, 2, 3, 4])
def test_too_few_clients_at_any_phase_abort_and_reveal_nothing(phase: int) -> None:
    r = Round(n=6, threshold=0.6)  # t = 4
    for _ in range(phase):
        r.advance()
    with pytest.raises(BelowThresholdError, match="3 clients"):
        r.advance(silent=frozenset({0, 1, 2}))
    assert r.server.phase == "finished"
    with pytest.raises(PhaseError, match="no result"):
        r.server.result  # noqa: B018
    with pytest.raises(PhaseError):
        r.server.close_phase()


def test_too_few_holders_in_one_neighbourhood_abort_the_round() -> None:
    # Globally 16 of 20 survive (t = 12), but client 0 and its 4 neighbours lose 3 of 5
    # holders: with t_s = 3, 0's self-mask could not be removed, so the round aborts.
    r = Round(n=20, neighbors=4, threshold=0.6)
    assert r.params.share_threshold == 3
    silent = frozenset(sorted(r.params.graph.neighbors(0))[:3])
    r.advance()
    with pytest.raises(BelowThresholdError, match="neighbourhood"):
        r.advance(silent=silent)


def test_start_only_once() -> None:
    r = Round()
    with pytest.raises(PhaseError, match="already started"):
        r.server.start()
    fresh = MaskingServer(r.params)
    with pytest.raises(PhaseError, match="not started"):
        fresh.receive(r.replies()[0])
