"""The client state machine: what it sends, and every server message it must refuse.

A refused message raises a ProtocolError subclass and leaves the client exactly where it
was, so each test also checks that the honest message is still accepted afterwards.
"""

from __future__ import annotations

import dataclasses
import secrets
from types import SimpleNamespace

import numpy as np
import pytest
from support.honest_round import HonestRound
from support.split_views import input_sum, masked_inputs, read_sum, show_views, unmask_group

from secagg.crypto import aead, aggregate, shamir
from secagg.crypto.agreement import KeyPair, agree, generate_key_pair, key_pair_from_private_bytes
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
from secagg.masking import client as masking_client
from secagg.masking.client import MaskingClient
from secagg.masking.messages import (
    AdvertiseKeys,
    AdvertiseKeysRequest,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyDirectory,
    MaskedInput,
    PublicKeys,
    ShareDelivery,
    ShareKeys,
    UnmaskingRequest,
    UnmaskingResponse,
    decode_server_message,
)
from secagg.masking.params import (
    SERVER_ID,
    MaskingParams,
    advert_tag,
    pair_mask_key,
    share_associated_data,
    share_encryption_key,
)

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
    # The server hands client 0 a bundle that client 2 addressed to client 1. It is sealed
    # under the key of the pair (2, 1), which client 0 cannot derive: the key refuses it
    # before the associated data is compared (the associated data's own teeth are shown by
    # the reflection test below, where the pair and so the agreement are the same).
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
    with pytest.raises(TamperedMessageError, match="from client 2 to client 0"):
        r.clients[0].handle(swapped)
    assert r.clients[0].handle(to_zero)  # the genuine delivery is still accepted


def _reflect_bundles(r: HonestRound) -> np.ndarray:
    """The server hands client 0, as the bundles from 1 and 2, the ones 0 sealed for them,
    then shows a split view; returns what it computes as x_0 (raises if 0 refuses)."""
    p = r.params
    r.advance()  # keys advertised and relayed
    bundles = r.replies()
    for message in bundles.values():
        r.server.receive(message)
    deliveries = r.server.close_phase()
    own = bundles[0]
    assert isinstance(own, ShareKeys)
    to_zero = deliveries[0]
    assert isinstance(to_zero, ShareDelivery)
    reflected = {**to_zero.ciphertexts, 1: own.ciphertexts[1], 2: own.ciphertexts[2]}
    masked = {0: r.clients[0].handle(dataclasses.replace(to_zero, ciphertexts=reflected))[0]}
    masked.update({c: r.clients[c].handle(deliveries[c])[0] for c in (1, 2, 3, 4)})
    # 1 and 2 are told 0 survived (b-shares of 0), 3 and 4 that 0 dropped (s-shares of 0),
    # and 0 that 1 and 2 dropped: it reveals "their" s-shares, its own shares of s_0.
    views = {0: (0, 3, 4), 1: (0, 1, 2), 2: (0, 1, 2), 3: (2, 3, 4), 4: (2, 3, 4)}
    shown = show_views(r, views)
    assert shown.refusals == {}
    answers = {a.sender: a for a in shown.answers}

    def share(point_of: int, value: bytes) -> shamir.Share:
        return shamir.Share.from_value_bytes(p.share_point(point_of), value)

    t_s = p.share_threshold
    seed = shamir.combine([share(h, answers[h].seed_shares[0]) for h in (0, 1, 2)], t_s)
    reflected_shares = [share(v, answers[0].key_shares[v]) for v in (1, 2)]
    genuine_shares = [share(h, answers[h].key_shares[0]) for h in (3, 4)]
    mask_key = key_pair_from_private_bytes(shamir.combine(reflected_shares + genuine_shares, t_s))
    pair_keys = {
        (0, v): pair_mask_key(agree(mask_key.private, r.server._keys[v].masking), ROUND, 0, v)
        for v in (1, 2, 3, 4)
    }
    y_0 = masked[0]
    assert isinstance(y_0, MaskedInput)
    return unmask_group(p, {0: y_0.masked}, {0: seed}, pair_keys)


def test_a_share_bundle_reflected_to_its_sender_is_refused_by_its_key_and_by_its_associated_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server hands client 0, as the bundles from 1 and 2, the bundles 0 itself sealed for
    1 and 2: the same pair, so the same agreement. Accepted, 0 would hold shares of its own
    s_0 at 1's and 2's points under their names, and reveal them when told that 1 and 2
    dropped; with a split view that is t_s shares of s_0 besides t_s of b_0, so x_0. The
    bundle key is directional and the associated data names (round, sender, recipient):
    each alone refuses the reflection by name; with both off, x_0 is read exactly."""
    real_keys = masking_client.share_encryption_keys

    def undirected(agreed: bytes, round_id: int, a: int, b: int) -> tuple[bytes, bytes]:
        key = real_keys(agreed, round_id, min(a, b), max(a, b))[0]
        return key, key

    def constant(round_id: int, sender: int, recipient: int) -> bytes:
        return b"secagg share"

    for directional, bound in ((True, True), (True, False), (False, True)):
        with monkeypatch.context() as m:
            if not directional:
                m.setattr(masking_client, "share_encryption_keys", undirected)
            if not bound:
                m.setattr(masking_client, "share_associated_data", constant)
            with pytest.raises(TamperedMessageError, match="from client 1 to client 0"):
                _reflect_bundles(Round(n=5, neighbors=4, signed=False))

    monkeypatch.setattr(masking_client, "share_encryption_keys", undirected)
    monkeypatch.setattr(masking_client, "share_associated_data", constant)
    r = Round(n=5, neighbors=4, signed=False)
    np.testing.assert_array_equal(_reflect_bundles(r), r.inputs[0])


def test_parameter_mismatch_is_rejected() -> None:
    r = Round()
    request = r.outbox[0]
    assert isinstance(request, AdvertiseKeysRequest)
    other = dataclasses.replace(request, params_digest=b"\x00" * 32)
    with pytest.raises(ProtocolError, match="digest mismatch"):
        r.clients[0].handle(other)


def test_a_relayed_key_the_owner_did_not_mac_for_this_client_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server relays every round key. In a signed round it cannot relay keys it made
    itself, with a MAC under a key it could have (a random one), with the owner's MAC on
    the real keys, or with none; nor pass off the owner's MAC for another neighbour, nor
    drop it: each is refused by name. With the MAC check off, a server that relays its own
    keys for every neighbour of client 0 opens 0's share bundles (so b_0), knows every pair
    mask of 0, and reads x_0 exactly from 0's masked input."""
    r = Round()
    directory = r.advance()[0]
    assert isinstance(directory, KeyDirectory)
    peer = min(directory.keys)
    made = _server_made_keys(r, directory)
    other = next(c for c in r.server._tags[peer] if c != 0)
    without_tag = {c: t for c, t in directory.tags.items() if c != peer}
    lies = [
        dataclasses.replace(
            directory, keys={**directory.keys, peer: made.keys[peer]}, tags=made.tags
        ),
        dataclasses.replace(directory, keys={**directory.keys, peer: made.keys[peer]}),
        dataclasses.replace(
            directory, keys={**directory.keys, peer: made.keys[peer]}, tags=without_tag
        ),
        dataclasses.replace(directory, tags={**directory.tags, peer: r.server._tags[peer][other]}),
        dataclasses.replace(directory, tags=without_tag),
    ]
    for forged in lies:
        with pytest.raises(TamperedMessageError, match=f"client {peer}'s advertised keys"):
            r.clients[0].handle(forged)
    assert r.clients[0].handle(directory)  # the genuine directory is still accepted

    monkeypatch.setattr(masking_client, "hmac", SimpleNamespace(compare_digest=lambda a, b: True))
    r = Round()
    directory = r.advance()[0]
    assert isinstance(directory, KeyDirectory)
    made = _server_made_keys(r, directory)
    [bundles] = r.clients[0].handle(dataclasses.replace(directory, keys=made.keys, tags=made.tags))
    assert isinstance(bundles, ShareKeys)
    p, victim = r.params, r.server._keys[0]
    seed_shares = []
    for v, sealed in bundles.ciphertexts.items():
        bundle = aead.open_once(made.bundle_key(0, v), sealed, share_associated_data(ROUND, 0, v))
        value = bundle[: shamir.VALUE_BYTES]
        seed_shares.append(shamir.Share.from_value_bytes(p.share_point(v), value))
    seed = shamir.combine(seed_shares, p.share_threshold)
    filler = shamir.encode_values(np.zeros((2, shamir.LIMBS), dtype=np.int64))  # valid shares
    delivery = ShareDelivery(
        ROUND,
        SERVER_ID,
        0,
        {
            v: aead.seal_once(made.bundle_key(v, 0), filler, share_associated_data(ROUND, v, 0))
            for v in made.keys
        },
    )
    [masked] = r.clients[0].handle(delivery)
    assert isinstance(masked, MaskedInput)
    pair_keys = {
        (0, v): pair_mask_key(agree(made.masking[v].private, victim.masking), ROUND, 0, v)
        for v in made.keys
    }
    x_0 = unmask_group(p, {0: masked.masked}, {0: seed}, pair_keys)
    np.testing.assert_array_equal(x_0, r.inputs[0])


@dataclasses.dataclass
class _ServerMadeKeys:
    """Round keys a server made for each neighbour of client 0, MAC'd under a random key."""

    keys: dict[int, PublicKeys]
    tags: dict[int, bytes]
    encryption: dict[int, KeyPair]
    masking: dict[int, KeyPair]
    victim_encryption: bytes

    def bundle_key(self, sender: int, recipient: int) -> bytes:
        """The key of the bundle between 0 and a neighbour whose keys the server made."""
        peer = sender if recipient == 0 else recipient
        agreed = agree(self.encryption[peer].private, self.victim_encryption)
        return share_encryption_key(agreed, ROUND, sender, recipient)


def _server_made_keys(r: HonestRound, directory: KeyDirectory) -> _ServerMadeKeys:
    encryption = {c: generate_key_pair() for c in directory.keys}
    masking = {c: generate_key_pair() for c in directory.keys}
    keys = {
        c: PublicKeys(encryption[c].public, masking[c].public, k.seed_commitment)
        for c, k in directory.keys.items()
    }
    guess = secrets.token_bytes(32)  # the server's best try at the pair key
    tags = {
        c: advert_tag(guess, r.params, c, 0, k.encryption, k.masking, k.seed_commitment)
        for c, k in keys.items()
    }
    return _ServerMadeKeys(keys, tags, encryption, masking, r.server._keys[0].encryption)


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


def _connected_group(params: MaskingParams, size: int) -> tuple[int, ...]:
    """``size`` clients that stay one connected piece of the graph and keep t_s of each
    member's neighbourhood: a survivor set that passes every check but the count of t."""
    graph = params.graph
    for start in params.client_ids:
        group, frontier = [start], [start]
        while frontier and len(group) < size:
            for peer in sorted(graph.neighbors(frontier.pop(0))):
                if peer not in group and len(group) < size:
                    group.append(peer)
                    frontier.append(peer)
        members = frozenset(group)
        local = min(len(members & graph.neighborhood(c)) for c in members)
        if len(members) == size and local >= params.share_threshold and graph.connects(members):
            return tuple(sorted(members))
    raise AssertionError(f"no connected group of {size} keeps t_s of each neighbourhood")


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_survivor_set_with_fewer_than_t_named_clients_is_refused(
    signed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client counts the names, not a number the server reports. The set shown here
    names t - 1 clients and passes every other check (each member keeps t_s of its
    neighbourhood, the set is connected, all shared keys): every member refuses it by its
    count. With the count off (each member told t - 1), their answers give the server the
    sum of t - 1 inputs exactly."""
    r = Round(n=10, neighbors=4, threshold=0.7, signed=signed)  # t = 7, t_s = 3
    t = r.params.threshold
    few = _connected_group(r.params, t - 1)
    views = {c: few for c in few}
    masked_inputs(r)
    shown = show_views(r, views)
    assert shown.answers == [] and set(shown.refusals) == set(few)
    for error in shown.refusals.values():
        assert isinstance(error, BelowThresholdError)
        assert f"names {t - 1} clients, fewer than the threshold t = {t}" in str(error)
    everyone = tuple(range(10))
    first = ConsistencyRequest if signed else UnmaskingRequest
    assert r.clients[few[0]].handle(first(ROUND, SERVER_ID, few[0], everyone))  # still answers

    r = Round(n=10, neighbors=4, threshold=0.7, signed=signed)
    masked = masked_inputs(r)
    # Unsigned rounds reveal no pair-mask keys (test_masking_session.py); the members here
    # reveal theirs as in a signed round, so that what the count alone guards shows.
    told = dataclasses.replace(r.params, threshold=t - 1, broadcast=True)
    for c in few:
        monkeypatch.setattr(r.clients[c], "params", told)
    shown = show_views(r, views)
    assert shown.refusals == {} and len(shown.answers) == t - 1
    read = read_sum(r.params, r.server._keys, masked, shown.answers, few)
    assert read is not None
    np.testing.assert_array_equal(read, input_sum(r, few))


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
