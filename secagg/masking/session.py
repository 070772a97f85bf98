"""The run's session: a value no party can repeat or choose, agreed once before the first round.

Why. Every MAC and signature of a round binds :attr:`MaskingParams.digest`. Were the digest a
function of the configuration alone, two set-ups of the same configuration would share it: a
coordinator could run round 0 twice, abort both, keep the survivor-set signatures and replay
them in a third run to show different clients different signed sets, or relay a client's
round keys from an earlier run whose secret key it rebuilt then (issue 18, #5). And the
SecAgg+ ring must come from randomness no party controls, or colluders sit next to their
victim (#6).

Protocol (commit, then reveal; each client checks everything itself):

1. every client draws a 32-byte nonce from ``secrets`` and sends H(client, nonce);
2. the server sends every client the whole table of commitments; a client checks that its
   own is there, under its own id, and only then reveals its nonce;
3. the server sends every client the whole table of nonces; a client checks each against its
   commitment and that the ids are exactly those committed, then derives
   session = H(ids, nonces).

The session is fresh whenever one honest client takes part (its nonce is new), so nothing
signed under another session verifies under this one. It is also unbiased: the commitments
are fixed before any nonce is known, the colluders' nonces are bound by theirs, and a table
with a participant missing at the reveal aborts the set-up instead of going on without it
(going on would let colluders choose among 2^C sessions by withholding). All that is left to
an adversary is to abort and start again, one fresh draw per attempt. A server that shows
different tables to different clients gives them different sessions: their MACs and
signatures then fail against each other and the first round aborts.

Within a session a client answers each round id once, in increasing order
(:meth:`SessionClient.open_round`), so a round is never re-run under the same session either.
Sans-I/O, like the round's state machines: :class:`SessionClient` and :class:`SessionServer`
take decoded messages and return the messages to send; :func:`establish_session` runs the
exchange in memory, through the byte encoding.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from secagg.crypto.identity import IdentityKey
from secagg.crypto.kdf import encode_context
from secagg.errors import (
    BelowThresholdError,
    PhaseError,
    ProtocolError,
    ReplayError,
    TamperedMessageError,
    UnknownSenderError,
    WrongRoundError,
)
from secagg.masking.client import MaskingClient
from secagg.masking.messages import (
    SESSION_NONCE_BYTES,
    SessionClientMessage,
    SessionCommit,
    SessionCommitments,
    SessionNonces,
    SessionReveal,
    SessionServerMessage,
    decode_session_message,
)
from secagg.masking.params import SERVER_ID, SESSION_COMMIT, SESSION_REVEAL, MaskingParams

_COMMITMENT = b"secagg/v1/session-commitment"
_SESSION = b"secagg/v1/session"
_TABLE = b"secagg/v1/session-commitments"
#: Bytes of the session value.
SESSION_BYTES = 32


def draw_nonce() -> bytes:
    """A client's fresh session nonce, from the OS CSPRNG."""
    return secrets.token_bytes(SESSION_NONCE_BYTES)


def nonce_commitment(client: int, nonce: bytes) -> bytes:
    """H(client, nonce): binds a client to its nonce before anyone has revealed theirs."""
    return hashlib.sha256(encode_context(_COMMITMENT, client) + nonce).digest()


def table_digest(commitments: Mapping[int, bytes]) -> bytes:
    """A digest of a commitments table (ids in order): what a client keeps of the one it saw,
    instead of the table (O(1) memory per client, whatever n)."""
    h = hashlib.sha256(encode_context(_TABLE, len(commitments)))
    for client in sorted(commitments):
        h.update(client.to_bytes(8, "big") + commitments[client])
    return h.digest()


def session_value(nonces: Mapping[int, bytes]) -> bytes:
    """The session every participant derives from the revealed nonces (ids in order)."""
    ordered = sorted(nonces)
    h = hashlib.sha256(encode_context(_SESSION, len(ordered)))
    for client in ordered:
        h.update(client.to_bytes(8, "big") + nonces[client])
    return h.digest()


@dataclass(frozen=True)
class Session:
    """An agreed session: who takes part, and the value every round of the run binds."""

    participants: tuple[int, ...]
    value: bytes
    #: client -> revealed nonce: public once revealed, so an auditor can recompute ``value``.
    #: The server's copy keeps them; a client's does not (n of them at each of n clients).
    nonces: Mapping[int, bytes] = field(default_factory=dict, repr=False, compare=False)

    def record(self) -> dict[str, str]:
        """The public transcript (client id -> nonce, hex) from which ``value`` follows."""
        if set(self.nonces) != set(self.participants):
            raise ProtocolError("this copy of the session keeps no nonces (the server's does)")
        return {str(c): self.nonces[c].hex() for c in self.participants}

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> Session:
        """Rebuild a session from :meth:`record` (an auditor's side): the value is recomputed."""
        try:
            nonces = {int(c): bytes.fromhex(v) for c, v in record.items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise TamperedMessageError(
                f"a session record maps client ids to hex nonces: {exc}"
            ) from None
        if any(len(v) != SESSION_NONCE_BYTES for v in nonces.values()):
            raise TamperedMessageError(f"session nonces are {SESSION_NONCE_BYTES} bytes")
        return cls(tuple(sorted(nonces)), session_value(nonces), nonces)


class SessionClient:
    """One client's side of the session set-up, then its guard over the run's rounds."""

    def __init__(self, client_id: int, registered: Collection[int] | None = None) -> None:
        """``registered``: the clients this one agreed to run with (its identity directory,
        or the consortium's list); a table naming anyone else is refused."""
        self.id = client_id
        # Shared, not copied, when given as a frozenset (n clients of one simulation).
        self._registered = (
            registered
            if registered is None or isinstance(registered, frozenset)
            else frozenset(registered)
        )
        self._nonce = draw_nonce()
        self._table: bytes | None = None  # digest of the commitments table it was shown
        self._participants = 0
        self.session: Session | None = None
        self._last_round = -1

    def commit(self) -> SessionCommit:
        """The first message: the commitment to this client's nonce."""
        if self._table is not None or self.session is not None:
            raise PhaseError(f"client {self.id} has already committed in this session")
        return SessionCommit(0, self.id, nonce_commitment(self.id, self._nonce))

    def handle(self, message: SessionServerMessage) -> SessionClientMessage | None:
        """Take the server's table; return the reveal (or None once the session is set)."""
        if message.sender != SERVER_ID or message.recipient != self.id:
            raise UnknownSenderError(
                f"a session message from {message.sender} to {message.recipient} reached "
                f"client {self.id}"
            )
        if isinstance(message, SessionCommitments):
            return self._reveal(message)
        self._finish(message)
        return None

    def _check_ids(self, ids: Iterable[int], what: str) -> None:
        if self._registered is not None:
            strangers = sorted(set(ids) - self._registered)
            if strangers:
                raise UnknownSenderError(
                    f"the session's {what} name {strangers[:10]}, who are not registered "
                    f"clients of client {self.id}'s run"
                )

    def _reveal(self, message: SessionCommitments) -> SessionReveal:
        if self._table is not None:
            raise ReplayError(f"client {self.id} has already seen the session's commitments")
        own = nonce_commitment(self.id, self._nonce)
        if not hmac.compare_digest(message.commitments.get(self.id, b""), own):
            raise TamperedMessageError(
                f"the session's commitments do not hold client {self.id}'s own; it keeps its "
                "nonce to itself"
            )
        self._check_ids(message.commitments, "commitments")
        self._table = table_digest(message.commitments)
        self._participants = len(message.commitments)
        return SessionReveal(0, self.id, self._nonce)

    def _finish(self, message: SessionNonces) -> None:
        if self._table is None:
            raise PhaseError(f"client {self.id} has not seen the commitments yet")
        if self.session is not None:
            raise ReplayError(f"client {self.id}'s session is already set")
        nonces = message.nonces
        if len(nonces) != self._participants:
            raise BelowThresholdError(
                f"the session's nonces name {len(nonces)} clients, {self._participants} "
                "committed: a set-up that goes on without a committed participant could be "
                "steered, so it aborts"
            )
        recomputed = {c: nonce_commitment(c, nonce) for c, nonce in nonces.items()}
        if not hmac.compare_digest(table_digest(recomputed), self._table):
            raise TamperedMessageError(
                "the session's revealed nonces do not match the commitments client "
                f"{self.id} was shown (a nonce was changed, or a participant swapped)"
            )
        self.session = Session(tuple(sorted(nonces)), session_value(nonces))

    def open_round(
        self,
        params: MaskingParams,
        input_vector: np.ndarray,
        identity: IdentityKey | None = None,
    ) -> MaskingClient:
        """This client's state machine for one round of the session, after checking that the
        round belongs to it: the agreed session, its participants, and a round id above every
        earlier one (so no round is played twice under one session)."""
        if self.session is None:
            raise PhaseError(f"client {self.id} has no session yet; set it up first")
        if not hmac.compare_digest(params.session, self.session.value):
            raise ProtocolError(
                f"round {params.round_id}'s parameters carry another session than the one "
                f"client {self.id} agreed; refusing"
            )
        if params.client_ids != self.session.participants:
            raise ProtocolError(
                f"round {params.round_id} names other clients than the session's participants"
            )
        if params.round_id <= self._last_round:
            raise WrongRoundError(
                f"client {self.id} already took part in round {self._last_round} of this "
                f"session; round {params.round_id} would replay an earlier round"
            )
        client = MaskingClient(self.id, params, input_vector, identity)
        self._last_round = params.round_id
        return client


class SessionServer:
    """The server's side: collect commitments, then nonces; relay each table whole."""

    def __init__(self, client_ids: Iterable[int], min_participants: int = 2) -> None:
        self.client_ids = frozenset(client_ids)
        self.min_participants = min_participants
        self.phase = SESSION_COMMIT
        self._commitments: dict[int, bytes] = {}
        self._nonces: dict[int, bytes] = {}

    def receive(self, message: SessionClientMessage) -> None:
        sender = message.sender
        if sender not in self.client_ids:
            raise UnknownSenderError(f"session message from {sender}, who is not a client")
        if self.phase != message.PHASE:
            raise PhaseError(f"a {type(message).__name__} arrived in phase {self.phase!r}")
        if isinstance(message, SessionCommit):
            if sender in self._commitments:
                raise ReplayError(f"client {sender} already committed")
            self._commitments[sender] = message.commitment
            return
        if sender not in self._commitments or sender in self._nonces:
            raise ReplayError(f"client {sender} did not commit, or already revealed")
        if not hmac.compare_digest(
            nonce_commitment(sender, message.nonce), self._commitments[sender]
        ):
            raise TamperedMessageError(f"client {sender}'s nonce does not match its commitment")
        self._nonces[sender] = message.nonce

    def close_phase(self) -> dict[int, SessionServerMessage]:
        """Deadline passed: send the tables (a missing reveal aborts, see the docstring)."""
        if self.phase == SESSION_COMMIT:
            if len(self._commitments) < self.min_participants:
                raise BelowThresholdError(
                    f"only {len(self._commitments)} clients committed to the session, "
                    f"{self.min_participants} needed"
                )
            self.phase = SESSION_REVEAL
            table = dict(self._commitments)
            return {c: SessionCommitments(0, SERVER_ID, c, table) for c in sorted(table)}
        if self.phase != SESSION_REVEAL:
            raise PhaseError("the session is already set")
        missing = sorted(self._commitments.keys() - self._nonces.keys())
        if missing:
            raise BelowThresholdError(
                f"clients {missing[:10]} committed to the session but never revealed; the "
                "set-up aborts (start it again with fresh nonces)"
            )
        self.phase = "finished"
        table = dict(self._nonces)
        return {c: SessionNonces(0, SERVER_ID, c, table) for c in sorted(table)}

    @property
    def session(self) -> Session:
        """The session the participants derive (the server's copy, once the nonces are out)."""
        if self.phase != "finished":
            raise PhaseError("the session is not set yet")
        return Session(tuple(sorted(self._nonces)), session_value(self._nonces), self._nonces)


def establish_session(
    client_ids: Iterable[int], registered: Collection[int] | None = None
) -> tuple[dict[int, SessionClient], Session]:
    """Run the set-up in memory for these clients, every message through its bytes.

    Returns each client's :class:`SessionClient` (its session set) and the server's
    :class:`Session`, which keeps the revealed nonces for the record (the simulation's runner).
    """
    ids = sorted(client_ids)
    allowed = frozenset(ids if registered is None else registered)
    clients = {c: SessionClient(c, allowed) for c in ids}
    server = SessionServer(ids)

    def relay(outgoing: Mapping[int, SessionServerMessage]) -> None:
        for c, message in outgoing.items():
            decoded = decode_session_message(message.to_bytes())
            assert isinstance(decoded, SessionCommitments | SessionNonces)
            reply = clients[c].handle(decoded)
            if reply is not None:
                back = decode_session_message(reply.to_bytes())
                assert isinstance(back, SessionCommit | SessionReveal)
                server.receive(back)

    for client in clients.values():
        commit = decode_session_message(client.commit().to_bytes())
        assert isinstance(commit, SessionCommit)
        server.receive(commit)
    relay(server.close_phase())
    relay(server.close_phase())
    session = server.session
    if any(c.session is None or c.session.value != session.value for c in clients.values()):
        raise ProtocolError("the clients did not all agree the server's session")
    return clients, session
