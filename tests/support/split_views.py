"""A server that shows clients different survivor sets, and what it reads from their answers.

The attack tests play a lying server against real clients in two steps: :func:`show_views`
sends each client the survivor set the attack chooses for it (in a signed round, first to
sign, then with the signatures that set gathered), and :func:`read_sum` computes, from the
masked inputs and the answers alone, what the server then knows about a group of inputs
(:func:`unmask_group` does the last step for tests that gather the secrets otherwise).
Nothing here reads a client's secrets: only what crossed the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from support.honest_round import HonestRound

from secagg.crypto import aggregate, shamir
from secagg.crypto.agreement import agree, key_pair_from_private_bytes
from secagg.crypto.prg import MaskGenerator
from secagg.errors import ProtocolError
from secagg.masking.client import MaskingClient
from secagg.masking.messages import (
    ConsistencyRequest,
    ConsistencyResponse,
    MaskedInput,
    PublicKeys,
    UnmaskingRequest,
    UnmaskingResponse,
)
from secagg.masking.params import SERVER_ID, MaskingParams, pair_mask_key, self_mask_key

View = tuple[int, ...]


def masked_inputs(r: HonestRound) -> dict[int, np.ndarray]:
    """Run the honest phases up to the masked inputs; return every client's y_u.

    The server never receives them: the lying server takes over from here.
    """
    r.advance()
    r.advance()
    masked = {}
    for c, reply in r.replies().items():
        assert isinstance(reply, MaskedInput)
        masked[c] = reply.masked
    return masked


def quorum(signatures: Mapping[int, bytes]) -> tuple[tuple[int, ...], bytes]:
    """(signers, aggregate signature) as a server shows them."""
    signers = tuple(sorted(signatures))
    return signers, aggregate.aggregate(signatures[c] for c in signers)


class Shown(NamedTuple):
    """What a lying server holds after showing clients their survivor sets."""

    answers: list[UnmaskingResponse]
    #: client id -> the error with which it refused (at signing or at unmasking)
    refusals: dict[int, ProtocolError]
    #: survivor set -> client id -> that client's signature on it (signed rounds)
    signatures: dict[View, dict[int, bytes]]


def show_views(r: HonestRound, views: Mapping[int, View]) -> Shown:
    """Show each client of ``r`` its own survivor set (see :func:`show_to`)."""
    return show_to(r.params, [(r.clients[c], view) for c, view in views.items()])


def show_to(params: MaskingParams, views: Sequence[tuple[MaskingClient, View]]) -> Shown:
    """Show each client object its survivor set; return the answers and each refusal.

    In a signed round every client is first asked to sign its set, then shown the aggregate
    of every signature its set gathered. A client that refuses at either step appears in the
    refusals (with the error it raised) and never in the answers. Client objects, not ids:
    a test may show two copies of one client two different sets.
    """
    round_id = params.round_id
    shown = Shown([], {}, {view: {} for _, view in views})
    refused: set[int] = set()  # positions in ``views``
    if params.signed:
        for i, (client, view) in enumerate(views):
            try:
                [reply] = client.handle(ConsistencyRequest(round_id, SERVER_ID, client.id, view))
            except ProtocolError as exc:
                shown.refusals[client.id] = exc
                refused.add(i)
                continue
            assert isinstance(reply, ConsistencyResponse)
            shown.signatures[view][client.id] = reply.signature
    for i, (client, view) in enumerate(views):
        if i in refused:
            continue
        signed = shown.signatures[view]
        proof = quorum(signed) if signed else ()
        try:
            [reply] = client.handle(UnmaskingRequest(round_id, SERVER_ID, client.id, view, *proof))
        except ProtocolError as exc:
            shown.refusals[client.id] = exc
            continue
        assert isinstance(reply, UnmaskingResponse)
        shown.answers.append(reply)
    return shown


def read_sum(
    params: MaskingParams,
    keys: Mapping[int, PublicKeys],
    masked: Mapping[int, np.ndarray],
    answers: Iterable[UnmaskingResponse],
    group: Iterable[int],
) -> np.ndarray | None:
    """The sum of ``group``'s inputs, if the server can compute it from what it holds; else None.

    It takes y_u of every member, removes each member's self-mask (b_u rebuilt from t_s
    revealed b-shares) and the pair masks between members and outsiders (pair masks inside
    the group cancel). Each such pair key is one that either end revealed, or an agreement
    with a mask key s rebuilt from t_s revealed s-shares. Every neighbour is taken to have
    shared keys (the tests here never drop anyone before the masked inputs).
    """
    members = frozenset(group)
    t_s, graph, round_id = params.share_threshold, params.graph, params.round_id
    # owner -> holder -> share (a holder that answered twice gives the same share twice)
    seed_shares: dict[int, dict[int, shamir.Share]] = {}
    key_shares: dict[int, dict[int, shamir.Share]] = {}
    revealed: dict[tuple[int, int], bytes] = {}
    for answer in answers:
        holder = answer.sender
        x = params.share_point(holder)
        for table, found in ((answer.seed_shares, seed_shares), (answer.key_shares, key_shares)):
            for owner, value in table.items():
                found.setdefault(owner, {})[holder] = shamir.Share.from_value_bytes(x, value)
        for dropped, key in answer.pair_keys.items():
            revealed[holder, dropped] = key

    def rebuilt(shares: dict[int, dict[int, shamir.Share]], owner: int) -> bytes | None:
        held = list(shares.get(owner, {}).values())
        return shamir.combine(held, t_s) if len(held) >= t_s else None

    def pair_key(member: int, outsider: int) -> bytes | None:
        for ends in ((member, outsider), (outsider, member)):
            if ends in revealed:
                return revealed[ends]
        for private_of, public_of in ((outsider, member), (member, outsider)):
            secret = rebuilt(key_shares, private_of)
            if secret is not None:
                agreed = agree(key_pair_from_private_bytes(secret).private, keys[public_of].masking)
                return pair_mask_key(agreed, round_id, member, outsider)
        return None

    seeds: dict[int, bytes] = {}
    pair_keys: dict[tuple[int, int], bytes] = {}
    for member in sorted(members):
        seed = rebuilt(seed_shares, member)
        if seed is None:
            return None
        seeds[member] = seed
        for outsider in sorted(graph.neighbors(member) - members):
            shared = pair_key(member, outsider)
            if shared is None:
                return None
            pair_keys[member, outsider] = shared
    return unmask_group(params, masked, seeds, pair_keys)


def unmask_group(
    params: MaskingParams,
    masked: Mapping[int, np.ndarray],
    seeds: Mapping[int, bytes],
    pair_keys: Mapping[tuple[int, int], bytes],
) -> np.ndarray:
    """The sum of y_u over the members (the clients in ``seeds``, with their b_u), less their
    self-masks and the pair masks (member, outsider) -> key between members and outsiders."""
    round_id = params.round_id
    subtract = [self_mask_key(seed, round_id, member) for member, seed in seeds.items()]
    add: list[bytes] = []
    for (member, outsider), key in pair_keys.items():
        # The member added +PRG(s) for a peer above it and -PRG(s) below it: undo that.
        (subtract if outsider > member else add).append(key)
    total = np.zeros(params.dim, dtype=params.dtype)
    for member in seeds:
        np.add(total, masked[member], out=total)
    MaskGenerator(params.bits).apply(total, add=add, subtract=subtract, reduce=True)
    return total


def input_sum(r: HonestRound, group: Iterable[int]) -> np.ndarray:
    """The true sum of ``group``'s inputs mod 2^bits, to compare a read with."""
    total = sum((r.inputs[c].astype(np.uint64) for c in group), np.zeros(r.params.dim, np.uint64))
    return (total % (1 << r.params.bits)).astype(r.params.dtype)
