"""Attested HE sums: the key holder decrypts only a sum it can tie to at least t clients' own
signed ciphertexts, and it never sees a ciphertext.

Why. The aggregator holds the public key, so it can encrypt anything. Told only "this is a
sum of t" (a summand count under an unkeyed digest), a key holder cannot tell a real sum from
one client's ciphertext plus t - 1 encryptions of zero the aggregator made: it would decrypt
that client's update. Threshold decryption would avoid trusting anyone with the whole key,
but neither backend has it (TenSEAL has none, phe has none, and OpenFHE, which has it, ships
no wheel for Python 3.11), so the sum itself is vouched for, by the clients:

1. **submit** (:class:`Submission`): each client encrypts its encoding and signs
   (session, round, its id, SHA-256 of the ciphertext) with its identity's Ed25519 key;
2. **board** (:class:`Board`): the aggregator checks every signature against the identity
   directory (a bad one costs its client only, as a dropout), adds the valid ciphertexts and
   publishes them with their signatures;
3. **attest** (:class:`Attestation`): clients check every signature on the board
   themselves, add the ciphertexts themselves and BLS-sign (session, round, digest of the
   sum, the sorted (client, ciphertext digest) list); signatures on one message add up to
   one (:mod:`secagg.crypto.aggregate`);
4. **decrypt** (:class:`DecryptRequest`): the aggregator sends the key holder the sum, the
   (client, digest, signature) list and the added-up co-signature: digests, never a
   ciphertext. The key holder (:class:`KeyHolderGate`) decrypts only if at least t distinct
   clients signed distinct listed digests, at least t clients co-signed this list and this
   sum's digest, the sum holds exactly the listed number of summands, and no sum was
   decrypted before in this round or a later one.

With the ledger the chain replaces the signatures (:mod:`secagg.ledger.he_attestation`):
each hospital commits its ciphertext's digest from its own account, co-signers read the
survivors' digests from the chain and the ciphertexts from the store, and each attests the
sum's digest on chain; the key holder reads that evidence from the chain into the same
:class:`AttestedSum` and the same gate.

Sessions and rounds. Every statement binds a ``session``, bytes no party can repeat (a
digest of fresh client nonces, or of the key holder's fresh public key, or the chain and
contract), and a round id. A client submits at most once and attests at most once per round,
in strictly increasing rounds per session; the key holder decrypts at most one sum per
round, in strictly increasing rounds, and serves one session per key. Otherwise two attested
sums of one round (the same list with and without one client) would differ by that client's
update.

What the co-signatures assume. One honest co-signer suffices to make a wrong sum digest
unattestable, so t co-signers resist up to t - 1 colluders. The sum still reveals the sum of
the honest inputs in it: an aggregator colluding with c clients includes at least t - c
honest ones, so c >= t - 1 colluders (whose own inputs it knows) isolate one client's update,
as under masking. A colluding client can also submit a re-encryption of someone else's
ciphertext (nothing proves it knows its plaintext); that is no more than its own input could
do. Listed digests must be distinct, so a plain copy is refused.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from numpy.typing import ArrayLike

from secagg.crypto import aggregate
from secagg.crypto.identity import SIGNATURE_BYTES, IdentityDirectory, IdentityKey
from secagg.crypto.kdf import encode_context
from secagg.errors import (
    BelowThresholdError,
    HEError,
    ProtocolError,
    ReplayError,
    TamperedMessageError,
    UnknownSenderError,
    WrongRoundError,
)
from secagg.he.base import EncryptedVector, HEPublicKey
from secagg.he.wire import Reader

MAGIC = b"SAHA"
VERSION = 1
DIGEST_BYTES = 32
MAX_SESSION_BYTES = 64
BLS_BYTES = aggregate.SIGNATURE_BYTES

_HEADER = struct.Struct(">4sBB")
_U8 = struct.Struct(">B")
_U64 = struct.Struct(">Q")

_PUBLIC_KEY = b"secagg/he/public-key/v1"
_SUBMISSION = b"secagg/he/submission/v1"
_SUM = b"secagg/he/sum/v1"
_SESSION = b"secagg/he/session/v1"


class Kind(IntEnum):
    SIGNED_PUBLIC_KEY = 1
    SUBMISSION = 2
    BOARD = 3
    ATTESTATION = 4
    DECRYPT_REQUEST = 5


def digest(data: bytes) -> bytes:
    """SHA-256: how every statement names a ciphertext or a sum (the ledger's blob digest)."""
    return hashlib.sha256(data).digest()


def session_from_public_key(public_key: bytes) -> bytes:
    """A session for a run that has no other: the digest of the key holder's fresh public key.

    The key holder makes a fresh key pair per run and decrypts under nothing else, so no
    statement bound to it can count in another run.
    """
    return hashlib.sha256(encode_context(_SESSION) + public_key).digest()


def check_session(session: object) -> bytes:
    if not isinstance(session, bytes) or not 1 <= len(session) <= MAX_SESSION_BYTES:
        raise HEError(f"an HE session is 1 to {MAX_SESSION_BYTES} bytes, got {session!r:.80}")
    return session


# ---- the signed statements ------------------------------------------------------------------


def public_key_statement(key_holder: int, public_key: bytes) -> bytes:
    """What the key holder signs: this public key is the one it holds the secret of."""
    return encode_context(_PUBLIC_KEY, key_holder) + digest(public_key)


def submission_statement(
    session: bytes, round_id: int, client: int, ciphertext_digest: bytes
) -> bytes:
    """What a client signs: this ciphertext is its own input of this round of this session."""
    head = encode_context(_SUBMISSION, round_id, client, len(session))
    return head + session + ciphertext_digest


def sum_statement(
    session: bytes, round_id: int, sum_digest: bytes, entries: Sequence[tuple[int, bytes]]
) -> bytes:
    """What a co-signer signs: ``sum_digest`` is the sum of exactly these (client, ciphertext
    digest) entries, sorted by client, in this round of this session."""
    listed = b"".join(_U64.pack(c) + d for c, d in entries)
    head = encode_context(_SUM, round_id, len(entries), len(session))
    return head + session + sum_digest + listed


# ---- byte encodings -----------------------------------------------------------------------


def _header(kind: Kind) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind)


def _open(data: object, kind: Kind) -> Reader:
    if not isinstance(data, bytes):
        raise TamperedMessageError(f"an HE {kind.name.lower()} is bytes, got {type(data).__name__}")
    reader = Reader(data, kind.name.lower().replace("_", " "))
    magic, version, found = reader.unpack(_HEADER)
    if magic != MAGIC:
        raise reader.fail("not an attested-HE message (bad magic bytes)")
    if version != VERSION:
        raise reader.fail(f"version {version}, this library reads {VERSION}")
    if found != kind:
        raise reader.fail(f"message kind {found}, expected {kind.value} ({kind.name.lower()})")
    return reader


def _session_bytes(session: bytes) -> bytes:
    return _U8.pack(len(check_session(session))) + session


def _read_session(reader: Reader) -> bytes:
    (size,) = reader.unpack(_U8)
    if not 1 <= size <= MAX_SESSION_BYTES:
        raise reader.fail(f"a session is 1 to {MAX_SESSION_BYTES} bytes, {size} declared")
    return reader.take(size)


def _sized(value: bytes, size: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise TamperedMessageError(f"{what} is {size} bytes")
    return value


def _blob(data: bytes) -> bytes:
    return _U64.pack(len(data)) + data


def _increasing(ids: Iterable[int], reader: Reader, what: str) -> None:
    if any(b <= a for a, b in itertools.pairwise(ids)):
        raise reader.fail(f"{what} are duplicated or out of order")


@dataclass(frozen=True)
class SignedPublicKey:
    """The key holder's public key frame, signed with its identity: clients and the aggregator
    refuse a key the aggregator made (it would hold its secret)."""

    key_holder: int
    public_key: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        signature = _sized(self.signature, SIGNATURE_BYTES, "a key holder's signature")
        head = _header(Kind.SIGNED_PUBLIC_KEY) + _U64.pack(self.key_holder)
        return head + _blob(self.public_key) + signature

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        reader = _open(data, Kind.SIGNED_PUBLIC_KEY)
        key_holder = reader.u64()
        public_key = reader.take(reader.u64())
        signature = reader.take(SIGNATURE_BYTES)
        reader.finish()
        return cls(key_holder, public_key, signature)

    @classmethod
    def sign(cls, identity: IdentityKey, key_holder: int, public_key: bytes) -> Self:
        return cls(
            key_holder, public_key, identity.sign(public_key_statement(key_holder, public_key))
        )

    def verify(self, directory: IdentityDirectory, key_holder: int | None = None) -> bytes:
        """The public key frame, once its signature checks against the key holder's entry.

        ``key_holder``: the id this party trusts as key holder; None accepts whoever the
        message names, as long as it is in the directory (then any registered client could
        pose as key holder: a deployment should name it in each node's own settings).
        """
        if key_holder is not None and self.key_holder != key_holder:
            raise UnknownSenderError(
                f"the HE public key is signed by client {self.key_holder}, the key holder is "
                f"client {key_holder}: it is not the consortium's key"
            )
        identity = directory.get(self.key_holder)
        if identity is None:
            raise UnknownSenderError(f"HE key holder {self.key_holder} is not in the directory")
        identity.verify(
            self.signature, public_key_statement(self.key_holder, self.public_key), "HE public key"
        )
        return self.public_key


@dataclass(frozen=True)
class Submission:
    """A client's ciphertext of one round and its Ed25519 signature on the ciphertext's digest."""

    session: bytes
    round_id: int
    client: int
    ciphertext: bytes
    signature: bytes

    @property
    def digest(self) -> bytes:
        return digest(self.ciphertext)

    def statement(self) -> bytes:
        return submission_statement(self.session, self.round_id, self.client, self.digest)

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                _header(Kind.SUBMISSION),
                _session_bytes(self.session),
                _U64.pack(self.round_id),
                _U64.pack(self.client),
                _blob(self.ciphertext),
                _sized(self.signature, SIGNATURE_BYTES, "a submission's signature"),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        reader = _open(data, Kind.SUBMISSION)
        session, round_id, client = _read_session(reader), reader.u64(), reader.u64()
        ciphertext = reader.take(reader.u64())
        signature = reader.take(SIGNATURE_BYTES)
        reader.finish()
        return cls(session, round_id, client, ciphertext, signature)


#: Bytes of a board entry besides its ciphertext: client, signature, ciphertext length.
_BOARD_ENTRY_BYTES = 8 + SIGNATURE_BYTES + 8


@dataclass(frozen=True)
class Board:
    """What the aggregator publishes for co-signing: every accepted signed ciphertext."""

    session: bytes
    round_id: int
    submissions: tuple[Submission, ...]  # sorted by client

    def to_bytes(self) -> bytes:
        parts = [
            _header(Kind.BOARD),
            _session_bytes(self.session),
            _U64.pack(self.round_id),
            struct.pack(">I", len(self.submissions)),
        ]
        for s in self.submissions:
            signature = _sized(s.signature, SIGNATURE_BYTES, "a submission's signature")
            parts += [_U64.pack(s.client), signature, _blob(s.ciphertext)]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        reader = _open(data, Kind.BOARD)
        session, round_id = _read_session(reader), reader.u64()
        submissions = []
        for _ in range(reader.count(_BOARD_ENTRY_BYTES)):
            client, signature = reader.u64(), reader.take(SIGNATURE_BYTES)
            ciphertext = reader.take(reader.u64())
            submissions.append(Submission(session, round_id, client, ciphertext, signature))
        reader.finish()
        _increasing((s.client for s in submissions), reader, "board clients")
        return cls(session, round_id, tuple(submissions))


@dataclass(frozen=True)
class Attestation:
    """A co-signer's BLS signature on the sum it computed itself (its digest travels along so
    the aggregator can tell an honest disagreement from a bad signature)."""

    session: bytes
    round_id: int
    signer: int
    sum_digest: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                _header(Kind.ATTESTATION),
                _session_bytes(self.session),
                _U64.pack(self.round_id),
                _U64.pack(self.signer),
                _sized(self.sum_digest, DIGEST_BYTES, "a sum digest"),
                _sized(self.signature, BLS_BYTES, "a co-signature"),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        reader = _open(data, Kind.ATTESTATION)
        session, round_id, signer = _read_session(reader), reader.u64(), reader.u64()
        sum_digest, signature = reader.take(DIGEST_BYTES), reader.take(BLS_BYTES)
        reader.finish()
        return cls(session, round_id, signer, sum_digest, signature)


#: Bytes of a decrypt request's entry: client, ciphertext digest, its signature.
_REQUEST_ENTRY_BYTES = 8 + DIGEST_BYTES + SIGNATURE_BYTES


@dataclass(frozen=True)
class DecryptRequest:
    """What the key holder gets: the sum, the signed digests it is made of, and the
    co-signers' added-up signature on both. No individual ciphertext."""

    session: bytes
    round_id: int
    entries: tuple[tuple[int, bytes, bytes], ...]  # (client, ciphertext digest, signature)
    signers: tuple[int, ...]
    signature: bytes  # BLS, the signers' signatures on the sum statement, added up
    total: bytes  # the sum's ciphertext frame

    @property
    def sum_digest(self) -> bytes:
        return digest(self.total)

    def to_bytes(self) -> bytes:
        parts = [
            _header(Kind.DECRYPT_REQUEST),
            _session_bytes(self.session),
            _U64.pack(self.round_id),
            struct.pack(">I", len(self.entries)),
        ]
        for client, ciphertext_digest, signature in self.entries:
            parts += [
                _U64.pack(client),
                _sized(ciphertext_digest, DIGEST_BYTES, "a ciphertext digest"),
                _sized(signature, SIGNATURE_BYTES, "a submission's signature"),
            ]
        parts.append(struct.pack(">I", len(self.signers)))
        parts += [_U64.pack(s) for s in self.signers]
        parts += [_sized(self.signature, BLS_BYTES, "a co-signature"), _blob(self.total)]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        reader = _open(data, Kind.DECRYPT_REQUEST)
        session, round_id = _read_session(reader), reader.u64()
        entries = tuple(
            (reader.u64(), reader.take(DIGEST_BYTES), reader.take(SIGNATURE_BYTES))
            for _ in range(reader.count(_REQUEST_ENTRY_BYTES))
        )
        signers = tuple(reader.u64() for _ in range(reader.count(8)))
        signature = reader.take(BLS_BYTES)
        total = reader.take(reader.u64())
        reader.finish()
        _increasing((c for c, _, _ in entries), reader, "listed clients")
        _increasing(signers, reader, "co-signers")
        return cls(session, round_id, entries, signers, signature, total)


# ---- the roles ------------------------------------------------------------------------------


def _verify_submission(directory: IdentityDirectory, submission: Submission) -> None:
    identity = directory.get(submission.client)
    if identity is None:
        raise UnknownSenderError(f"client {submission.client} is not in the identity directory")
    identity.verify(
        submission.signature, submission.statement(), f"client {submission.client}'s ciphertext"
    )


class _Rounds:
    """Round ids that must strictly increase (one statement of a kind per round)."""

    def __init__(self, what: str) -> None:
        self.last = -1
        self.what = what

    def check(self, round_id: int) -> None:
        if round_id <= self.last:
            raise WrongRoundError(
                f"{self.what} round {round_id} after round {self.last}: round ids strictly "
                "increase, so nothing signed for one round counts in another"
            )

    def mark(self, round_id: int) -> None:
        self.check(round_id)
        self.last = round_id


class AttestingClient:
    """One client's side for one session: sign its own ciphertext, co-sign a sum it redid."""

    def __init__(
        self,
        client: int,
        identity: IdentityKey,
        directory: IdentityDirectory,
        public_key: HEPublicKey,
        session: bytes,
        threshold: int,
        dim: int,
        key_holder: int | None = None,
    ) -> None:
        if directory.raw(client) != identity.record:
            raise HEError(f"client {client}'s identity key is not its directory entry")
        self.id, self.identity, self.directory = client, identity, directory
        self.public_key, self.session = public_key, check_session(session)
        self.threshold, self.dim, self.key_holder = threshold, dim, key_holder
        self._submitted = _Rounds(f"client {client}: submission for")
        self._attested = _Rounds(f"client {client}: co-signature for")

    def submit(self, round_id: int, values: ArrayLike) -> bytes:
        """Encrypt ``values`` and sign the ciphertext's digest: the Submission's bytes."""
        self._submitted.check(round_id)
        ciphertext = self.public_key.encrypt(values).serialize()
        statement = submission_statement(self.session, round_id, self.id, digest(ciphertext))
        signature = self.identity.sign(statement)
        self._submitted.mark(round_id)
        return Submission(self.session, round_id, self.id, ciphertext, signature).to_bytes()

    def attest(self, data: bytes) -> bytes:
        """Check every signed ciphertext of a board, add them up, co-sign the sum.

        Refuses (by name) a board of another session or an old round, one with fewer than t
        entries, a bad signature or ciphertext, or a copied one: the aggregator could have
        left any of those out, so a board carrying one is a lie.
        """
        board = Board.from_bytes(data)
        if board.session != self.session:
            raise WrongRoundError(f"client {self.id}: the board belongs to another session")
        for submission in board.submissions:
            _verify_submission(self.directory, submission)
        sum_digest, digests = self._sum(board.round_id, [s.ciphertext for s in board.submissions])
        entries = [(s.client, d) for s, d in zip(board.submissions, digests, strict=True)]
        statement = sum_statement(self.session, board.round_id, sum_digest, entries)
        self._attested.mark(board.round_id)
        signature = self.identity.aggregate.sign(statement)
        return Attestation(self.session, board.round_id, self.id, sum_digest, signature).to_bytes()

    def attest_committed(self, round_id: int, ciphertexts: Sequence[bytes]) -> bytes:
        """The sum digest to attest for ciphertexts whose authenticity the caller checked (the
        chain: each committed by its client's own account); one per round, as :meth:`attest`."""
        sum_digest, _ = self._sum(round_id, ciphertexts)
        self._attested.mark(round_id)
        return sum_digest

    def _sum(self, round_id: int, ciphertexts: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
        """(digest of the sum, digest of each ciphertext), after the checks every co-signer
        makes whatever vouches for the ciphertexts."""
        if self.id == self.key_holder:
            raise ProtocolError(
                f"client {self.id} holds the HE secret key: it never looks at individual "
                "ciphertexts, so it does not co-sign"
            )
        self._attested.check(round_id)
        if len(ciphertexts) < self.threshold:
            raise BelowThresholdError(
                f"client {self.id} co-signs sums of at least t = {self.threshold} clients, "
                f"got {len(ciphertexts)}"
            )
        digests = [digest(c) for c in ciphertexts]
        if len(set(digests)) != len(digests):
            raise TamperedMessageError("two clients list the same ciphertext: one copied it")
        return digest(_add(self.public_key, ciphertexts, self.dim).serialize()), digests


def _add(public_key: HEPublicKey, ciphertexts: Iterable[bytes], dim: int) -> EncryptedVector:
    """The sum of single clients' ciphertexts of ``dim`` values (a ciphertext that claims to
    hold several summands, or another length, is no client's own input)."""
    total: EncryptedVector | None = None
    for blob in ciphertexts:
        vector = public_key.deserialize_vector(blob)
        if vector.summands != 1 or vector.length != dim:
            raise TamperedMessageError(
                f"a client's ciphertext holds one vector of {dim} values, this one "
                f"{vector.summands} summand(s) of {vector.length}"
            )
        total = vector if total is None else total.add_(vector)
    if total is None:
        raise BelowThresholdError("no ciphertext to add")
    return total


@dataclass
class _Accepted:
    submission: Submission
    digest: bytes


@dataclass
class AttestedAggregator:
    """The aggregator's side of one round: accept signed ciphertexts, publish them, gather
    co-signatures on their sum, ask the key holder. It holds no secret and cannot decrypt."""

    public_key: HEPublicKey
    directory: IdentityDirectory
    session: bytes
    round_id: int
    threshold: int
    dim: int
    key_holder: int | None = None
    rejected: dict[int, str] = field(default_factory=dict)  # client -> why it was left out
    _accepted: dict[int, _Accepted] = field(default_factory=dict)
    _total: EncryptedVector | None = None
    _sum_digest: bytes | None = None
    _attestations: dict[int, Attestation] = field(default_factory=dict)

    def receive(self, client: int, data: bytes) -> bool:
        """Accept ``client``'s submission or record why not (a refusal is that client's
        dropout: the round goes on without it)."""
        try:
            if self._sum_digest is not None:
                raise ProtocolError("the board is published: submissions are closed")
            submission = Submission.from_bytes(data)
            self._check_statement(submission.session, submission.round_id)
            if submission.client != client:
                raise UnknownSenderError(
                    f"client {client} sent a submission in client {submission.client}'s name"
                )
            if client in self._accepted:
                raise ReplayError(f"client {client} already submitted in this round")
            _verify_submission(self.directory, submission)
            vector = _add(self.public_key, [submission.ciphertext], self.dim)
            if any(a.digest == submission.digest for a in self._accepted.values()):
                raise TamperedMessageError("this ciphertext was already submitted by another")
            self._total = vector if self._total is None else self._total.add_(vector)
        except (ProtocolError, HEError) as exc:
            self.rejected[client] = f"{type(exc).__name__}: {exc}"
            return False
        self._accepted[client] = _Accepted(submission, submission.digest)
        return True

    @property
    def included(self) -> list[int]:
        return sorted(self._accepted)

    @property
    def total(self) -> EncryptedVector:
        if self._total is None:
            raise BelowThresholdError("no valid ciphertext arrived")
        return self._total

    def board(self) -> bytes:
        """Close submissions: the signed ciphertexts for co-signers to check and add up."""
        if len(self._accepted) < self.threshold:
            raise BelowThresholdError(
                f"{len(self._accepted)} valid signed ciphertext(s), the key holder decrypts "
                f"sums of at least t = {self.threshold}: the round aborts, nothing is decrypted"
            )
        self._sum_digest = digest(self.total.serialize())
        submissions = tuple(self._accepted[c].submission for c in self.included)
        return Board(self.session, self.round_id, submissions).to_bytes()

    def receive_attestation(self, client: int, data: bytes) -> bool:
        """Keep ``client``'s co-signature if it signs this board's sum; else record why not."""
        try:
            if self._sum_digest is None:
                raise ProtocolError("a co-signature arrived before the board was published")
            attestation = Attestation.from_bytes(data)
            self._check_statement(attestation.session, attestation.round_id)
            if attestation.signer != client or client not in self.directory:
                raise UnknownSenderError(f"client {client} sent a co-signature it cannot make")
            if client == self.key_holder:
                raise ProtocolError("the key holder never co-signs: it sees no ciphertext")
            if client in self._attestations:
                raise ReplayError(f"client {client} already co-signed this round")
            if attestation.sum_digest != self._sum_digest:
                raise TamperedMessageError(f"client {client} added the board up differently")
            aggregate.verify(
                self.directory[client].aggregate,
                attestation.signature,
                self._statement(),
                f"client {client}'s co-signature",
            )
        except ProtocolError as exc:
            self.rejected[client] = f"co-signature: {type(exc).__name__}: {exc}"
            return False
        self._attestations[client] = attestation
        return True

    @property
    def cosigners(self) -> list[int]:
        return sorted(self._attestations)

    def decrypt_request(self) -> bytes:
        """The sum, its signed digests and the added-up co-signature, for the key holder."""
        if len(self._attestations) < self.threshold:
            raise BelowThresholdError(
                f"{len(self._attestations)} client(s) co-signed the sum, the key holder needs "
                f"t = {self.threshold}: the round aborts, nothing is decrypted"
            )
        signers = tuple(self.cosigners)
        signature = aggregate.aggregate(self._attestations[c].signature for c in signers)
        entries = tuple(
            (c, self._accepted[c].digest, self._accepted[c].submission.signature)
            for c in self.included
        )
        total = self.total.serialize()
        return DecryptRequest(
            self.session, self.round_id, entries, signers, signature, total
        ).to_bytes()

    def _statement(self) -> bytes:
        assert self._sum_digest is not None
        entries = [(c, self._accepted[c].digest) for c in self.included]
        return sum_statement(self.session, self.round_id, self._sum_digest, entries)

    def _check_statement(self, session: bytes, round_id: int) -> None:
        if session != self.session or round_id != self.round_id:
            raise WrongRoundError(
                f"a message for round {round_id} of another or this session arrived in round "
                f"{self.round_id}: statements never count outside their own round"
            )


@dataclass(frozen=True)
class AttestedSum:
    """A sum's pedigree, as the key holder checks it before decrypting.

    ``contributions``: contributor -> digest of its own ciphertext; ``attesters``: who
    co-signed ``sum_digest`` as the sum of exactly those. Authenticated either by signatures
    (:meth:`KeyHolderGate.verify_request`) or by the chain (each entry a transaction of the
    contributor's or attester's own account; :mod:`secagg.ledger.he_attestation`).
    """

    session: bytes
    round_id: int
    sum_digest: bytes
    contributions: Mapping[Hashable, bytes]
    attesters: frozenset[Hashable]


@dataclass
class KeyHolderGate:
    """What the key holder checks before decrypting anything (it holds no ciphertext but the
    sum, and learns nothing but the digests)."""

    directory: IdentityDirectory | None
    threshold: int
    dim: int
    session: bytes | None = None  # None: bound to the first session admitted
    _rounds: _Rounds = field(default_factory=lambda: _Rounds("decryption of"))

    def verify_request(self, data: bytes) -> tuple[AttestedSum, bytes]:
        """An off-chain request's pedigree, every signature checked, and the sum's bytes."""
        request = DecryptRequest.from_bytes(data)
        if self.directory is None:
            raise HEError("this key holder has no identity directory to check signatures with")
        for client, ciphertext_digest, signature in request.entries:
            identity = self.directory.get(client)
            if identity is None:
                raise UnknownSenderError(f"client {client} is not in the identity directory")
            identity.verify(
                signature,
                submission_statement(request.session, request.round_id, client, ciphertext_digest),
                f"client {client}'s ciphertext digest",
            )
        unknown = [s for s in request.signers if s not in self.directory]
        if unknown:
            raise UnknownSenderError(f"co-signers {unknown} are not in the identity directory")
        entries = [(c, d) for c, d, _ in request.entries]
        if request.signers:
            aggregate.verify_aggregate(
                [self.directory[s].aggregate for s in request.signers],
                request.signature,
                sum_statement(request.session, request.round_id, request.sum_digest, entries),
                "the co-signatures on the sum",
            )
        attested = AttestedSum(
            request.session,
            request.round_id,
            request.sum_digest,
            dict(entries),
            frozenset(request.signers),
        )
        return attested, request.total

    def admit(
        self, attested: AttestedSum, total: bytes, public_key: HEPublicKey
    ) -> EncryptedVector:
        """The sum to decrypt, once its pedigree holds; the round is used up then."""
        if self.session is not None and attested.session != self.session:
            raise WrongRoundError(
                "the sum belongs to another session: a key holder decrypts for one session only"
            )
        self._rounds.check(attested.round_id)
        if len(attested.contributions) < self.threshold:
            raise BelowThresholdError(
                f"the key holder decrypts sums of at least t = {self.threshold} clients' signed "
                f"ciphertexts, this one lists {len(attested.contributions)}"
            )
        if len(set(attested.contributions.values())) != len(attested.contributions):
            raise TamperedMessageError("two contributors list the same ciphertext digest")
        if len(attested.attesters) < self.threshold:
            raise BelowThresholdError(
                f"{len(attested.attesters)} client(s) attest this sum, the key holder needs "
                f"t = {self.threshold}"
            )
        if digest(total) != attested.sum_digest:
            raise TamperedMessageError("the sum sent is not the sum the clients attested")
        vector = public_key.deserialize_vector(total)
        if vector.summands != len(attested.contributions) or vector.length != self.dim:
            raise TamperedMessageError(
                f"the attested sum holds {vector.summands} summand(s) of {vector.length} values, "
                f"the attestation lists {len(attested.contributions)} of {self.dim}"
            )
        self._rounds.mark(attested.round_id)
        self.session = attested.session
        return vector
