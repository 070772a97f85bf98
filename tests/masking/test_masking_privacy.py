"""The server must never obtain both b_u and s_u^SK of a client whose masked input it holds.

With both, it could strip every mask from y_u and read x_u. Clients enforce this: each
answers one unmasking request per round, derives both roles from one survivor set, and the
per-neighbourhood threshold is a strict majority, so even contradicting requests to
different holders cannot gather enough shares of both secrets. (The signed consistency
round goes further and stops contradicting requests altogether: test_masking_attacks.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto import shamir
from secagg.crypto.identity import IdentityDirectory, IdentityKey
from secagg.errors import BelowThresholdError, CryptoError, ReplayError
from secagg.masking import MaskingClient, MaskingParams, MaskingServer
from secagg.masking.messages import (
    ServerMessage,
    UnmaskingRequest,
    UnmaskingResponse,
    decode_client_message,
    decode_server_message,
)
from secagg.masking.params import share_x


def _run_to_unmasking(
    params: MaskingParams, dropouts: dict[str, set[int]], keys: dict[int, IdentityKey] | None = None
) -> tuple[dict[int, MaskingClient], MaskingServer, dict[int, ServerMessage]]:
    """Honest clients and server up to the unmasking requests (bytes really round-trip)."""
    keys = keys or {}
    inputs = {c: np.full(params.dim, c % 2**params.bits, params.dtype) for c in params.client_ids}
    clients = {c: MaskingClient(c, params, inputs[c], keys.get(c)) for c in params.client_ids}
    server = MaskingServer(params)
    outbox = server.start()
    silent: set[int] = set()
    for phase in params.phases[:-1]:
        silent |= dropouts.get(phase, set())
        for c, message in outbox.items():
            if c not in silent:
                for reply in clients[c].handle(decode_server_message(message.to_bytes())):
                    server.receive(decode_client_message(reply.to_bytes()))
        outbox = server.close_phase()
    return clients, server, outbox


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 30), signed=st.booleans(), data=st.data())
def test_honest_runs_never_reveal_both_secrets_of_any_client(
    n: int, signed: bool, data: st.DataObject
) -> None:
    degree = data.draw(st.sampled_from([0, n - 1, *range(2, n - 1, 2)]))
    directory, keys = IdentityDirectory.generate(range(n))
    params = MaskingParams.create(
        range(n),
        2,
        threshold=n // 2 + 1,
        neighbors=degree,
        colluding_fraction=0.0,  # honest clients: these runs test the protocol, not gamma
        identities=directory if signed else None,
    )
    alive = list(range(n))
    dropouts = {}
    for phase in params.phases[:-1]:
        if not alive:  # everyone is gone: the round aborts before this phase
            break
        dropouts[phase] = data.draw(st.sets(st.sampled_from(alive), max_size=max(1, n // 8)))
        alive = [c for c in alive if c not in dropouts[phase]]
    try:
        clients, _, requests = _run_to_unmasking(params, dropouts, keys)
    except BelowThresholdError:  # aborting early reveals nothing at all
        return
    seed_owners: set[int] = set()
    key_owners: set[int] = set()
    pair_owners: set[int] = set()
    for c, request in requests.items():
        reply = clients[c].handle(request)[0]
        assert isinstance(reply, UnmaskingResponse)
        seed_owners |= set(reply.seed_shares)
        key_owners |= set(reply.key_shares)
        pair_owners |= set(reply.pair_keys)
    assert not seed_owners & key_owners
    # Pair-mask keys are revealed only with dropped clients, never with a survivor.
    assert pair_owners <= key_owners


def test_contradicting_requests_to_different_holders_cannot_reveal_both_secrets() -> None:
    # Without signatures, the strongest split a server can try against client 3: tell half
    # of 3's holders that 3 survived (they reveal b_3 shares) and the other half that it
    # dropped (s_3 shares). Each request alone names t survivors, so each is answered.
    params = MaskingParams.create(range(7), 4, threshold=4, neighbors=6)  # t_s = 4 of 7
    clients, _, requests = _run_to_unmasking(params, {})
    victim, everyone = 3, tuple(range(7))
    told_survived, told_dropped = (0, 1, 2, 3), (4, 5, 6)
    seed_shares, key_shares, pair_keys = [], [], []
    for c in told_survived:
        reply = clients[c].handle(requests[c])[0]
        assert isinstance(reply, UnmaskingResponse)
        seed_shares.append(shamir.Share.from_value_bytes(share_x(c), reply.seed_shares[victim]))
    others = tuple(x for x in everyone if x != victim)
    for c in told_dropped:
        lie = UnmaskingRequest(params.round_id, requests[c].sender, c, others)
        reply = clients[c].handle(lie)[0]
        assert isinstance(reply, UnmaskingResponse)
        key_shares.append(shamir.Share.from_value_bytes(share_x(c), reply.key_shares[victim]))
        pair_keys.append(reply.pair_keys)
    # Each holder answered once; asking again for the other secret is a replay.
    for c in told_survived:
        second = UnmaskingRequest(params.round_id, requests[c].sender, c, others)
        with pytest.raises(ReplayError):
            clients[c].handle(second)
    assert len(seed_shares) >= params.share_threshold  # b_3 is recoverable ...
    with pytest.raises(CryptoError, match="cannot reconstruct"):  # ... but s_3 is not
        shamir.combine(key_shares, params.share_threshold)
    assert len(seed_shares) + len(key_shares) == params.neighbors + 1 < 2 * params.share_threshold
    # An unsigned round reveals no pair-mask key (a server free to split views could ask the
    # victim itself for its keys): 3's pair masks stay hidden, and y_3 stays masked.
    assert pair_keys == [{}, {}, {}]


@settings(max_examples=2, deadline=None)
@given(n=st.integers(1000, 2500), degree=st.sampled_from([20, 30]), data=st.data())
def test_with_thousands_of_clients_neither_honest_runs_nor_split_requests_reveal_both(
    n: int, degree: int, data: st.DataObject
) -> None:
    params = MaskingParams.create(
        range(n), 2, threshold=0.6, neighbors=degree, colluding_fraction=0.0
    )
    alive = list(range(n))
    dropouts = {}
    for phase in params.phases[:-1]:
        dropouts[phase] = data.draw(st.sets(st.sampled_from(alive), max_size=n // 20))
        alive = [c for c in alive if c not in dropouts[phase]]
    try:
        clients, _, requests = _run_to_unmasking(params, dropouts)
    except BelowThresholdError:  # aborting early reveals nothing at all
        return
    # The strongest split against one survivor whose holders all answer: a majority of its
    # holders told it survived, the rest that it dropped (each request names >= t survivors).
    survivors = set(requests[next(iter(requests))].survivors)
    victim = data.draw(
        st.sampled_from(
            [c for c in sorted(survivors) if params.graph.neighborhood(c) <= set(requests)]
        )
    )
    holders = sorted(params.graph.neighborhood(victim))
    split = data.draw(st.integers(1, len(holders) - 1))
    told_dropped = set(holders[split:])
    seed_owners: set[int] = set()
    key_owners: set[int] = set()
    victim_seed_shares = victim_key_shares = victim_pair_keys = 0
    for c, request in requests.items():
        if c in told_dropped and c != victim:
            lie = tuple(s for s in request.survivors if s != victim)
            request = UnmaskingRequest(params.round_id, request.sender, c, lie)
        reply = clients[c].handle(request)[0]
        assert isinstance(reply, UnmaskingResponse)
        seed_owners |= set(reply.seed_shares)
        key_owners |= set(reply.key_shares)
        victim_seed_shares += victim in reply.seed_shares
        victim_key_shares += victim in reply.key_shares
        victim_pair_keys += victim in reply.pair_keys
    # Honest holders never reveal both secrets of anyone else ...
    assert not (seed_owners & key_owners) - {victim}
    # ... and for the victim, each holder revealed one share: never t_s of both.
    assert victim_seed_shares + victim_key_shares <= len(holders)
    assert min(victim_seed_shares, victim_key_shares) < params.share_threshold
    # No pair-mask key is revealed in an unsigned round, whatever a holder is told.
    assert victim_pair_keys == 0
    if victim_seed_shares >= params.share_threshold:
        assert victim_pair_keys < len(params.graph.neighbors(victim))
        assert not key_owners & (params.graph.neighbors(victim) - told_dropped)
