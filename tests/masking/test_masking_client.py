"""The client state machine: what it sends, and every server message it must refuse.

A refused message raises a ProtocolError subclass and leaves the client exactly where it
was, so each test also checks that the honest message is still accepted afterwards.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.honest_round import HonestRound

from secagg.crypto import shamir
from secagg.errors import (
    BelowThresholdError,
    PhaseError,
    ProtocolError,
    QuantizationError,
    ReplayError,
    TamperedMessageError,
    UnknownSenderError,
    UnmaskingPolicyError,
    WrongRoundError,
)
from secagg.masking.client import MaskingClient
from secagg.masking.messages import (
    AdvertiseKeys,
    AdvertiseKeysRequest,
    KeyDirectory,
    MaskedInput,
    PublicKeys,
    ShareDelivery,
    ShareKeys,
    UnmaskingRequest,
    UnmaskingResponse,
    decode_server_message,
)
from secagg.masking.params import SERVER_ID, MaskingParams

ROUND = 7


def Round(n: int = 6, neighbors: int = 0, threshold: float = 0.6) -> HonestRound:
    """The shared honest round with this module's round id, dimension and input seed."""
    return HonestRound(n, neighbors, threshold, round_id=ROUND, dim=8, seed=0, graph_seed=b"g")


def test_client_runs_the_four_phases_in_order() -> None:
    r = Round()
    first = r.clients[0].handle(r.outbox.pop(0))
    assert [type(m) for m in first] == [AdvertiseKeys]
    assert (first[0].round_id, first[0].sender) == (ROUND, 0)
    r.server.receive(first[0])
    for phase in ("share_keys", "masked_input", "unmasking", "finished"):
        r.advance()
        assert r.clients[0].phase == phase


def test_masked_input_hides_the_input_and_stays_in_range() -> None:
    r = Round(neighbors=4, n=8)
    r.advance()
    r.advance()
    reply = r.clients[3].handle(r.outbox[3])[0]
    assert isinstance(reply, MaskedInput)
    assert reply.masked.dtype == np.uint32 and reply.masked.shape == (8,)
    assert not np.array_equal(reply.masked, r.inputs[3])


def test_wrong_round_message_is_rejected() -> None:
    r = Round()
    stale = dataclasses.replace(r.outbox[0], round_id=ROUND - 1)
    with pytest.raises(WrongRoundError, match="round 6"):
        r.clients[0].handle(stale)
    assert r.clients[0].handle(r.outbox[0])  # state unchanged: the real one is accepted


def test_message_from_an_unknown_sender_is_rejected() -> None:
    r = Round()
    forged = dataclasses.replace(r.outbox[0], sender=4)
    with pytest.raises(UnknownSenderError, match="not the server"):
        r.clients[0].handle(forged)


def test_key_directory_listing_a_non_neighbour_is_rejected() -> None:
    r = Round(n=10, neighbors=4, threshold=0.6)
    directory = r.advance()[0]
    assert isinstance(directory, KeyDirectory)
    stranger = next(c for c in range(1, 10) if c not in r.params.graph.neighbors(0))
    forged = dataclasses.replace(
        directory, keys={**directory.keys, stranger: r.server._keys[stranger]}
    )
    with pytest.raises(UnknownSenderError, match="not a neighbour"):
        r.clients[0].handle(forged)
    assert r.clients[0].handle(directory)


def test_shares_from_a_non_neighbour_are_rejected() -> None:
    r = Round(n=10, neighbors=4)
    r.advance()
    delivery = r.advance()[0]
    assert isinstance(delivery, ShareDelivery)
    stranger = next(c for c in range(1, 10) if c not in r.params.graph.neighbors(0))
    forged = dataclasses.replace(delivery, ciphertexts={**delivery.ciphertexts, stranger: b"x"})
    with pytest.raises(UnknownSenderError, match="not a neighbour"):
        r.clients[0].handle(forged)


def test_replayed_message_is_rejected() -> None:
    r = Round()
    request = r.outbox[0]
    reply = r.clients[0].handle(request)
    with pytest.raises(ReplayError, match="already accepted"):
        r.clients[0].handle(request)
    r.server.receive(reply[0])
    r.clients[0].handle(r.advance(silent=frozenset({0}))[0])
    assert r.clients[0].phase == "masked_input"
    with pytest.raises(ReplayError):  # an old phase's message is still a replay
        r.clients[0].handle(request)


def test_message_out_of_phase_is_rejected() -> None:
    r = Round()
    early = UnmaskingRequest(ROUND, SERVER_ID, 0, 6, tuple(range(6)), ())
    with pytest.raises(PhaseError, match="advertise_keys"):
        r.clients[0].handle(early)


def test_misaddressed_message_is_rejected() -> None:
    r = Round()
    with pytest.raises(ProtocolError, match="addressed to client 1"):
        r.clients[0].handle(r.outbox[1])


def test_malformed_bytes_are_rejected() -> None:
    r = Round()
    data = r.outbox[0].to_bytes()
    with pytest.raises(TamperedMessageError, match="malformed"):
        decode_server_message(data[:-3])


def test_tampered_share_ciphertext_is_rejected() -> None:
    r = Round()
    r.advance()
    delivery = r.advance()[0]
    assert isinstance(delivery, ShareDelivery)
    sender = min(delivery.ciphertexts)
    flipped = bytearray(delivery.ciphertexts[sender])
    flipped[20] ^= 0x40
    tampered = dataclasses.replace(
        delivery, ciphertexts={**delivery.ciphertexts, sender: bytes(flipped)}
    )
    with pytest.raises(TamperedMessageError, match=f"from client {sender} to client 0"):
        r.clients[0].handle(tampered)
    assert r.clients[0].handle(delivery)  # the genuine bundle still works


def test_share_ciphertext_redirected_to_another_client_is_rejected() -> None:
    # The associated data binds (round, sender, recipient): the server cannot hand client 0
    # a bundle that client 2 addressed to client 1.
    r = Round(n=5, neighbors=4)
    r.advance()
    deliveries = r.advance()
    to_one = deliveries[1]
    assert isinstance(to_one, ShareDelivery)
    to_zero = deliveries[0]
    assert isinstance(to_zero, ShareDelivery)
    swapped = dataclasses.replace(
        to_zero, ciphertexts={**to_zero.ciphertexts, 2: to_one.ciphertexts[2]}
    )
    with pytest.raises(TamperedMessageError):
        r.clients[0].handle(swapped)


def test_parameter_mismatch_is_rejected() -> None:
    r = Round()
    request = r.outbox[0]
    assert isinstance(request, AdvertiseKeysRequest)
    other = dataclasses.replace(request, params_digest=b"\x00" * 32)
    with pytest.raises(ProtocolError, match="digest mismatch"):
        r.clients[0].handle(other)


def test_low_order_public_key_in_directory_is_rejected() -> None:
    r = Round()
    directory = r.advance()[0]
    assert isinstance(directory, KeyDirectory)
    peer = min(directory.keys)
    bad = PublicKeys(bytes(32), directory.keys[peer].masking)
    forged = dataclasses.replace(directory, keys={**directory.keys, peer: bad})
    with pytest.raises(TamperedMessageError, match="low-order"):
        r.clients[0].handle(forged)


def test_repeated_public_keys_are_rejected() -> None:
    r = Round()
    directory = r.advance()[0]
    assert isinstance(directory, KeyDirectory)
    a, b = sorted(directory.keys)[:2]
    forged = dataclasses.replace(directory, keys={**directory.keys, b: directory.keys[a]})
    with pytest.raises(ProtocolError, match="repeats a public key"):
        r.clients[0].handle(forged)


def test_client_refuses_to_share_with_too_small_a_neighbourhood() -> None:
    r = Round(n=6, threshold=0.6)  # complete graph, t = t_s = 4
    directory = r.advance()[0]
    assert isinstance(directory, KeyDirectory)
    few = dict(sorted(directory.keys.items())[:2])  # self + 2 < 4
    with pytest.raises(BelowThresholdError, match="neighbourhood"):
        r.clients[0].handle(dataclasses.replace(directory, keys=few))


def _at_unmasking(r: Round) -> UnmaskingRequest:
    r.advance()
    r.advance()
    request = r.advance()[0]
    assert isinstance(request, UnmaskingRequest)
    return request


def test_request_naming_a_client_both_survivor_and_dropped_is_refused() -> None:
    r = Round(n=6)
    request = _at_unmasking(r)
    malicious = dataclasses.replace(request, dropped=(3,))  # 3 is also a survivor
    with pytest.raises(UnmaskingPolicyError, match=r"\[3\] both as survivors and as dropped"):
        r.clients[0].handle(malicious)
    reply = r.clients[0].handle(request)[0]  # the consistent request is still answered
    assert isinstance(reply, UnmaskingResponse) and not reply.key_shares


def test_request_with_fewer_than_t_survivors_is_refused() -> None:
    r = Round(n=6, threshold=0.6)
    request = _at_unmasking(r)
    few = dataclasses.replace(request, survivor_count=3, survivors=(0, 1, 2), dropped=())
    with pytest.raises(BelowThresholdError, match="fewer than the threshold"):
        r.clients[0].handle(few)
    inconsistent = dataclasses.replace(request, survivor_count=2)
    with pytest.raises(ProtocolError, match="claims 2 survivors but lists"):
        r.clients[0].handle(inconsistent)


def test_request_calling_this_client_dropped_is_refused() -> None:
    r = Round(n=6)
    request = _at_unmasking(r)
    survivors = tuple(c for c in request.survivors if c != 0)
    forged = dataclasses.replace(request, survivors=survivors, dropped=(0,))
    with pytest.raises(UnmaskingPolicyError, match="client 0 sent its masked input"):
        r.clients[0].handle(forged)


def test_request_naming_clients_outside_the_neighbourhood_is_refused() -> None:
    r = Round(n=10, neighbors=4)
    request = _at_unmasking(r)
    stranger = next(c for c in range(1, 10) if c not in r.params.graph.neighbors(0))
    for outsider in (99, stranger):
        with pytest.raises(UnknownSenderError, match="outside client 0's neighbourhood"):
            r.clients[0].handle(dataclasses.replace(request, dropped=(outsider,)))


def test_unmasking_reveals_seed_shares_of_survivors_and_key_shares_of_dropped_only() -> None:
    r = Round(n=6, threshold=0.6)
    r.advance()
    r.advance()
    request = r.advance(silent=frozenset({5}))[0]  # 5 drops before its masked input
    assert isinstance(request, UnmaskingRequest)
    assert request.dropped == (5,) and 5 not in request.survivors
    reply = r.clients[0].handle(request)[0]
    assert isinstance(reply, UnmaskingResponse)
    assert set(reply.seed_shares) == set(request.survivors)  # incl. its own b-share
    assert set(reply.key_shares) == {5}
    assert all(len(v) == shamir.VALUE_BYTES for v in reply.seed_shares.values())
    assert r.clients[0].phase == "finished"
    with pytest.raises(ReplayError):  # one answer per round, ever
        r.clients[0].handle(request)


def test_client_ids_must_belong_to_the_round() -> None:
    params = MaskingParams.create(range(3), 4)
    with pytest.raises(UnknownSenderError):
        MaskingClient(7, params, np.zeros(4, np.uint32))


@pytest.mark.parametrize(
    ("vector", "match"),
    [
        (np.zeros(5, np.uint32), "length dim"),
        (np.zeros(4, np.float32), "integers"),
        (np.array([0, 1, 2, 2**20], np.uint32), r"\[0, 2\^20\)"),
        (np.array([0, 1, 2, -1], np.int64), r"\[0, 2\^20\)"),
    ],
)
def test_inputs_must_be_quantized_vectors_in_range(vector: np.ndarray, match: str) -> None:
    params = MaskingParams.create(range(3), 4, bits=20)
    with pytest.raises(QuantizationError, match=match):
        MaskingClient(0, params, vector)


def test_share_keys_message_has_one_bundle_per_neighbour() -> None:
    r = Round(n=10, neighbors=4)
    directory = r.advance()[0]
    reply = r.clients[0].handle(directory)[0]
    assert isinstance(reply, ShareKeys)
    assert set(reply.ciphertexts) == set(r.params.graph.neighbors(0))
