"""The server side of SecAgg / SecAgg+ as a sans-I/O state machine.

The server routes public keys and encrypted shares between neighbours, sums the masked
inputs as they arrive, and finally removes the masks that do not cancel
(:func:`secagg.masking.unmask.remove_masks`, which an auditor runs too).

In a signed round (identities set) the server relays each client's MACs on its advertised keys
(one per neighbour, under keys the server does not hold), asks every survivor to sign the
survivor set (``consistency_check``) and hands each client the BLS aggregate of the valid
signatures; clients check both, so relaying is all it can do.

Every rebuilt secret is checked before use; wrong shares are corrected where possible and
their holders named (:attr:`MaskingServer.inconsistent_holders`); a round aborts only when
the shares at hand cannot be corrected.

Memory: the masked inputs are added as they arrive, so the sum costs O(d) whatever n is.
What grows with n is routing state, O(n k) with small constants: the sealed share bundles
between ``share_keys`` and ``masked_input`` (88 bytes per edge) and the revealed shares kept
as arrays until unmasking (36 bytes per share, :class:`~secagg.masking.unmask.
RevealedShares`).

API: :meth:`MaskingServer.start` opens the round; :meth:`receive` takes each client message
(invalid ones raise a ProtocolError subclass and change nothing); :meth:`close_phase` means
"the deadline passed": whoever has not sent this phase's message is dropped, and the next
phase's messages are returned, keyed by recipient. After ``unmasking`` closes, :attr:`result`
holds the modular sum. Whenever fewer than t clients remain, or a neighbourhood keeps fewer
than t_s share holders of a secret that must be recovered, :class:`BelowThresholdError` aborts
the round before anything more is requested, and every collected value is discarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from secagg.crypto import aggregate, shamir
from secagg.crypto.agreement import validate_public_key
from secagg.errors import (
    BelowThresholdError,
    CryptoError,
    PhaseError,
    ProtocolError,
    ReplayError,
    TamperedMessageError,
    UnknownSenderError,
    WrongRoundError,
)
from secagg.masking.client import BUNDLE_CIPHERTEXT_BYTES
from secagg.masking.messages import (
    AdvertiseKeys,
    AdvertiseKeysRequest,
    ClientMessage,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyDirectory,
    MaskedInput,
    PublicKeys,
    ServerMessage,
    ShareDelivery,
    ShareKeys,
    ShareTable,
    UnmaskingRequest,
    UnmaskingResponse,
    check_masked_words,
)
from secagg.masking.params import (
    ADVERTISE_KEYS,
    CONSISTENCY_CHECK,
    FINISHED,
    MASKED_INPUT,
    SERVER_ID,
    SHARE_KEYS,
    MaskingParams,
    survivors_signature_message,
)
from secagg.masking.unmask import RevealedShares, remove_masks


def _share_arrays(table: Mapping[int, bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(owners, values) of one revealed-share table; CryptoError if a value is malformed."""
    if isinstance(table, ShareTable):
        return table.ids, table.limbs
    owners = sorted(table)
    raw = b"".join(table[o] for o in owners)
    return np.array(owners, dtype=np.uint64), shamir.decode_values(raw, len(owners))


@dataclass(frozen=True)
class UnmaskedSum:
    """The outcome of a completed round: sum mod 2^bits of exactly the ``included`` inputs."""

    total: np.ndarray
    included: list[int]
    #: holder -> owners whose share it returned wrong (corrected, the sum is still exact)
    inconsistent_holders: dict[int, list[int]] = field(default_factory=dict)


class MaskingServer:
    """The aggregator's half of a masking round (one instance per round)."""

    def __init__(self, params: MaskingParams) -> None:
        self.params = params
        self._graph = params.graph
        self._phases = params.phases
        self._phase = self._phases[0]
        self._started = False
        #: Clients still in the round entering the current phase.
        self._active: set[int] = set(params.client_ids)
        self._senders: dict[str, set[int]] = {phase: set() for phase in self._phases}
        #: Clients that went silent at each closed phase.
        self.dropped: dict[str, list[int]] = {}
        self._keys: dict[int, PublicKeys] = {}
        self._tags: dict[int, Mapping[int, bytes]] = {}  # owner -> neighbour -> MAC for it
        self._key_owner: dict[bytes, int] = {}
        self._bundles: dict[int, Mapping[int, bytes]] = {}
        self._sum: np.ndarray | None = None
        self._survivors: frozenset[int] = frozenset()
        self._to_recover: frozenset[int] = frozenset()  # dropped clients with masked neighbours
        self._seed_shares = RevealedShares()  # b-shares of survivors, as arrays
        self._key_shares = RevealedShares()  # s-shares of dropped clients
        #: survivor -> dropped neighbour -> PRG key of their pair mask (revealed by the survivor)
        self._pair_keys: dict[int, Mapping[int, bytes]] = {}
        self._signatures: dict[int, bytes] = {}  # survivor -> signature on the survivor set
        #: Survivors whose signature on the survivor set did not verify (left out of the quorum).
        self.invalid_signers: list[int] = []
        self._result: UnmaskedSum | None = None
        #: holder -> owners whose share it returned wrong (found while rebuilding secrets)
        self.inconsistent_holders: dict[int, list[int]] = {}

    @property
    def phase(self) -> str:
        """The phase whose client messages the server is collecting (``"finished"`` at the end)."""
        return self._phase

    @property
    def result(self) -> UnmaskedSum:
        if self._result is None:
            raise PhaseError(f"the round has no result yet (server phase {self._phase!r})")
        return self._result

    # ---- driving the round -------------------------------------------------------------------

    def start(self) -> dict[int, ServerMessage]:
        """Open the round: ask every client for its public keys."""
        if self._started:
            raise PhaseError("the round was already started")
        self._started = True
        p = self.params
        return {c: AdvertiseKeysRequest(p.round_id, SERVER_ID, c, p.digest) for c in p.client_ids}

    def receive(self, message: ClientMessage) -> None:
        """Accept one client message, or raise a ProtocolError subclass and ignore it."""
        self._check_envelope(message)
        if isinstance(message, AdvertiseKeys):
            self._accept_keys(message)
        elif isinstance(message, ShareKeys):
            self._accept_bundles(message)
        elif isinstance(message, MaskedInput):
            self._accept_masked_input(message)
        elif isinstance(message, ConsistencyResponse):
            self._accept_signature(message)
        else:
            self._accept_shares(message)
        self._senders[message.PHASE].add(message.sender)

    def close_phase(self) -> dict[int, ServerMessage]:
        """Deadline passed: drop the silent clients and return the next phase's messages."""
        if not self._started or self._phase == FINISHED:
            raise PhaseError(f"no phase is open (server phase {self._phase!r})")
        phase = self._phase
        senders = self._senders[phase]
        self.dropped[phase] = sorted(self._active - senders)
        self._active = set(senders)
        try:
            self._require(len(senders), self.params.threshold, f"clients at {phase}")
            if phase == ADVERTISE_KEYS:
                outgoing: dict[int, ServerMessage] = dict(self._key_directories())
            elif phase == SHARE_KEYS:
                outgoing = dict(self._share_deliveries())
            elif phase == MASKED_INPUT:
                outgoing = dict(self._after_masked_input())
            elif phase == CONSISTENCY_CHECK:
                outgoing = dict(self._unmasking_requests())
            else:
                self._result = self._unmask()
                outgoing = {}
        except (BelowThresholdError, CryptoError):
            self._abort()
            raise
        index = self._phases.index(phase) + 1
        self._phase = self._phases[index] if index < len(self._phases) else FINISHED
        return outgoing

    # ---- validation --------------------------------------------------------------------------

    def _check_envelope(self, message: ClientMessage) -> None:
        if not isinstance(message, ClientMessage):
            raise TamperedMessageError(f"{type(message).__name__} is not a client message")
        name, sender = type(message).__name__, message.sender
        if message.round_id != self.params.round_id:
            raise WrongRoundError(
                f"{name} from client {sender} is for round {message.round_id}, the server is in "
                f"round {self.params.round_id}; messages are never reused across rounds"
            )
        if sender not in self.params.members:
            raise UnknownSenderError(f"{name} from {sender}, who is not a client of this round")
        if sender in self._senders[message.PHASE]:
            raise ReplayError(f"client {sender} already sent a {name} in this round")
        if not self._started or self._phase != message.PHASE or message.PHASE not in self._phases:
            raise PhaseError(
                f"{name} from client {sender} belongs to {message.PHASE!r}, but the server is "
                f"in {self._phase!r}{'' if self._started else ' (not started)'}"
            )
        if sender not in self._active:
            raise PhaseError(
                f"client {sender} dropped out of round {self.params.round_id} earlier; "
                f"its {name} arrives too late"
            )

    def _accept_keys(self, message: AdvertiseKeys) -> None:
        keys, sender = message.keys, message.sender
        if keys.encryption == keys.masking:
            raise ProtocolError(f"client {sender} advertises the same key twice; use two pairs")
        for raw in (keys.encryption, keys.masking):
            try:
                validate_public_key(raw)
            except CryptoError as exc:
                raise TamperedMessageError(f"client {sender}'s public key: {exc}") from exc
            owner = self._key_owner.get(raw)
            if owner is not None:
                raise ProtocolError(
                    f"client {sender} advertises a public key already used by client {owner}; "
                    "every key must be fresh"
                )
        # The MACs are for the neighbours to check (the server has no key): one per neighbour.
        expected = sorted(self._graph.neighbors(sender)) if self.params.signed else []
        if len(message.tags) != len(expected):
            raise ProtocolError(
                f"client {sender} sent {len(message.tags)} MACs on its keys; "
                + (f"its {len(expected)} neighbours need one each" if expected else "none here")
            )
        self._keys[sender] = keys
        self._tags[sender] = dict(zip(expected, message.tags, strict=True))
        self._key_owner[keys.encryption] = self._key_owner[keys.masking] = sender

    def _accept_bundles(self, message: ShareKeys) -> None:
        sender = message.sender
        expected = self._graph.neighbors(sender) & self._active
        for recipient, sealed in message.ciphertexts.items():
            if recipient not in expected:
                raise UnknownSenderError(
                    f"client {sender} addressed shares to {recipient}, which is not one of its "
                    "neighbours that advertised keys"
                )
            if len(sealed) != BUNDLE_CIPHERTEXT_BYTES:
                raise TamperedMessageError(
                    f"client {sender}'s share bundle for {recipient} is {len(sealed)} bytes, "
                    f"not {BUNDLE_CIPHERTEXT_BYTES}"
                )
        missing = expected - message.ciphertexts.keys()
        if missing:
            raise ProtocolError(
                f"client {sender} sent no shares for neighbours {sorted(missing)}; every "
                "neighbour that advertised keys must get one"
            )
        self._bundles[sender] = message.ciphertexts

    def _accept_masked_input(self, message: MaskedInput) -> None:
        p = self.params
        if message.bits != p.bits:
            raise TamperedMessageError(
                f"client {message.sender}'s masked input has {message.bits}-bit words; this "
                f"round uses bits = {p.bits}"
            )
        masked = check_masked_words(message.masked, p.bits)
        if masked.shape != (p.dim,):
            raise TamperedMessageError(
                f"client {message.sender}'s masked input has {masked.size} values; this round "
                f"uses dim = {p.dim}"
            )
        if self._sum is None:
            self._sum = np.zeros(p.dim, dtype=p.dtype)
        np.add(self._sum, masked, out=self._sum)

    def _accept_signature(self, message: ConsistencyResponse) -> None:
        # Checked to be a point here; verified together at the deadline (_unmasking_requests).
        aggregate.check_signature(message.signature)
        self._signatures[message.sender] = message.signature

    def _accept_shares(self, message: UnmaskingResponse) -> None:
        sender = message.sender
        holds = self._graph.neighborhood(sender)
        asked = (
            (message.seed_shares, self._survivors & holds, "b-shares", "survivors"),
            (message.key_shares, self._to_recover & holds, "key shares", "dropped"),
            (message.pair_keys, self._to_recover & holds, "pair-mask keys", "dropped"),
        )
        if message.pair_keys and not self.params.reveals_pair_keys:
            raise ProtocolError(
                f"client {sender} revealed pair-mask keys in a round whose survivor set is "
                "neither signed nor broadcast; the response is ignored"
            )
        for shares, allowed, what, group in asked:
            extra = shares.keys() - allowed
            if extra:
                raise ProtocolError(
                    f"client {sender} sent {what} of {sorted(extra)}, which are not {group} "
                    "in its neighbourhood; the response is ignored"
                )
        try:
            seeds, keys = _share_arrays(message.seed_shares), _share_arrays(message.key_shares)
        except CryptoError as exc:
            raise TamperedMessageError(f"client {sender}'s share: {exc}") from exc
        self._seed_shares.add(sender, *seeds)
        self._key_shares.add(sender, *keys)
        if message.pair_keys:
            self._pair_keys[sender] = message.pair_keys

    # ---- closing phases ----------------------------------------------------------------------

    def _require(self, present: int, needed: int, what: str) -> None:
        if present < needed:
            raise BelowThresholdError(
                f"round {self.params.round_id} aborted: {present} {what}, {needed} needed; "
                "nothing is revealed"
            )

    def _check_neighborhoods(self, members: set[int], phase: str) -> None:
        t_s = self.params.share_threshold
        for client in sorted(members):
            present = len(self._graph.neighborhood(client) & members)
            self._require(present, t_s, f"members of client {client}'s neighbourhood at {phase}")

    def _key_directories(self) -> dict[int, KeyDirectory]:
        self._check_neighborhoods(self._active, ADVERTISE_KEYS)
        r, signed = self.params.round_id, self.params.signed
        directories = {}
        for c in sorted(self._active):
            owners = self._graph.neighbors(c) & self._active
            tags = {v: self._tags[v][c] for v in owners} if signed else {}
            directories[c] = KeyDirectory(r, SERVER_ID, c, {v: self._keys[v] for v in owners}, tags)
        return directories

    def _share_deliveries(self) -> dict[int, ShareDelivery]:
        self._check_neighborhoods(self._active, SHARE_KEYS)
        r = self.params.round_id
        return {
            c: ShareDelivery(
                r,
                SERVER_ID,
                c,
                {u: self._bundles[u][c] for u in self._graph.neighbors(c) & self._active},
            )
            for c in sorted(self._active)
        }

    def _after_masked_input(self) -> dict[int, ConsistencyRequest] | dict[int, UnmaskingRequest]:
        self._fix_survivors()
        if not self.params.signed:
            return self._unmasking_requests()
        r, survivors = self.params.round_id, tuple(sorted(self._survivors))
        return {c: ConsistencyRequest(r, SERVER_ID, c, survivors) for c in survivors}

    def _fix_survivors(self) -> None:
        """U3 := the clients whose masked input is in the sum; check it can be unmasked."""
        survivors = frozenset(self._active)
        lost = self._senders[SHARE_KEYS] - survivors
        # Only dropped clients that some survivor masked with need their key recovered.
        to_recover = frozenset(d for d in lost if self._graph.neighbors(d) & survivors)
        self._check_neighborhoods(set(survivors), MASKED_INPUT)
        if not self._graph.connects(survivors):
            raise BelowThresholdError(
                f"round {self.params.round_id} aborted: the survivors' neighbour graph fell "
                "apart, so a piece's sum could be unmasked alone; nothing is revealed"
            )
        t_s = self.params.share_threshold
        for d in sorted(to_recover):
            holders = len(self._graph.neighbors(d) & survivors)
            self._require(holders, t_s, f"surviving holders of dropped client {d}'s key shares")
        self._survivors, self._to_recover = survivors, to_recover
        self._bundles = {}

    def _unmasking_requests(self) -> dict[int, UnmaskingRequest]:
        """Ask every client still here to unmask, showing it the aggregate of the signatures.

        t signatures on one set are what a client needs (t > n/2 makes the set unique). All
        signatures are verified at once; only when the sum fails is each checked alone, to
        leave out the invalid ones (:attr:`invalid_signers`).
        """
        p = self.params
        survivors = tuple(sorted(self._survivors))
        if p.identities is None:
            return {
                c: UnmaskingRequest(p.round_id, SERVER_ID, c, survivors)
                for c in sorted(self._active)
            }
        message = survivors_signature_message(p, self._survivors)
        signers = sorted(self._signatures)
        total = aggregate.aggregate(self._signatures[c] for c in signers)
        try:
            aggregate.verify_aggregate(
                [p.identities[c].aggregate for c in signers], total, message, "the quorum"
            )
        except TamperedMessageError:
            for c in signers:
                try:
                    aggregate.verify(p.identities[c].aggregate, self._signatures[c], message, "")
                except TamperedMessageError:
                    self.invalid_signers.append(c)
            signers = [c for c in signers if c not in self.invalid_signers]
            total = aggregate.aggregate(self._signatures[c] for c in signers)
        self._require(len(signers), p.threshold, "valid signatures on the survivor set")
        return {
            c: UnmaskingRequest(p.round_id, SERVER_ID, c, survivors, tuple(signers), total)
            for c in sorted(self._active)
        }

    def _unmask(self) -> UnmaskedSum:
        p, t_s = self.params, self.params.share_threshold
        # Every count is checked before any secret is reconstructed.
        seed_counts, key_counts = self._seed_shares.counts(), self._key_shares.counts()
        for owner in sorted(self._survivors):
            got = seed_counts.get(owner, 0)
            self._require(got, t_s, f"b-shares of survivor {owner}")
        for owner in sorted(self._to_recover):
            got = key_counts.get(owner, 0)
            self._require(got, t_s, f"key shares of dropped client {owner}")
        if self._sum is None:  # unreachable: t >= 2 survivors sent masked inputs
            raise PhaseError("no masked input was received")

        total = self._sum
        found = remove_masks(
            p,
            self._keys,
            total,
            self._survivors,
            self._to_recover,
            self._seed_shares,
            self._key_shares,
            pair_keys=self._pair_keys,
        )
        self.inconsistent_holders.update(found)
        self._sum = None
        self._seed_shares, self._key_shares = RevealedShares(), RevealedShares()
        self._pair_keys = {}
        return UnmaskedSum(total, sorted(self._survivors), dict(self.inconsistent_holders))

    def _abort(self) -> None:
        """Forget everything collected: an aborted round reveals nothing."""
        self._phase = FINISHED
        self._sum = None
        self._bundles = {}
        self._seed_shares, self._key_shares = RevealedShares(), RevealedShares()
        self._pair_keys = {}
