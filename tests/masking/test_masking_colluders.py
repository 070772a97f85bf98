"""Colluding clients and a server that picks who drops, against the SecAgg+ graph.

The attack (issue 18, #6): colluders that sit on t_s - 1 of a victim's ring neighbours let a
server read the victim's input alone. The server drops the victim's honest neighbours; the
victim still sees t_s of its neighbourhood survive (itself and the colluders), so it answers;
its b_u comes from the colluders' shares, its pair masks with the dropped from the revealed
keys, and those with the colluders from the colluders themselves.

Two defences: the ring is drawn from the run's session, after the colluders are fixed (they
cannot choose where they sit), and the degree is sized for gamma so that no honest client has
t_s - 1 colluding neighbours except with probability 2^-40.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection

import numpy as np
import pytest
from scipy.stats import hypergeom

from secagg.crypto import aggregate, shamir
from secagg.crypto.identity import IdentityDirectory
from secagg.crypto.prg import MaskGenerator
from secagg.errors import ProtocolError
from secagg.masking import session as session_module
from secagg.masking.graph import harary_graph, ring_order
from secagg.masking.messages import (
    ConsistencyRequest,
    ConsistencyResponse,
    MaskedInput,
    UnmaskingRequest,
    UnmaskingResponse,
)
from secagg.masking.params import (
    SECURITY_BITS,
    SERVER_ID,
    MaskingParams,
    auto_degree,
    collusion_failure_bound,
    self_mask_key,
    share_threshold,
)
from secagg.masking.server import MaskingServer
from secagg.masking.session import establish_session, session_value

N, K, T, DIM = 100, 42, 61, 8  # t_s = 22: 21 colluders beside the victim suffice
VICTIM = 0
DIRECTORY, KEYS = IdentityDirectory.generate(range(N))
PREDICTED = session_value(dict.fromkeys(range(N), bytes(32)))  # all nonces zero


def _colluders_beside_the_victim(session: bytes) -> frozenset[int]:
    """The k/2 clients after the victim on the ring this session gives."""
    ring = harary_graph(range(N), K, session, 0).ring
    at = ring.index(VICTIM)
    return frozenset(ring[(at + j) % N] for j in range(1, K // 2 + 1))


def _adjacent_colluders_attack(colluders: frozenset[int]) -> tuple[np.ndarray | None, int]:
    """Run a signed round whose session is agreed now; the server drops the victim's honest
    neighbours. Returns (x_victim if the server can compute it, colluding neighbours)."""
    sessions, _ = establish_session(range(N))
    value = sessions[0].session.value  # type: ignore[union-attr]
    params = MaskingParams.create(
        range(N),
        DIM,
        threshold=T,
        neighbors=K,
        session=value,
        colluding_fraction=0.0,  # the parameters assume none: the placement is what is tested
        identities=DIRECTORY,
    )
    rng = np.random.default_rng(7)
    inputs = {c: rng.integers(0, 2**32, DIM, dtype=np.uint32) for c in range(N)}
    clients = {c: sessions[c].open_round(params, inputs[c], KEYS[c]) for c in range(N)}
    server = MaskingServer(params)
    outbox = server.start()
    for _ in range(2):  # advertise_keys, share_keys
        for c, message in outbox.items():
            server.receive(clients[c].handle(message)[0])  # type: ignore[arg-type]
        outbox = server.close_phase()
    neighbours = params.graph.neighbors(VICTIM)
    dropped = neighbours - colluders
    masked = {}
    for c, message in outbox.items():
        if c not in dropped:
            reply = clients[c].handle(message)[0]  # type: ignore[arg-type]
            assert isinstance(reply, MaskedInput)
            masked[c] = reply.masked
    # What the colluders hand over: their pair-mask keys with the victim.
    pair_keys = {c: clients[c]._pair_keys[VICTIM] for c in neighbours & colluders}
    survivors = tuple(c for c in range(N) if c not in dropped)
    signatures = {}
    for c in survivors:
        try:
            reply = clients[c].handle(ConsistencyRequest(0, SERVER_ID, c, survivors))[0]
        except ProtocolError:  # an honest client whose own checks fail stays out
            continue
        assert isinstance(reply, ConsistencyResponse)
        signatures[c] = reply.signature
    signers = tuple(sorted(signatures))
    quorum = aggregate.aggregate(signatures[c] for c in signers)
    seed_shares = []
    for c in signers:
        request = UnmaskingRequest(0, SERVER_ID, c, survivors, signers, quorum)
        try:
            response = clients[c].handle(request)[0]
        except ProtocolError:
            continue
        assert isinstance(response, UnmaskingResponse)
        if VICTIM in response.seed_shares:
            point = params.share_point(c)
            seed_shares.append(shamir.Share.from_value_bytes(point, response.seed_shares[VICTIM]))
        if c == VICTIM:
            pair_keys.update(response.pair_keys)  # its keys with the neighbours called dropped
    in_reach = len(neighbours & colluders)
    if len(seed_shares) < params.share_threshold or set(pair_keys) != neighbours:
        return None, in_reach
    seed = shamir.combine(seed_shares, params.share_threshold)
    total = masked[VICTIM].copy()
    MaskGenerator(params.bits).apply(
        total,
        add=[pair_keys[v] for v in neighbours if v < VICTIM],
        subtract=[self_mask_key(seed, 0, VICTIM)]
        + [pair_keys[v] for v in neighbours if v > VICTIM],
        reduce=True,
    )
    np.testing.assert_array_equal(total, inputs[VICTIM])
    return total, in_reach


def test_colluders_chosen_before_the_session_land_far_from_their_victim() -> None:
    # They sit beside the victim on the ring they can predict; the session draws another.
    # (The test itself fails with probability 2.6e-8: that 21 random colluders hold t_s - 1 of
    # some honest client's 42 neighbours.)
    colluders = _colluders_beside_the_victim(PREDICTED)
    recovered, in_reach = _adjacent_colluders_attack(colluders)
    assert recovered is None
    assert in_reach < share_threshold(N, T, K) - 1


def test_on_a_ring_known_in_advance_21_adjacent_colluders_read_the_victim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Defence off: the nonces are predictable, so the ring is known before colluders are placed.
    monkeypatch.setattr(session_module, "draw_nonce", lambda: bytes(32))
    colluders = _colluders_beside_the_victim(PREDICTED)
    recovered, in_reach = _adjacent_colluders_attack(colluders)
    assert in_reach == K // 2 == share_threshold(N, T, K) - 1
    assert recovered is not None  # equal to the victim's input, checked inside


# ---- sizing for gamma -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "t", "dropout", "colluders"),
    [(100, 61, 0.1, 21), (1000, 600, 0.1, 100), (1000, 601, 0.1, 200), (10_000, 6000, 0.1, 1000)],
)
def test_the_automatic_degree_is_the_smallest_that_keeps_colluders_off_every_victim(
    n: int, t: int, dropout: float, colluders: int
) -> None:
    k = auto_degree(n, t, dropout, colluders)
    assert collusion_failure_bound(n, t, k, colluders) <= 2.0**-SECURITY_BITS
    without = auto_degree(n, t, dropout, 0)
    assert k > without  # these are the cases where gamma, not dropout, sets the degree
    assert collusion_failure_bound(n, t, k - 2, colluders) > 2.0**-SECURITY_BITS


def test_a_degree_too_small_for_the_colluders_is_refused() -> None:
    with pytest.raises(ProtocolError, match="colluders sit on t_s - 1 neighbours"):
        MaskingParams.create(range(N), DIM, threshold=T, neighbors=K, colluding_fraction=0.21)
    assert MaskingParams.create(range(N), DIM, threshold=T, colluding_fraction=0.21).neighbors == 44


def test_a_signed_round_refuses_colluders_who_could_sign_two_survivor_sets() -> None:
    # C >= 2t - n colluders sign both of two sets that split the honest clients.
    with pytest.raises(ProtocolError, match="C < 2t - n"):
        MaskingParams.create(
            range(N), DIM, threshold=60, colluding_fraction=0.2, identities=DIRECTORY
        )
    MaskingParams.create(range(N), DIM, threshold=61, colluding_fraction=0.2, identities=DIRECTORY)


def test_placed_colluders_reach_t_s_minus_1_of_a_neighbourhood_as_often_as_the_bound_says() -> None:
    # Monte Carlo over fresh sessions (the ring the real code draws) with C colluders fixed in
    # advance: how often does some honest client have t_s - 1 colluding neighbours, and how
    # often does one given honest client? Parameters where the events are frequent enough to
    # count. One client's count is exactly hypergeometric; the union bound over clients holds,
    # about 2x above the measured rate: neighbours' windows overlap, so victims come in
    # clusters that the union bound counts once per member.
    n, k, colluders, trials = 200, 20, 36, 3000
    t = 121
    need = share_threshold(n, t, k) - 1  # 10 of 20
    bound = collusion_failure_bound(n, t, k, colluders)
    marginal = float(hypergeom.sf(need - 1, n - 1, colluders, k))
    corrupt = np.zeros(n, dtype=bool)
    corrupt[n - colluders :] = True  # ids 164..199, fixed before any session
    any_victim = first_victim = 0
    offsets = np.array([j for j in range(-k // 2, k // 2 + 1) if j])
    for _ in range(trials):
        ring = np.array(ring_order(range(n), secrets.token_bytes(32), 0))
        around = corrupt[ring][(np.arange(n)[:, None] + offsets) % n].sum(axis=1)
        honest = ~corrupt[ring]
        any_victim += bool(np.any(around[honest] >= need))
        first_victim += bool(around[int(np.flatnonzero(ring == 0)[0])] >= need)
    rate = any_victim / trials
    sigma = np.sqrt(bound * (1 - min(bound, 1)) / trials)
    assert 0.02 < bound < 0.2  # a regime where the count is informative
    assert rate <= bound + 4 * sigma  # the bound holds ...
    assert rate >= bound / 4  # ... and is not vacuous
    # One honest client's colluding neighbours follow the hypergeometric law exactly.
    assert abs(first_victim / trials - marginal) <= 4 * np.sqrt(marginal / trials) + 1e-3


# ---- what colluders still get: the sum of an arc ---------------------------------------------


def _arc_between_colluders(
    params: MaskingParams, colluders: Collection[int]
) -> tuple[list[int], set[int]] | None:
    """An honest arc of t_s ring positions whose k/2-wide margins each hold a colluder;
    returns the arc and the honest clients of its margins (the ones the server drops)."""
    ring, half, n = params.graph.ring, params.neighbors // 2, params.n
    size = params.share_threshold
    for start in range(n):
        arc = [ring[(start + j) % n] for j in range(size)]
        before = [ring[(start - j) % n] for j in range(1, half + 1)]
        after = [ring[(start + size - 1 + j) % n] for j in range(1, half + 1)]
        if set(arc) & set(colluders):
            continue
        if set(before) & set(colluders) and set(after) & set(colluders):
            margins = {c for c in before + after if c not in colluders}
            return arc, margins
    return None


def test_two_colluders_around_an_arc_let_the_server_unmask_the_sum_of_t_s_honest_inputs() -> None:
    # The measured bound behind the README: with colluders, a server that picks who drops
    # learns sums of t_s honest inputs (22 here), not t = 60. It drops the honest clients of
    # the two k/2-wide margins of an arc; a colluder in each margin keeps the survivors one
    # connected piece, so every check passes. The arc's masks with the outside are then all
    # known: revealed (with the dropped) or the colluders' own (with them).
    n, k, t = 100, 42, 60
    colluders = set(range(90, 100))  # gamma = 0.1, fixed before the session
    for _ in range(20):  # a session whose ring puts colluders in both margins of some arc
        sessions, _ = establish_session(range(n))
        params = MaskingParams.create(
            range(n),
            DIM,
            threshold=t,
            neighbors=k,
            session=sessions[0].session.value,  # type: ignore[union-attr]
            identities=DIRECTORY,
        )
        found = _arc_between_colluders(params, colluders)
        if found is not None:
            break
    assert found is not None
    arc, dropped = found
    rng = np.random.default_rng(3)
    inputs = {c: rng.integers(0, 2**32, DIM, dtype=np.uint32) for c in range(n)}
    clients = {c: sessions[c].open_round(params, inputs[c], KEYS[c]) for c in range(n)}
    server = MaskingServer(params)
    outbox = server.start()
    masked: dict[int, np.ndarray] = {}
    held: dict[int, dict[int, bytes]] = {}  # colluder -> its pair keys (it hands them over)
    responses: list[UnmaskingResponse] = []
    for phase in params.phases:
        for c, message in outbox.items():
            if phase == "masked_input" and c in dropped:
                continue
            for reply in clients[c].handle(message):  # type: ignore[arg-type]
                if isinstance(reply, MaskedInput):
                    masked[c] = reply.masked
                if isinstance(reply, UnmaskingResponse):
                    responses.append(reply)
                server.receive(reply)
            if phase == "masked_input" and c in colluders:
                held[c] = dict(clients[c]._pair_keys)
        outbox = server.close_phase()
    assert len(server.result.included) >= t  # an honest-looking round: t survivors and more
    # The arc's sum, from its masked inputs and what the round revealed.
    shares: dict[int, list[shamir.Share]] = {u: [] for u in arc}
    revealed: dict[int, dict[int, bytes]] = {}
    for response in responses:
        for u in arc:
            if u in response.seed_shares:
                x = params.share_point(response.sender)
                shares[u].append(shamir.Share.from_value_bytes(x, response.seed_shares[u]))
        revealed[response.sender] = dict(response.pair_keys)
    total = np.zeros(DIM, np.uint32)
    for u in arc:
        seed = shamir.combine(shares[u], params.share_threshold)
        add, subtract = [], [self_mask_key(seed, 0, u)]
        for v in params.graph.neighbors(u) - set(arc):
            key = held[v][u] if v in colluders else revealed[u][v]
            (subtract if v > u else add).append(key)
        unmasked = masked[u].copy()
        MaskGenerator(params.bits).apply(unmasked, add=add, subtract=subtract, reduce=True)
        total = (total.astype(np.uint64) + unmasked) % 2**32
    expected = sum(inputs[u].astype(np.uint64) for u in arc) % 2**32
    np.testing.assert_array_equal(total, expected)
    assert len(arc) == share_threshold(n, t, k) == 22 < t
