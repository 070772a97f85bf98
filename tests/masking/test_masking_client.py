"""The client state machine: what it sends, and every server message it must refuse.

A refused message raises a ProtocolError subclass and leaves the client exactly where it
was, so each test also checks that the honest message is still accepted afterwards.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.honest_round import HonestRound

from secagg.crypto import aggregate, shamir
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
    ConsistencyRequest,
    ConsistencyResponse,
    KeyDirectory,
    PublicKeys,
    ShareDelivery,
    ShareKeys,
    UnmaskingRequest,
    UnmaskingResponse,
    decode_server_message,
)
from secagg.masking.params import SERVER_ID, MaskingParams

ROUND = 7


def Round(
    n: int = 6, neighbors: int = 0, threshold: float = 0.6, *, signed: bool = True
) -> HonestRound:
    """The shared honest round with this module's round id, dimension and input seed."""
    return HonestRound(
        n, neighbors, threshold, round_id=ROUND, dim=8, seed=0, session=b"g", signed=signed
    )


@pytest.mark.parametrize(
    ("signed", "phases"),
    [
        (True, ("share_keys", "masked_input", "consistency_check", "unmasking", "finished")),
        (False, ("share_keys", "masked_input", "unmasking", "finished")),
    ],
    ids=["signed", "unsigned"],
)
def test_client_runs_its_phases_in_order(signed: bool, phases: tuple[str, ...]) -> None:
    r = Round(signed=signed)
    first = r.clients[0].handle(r.outbox.pop(0))
    assert [type(m) for m in first] == [AdvertiseKeys]
    assert (first[0].round_id, first[0].sender) == (ROUND, 0)
    # one MAC on its keys per neighbour in a signed round, none otherwise
    assert len(first[0].tags) == (len(r.params.graph.neighbors(0)) if signed else 0)
    r.server.receive(first[0])
    for phase in phases:
        r.advance()
        assert r.clients[0].phase == phase


def test_a_signed_round_needs_the_clients_own_identity_key() -> None:
    r = Round()
    with pytest.raises(ProtocolError, match="needs its own identity key"):
        MaskingClient(0, r.params, r.inputs[0], r.identities[1])
    with pytest.raises(ProtocolError, match="needs its own identity key"):
        MaskingClient(0, r.params, r.inputs[0])


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
    early = UnmaskingRequest(ROUND, SERVER_ID, 0, tuple(range(6)))
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


def test_a_relayed_key_the_owner_did_not_mac_for_this_client_is_rejected() -> None:
    # The server relays every public key: in a signed round it cannot swap in its own, nor
    # pass off the MAC the owner made for another neighbour, nor drop the MAC.
    r = Round()
    directory = r.advance()[0]
    assert isinstance(directory, KeyDirectory)
    peer = min(directory.keys)
    substituted = dataclasses.replace(
        directory.keys[peer], masking=r.server._keys[max(directory.keys)].masking
    )
    other = next(c for c in r.server._tags[peer] if c != 0)
    lies = [
        dataclasses.replace(directory, keys={**directory.keys, peer: substituted}),
        dataclasses.replace(directory, tags={**directory.tags, peer: r.server._tags[peer][other]}),
        dataclasses.replace(directory, tags={c: t for c, t in directory.tags.items() if c != peer}),
    ]
    for forged in lies:
        with pytest.raises(TamperedMessageError, match=f"client {peer}'s advertised keys"):
            r.clients[0].handle(forged)
    assert r.clients[0].handle(directory)  # the genuine directory is still accepted


def test_low_order_public_key_in_directory_is_rejected() -> None:
    r = Round(signed=False)
    directory = r.advance()[0]
    assert isinstance(directory, KeyDirectory)
    peer = min(directory.keys)
    bad = PublicKeys(bytes(32), directory.keys[peer].masking)
    forged = dataclasses.replace(directory, keys={**directory.keys, peer: bad})
    with pytest.raises(TamperedMessageError, match="low-order"):
        r.clients[0].handle(forged)


def test_repeated_public_keys_are_rejected() -> None:
    r = Round(signed=False)
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


def _at_unmasking(r: HonestRound, silent: frozenset[int] = frozenset()) -> UnmaskingRequest:
    r.advance()
    r.advance()
    request = r.advance(silent)[0]
    if r.params.signed:
        assert isinstance(request, ConsistencyRequest)
        request = r.advance()[0]
    assert isinstance(request, UnmaskingRequest)
    return request


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_survivor_set_with_fewer_than_t_named_clients_is_refused(signed: bool) -> None:
    # The client counts the names, not a number the server reports.
    r = Round(n=6, threshold=0.6, signed=signed)  # t = 4
    request = _at_unmasking(r)
    few = dataclasses.replace(request, survivors=(0, 1, 2))
    with pytest.raises((BelowThresholdError, UnmaskingPolicyError)):
        r.clients[0].handle(few)
    assert r.clients[0].handle(request)  # the genuine request is still answered


def test_the_consistency_check_refuses_to_sign_fewer_than_t_survivors() -> None:
    r = Round(n=6, threshold=0.6)
    r.advance()
    r.advance()
    check = r.advance()[0]
    assert isinstance(check, ConsistencyRequest) and check.survivors == tuple(range(6))
    few = dataclasses.replace(check, survivors=(0, 1, 2))
    with pytest.raises(BelowThresholdError, match="names 3 clients, fewer than the threshold"):
        r.clients[0].handle(few)
    reply = r.clients[0].handle(check)[0]
    assert isinstance(reply, ConsistencyResponse)


def test_unmasking_needs_t_signatures_on_the_set_the_client_signed() -> None:
    r = Round(n=6, threshold=0.6)  # t = 4
    request = _at_unmasking(r)
    assert request.signers == tuple(range(6))  # every survivor's signature, added up
    signatures = r.server._signatures

    def showing(signers: tuple[int, ...], signed_by: tuple[int, ...]) -> UnmaskingRequest:
        total = aggregate.aggregate(signatures[c] for c in signed_by)
        return dataclasses.replace(request, signers=signers, signature=total)

    with pytest.raises(BelowThresholdError, match="3 signatures on the survivor set"):
        r.clients[0].handle(showing((0, 1, 2), (0, 1, 2)))
    # One genuine signature counted twice is still one signer.
    with pytest.raises(TamperedMessageError, match="names a signer twice"):
        r.clients[0].handle(showing((0, 1, 2, 2), (0, 1, 2, 2)))
    other_set = dataclasses.replace(request, survivors=(0, 1, 2, 3, 4))
    with pytest.raises(UnmaskingPolicyError, match="another survivor set than the one"):
        r.clients[0].handle(other_set)
    # Naming a signer whose signature is not in the sum: the sum no longer verifies.
    with pytest.raises(TamperedMessageError, match="aggregate signature does not verify"):
        r.clients[0].handle(showing((0, 1, 2, 3), (0, 1, 2)))
    # A signature on another set in the sum (the server's or a colluder's) spoils it too.
    other = r.identities[3].aggregate.sign(b"another survivor set")
    mixed = aggregate.aggregate([signatures[0], signatures[1], signatures[2], other])
    with pytest.raises(TamperedMessageError, match="aggregate signature does not verify"):
        r.clients[0].handle(dataclasses.replace(request, signers=(0, 1, 2, 3), signature=mixed))
    assert r.clients[0].handle(showing((0, 2, 3, 5), (0, 2, 3, 5)))  # any t genuine ones do


def test_request_calling_this_client_dropped_is_refused() -> None:
    r = Round(n=6, signed=False)
    request = _at_unmasking(r)
    survivors = tuple(c for c in request.survivors if c != 0)
    forged = dataclasses.replace(request, survivors=survivors)
    with pytest.raises(UnmaskingPolicyError, match="does not name it"):
        r.clients[0].handle(forged)


def test_a_survivor_set_naming_strangers_or_silent_neighbours_is_refused() -> None:
    r = Round(n=10, neighbors=4, signed=False)
    silent_neighbour = min(r.params.graph.neighbors(0))
    r.advance()
    r.advance(silent=frozenset({silent_neighbour}))  # it never shares keys
    request = r.advance()[0]
    assert isinstance(request, UnmaskingRequest)
    named = dataclasses.replace(request, survivors=(*request.survivors, silent_neighbour))
    with pytest.raises(UnmaskingPolicyError, match="never shared keys"):
        r.clients[0].handle(named)
    with pytest.raises(UnknownSenderError, match="not clients of this round"):
        r.clients[0].handle(dataclasses.replace(request, survivors=(*request.survivors, 99)))


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_unmasking_reveals_seed_shares_of_survivors_and_key_shares_of_dropped_only(
    signed: bool,
) -> None:
    r = Round(n=6, threshold=0.6, signed=signed)
    request = _at_unmasking(r, silent=frozenset({5}))  # 5 drops before its masked input
    assert 5 not in request.survivors
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
