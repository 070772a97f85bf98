"""A lying server and lying share holders against honest clients: each attack gains nothing.

The server below runs the honest protocol up to the masked inputs (so it holds every y_u),
then departs from it however the attack needs. What it can compute at the end is checked
against the only thing it may learn: the sum of at least t inputs, including under SecAgg+
against a server that picks who drops so as to cut a small piece off the graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pytest
from support.honest_round import HonestRound

from secagg.crypto import aead, aggregate, shamir
from secagg.crypto.agreement import agree, key_pair_from_private_bytes
from secagg.crypto.prg import MaskGenerator, expand
from secagg.errors import (
    BelowThresholdError,
    CryptoError,
    ProtocolError,
    TamperedMessageError,
    UnmaskingPolicyError,
)
from secagg.masking import unmask
from secagg.masking.graph import NeighborGraph
from secagg.masking.messages import (
    ClientMessage,
    ConsistencyRequest,
    ConsistencyResponse,
    MaskedInput,
    ShareKeys,
    UnmaskingRequest,
    UnmaskingResponse,
)
from secagg.masking.params import (
    SERVER_ID,
    MaskingParams,
    pair_mask_key,
    self_mask_key,
    share_associated_data,
    share_encryption_key,
    share_x,
)

ROUND = 11
VICTIM = 4


def _to_masked_inputs(r: HonestRound) -> dict[int, np.ndarray]:
    """Run the honest phases up to the masked inputs; return every client's y_u."""
    r.advance()
    r.advance()
    masked = {}
    for c, reply in r.replies().items():
        assert isinstance(reply, MaskedInput)
        masked[c] = reply.masked
    return masked


def _unmask_alone(
    r: HonestRound, masked: dict[int, np.ndarray], responses: list[UnmaskingResponse]
) -> np.ndarray | None:
    """What a server holding these responses computes for the victim's input, if it can.

    It needs b_victim and, for every neighbour of the victim, the pair-mask key that
    neighbour revealed or that neighbour's mask key: exactly what the split-view attack goes
    after.
    """
    p = r.params
    t = p.share_threshold
    seeds: dict[int, list[shamir.Share]] = {}
    keys: dict[int, list[shamir.Share]] = {}
    for response in responses:
        x = share_x(response.sender)
        for owner, value in response.seed_shares.items():
            seeds.setdefault(owner, []).append(shamir.Share.from_value_bytes(x, value))
        for owner, value in response.key_shares.items():
            keys.setdefault(owner, []).append(shamir.Share.from_value_bytes(x, value))
    if len(seeds.get(VICTIM, [])) < t:
        return None
    seed = shamir.combine(seeds[VICTIM], t)
    add, subtract = [], [self_mask_key(seed, p.round_id, VICTIM)]
    revealed = {r.sender: r.pair_keys for r in responses}
    for peer in sorted(p.graph.neighbors(VICTIM)):
        key = revealed.get(peer, {}).get(VICTIM)
        if key is None:
            if len(keys.get(peer, [])) < t:
                return None
            peer_key = key_pair_from_private_bytes(shamir.combine(keys[peer], t))
            agreed = agree(peer_key.private, r.server._keys[VICTIM].masking)
            key = pair_mask_key(agreed, p.round_id, VICTIM, peer)
        # The victim added +PRG(s) for peers above it and -PRG(s) for those below: undo it.
        (subtract if peer > VICTIM else add).append(key)
    total = masked[VICTIM].copy()
    MaskGenerator(p.bits).apply(total, add=add, subtract=subtract, reduce=True)
    return total


def test_without_the_fix_the_split_view_attack_would_read_the_victim_input() -> None:
    # The attack of issue #6 against clients that only compared a reported count with t:
    # a server that tells each holder "you and client 4 survived, everyone else dropped"
    # collects b_4 and every peer's mask key. Here the responses that such clients would
    # have sent are assembled by hand, to show the attack is real and the check below is
    # a working detector of it.
    r = HonestRound(5, 0, 3, round_id=ROUND, dim=16, seed=4, signed=False)
    masked = _to_masked_inputs(r)
    stolen = []
    for holder in range(4):
        held = r.clients[holder]
        seeds = {o: v for o, v in held._seed_shares.items() if o in (holder, VICTIM)}
        keys = {o: v for o, v in held._key_shares.items() if o not in (holder, VICTIM)}
        stolen.append(UnmaskingResponse(ROUND, holder, seeds, keys))
    recovered = _unmask_alone(r, masked, stolen)
    assert recovered is not None
    np.testing.assert_array_equal(recovered, r.inputs[VICTIM])


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_the_split_view_attack_of_issue_6_gets_no_share_at_all(signed: bool) -> None:
    # n = 5, t = 3, complete graph: each holder is told {holder, 4} survived.
    r = HonestRound(5, 0, 3, round_id=ROUND, dim=16, seed=4, signed=signed)
    masked = _to_masked_inputs(r)
    responses = []
    for holder in range(4):
        split = (holder, VICTIM)
        if signed:
            lie: ConsistencyRequest | UnmaskingRequest = ConsistencyRequest(
                ROUND, SERVER_ID, holder, split
            )
        else:
            lie = UnmaskingRequest(ROUND, SERVER_ID, holder, split)
        with pytest.raises(BelowThresholdError, match="names 2 clients, fewer than the threshold"):
            r.clients[holder].handle(lie)
    assert _unmask_alone(r, masked, responses) is None


def test_split_survivor_sets_of_size_t_never_gather_t_signatures() -> None:
    # The server now names t = 3 survivors to each holder, a different set to each:
    # {holder, 4, next holder}. Every client signs what it is shown, but no set collects
    # t signatures, so no client reveals anything.
    r = HonestRound(5, 0, 3, round_id=ROUND, dim=16, seed=4)
    masked = _to_masked_inputs(r)
    views = {h: tuple(sorted({h, VICTIM, (h + 1) % 4})) for h in range(4)}
    views[VICTIM] = (0, 1, VICTIM)
    signatures: dict[tuple[int, ...], dict[int, bytes]] = {}
    for client, view in views.items():
        reply = r.clients[client].handle(ConsistencyRequest(ROUND, SERVER_ID, client, view))[0]
        assert isinstance(reply, ConsistencyResponse)
        signatures.setdefault(view, {})[client] = reply.signature
    assert max(len(s) for s in signatures.values()) < r.params.threshold
    for client, view in views.items():
        request = UnmaskingRequest(ROUND, SERVER_ID, client, view, *_quorum(signatures[view]))
        with pytest.raises(BelowThresholdError, match="signatures on the survivor set"):
            r.clients[client].handle(request)
    assert _unmask_alone(r, masked, []) is None


def test_two_signed_views_give_the_server_a_sum_of_t_inputs_and_nothing_more() -> None:
    # The best split left: one set A = {0, 1, 4} that its three members all sign (so it has
    # t = 3 signatures), and B = {2, 3, 4} shown to 2 and 3. Client 4 signs only once, so
    # B has 2 signatures: 2 and 3 refuse, and the server gets the b-shares and dropped
    # keys that A's members reveal: enough for x_0 + x_1 + x_4, not for x_4 alone.
    r = HonestRound(5, 0, 3, round_id=ROUND, dim=16, seed=4)
    masked = _to_masked_inputs(r)
    a, b = (0, 1, VICTIM), (2, 3, VICTIM)
    sigs: dict[tuple[int, ...], dict[int, bytes]] = {a: {}, b: {}}
    for client in (0, 1, VICTIM, 2, 3):
        view = a if client in a else b
        reply = r.clients[client].handle(ConsistencyRequest(ROUND, SERVER_ID, client, view))[0]
        assert isinstance(reply, ConsistencyResponse)
        sigs[view][client] = reply.signature
    with pytest.raises(ProtocolError):  # the victim cannot be made to sign B as well
        r.clients[VICTIM].handle(ConsistencyRequest(ROUND, SERVER_ID, VICTIM, b))
    responses = []
    for client in a:
        request = UnmaskingRequest(ROUND, SERVER_ID, client, a, *_quorum(sigs[a]))
        reply = r.clients[client].handle(request)
        assert isinstance(reply[0], UnmaskingResponse)
        responses.append(reply[0])
    for client in (2, 3):
        with pytest.raises(BelowThresholdError):
            r.clients[client].handle(
                UnmaskingRequest(ROUND, SERVER_ID, client, b, *_quorum(sigs[b]))
            )
        forged = {**sigs[b], **{c: s for c, s in sigs[a].items() if c not in b}}
        with pytest.raises(UnmaskingPolicyError, match="not survivors"):
            r.clients[client].handle(
                UnmaskingRequest(ROUND, SERVER_ID, client, b, *_quorum(forged))
            )
    assert _unmask_alone(r, masked, responses) is None  # mask keys of 0 and 1 stay hidden
    # What it can compute is the sum over A, which is allowed (t inputs).
    server = r.server
    server._survivors, server._to_recover = frozenset(a), frozenset({2, 3})
    server._sum = sum((masked[c] for c in a), np.zeros(16, np.uint32))
    for response in responses:
        server._accept_shares(response)
    expected = sum(r.inputs[c].astype(np.uint64) for c in a) % 2**32
    np.testing.assert_array_equal(server._unmask().total, expected)


def _deliver_unmasking(r: HonestRound, tamper: dict[int, dict[str, dict[int, int]]]) -> None:
    """Answer every unmasking request; holder -> {'seed'|'key': {owner: offset}} lies."""
    for client, reply in r.replies().items():
        assert isinstance(reply, UnmaskingResponse)
        lies = tamper.get(client, {})
        fields = {}
        for name, shares in (("seed", reply.seed_shares), ("key", reply.key_shares)):
            changed = dict(shares)
            for owner, offset in lies.get(name, {}).items():
                y = shamir.Share.from_value_bytes(1, changed[owner]).y  # shift the first limb
                shifted = ((y[0] + offset) % shamir.PRIME, *y[1:])
                changed[owner] = shamir.Share(1, shifted).value_bytes()
            fields[f"{name}_shares"] = changed
        r.server.receive(dataclasses.replace(reply, **fields))
    r.outbox = r.server.close_phase()


def _to_unmasking(r: HonestRound, dropped: frozenset[int]) -> None:
    r.advance()
    r.advance()
    r.advance(silent=dropped)
    r.advance()  # consistency check


def test_a_wrong_key_share_is_corrected_and_its_holder_named() -> None:
    r = HonestRound(7, 0, 4, round_id=ROUND, dim=16, seed=5)  # t = t_s = 4, 6 holders of s_6
    _to_unmasking(r, frozenset({6}))
    _deliver_unmasking(r, {2: {"key": {6: 1}}})
    result = r.server.result
    expected = sum(r.inputs[c].astype(np.uint64) for c in range(6)) % 2**32
    np.testing.assert_array_equal(result.total, expected)
    assert result.inconsistent_holders == {2: [6]}


def test_a_b_share_shifted_by_one_is_caught_by_the_commitment_and_corrected() -> None:
    # A small offset keeps the share in range, so only the commitment H(b_u) can tell.
    r = HonestRound(7, 0, 4, round_id=ROUND, dim=16, seed=6)
    _to_unmasking(r, frozenset())
    _deliver_unmasking(r, {0: {"seed": {3: 1}}, 5: {"seed": {1: -7}}})
    result = r.server.result
    expected = sum(r.inputs[c].astype(np.uint64) for c in range(7)) % 2**32
    np.testing.assert_array_equal(result.total, expected)
    assert result.inconsistent_holders == {0: [3], 5: [1]}


def test_too_many_wrong_shares_abort_the_round_instead_of_corrupting_the_sum() -> None:
    r = HonestRound(7, 0, 4, round_id=ROUND, dim=16, seed=7)  # 7 holders: corrects 1 error
    _to_unmasking(r, frozenset())
    with pytest.raises(CryptoError, match="client 3's self-mask seed cannot be corrected"):
        _deliver_unmasking(r, {0: {"seed": {3: 1}}, 1: {"seed": {3: 2}}})
    assert r.server.phase == "finished"


def test_survivors_reveal_their_pair_keys_so_the_server_agrees_only_for_silent_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agreements: list[int] = []
    real_agree = unmask.agree

    def counting(*args: object) -> bytes:
        agreements.append(1)
        return real_agree(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(unmask, "agree", counting)
    for silent, expected_agreements in ((frozenset(), 0), (frozenset({2, 5}), 2)):
        agreements.clear()
        r = HonestRound(7, 0, 4, round_id=ROUND, dim=16, seed=8)
        _to_unmasking(r, frozenset({6}))  # every survivor masked with the dropped client 6
        r.advance(silent=silent)
        expected = sum(r.inputs[c].astype(np.uint64) for c in range(6)) % 2**32
        np.testing.assert_array_equal(r.server.result.total, expected)
        # The edges (6, 2) and (6, 5) of the silent survivors are the only ones agreed.
        assert len(agreements) == expected_agreements


def test_a_wrong_pair_key_is_no_more_than_its_sender_changing_its_own_input() -> None:
    # The pair mask a survivor's key fails to remove sits in that survivor's own masked input,
    # so lying about it is the same as sending another input (which range checks after
    # decoding, not the masking layer, are there for).
    r = HonestRound(7, 0, 4, round_id=ROUND, dim=16, seed=9)
    _to_unmasking(r, frozenset({6}))
    assert r.server._sum is not None
    masked_sum, keys = r.server._sum.copy(), dict(r.server._keys)
    fake = bytes(16)
    real = None
    responses = r.replies()
    for client, reply in responses.items():
        assert isinstance(reply, UnmaskingResponse) and set(reply.pair_keys) == {6}
        if client == 2:
            real = reply.pair_keys[6]
            reply = dataclasses.replace(reply, pair_keys={6: fake})
        r.server.receive(reply)
    r.server.close_phase()
    assert real is not None and real != fake
    # Client 2 < 6 added +PRG(real); the server subtracted PRG(fake) instead.
    shifted = (r.inputs[2].astype(np.uint64) + expand(real, 16, 32) - expand(fake, 16, 32)) % 2**32
    honest = sum(r.inputs[c].astype(np.uint64) for c in range(6)) % 2**32
    expected = (sum(r.inputs[c].astype(np.uint64) for c in (0, 1, 3, 4, 5)) + shifted) % 2**32
    np.testing.assert_array_equal(r.server.result.total, expected)
    assert r.server.result.inconsistent_holders == {}
    # An auditor rebuilds every pair mask from the shares and ignores revealed keys, so its sum
    # is the honest one and differs from what this server would post.
    seeds, mask_keys = _revealed(r.params, responses)
    unmask.remove_masks(
        r.params, keys, masked_sum, frozenset(range(6)), frozenset({6}), seeds, mask_keys
    )
    np.testing.assert_array_equal(masked_sum, honest)
    assert not np.array_equal(honest, expected)


def test_one_signature_on_another_set_among_t_is_caught_by_every_client() -> None:
    # The whole quorum is checked, not a sample. t = 95 of 100: the server holds 94 genuine
    # signatures on the set and pads the 95th with a signature on another set, which is what
    # a colluder signing both sets of a split gives it. Every client refuses. (A client that
    # checked a random sample of 36, as an earlier version did, missed it with probability
    # 59/95.)
    r = HonestRound(100, 0, 95, round_id=ROUND, dim=4, seed=10)
    for _ in range(4):
        r.advance()  # through the consistency check: everyone signed the same set
    genuine = [r.server._signatures[c] for c in range(94)]
    other_set = r.identities[94].aggregate.sign(b"another survivor set")
    padded = aggregate.aggregate([*genuine, other_set])
    for c, request in r.outbox.items():
        assert isinstance(request, UnmaskingRequest)
        lie = dataclasses.replace(request, signers=tuple(range(95)), signature=padded)
        with pytest.raises(TamperedMessageError, match="aggregate signature does not verify"):
            r.clients[c].handle(lie)
    assert r.clients[50].handle(r.outbox[50])  # the genuine quorum of all 100 verifies


def _quorum(signatures: Mapping[int, bytes]) -> tuple[tuple[int, ...], bytes]:
    """(signers, aggregate signature) as a server would show them."""
    signers = tuple(sorted(signatures))
    return signers, aggregate.aggregate(signatures[c] for c in signers)


def _revealed(
    params: MaskingParams, responses: Mapping[int, ClientMessage]
) -> tuple[dict[int, dict[int, shamir.Share]], dict[int, dict[int, shamir.Share]]]:
    """owner -> holder -> share, of b and of s, from the holders' unmasking responses."""
    seeds: dict[int, dict[int, shamir.Share]] = {}
    mask_keys: dict[int, dict[int, shamir.Share]] = {}
    for holder, response in responses.items():
        assert isinstance(response, UnmaskingResponse)
        x = params.share_point(holder)
        for table, found in ((response.seed_shares, seeds), (response.key_shares, mask_keys)):
            for owner, value in table.items():
                found.setdefault(owner, {})[holder] = shamir.Share.from_value_bytes(x, value)
    return seeds, mask_keys


def _cut_off_an_arc(r: HonestRound) -> tuple[list[int], list[int], dict[int, ClientMessage]]:
    """Run to the unmasking requests with the k/2 ring neighbours on either side of an arc of
    t_s clients silenced at masked_input; return the arc, the silenced and their y_u."""
    ring = r.params.graph.ring
    arc, moat = list(ring[10:15]), list(ring[6:10] + ring[15:19])
    r.advance()
    r.advance()
    masked = r.replies(silent=frozenset(moat))
    for reply in masked.values():
        r.server.receive(reply)
    return arc, moat, masked


def test_a_server_that_cuts_a_ring_arc_off_by_choosing_who_drops_gets_no_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The ring is public, and a server may ignore anyone. Silencing the k/2 clients on either
    # side of an arc of t_s ring neighbours cuts the arc off: every arc member still sees t_s
    # of its neighbourhood and at least t survivors, yet the arc's masks toward the silenced
    # clients come from their s-shares, so the arc's sum would unmask alone. Clients now
    # refuse a survivor set whose graph falls apart (an honest server aborts first).
    r = HonestRound(40, 8, 24, round_id=ROUND, dim=16, seed=11)  # k = 8, t_s = 5, t = 24
    p = r.params
    arc, moat, masked = _cut_off_an_arc(r)
    assert len(arc) == p.share_threshold < p.threshold
    with pytest.raises(BelowThresholdError, match="neighbour graph fell apart"):
        r.server.close_phase()
    survivors = tuple(c for c in range(40) if c not in moat)
    for client in survivors:
        lie = ConsistencyRequest(ROUND, SERVER_ID, client, survivors)
        with pytest.raises(UnmaskingPolicyError, match="cuts the neighbour graph into pieces"):
            r.clients[client].handle(lie)

    # Without the check, the same round reads the arc's sum of 5 inputs alone.
    monkeypatch.setattr(NeighborGraph, "connects", lambda self, members: True)
    r = HonestRound(40, 8, 24, round_id=ROUND, dim=16, seed=11)
    arc, moat, masked = _cut_off_an_arc(r)
    keys = dict(r.server._keys)
    r.outbox = r.server.close_phase()
    r.advance()  # every survivor signs the same survivor set
    seeds, mask_keys = _revealed(p, r.replies())
    total = np.zeros(p.dim, dtype=np.uint32)
    for c in arc:
        message = masked[c]
        assert isinstance(message, MaskedInput)
        np.add(total, message.masked, out=total)
    arc_seeds = {c: seeds[c] for c in arc}
    unmask.remove_masks(p, keys, total, frozenset(arc), frozenset(moat), arc_seeds, mask_keys)
    arc_sum = sum(r.inputs[c].astype(np.uint64) for c in arc) % 2**32
    np.testing.assert_array_equal(total, arc_sum)


def test_stolen_identity_seeds_do_not_open_the_share_bundles_of_a_recorded_round() -> None:
    # Forward secrecy: the server records every sealed share bundle, and later every
    # identity seed is stolen. The identities' static keys (their agreement and the pair key
    # that MACs the round keys) open none of the bundles: those keys come from the per-round
    # c keys, gone once the round is over. The c keys themselves do open them.
    r = HonestRound(6, 4, 4, round_id=ROUND, dim=4, seed=12)
    r.advance()  # keys advertised and relayed
    recorded = r.replies()  # every client's sealed bundles, as the server sees them
    directory = r.params.identities
    assert directory is not None
    for sender, message in recorded.items():
        assert isinstance(message, ShareKeys) and message.ciphertexts
        stolen = r.identities[sender]
        for recipient, sealed in message.ciphertexts.items():
            ad = share_associated_data(ROUND, sender, recipient)
            static = agree(stolen.agreement.private, directory[recipient].agreement)
            pair = stolen.pair_key(directory[recipient])
            for guess in (static, pair):
                derived = share_encryption_key(guess, ROUND, sender, recipient)
                with pytest.raises(TamperedMessageError):
                    aead.open_once(derived, sealed, ad)
                with pytest.raises(TamperedMessageError):
                    aead.open_once(guess, sealed, ad)
            ephemeral = r.clients[sender]._require_secrets().encryption.private
            peer = r.server._keys[recipient].encryption
            key = share_encryption_key(agree(ephemeral, peer), ROUND, sender, recipient)
            assert aead.open_once(key, sealed, ad)  # what the round's own keys can do
