"""The run's session against a coordinator that re-runs, replays and splits.

Every attack here is run twice: against the real code, where it gains nothing, and with the
defence switched off by monkeypatching, where the test asserts exactly what it gains (the
victim's input, bit for bit). Switching the session off means every client draws the same
nonce, so two set-ups of one configuration agree the same session: what the parameters' digest
was before sessions existed (a function of the configuration alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pytest

from secagg.crypto import aggregate, shamir
from secagg.crypto.agreement import agree, key_pair_from_private_bytes
from secagg.crypto.identity import IdentityDirectory
from secagg.crypto.prg import MaskGenerator
from secagg.errors import (
    BelowThresholdError,
    ProtocolError,
    TamperedMessageError,
    UnknownSenderError,
    WrongRoundError,
)
from secagg.masking import session as session_module
from secagg.masking.client import MaskingClient
from secagg.masking.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyDirectory,
    MaskedInput,
    SessionCommitments,
    SessionNonces,
    UnmaskingRequest,
    UnmaskingResponse,
    decode_session_message,
)
from secagg.masking.params import (
    SERVER_ID,
    MaskingParams,
    pair_mask_key,
    self_mask_key,
)
from secagg.masking.server import MaskingServer
from secagg.masking.session import (
    SessionClient,
    SessionServer,
    establish_session,
    nonce_commitment,
)

DIM = 16
VICTIM = 4
N = 5  # complete graph, t = t_s = 3
DIRECTORY, KEYS = IdentityDirectory.generate(range(N))


def _no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the defence off: every client's nonce is the same in every set-up."""
    monkeypatch.setattr(session_module, "draw_nonce", lambda: bytes(32))


def _inputs(seed: int, n: int = N) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 2**32, DIM, dtype=np.uint32) for c in range(n)}


class _Run:
    """One set-up and its round 0, driven phase by phase by a coordinator that may lie.

    ``sessions``: the clients' SessionClients of an earlier set-up, to run round 0 again
    under the same session (by default a fresh set-up)."""

    def __init__(
        self,
        inputs: Mapping[int, np.ndarray],
        signed: bool = True,
        sessions: Mapping[int, SessionClient] | None = None,
    ) -> None:
        self.sessions = dict(sessions) if sessions is not None else establish_session(range(N))[0]
        session = self.sessions[0].session
        assert session is not None
        self.params = MaskingParams.create(
            range(N),
            DIM,
            threshold=3,
            neighbors=N - 1,
            session=session.value,
            identities=DIRECTORY if signed else None,
        )
        self.clients = {
            c: self.sessions[c].open_round(self.params, inputs[c], KEYS[c]) for c in range(N)
        }
        self.server = MaskingServer(self.params)
        self.adverts: dict[int, AdvertiseKeys] = {}
        self.masked: dict[int, np.ndarray] = {}

    def advertise(self) -> dict[int, KeyDirectory]:
        for c, request in self.server.start().items():
            reply = self.clients[c].handle(request)[0]
            assert isinstance(reply, AdvertiseKeys)
            self.adverts[c] = reply
            self.server.receive(reply)
        directories = self.server.close_phase()
        assert all(isinstance(m, KeyDirectory) for m in directories.values())
        return directories  # type: ignore[return-value]

    def to_masked_inputs(self, directories: Mapping[int, KeyDirectory] | None = None) -> None:
        """Share keys and mask; the coordinator keeps every y_u and closes nothing more."""
        for c, message in (directories or self.advertise()).items():
            self.server.receive(self.clients[c].handle(message)[0])
        for c, delivery in self.server.close_phase().items():
            reply = self.clients[c].handle(delivery)[0]
            assert isinstance(reply, MaskedInput)
            self.masked[c] = reply.masked

    def sign(self, views: Mapping[int, tuple[int, ...]]) -> dict[tuple[int, ...], dict[int, bytes]]:
        """Show each client its own survivor set; collect the signatures by set."""
        signatures: dict[tuple[int, ...], dict[int, bytes]] = {}
        for c, view in views.items():
            reply = self.clients[c].handle(ConsistencyRequest(0, SERVER_ID, c, view))[0]
            assert isinstance(reply, ConsistencyResponse)
            signatures.setdefault(view, {})[c] = reply.signature
        return signatures


def _quorum(signatures: Mapping[int, bytes]) -> tuple[tuple[int, ...], bytes]:
    signers = tuple(sorted(signatures))
    return signers, aggregate.aggregate(signatures[c] for c in signers)


def _read_victim(
    params: MaskingParams, masked: np.ndarray, responses: Iterable[UnmaskingResponse]
) -> np.ndarray | None:
    """x_victim from y_victim and what the holders revealed, if they revealed enough."""
    seed_shares, pair_keys = [], {}
    for response in responses:
        x = params.share_point(response.sender)
        if VICTIM in response.seed_shares:
            value = response.seed_shares[VICTIM]
            seed_shares.append(shamir.Share.from_value_bytes(x, value))
        if response.sender == VICTIM:
            pair_keys.update(response.pair_keys)  # the victim's keys with "dropped" peers
        elif VICTIM in response.pair_keys:
            pair_keys[response.sender] = response.pair_keys[VICTIM]
    peers = params.graph.neighbors(VICTIM)
    if len(seed_shares) < params.share_threshold or set(pair_keys) != peers:
        return None
    seed = shamir.combine(seed_shares, params.share_threshold)
    total = masked.copy()
    MaskGenerator(params.bits).apply(
        total,
        add=[pair_keys[v] for v in peers if v < VICTIM],
        subtract=[self_mask_key(seed, params.round_id, VICTIM)]
        + [pair_keys[v] for v in peers if v > VICTIM],
        reduce=True,
    )
    return total


# ---- #5: replayed quorums ---------------------------------------------------------------------

# The three views of the split that reads x_4 (n = 5, t = 3): A = {0, 1} told that 4 survived
# (they reveal its b-share), 4 told that A dropped (it reveals its pair keys with 0 and 1),
# B = {2, 3} told that 4 dropped (each reveals its pair key with 4).
S_A, S_U, S_B = (0, 1, VICTIM), (2, 3, VICTIM), (0, 1, 2, 3)


def _replay_quorums_of_two_aborted_runs(
    inputs: Mapping[int, np.ndarray], rerun: Callable[[_Run], _Run] | None = None
) -> list[object]:
    """Runs 1 and 2 are aborted after collecting signatures; run 3 shows each client its view
    with a quorum stitched from its own signatures and the replayed ones. Returns what each
    client of run 3 answered: an UnmaskingResponse or the error it raised. ``rerun`` makes
    runs 2 and 3 from the one before (default: a fresh set-up each)."""
    first = _Run(inputs)
    first.to_masked_inputs()
    one = first.sign({0: S_A, 1: S_A, VICTIM: S_A, 2: S_B, 3: S_B})
    again = rerun or (lambda _: _Run(inputs))
    second = again(first)
    second.to_masked_inputs()
    two = second.sign({2: S_U, 3: S_U, VICTIM: S_U, 0: S_B, 1: S_B})
    third = again(second)
    third.to_masked_inputs()
    three = third.sign({0: S_A, 1: S_A, VICTIM: S_U, 2: S_B, 3: S_B})
    quorums = {
        S_A: {**one[S_A], **three[S_A]},
        S_U: {**two[S_U], **three[S_U]},
        S_B: {0: two[S_B][0], **three[S_B]},
    }
    views = {0: S_A, 1: S_A, VICTIM: S_U, 2: S_B, 3: S_B}
    answers: list[object] = []
    for c, view in views.items():
        request = UnmaskingRequest(0, SERVER_ID, c, view, *_quorum(quorums[view]))
        try:
            answers.append(third.clients[c].handle(request)[0])
        except ProtocolError as exc:
            answers.append(exc)
    answers.append(_read_victim(third.params, third.masked[VICTIM], _responses(answers)))
    return answers


def _responses(answers: Iterable[object]) -> list[UnmaskingResponse]:
    return [a for a in answers if isinstance(a, UnmaskingResponse)]


def test_quorums_replayed_from_two_earlier_runs_of_the_same_round_are_refused() -> None:
    inputs = _inputs(1)
    *answers, recovered = _replay_quorums_of_two_aborted_runs(inputs)
    assert recovered is None
    # Every client sees signatures made under another session: none verifies, nobody answers.
    assert all(isinstance(a, TamperedMessageError) for a in answers), answers


def test_without_sessions_replayed_quorums_split_the_views_and_read_one_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_session(monkeypatch)
    inputs = _inputs(1)
    *answers, recovered = _replay_quorums_of_two_aborted_runs(inputs)
    assert len(_responses(answers)) == N  # every client answered its own view
    assert recovered is not None
    np.testing.assert_array_equal(recovered, inputs[VICTIM])


def test_round_0_cannot_be_run_again_within_one_session() -> None:
    inputs = _inputs(1)
    with pytest.raises(WrongRoundError, match="replay an earlier round"):
        _replay_quorums_of_two_aborted_runs(inputs, lambda run: _Run(inputs, sessions=run.sessions))


def test_clients_that_forget_their_rounds_let_one_session_replay_quorums() -> None:
    # The defence off: each client forgets which rounds of the session it played (a restart
    # that keeps no state), so the coordinator re-runs round 0 under one session.
    inputs = _inputs(1)

    def forgetful(run: _Run) -> _Run:
        for client in run.sessions.values():
            client._last_round = -1
        return _Run(inputs, sessions=run.sessions)

    *answers, recovered = _replay_quorums_of_two_aborted_runs(inputs, forgetful)
    assert len(_responses(answers)) == N
    assert recovered is not None
    np.testing.assert_array_equal(recovered, inputs[VICTIM])


# ---- round keys relayed from an earlier run -------------------------------------------------


def _relay_keys_rebuilt_in_an_earlier_run(
    inputs: Mapping[int, np.ndarray],
) -> TamperedMessageError | dict[int, bool]:
    """Run 1 calls 0 and 1 dropped and rebuilds their mask keys s_v from the shares, as an
    honest server does. Run 2 relays to the victim their run-1 keys and MACs. Returns the
    victim's error, or, per relayed peer, whether the coordinator now knows the pair mask the
    victim agreed with it (it does: it holds that peer's old s)."""
    dropped = (0, 1)
    run = _Run(inputs)
    run.to_masked_inputs()
    survivors = tuple(c for c in range(N) if c not in dropped)
    signatures = run.sign(dict.fromkeys(survivors, survivors))[survivors]
    shares: dict[int, list[shamir.Share]] = {d: [] for d in dropped}
    for c in survivors:
        request = UnmaskingRequest(0, SERVER_ID, c, survivors, *_quorum(signatures))
        reply = run.clients[c].handle(request)[0]
        assert isinstance(reply, UnmaskingResponse)
        for d in dropped:
            x = run.params.share_point(c)
            shares[d].append(shamir.Share.from_value_bytes(x, reply.key_shares[d]))
    rebuilt = {d: shamir.combine(shares[d], run.params.share_threshold) for d in dropped}
    second = _Run(inputs)
    directories = dict(second.advertise())
    keys, tags = dict(directories[VICTIM].keys), dict(directories[VICTIM].tags)
    for peer in dropped:
        keys[peer] = run.adverts[peer].keys
        position = sorted(run.params.graph.neighbors(peer)).index(VICTIM)
        tags[peer] = run.adverts[peer].tags[position]
    victim = second.clients[VICTIM]
    try:
        victim.handle(KeyDirectory(0, SERVER_ID, VICTIM, keys, tags))
    except TamperedMessageError as exc:
        return exc
    victim_s = second.adverts[VICTIM].keys.masking
    known = {}
    for peer, s in rebuilt.items():
        agreed = agree(key_pair_from_private_bytes(s).private, victim_s)
        known[peer] = pair_mask_key(agreed, 0, VICTIM, peer) == victim._pair_keys[peer]
    return known


def test_round_keys_relayed_from_an_earlier_run_are_refused() -> None:
    outcome = _relay_keys_rebuilt_in_an_earlier_run(_inputs(2))
    assert isinstance(outcome, TamperedMessageError)
    assert "MAC does not verify" in str(outcome)


def test_without_sessions_the_victim_masks_with_keys_the_coordinator_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not a read of x_4 on its own: the victim's share bundles for 0 and 1 are sealed to their
    # old encryption keys, which nobody rebuilt, so b_4 still needs the honest holders.
    _no_session(monkeypatch)
    assert _relay_keys_rebuilt_in_an_earlier_run(_inputs(2)) == {0: True, 1: True}


# ---- #7: pair-mask keys only where the survivor set is one for everyone -----------------------


def _three_view_split(n: int, neighbors: int) -> tuple[object, np.ndarray]:
    """Unsigned round: A (one side of the victim's ring neighbours) told the victim survived,
    the victim told A dropped, B (the other side) told the victim dropped."""
    ids = range(n)
    sessions, _ = establish_session(ids)
    session = sessions[0].session
    assert session is not None
    params = MaskingParams.create(
        ids, DIM, threshold=0.6, neighbors=neighbors, session=session.value
    )
    inputs = _inputs(n, n)
    clients = {c: sessions[c].open_round(params, inputs[c]) for c in ids}
    server = MaskingServer(params)
    outbox: Mapping[int, object] = server.start()
    for _ in range(2):
        for c, message in outbox.items():
            server.receive(clients[c].handle(message)[0])  # type: ignore[arg-type]
        outbox = server.close_phase()
    masked = {}
    for c, message in outbox.items():
        reply = clients[c].handle(message)[0]  # type: ignore[arg-type]
        assert isinstance(reply, MaskedInput)
        masked[c] = reply.masked
    half = params.neighbors // 2
    ring = params.graph.ring
    at = ring.index(VICTIM)
    side_a = {ring[(at - j) % n] for j in range(1, half + 1)}
    side_b = params.graph.neighbors(VICTIM) - side_a
    everyone = tuple(ids)
    views = {c: everyone for c in ids}
    views[VICTIM] = tuple(c for c in ids if c not in side_a)
    views.update({c: tuple(x for x in ids if x != VICTIM) for c in side_b})
    responses = []
    for c in sorted(side_a | side_b | {VICTIM}):
        reply = clients[c].handle(UnmaskingRequest(0, SERVER_ID, c, views[c]))[0]
        assert isinstance(reply, UnmaskingResponse)
        responses.append(reply)
    return _read_victim(params, masked[VICTIM], responses), inputs[VICTIM]


@pytest.mark.parametrize(("n", "neighbors"), [(5, 4), (12, 6), (30, 8)])
def test_an_unsigned_round_reveals_no_pair_key_so_a_three_view_split_reads_nothing(
    n: int, neighbors: int
) -> None:
    recovered, _ = _three_view_split(n, neighbors)
    assert recovered is None


@pytest.mark.parametrize(("n", "neighbors"), [(5, 4), (12, 6), (30, 8)])
def test_with_pair_keys_revealed_unsigned_a_three_view_split_reads_the_victim(
    monkeypatch: pytest.MonkeyPatch, n: int, neighbors: int
) -> None:
    monkeypatch.setattr(MaskingParams, "reveals_pair_keys", property(lambda self: True))
    recovered, victim_input = _three_view_split(n, neighbors)
    assert recovered is not None
    np.testing.assert_array_equal(recovered, victim_input)


def test_a_server_refuses_pair_keys_in_an_unsigned_round() -> None:
    params = MaskingParams.create(range(N), DIM, threshold=3, neighbors=N - 1)
    server = MaskingServer(params)
    server._started, server._phase = True, "unmasking"
    server._to_recover = frozenset({1})
    reply = UnmaskingResponse(0, 0, {}, {}, pair_keys={1: bytes(16)})
    with pytest.raises(ProtocolError, match="neither signed nor broadcast"):
        server.receive(reply)


# ---- the set-up itself ----------------------------------------------------------------------


def test_every_participant_derives_the_same_fresh_session() -> None:
    first, second = establish_session(range(N))[0], establish_session(range(N))[0]
    values = {c.session.value for c in first.values() if c.session is not None}
    assert len(values) == 1
    assert values != {c.session.value for c in second.values() if c.session is not None}


def _set_up(n: int = 3) -> tuple[dict[int, SessionClient], SessionServer]:
    clients = {c: SessionClient(c, range(n)) for c in range(n)}
    server = SessionServer(range(n))
    for client in clients.values():
        server.receive(client.commit())
    return clients, server


def test_a_client_keeps_its_nonce_unless_the_table_holds_its_own_commitment() -> None:
    clients, server = _set_up()
    table = server.close_phase()[0]
    assert isinstance(table, SessionCommitments)
    left_out = {c: v for c, v in table.commitments.items() if c != 0}
    replaced = {**table.commitments, 0: bytes(32)}
    for lie in (left_out, replaced):
        with pytest.raises(TamperedMessageError, match="own"):
            clients[0].handle(SessionCommitments(0, SERVER_ID, 0, lie))


def test_a_table_naming_an_unregistered_client_is_refused() -> None:
    clients, server = _set_up()
    table = dict(server.close_phase()[0].commitments)  # type: ignore[union-attr]
    table[99] = nonce_commitment(99, bytes(32))
    with pytest.raises(UnknownSenderError, match=r"\[99\]"):
        clients[0].handle(SessionCommitments(0, SERVER_ID, 0, table))


def test_a_missing_reveal_aborts_the_set_up_on_both_sides() -> None:
    # Going on without a committed participant would let colluders pick among sessions.
    clients, server = _set_up()
    tables = server.close_phase()
    reveals = {c: clients[c].handle(tables[c]) for c in clients}  # type: ignore[arg-type]
    for c in (0, 1):
        server.receive(reveals[c])  # type: ignore[arg-type]
    with pytest.raises(BelowThresholdError, match=r"\[2\]"):
        server.close_phase()
    nonces = {c: reveals[c].nonce for c in (0, 1)}  # type: ignore[union-attr]
    with pytest.raises(BelowThresholdError, match="name 2 clients, 3 committed"):
        clients[0].handle(SessionNonces(0, SERVER_ID, 0, nonces))


def test_a_nonce_that_does_not_match_its_commitment_is_refused() -> None:
    clients, server = _set_up()
    tables = server.close_phase()
    reveals = {c: clients[c].handle(tables[c]) for c in clients}  # type: ignore[arg-type]
    nonces = {c: r.nonce for c, r in reveals.items()}  # type: ignore[union-attr]
    nonces[1] = bytes(32)
    with pytest.raises(TamperedMessageError, match="do not match the commitments"):
        clients[0].handle(SessionNonces(0, SERVER_ID, 0, nonces))


def test_session_messages_survive_their_encoding() -> None:
    _clients, server = _set_up()
    for message in server.close_phase().values():
        assert decode_session_message(message.to_bytes()) == message


def _opened(n: int = N) -> tuple[SessionClient, MaskingParams]:
    client = establish_session(range(n))[0][0]
    assert client.session is not None
    params = MaskingParams.create(range(n), DIM, threshold=3, session=client.session.value)
    return client, params


def test_a_client_answers_each_round_of_a_session_once_and_in_order() -> None:
    client, params = _opened()
    vector = np.zeros(DIM, np.uint32)
    later = MaskingParams.create(range(N), DIM, threshold=3, session=params.session, round_id=1)
    client.open_round(later, vector)
    for earlier in (0, 1):
        again = MaskingParams.create(
            range(N), DIM, threshold=3, session=params.session, round_id=earlier
        )
        with pytest.raises(WrongRoundError, match="replay an earlier round"):
            client.open_round(again, vector)


def test_a_round_of_another_session_is_refused() -> None:
    client, _params = _opened()
    other = MaskingParams.create(range(N), DIM, threshold=3, session=bytes(32))
    with pytest.raises(ProtocolError, match="another session"):
        client.open_round(other, np.zeros(DIM, np.uint32))


def test_clients_shown_different_tables_fail_each_others_macs() -> None:
    # A coordinator that splits the set-up gives the two halves two sessions: the first round's
    # MACs (bound to the digest, hence to the session) then fail between them.
    inputs = _inputs(3)
    left, right = establish_session(range(N))[0], establish_session(range(N))[0]
    sessions = {c: (left if c < 2 else right)[c] for c in range(N)}
    params = {
        c: MaskingParams.create(
            range(N),
            DIM,
            threshold=3,
            neighbors=N - 1,
            session=sessions[c].session.value,  # type: ignore[union-attr]
            identities=DIRECTORY,
        )
        for c in range(N)
    }
    clients: dict[int, MaskingClient] = {
        c: sessions[c].open_round(params[c], inputs[c], KEYS[c]) for c in range(N)
    }
    server = MaskingServer(params[0])
    for c, request in server.start().items():
        request = type(request)(0, SERVER_ID, c, params[c].digest)
        server.receive(clients[c].handle(request)[0])
    directories = server.close_phase()
    with pytest.raises(TamperedMessageError, match="MAC does not verify"):
        clients[3].handle(directories[3])
