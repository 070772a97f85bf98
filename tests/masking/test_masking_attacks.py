"""A lying server and lying share holders against honest clients: each attack gains nothing.

The server below runs the honest protocol up to the masked inputs (so it holds every y_u),
then departs from it however the attack needs. What it can compute at the end is checked
against the only thing it may learn: the sum of at least t inputs, including under SecAgg+
against a server that picks who drops so as to cut a small piece off the graph. Each attack
runs twice: against the real clients and server, and with the defence it is aimed at
switched off by monkeypatching, where the test asserts what the attacker then gains.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from collections.abc import Mapping
from types import SimpleNamespace

import numpy as np
import pytest
from support.honest_round import HonestRound
from support.split_views import input_sum, masked_inputs, quorum, read_sum, show_to, show_views

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
from secagg.masking.client import MaskingClient
from secagg.masking.graph import NeighborGraph
from secagg.masking.messages import (
    ClientMessage,
    ConsistencyRequest,
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
)

ROUND = 11
VICTIM = 4


def _split_view_round(signed: bool = True) -> tuple[HonestRound, dict[int, np.ndarray]]:
    """n = 5, t = 3, complete graph, run to the masked inputs (which the server keeps)."""
    r = HonestRound(5, 0, 3, round_id=ROUND, dim=16, seed=4, signed=signed)
    return r, masked_inputs(r)


def _reads_the_victim(
    r: HonestRound, masked: dict[int, np.ndarray], answers: list[UnmaskingResponse]
) -> bool:
    """Whether the server reads x_4 from these answers (and if it does, that it is exact)."""
    read = read_sum(r.params, r.server._keys, masked, answers, {VICTIM})
    if read is None:
        return False
    np.testing.assert_array_equal(read, r.inputs[VICTIM])
    return True


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_the_split_view_attack_of_issue_6_gets_no_share_at_all(
    signed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack of issue #6: each holder is told "you and client 4 survived, everyone else
    dropped", so each would reveal its b-share of 4 and the mask keys of 4's other peers.
    Every holder counts the names against t and refuses by name. With the survivor-set
    checks off (the clients of issue #6 compared a count the server reported), the same
    requests read x_4 bit for bit; in a signed round only once the quorum check is off too."""
    views = {holder: (holder, VICTIM) for holder in range(4)}
    r, masked = _split_view_round(signed)
    shown = show_views(r, views)
    assert shown.answers == [] and set(shown.refusals) == set(views)
    for error in shown.refusals.values():
        assert isinstance(error, BelowThresholdError)
        assert "names 2 clients, fewer than the threshold t = 3" in str(error)

    monkeypatch.setattr(MaskingClient, "_check_survivors", lambda self, survivors: None)
    r, masked = _split_view_round(signed)
    shown = show_views(r, views)
    if signed:  # the quorum still stops it: each set has 1 signature of t = 3
        assert shown.answers == [] and set(shown.refusals) == set(views)
        for error in shown.refusals.values():
            assert isinstance(error, BelowThresholdError)
            assert "carries 1 signatures on the survivor set" in str(error)
        monkeypatch.setattr(MaskingClient, "_check_signatures", lambda self, m, s: None)
        r, masked = _split_view_round(signed)
        shown = show_views(r, views)
    assert shown.refusals == {} and len(shown.answers) == 4
    assert _reads_the_victim(r, masked, shown.answers)


def test_split_survivor_sets_of_size_t_never_gather_t_signatures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sets of size t, each passing every check of the client it is shown to, whose answers
    together would read x_4: 0 and 1 reveal their b-shares of 4, 2 and 3 their pair keys
    with 4 (called dropped), 4 its pair keys with 0 and 1. Everyone signs what it is shown,
    no set gathers t signatures, and everyone refuses by name. Without the quorum check x_4
    is read exactly."""
    views = {0: (0, 1, 4), 1: (0, 1, 4), 2: (1, 2, 3), 3: (1, 2, 3), VICTIM: (2, 3, 4)}
    r, masked = _split_view_round()
    shown = show_views(r, views)
    assert max(len(s) for s in shown.signatures.values()) < r.params.threshold
    assert shown.answers == [] and set(shown.refusals) == set(views)
    for error in shown.refusals.values():
        assert isinstance(error, BelowThresholdError)
        assert re.search(r"carries [12] signatures on the survivor set", str(error))

    monkeypatch.setattr(MaskingClient, "_check_signatures", lambda self, m, s: None)
    r, masked = _split_view_round()
    shown = show_views(r, views)
    assert shown.refusals == {}
    assert _reads_the_victim(r, masked, shown.answers)


def test_two_signed_views_give_the_server_a_sum_of_t_inputs_and_nothing_more() -> None:
    """The best split left: A = {0, 1, 4}, which its three members sign (t = 3 signatures),
    and B = {2, 3, 4} shown to 2 and 3. Client 4 signs and answers once, so B has 2
    signatures: 2 and 3 refuse, and of all 31 groups of inputs the server can sum only A.
    Switched off: a victim that signs and answers twice (a second copy of its state, as a
    node restored from a snapshot would have) gives B its quorum, and its two answers read
    x_4 exactly."""
    a, b = (0, 1, VICTIM), (2, 3, VICTIM)
    views = {0: a, 1: a, VICTIM: a, 2: b, 3: b}
    r, masked = _split_view_round()
    shown = show_views(r, views)
    assert sorted(m.sender for m in shown.answers) == [0, 1, VICTIM]
    assert set(shown.refusals) == {2, 3}
    assert all(
        "carries 2 signatures on the survivor set" in str(e) for e in shown.refusals.values()
    )
    with pytest.raises(ProtocolError):  # the victim cannot be made to sign B as well
        r.clients[VICTIM].handle(ConsistencyRequest(ROUND, SERVER_ID, VICTIM, b))
    # Nor can B's quorum be padded with A's signatures: their signers are not survivors of B.
    padded = {**shown.signatures[b], 0: shown.signatures[a][0]}
    for client in (2, 3):
        with pytest.raises(UnmaskingPolicyError, match="not survivors"):
            r.clients[client].handle(UnmaskingRequest(ROUND, SERVER_ID, client, b, *quorum(padded)))
    groups = [g for size in range(1, 6) for g in itertools.combinations(range(5), size)]
    keys = r.server._keys
    readable = [g for g in groups if read_sum(r.params, keys, masked, shown.answers, g) is not None]
    assert readable == [a]
    np.testing.assert_array_equal(
        read_sum(r.params, keys, masked, shown.answers, a), input_sum(r, a)
    )
    assert not _reads_the_victim(r, masked, shown.answers)

    # Switched off: a second copy of the victim, in the state it had before signing anything.
    r, masked = _split_view_round()
    twin = copy.copy(r.clients[VICTIM])
    twin._accepted = set(twin._accepted)
    shown = show_to(r.params, [(r.clients[c], v) for c, v in views.items()] + [(twin, b)])
    assert shown.refusals == {}  # B has 3 signatures now: 2, 3 and the victim's twin
    assert _reads_the_victim(r, masked, shown.answers)


def _deliver_unmasking(
    r: HonestRound,
    tamper: dict[int, dict[str, dict[int, int]]],
    silent: frozenset[int] = frozenset(),
) -> None:
    """Answer every unmasking request; holder -> {'seed'|'key': {owner: offset}} lies."""
    for client, reply in r.replies(silent).items():
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
    # A +1 offset on a share moves the rebuilt limb by the Lagrange coefficient, out of the
    # 30-bit range of a limb: the range check catches it before the public key is compared
    # (for a lie only the public key catches, see the test after the next).
    r = HonestRound(7, 0, 4, round_id=ROUND, dim=16, seed=5)  # t = t_s = 4, 6 holders of s_6
    _to_unmasking(r, frozenset({6}))
    _deliver_unmasking(r, {2: {"key": {6: 1}}})
    result = r.server.result
    expected = sum(r.inputs[c].astype(np.uint64) for c in range(6)) % 2**32
    np.testing.assert_array_equal(result.total, expected)
    assert result.inconsistent_holders == {2: [6]}


def test_a_b_share_shifted_by_one_is_caught_by_the_limb_range_and_corrected() -> None:
    # A small offset on a share is a large one on the rebuilt limb (times the Lagrange
    # coefficient), which no longer fits in 30 bits: caught before the commitment is compared.
    r = HonestRound(7, 0, 4, round_id=ROUND, dim=16, seed=6)
    _to_unmasking(r, frozenset())
    _deliver_unmasking(r, {0: {"seed": {3: 1}}, 5: {"seed": {1: -7}}})
    result = r.server.result
    expected = sum(r.inputs[c].astype(np.uint64) for c in range(7)) % 2**32
    np.testing.assert_array_equal(result.total, expected)
    assert result.inconsistent_holders == {0: [3], 5: [1]}


class _EqualToAnything:
    """Compares equal to every commitment or key: the check it is fed to is switched off."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


def _combined_first(
    params: MaskingParams, owner: int, survivors: frozenset[int], answering: frozenset[int]
) -> tuple[int, ...]:
    """The t_s holders whose shares of ``owner``'s secret the server combines first, picked
    as :func:`unmask.remove_masks` picks them (b of each survivor in ring order, then s of
    each dropped client). A wrong share among them gives a wrong secret; any other wrong
    share is found by comparing it with their polynomial."""
    graph = params.graph
    pick = unmask._HolderPicker(graph, params.share_threshold)
    order = [c for c in graph.ring if c in survivors] + [
        c for c in graph.ring if c not in survivors
    ]
    for visited in order:
        holders = sorted(graph.neighborhood(visited) & answering)
        chosen = pick(visited, holders)
        if visited == owner:
            return tuple(holders[i] for i in chosen)
    raise AssertionError(f"client {owner} is not in the round")


def _lie_in_range(params: MaskingParams, basis: tuple[int, ...], liar: int) -> int:
    """The offset on the liar's first limb that moves the rebuilt secret's first limb by
    exactly +1: the inverse of the liar's Lagrange coefficient at 0 over ``basis``."""
    weights = shamir.lagrange_vector_at_zero(tuple(params.share_point(h) for h in basis))
    return pow(int(weights[basis.index(liar)]), -1, shamir.PRIME)


def _off_by_one(secret: bytes) -> bytes:
    """The secret whose first limb is one more: what the lie of :func:`_lie_in_range` rebuilds."""
    limbs = shamir.to_limbs(secret)
    limbs[0] += 1
    return shamir.from_limbs(limbs, len(secret))


def test_a_b_share_lie_that_keeps_the_seed_in_range_is_caught_by_the_commitment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A holder among those combined first shifts its b-share of client 3 by the inverse of
    its Lagrange coefficient: the rebuilt b_3 is off by one in its lowest limb, a well-formed
    32-byte seed, so only the commitment H(b_3) tells. With the commitment the share is
    corrected and the liar named. With the commitment check off the sum is wrong by
    PRG(b_3) - PRG(b_3'), silently, and the honest holders outside that set are blamed."""
    owner, everyone = 3, frozenset(range(7))

    def play() -> tuple[HonestRound, int, tuple[int, ...], bytes]:
        r = HonestRound(7, 0, 4, round_id=ROUND, dim=16, seed=6)  # 7 holders: corrects 1
        _to_unmasking(r, frozenset())
        basis = _combined_first(r.params, owner, everyone, everyone)
        liar = basis[0]
        seed = r.clients[owner]._require_secrets().seed  # for the test's arithmetic only
        _deliver_unmasking(r, {liar: {"seed": {owner: _lie_in_range(r.params, basis, liar)}}})
        return r, liar, basis, seed

    r, liar, basis, _ = play()
    expected = input_sum(r, everyone)
    np.testing.assert_array_equal(r.server.result.total, expected)
    assert r.server.result.inconsistent_holders == {liar: [owner]}

    monkeypatch.setattr(unmask, "seed_commitment", lambda *args: _EqualToAnything())
    r, liar, basis, seed = play()
    wrong = expected.copy()  # sum of x + PRG(b_3) - PRG(b_3'): the self-mask left in
    MaskGenerator(32).apply(
        wrong,
        add=[self_mask_key(seed, ROUND, owner)],
        subtract=[self_mask_key(_off_by_one(seed), ROUND, owner)],
        reduce=True,
    )
    np.testing.assert_array_equal(r.server.result.total, wrong)
    assert not np.array_equal(wrong, expected)
    blamed = sorted(everyone - set(basis))
    assert r.server.result.inconsistent_holders == {h: [owner] for h in blamed}
    assert liar not in blamed


def test_a_key_share_lie_that_keeps_the_key_in_range_is_caught_by_the_public_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same lie on an s-share of the dropped client 8, in a round where survivor 7 goes
    silent at unmasking, so the server agrees the pair mask (8, 7) itself from the rebuilt
    s_8. With the check against 8's public key the share is corrected and the liar named;
    with it off the sum is wrong by that pair mask, silently, and honest holders are blamed."""
    owner, silent = 8, frozenset({7})
    survivors, answering = frozenset(range(8)), frozenset(range(7))

    def play() -> tuple[HonestRound, int, tuple[int, ...], bytes]:
        r = HonestRound(9, 0, 5, round_id=ROUND, dim=16, seed=13)  # t = t_s = 5, complete
        _to_unmasking(r, frozenset({owner}))
        basis = _combined_first(r.params, owner, survivors, answering)
        liar = basis[0]
        secret = r.clients[owner]._require_secrets().masking.private_bytes()  # arithmetic only
        lie = _lie_in_range(r.params, basis, liar)
        _deliver_unmasking(r, {liar: {"key": {owner: lie}}}, silent=silent)
        return r, liar, basis, secret

    r, liar, basis, _ = play()
    expected = input_sum(r, survivors)
    np.testing.assert_array_equal(r.server.result.total, expected)
    assert r.server.result.inconsistent_holders == {liar: [owner]}

    monkeypatch.setattr(
        unmask,
        "key_pair_from_private_bytes",
        lambda secret: SimpleNamespace(public=_EqualToAnything()),
    )
    r, liar, basis, secret = play()
    peer = r.server._keys[7].masking
    true_key, wrong_key = (
        pair_mask_key(agree(key_pair_from_private_bytes(s).private, peer), ROUND, owner, 7)
        for s in (secret, _off_by_one(secret))
    )
    assert true_key != wrong_key
    wrong = expected.copy()  # 7 < 8 added +PRG(s_78); the server took off PRG(s_78') instead
    MaskGenerator(32).apply(wrong, add=[true_key], subtract=[wrong_key], reduce=True)
    np.testing.assert_array_equal(r.server.result.total, wrong)
    blamed = sorted(answering - set(basis))
    assert r.server.result.inconsistent_holders == {h: [owner] for h in blamed}
    assert liar not in blamed


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
