"""The messages of one masking round and their compact binary encoding.

Every message starts with the same 18-byte header, ``version u8 | type u8 | round u64 |
sender u64`` (big-endian), so a receiver can reject a wrong round or sender before parsing the
body. Bodies are fixed-width integers, raw keys, ciphertexts and raw little-endian arrays: no
pickle, nothing that executes or allocates on the sender's say-so.

The per-neighbour parts are packed tightly, since at cross-device scale they are what a
client sends besides its vector: a table of share bundles is ``count u32 | size u32 |
(id u64 | bundle)*`` with one size for all (a bundle is two 36-byte share values sealed under
a single-use key: 88 bytes, no nonce); revealed shares are ``count u32 | ids u64* |
values*`` with 36-byte values (nine u32 limbs of GF(2^31 - 1)), parsed with one NumPy view;
revealed pair-mask keys are ``count u32 | (id u64 | key[16])*``, and so are the MACs on
advertised keys.
Id-keyed tables are encoded in strictly increasing id order, which makes every encoding
canonical and rules out duplicates. Anything that does not parse exactly (wrong type, short,
trailing bytes, duplicate or unsorted ids, out-of-range values) raises
:class:`~secagg.errors.TamperedMessageError`.

Server -> client: AdvertiseKeysRequest, KeyDirectory, ShareDelivery, ConsistencyRequest,
UnmaskingRequest. Client -> server: AdvertiseKeys, ShareKeys, MaskedInput, ConsistencyResponse,
UnmaskingResponse. The consistency messages exist only in signed rounds.

Once per run, before any round, the session messages (:mod:`secagg.masking.session`):
SessionCommit and SessionReveal (client -> server), SessionCommitments and SessionNonces
(server -> client). Their header's round field is 0: a session is not a round.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Self, TypeVar

import numpy as np

from secagg.crypto import prg, shamir
from secagg.crypto.aggregate import SIGNATURE_BYTES
from secagg.crypto.agreement import KEY_BYTES
from secagg.errors import CryptoError, SecAggError, TamperedMessageError
from secagg.masking.params import (
    ADVERTISE_KEYS,
    CONSISTENCY_CHECK,
    MASKED_INPUT,
    SESSION_COMMIT,
    SESSION_REVEAL,
    SHARE_KEYS,
    TAG_BYTES,
    UNMASKING,
)

VERSION = 6
DIGEST_BYTES = 32
#: Bytes of the nonce each client adds to the run's session.
SESSION_NONCE_BYTES = 32
_HEADER = struct.Struct(">BBQQ")
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

_T = TypeVar("_T")


class _Reader:
    """Bounds-checked cursor over an encoded message; every failure is a TamperedMessageError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.what = what
        self.pos = 0

    def fail(self, reason: str) -> TamperedMessageError:
        return TamperedMessageError(f"malformed {self.what} message: {reason}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise self.fail(f"truncated ({len(self.data)} bytes, needs at least {end})")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return int(_U8.unpack(self.take(1))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def count(self, min_entry_bytes: int) -> int:
        """A u32 entry count, refused if the remaining bytes cannot possibly hold it."""
        n = self.u32()
        if n * min_entry_bytes > len(self.data) - self.pos:
            raise self.fail(f"claims {n} entries, more than the message can hold")
        return n

    def table(self, read_value: Callable[[], _T], value_bytes: int) -> dict[int, _T]:
        """``count u32 | (id u64 | value)*`` with strictly increasing ids."""
        table: dict[int, _T] = {}
        last = -1
        for _ in range(self.count(8 + value_bytes)):
            key = self.u64()
            if key <= last:
                raise self.fail("entry ids are duplicated or out of order")
            last = key
            table[key] = read_value()
        return table

    def ids(self) -> tuple[int, ...]:
        n = self.count(8)
        values = struct.unpack(f">{n}Q", self.take(8 * n))
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise self.fail("id list is not strictly increasing")
        return tuple(values)

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        """A read-only view of ``count`` words straight from the message bytes (no copy)."""
        nbytes = count * dtype.itemsize
        if self.pos + nbytes > len(self.data):
            raise self.fail(f"truncated ({len(self.data)} bytes, needs {self.pos + nbytes})")
        words = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += nbytes
        return words

    def sized_table(self, size: int) -> dict[int, bytes]:
        """``count u32 | (id u64 | value[size])*`` with strictly increasing ids."""
        return self.table(lambda: self.take(size), size)

    def blob(self) -> bytes:
        return self.take(self.u32())

    def fixed_table(self) -> dict[int, bytes]:
        """``count u32 | size u32 | (id u64 | value[size])*`` with strictly increasing ids."""
        count, size = self.u32(), self.u32()
        if count * (8 + size) > len(self.data) - self.pos:
            raise self.fail(f"claims {count} entries, more than the message can hold")
        table: dict[int, bytes] = {}
        last = -1
        for _ in range(count):
            key = self.u64()
            if key <= last:
                raise self.fail("entry ids are duplicated or out of order")
            last = key
            table[key] = self.take(size)
        return table

    def share_table(self) -> ShareTable:
        """``count u32 | ids u64[count] | values[count]``: strictly increasing ids."""
        count = self.count(8 + shamir.VALUE_BYTES)
        ids = np.frombuffer(self.take(8 * count), dtype=">u8").astype(np.uint64)
        if count > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise self.fail("entry ids are duplicated or out of order")
        raw = self.take(shamir.VALUE_BYTES * count)
        try:
            values = shamir.decode_values(raw, count)
        except CryptoError as exc:
            raise self.fail(str(exc)) from None
        return ShareTable(ids, values, raw)

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} unexpected trailing bytes")


def _table(entries: Mapping[int, bytes]) -> bytes:
    parts = [_U32.pack(len(entries))]
    for key in sorted(entries):
        parts += [_U64.pack(key), entries[key]]
    return b"".join(parts)


def _fixed_table(entries: Mapping[int, bytes]) -> bytes:
    sizes = {len(v) for v in entries.values()}
    if len(sizes) > 1:
        raise TamperedMessageError("every entry of a bundle table has the same size")
    size = sizes.pop() if sizes else 0
    parts = [_U32.pack(len(entries)), _U32.pack(size)]
    for key in sorted(entries):
        parts += [_U64.pack(key), entries[key]]
    return b"".join(parts)


class ShareTable(Mapping[int, bytes]):
    """owner -> share value bytes, as decoded from the wire: arrays underneath.

    A Mapping like the dict a client builds, but the server reads :attr:`ids` (uint64) and
    :attr:`limbs` (int64 field elements, shape (count, LIMBS)) without a Python object per
    share.
    """

    __slots__ = ("_index", "_raw", "ids", "limbs")

    def __init__(self, ids: np.ndarray, limbs: np.ndarray, raw: bytes) -> None:
        self.ids = ids
        self.limbs = limbs
        self._raw = raw
        self._index: dict[int, int] | None = None

    def _positions(self) -> dict[int, int]:
        if self._index is None:
            self._index = {int(o): i for i, o in enumerate(self.ids.tolist())}
        return self._index

    def __getitem__(self, owner: int) -> bytes:
        i = self._positions()[owner]
        return self._raw[i * shamir.VALUE_BYTES : (i + 1) * shamir.VALUE_BYTES]

    def __iter__(self) -> Iterator[int]:
        return iter(int(o) for o in self.ids.tolist())

    def __len__(self) -> int:
        return int(self.ids.size)

    def __contains__(self, owner: object) -> bool:
        return owner in self._positions()

    def __repr__(self) -> str:
        return f"ShareTable(owners={self.ids.tolist()[:10]}, values=<hidden>)"


def _share_table(entries: Mapping[int, bytes]) -> bytes:
    if isinstance(entries, ShareTable):
        packed = entries.ids.astype(">u8").tobytes()
        return b"".join([_U32.pack(len(entries)), packed, entries._raw])
    ordered = sorted(entries)
    for owner in ordered:
        value = entries[owner]
        if not isinstance(value, bytes) or len(value) != shamir.VALUE_BYTES:
            raise TamperedMessageError(f"share values are {shamir.VALUE_BYTES} bytes")
    try:
        ids = struct.pack(f">{len(ordered)}Q", *ordered)
    except struct.error as exc:
        raise TamperedMessageError("share owners must be ids in [0, 2^64)") from exc
    return b"".join([_U32.pack(len(ordered)), ids, *(entries[o] for o in ordered)])


def _ids(values: tuple[int, ...]) -> bytes:
    ordered = sorted(set(values))
    return _U32.pack(len(ordered)) + struct.pack(f">{len(ordered)}Q", *ordered)


@dataclass(frozen=True)
class Message:
    """Common header of every message: which round, and who sent it."""

    TYPE: ClassVar[int] = 0
    PHASE: ClassVar[str] = ""

    round_id: int
    sender: int

    def _body(self) -> bytes | list[bytes | memoryview]:
        raise NotImplementedError

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        try:
            header = _HEADER.pack(VERSION, self.TYPE, self.round_id, self.sender)
        except struct.error as exc:
            raise TamperedMessageError(
                f"cannot encode {type(self).__name__}: round and sender must be in [0, 2^64)"
            ) from exc
        body = self._body()
        # Large bodies come as a list of buffers so the payload is copied exactly once.
        return b"".join([header, *body]) if isinstance(body, list) else header + body

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode a message of exactly this type."""
        message = decode_message(data)
        if not isinstance(message, cls):
            raise TamperedMessageError(
                f"expected a {cls.__name__} message, got {type(message).__name__}"
            )
        return message


@dataclass(frozen=True)
class PublicKeys:
    """What a client advertises for one round: two X25519 public keys and the commitment H(b_u)
    to its self-mask seed (so a rebuilt seed can be checked)."""

    encryption: bytes  # c_u^PK: agreements key the AES-GCM share encryption
    masking: bytes  # s_u^PK: agreements seed the pairwise masks
    seed_commitment: bytes = bytes(DIGEST_BYTES)

    BYTES: ClassVar[int] = 2 * KEY_BYTES + DIGEST_BYTES

    def check(self) -> None:
        """Refuse field types and sizes that have no encoding (a caller's bug or a forgery)."""
        sizes = (
            ("encryption", self.encryption, KEY_BYTES),
            ("masking", self.masking, KEY_BYTES),
            ("seed_commitment", self.seed_commitment, DIGEST_BYTES),
        )
        for name, value, size in sizes:
            if not isinstance(value, bytes) or len(value) != size:
                got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
                raise TamperedMessageError(f"PublicKeys.{name} must be {size} bytes, got {got}")

    def to_bytes(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        # Encoded once: a server relays each client's keys to its k neighbours.
        self.check()
        return self.encryption + self.masking + self.seed_commitment

    @classmethod
    def read(cls, reader: _Reader) -> PublicKeys:
        return cls(reader.take(KEY_BYTES), reader.take(KEY_BYTES), reader.take(DIGEST_BYTES))


def _check_sized(items: Iterable[tuple[int, object]], size: int, what: str) -> None:
    for key, value in items:
        if not isinstance(value, bytes) or len(value) != size:
            raise TamperedMessageError(f"{what} {key} is not {size} bytes")


def _sized_table(entries: object, size: int, what: str) -> bytes:
    """``count u32 | (id u64 | value[size])*``, every value checked to be ``size`` bytes
    (the MACs on advertised keys, the revealed pair-mask keys)."""
    if not isinstance(entries, Mapping):
        raise TamperedMessageError(f"{what}: expected client ids mapped to {size}-byte values")
    _check_sized(entries.items(), size, what)
    return _table(entries)


def _public_keys(value: object, what: str) -> PublicKeys:
    if not isinstance(value, PublicKeys):
        raise TamperedMessageError(f"{what} must be PublicKeys, got {type(value).__name__}")
    return value


# ---- server -> client ----------------------------------------------------------------------


@dataclass(frozen=True)
class AdvertiseKeysRequest(Message):
    """Opens the round; ``params_digest`` lets the client check it runs the server's round."""

    TYPE: ClassVar[int] = 1
    PHASE: ClassVar[str] = ADVERTISE_KEYS

    recipient: int
    params_digest: bytes

    def _body(self) -> bytes:
        if len(self.params_digest) != DIGEST_BYTES:
            raise TamperedMessageError(f"params_digest must be {DIGEST_BYTES} bytes")
        return _U64.pack(self.recipient) + self.params_digest

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        return cls(round_id, sender, reader.u64(), reader.take(DIGEST_BYTES))


@dataclass(frozen=True)
class KeyDirectory(Message):
    """The public keys of the recipient's neighbours that advertised them, and in a signed
    round each owner's MAC on them for the recipient."""

    TYPE: ClassVar[int] = 3
    PHASE: ClassVar[str] = SHARE_KEYS

    recipient: int
    keys: Mapping[int, PublicKeys]
    tags: Mapping[int, bytes] = field(default_factory=dict)  # owner -> MAC for the recipient

    def _body(self) -> bytes:
        if not isinstance(self.keys, Mapping):
            raise TamperedMessageError("KeyDirectory.keys maps client ids to PublicKeys")
        entries = {c: _public_keys(k, f"KeyDirectory entry {c}") for c, k in self.keys.items()}
        return b"".join(
            [
                _U64.pack(self.recipient),
                _table({c: k.to_bytes() for c, k in entries.items()}),
                _sized_table(self.tags, TAG_BYTES, "KeyDirectory.tags: MAC"),
            ]
        )

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        recipient = reader.u64()
        keys = reader.table(lambda: PublicKeys.read(reader), PublicKeys.BYTES)
        return cls(round_id, sender, recipient, keys, reader.sized_table(TAG_BYTES))


@dataclass(frozen=True)
class ShareDelivery(Message):
    """The encrypted share bundles that the recipient's neighbours addressed to it."""

    TYPE: ClassVar[int] = 5
    PHASE: ClassVar[str] = MASKED_INPUT

    recipient: int
    ciphertexts: Mapping[int, bytes]  # sender -> AES-GCM(b-share || s-share)

    def _body(self) -> bytes:
        return _U64.pack(self.recipient) + _fixed_table(self.ciphertexts)

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        recipient = reader.u64()
        return cls(round_id, sender, recipient, reader.fixed_table())


@dataclass(frozen=True)
class ConsistencyRequest(Message):
    """The survivor set U3 (clients whose masked input the server holds), for the client to sign.

    Only sent in signed rounds. The whole set travels, not the recipient's neighbourhood:
    every client signs the same bytes, and signatures on one set are what the next phase
    shows to each client.
    """

    TYPE: ClassVar[int] = 9
    PHASE: ClassVar[str] = CONSISTENCY_CHECK

    recipient: int
    survivors: tuple[int, ...]

    def _body(self) -> bytes:
        return _U64.pack(self.recipient) + _ids(self.survivors)

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        return cls(round_id, sender, reader.u64(), reader.ids())


@dataclass(frozen=True)
class UnmaskingRequest(Message):
    """The survivor set, and in a signed round who signed it and their aggregate signature.

    The client derives everything else itself: it reveals b-shares of the survivors it holds
    shares of, and key shares of the neighbours that shared keys but are not survivors.
    Because the request names no "dropped" list, it cannot name a client in both roles.
    """

    TYPE: ClassVar[int] = 7
    PHASE: ClassVar[str] = UNMASKING

    recipient: int
    survivors: tuple[int, ...]
    signers: tuple[int, ...] = ()
    signature: bytes = b""  # BLS: the signers' signatures on the survivor set, added up

    def _body(self) -> bytes:
        if not isinstance(self.signature, bytes) or len(self.signature) not in (0, SIGNATURE_BYTES):
            raise TamperedMessageError(f"an aggregate signature is {SIGNATURE_BYTES} bytes")
        return b"".join(
            [
                _U64.pack(self.recipient),
                _ids(self.survivors),
                _ids(self.signers),
                _U8.pack(len(self.signature)),
                self.signature,
            ]
        )

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        recipient, survivors, signers = reader.u64(), reader.ids(), reader.ids()
        size = reader.u8()
        if size not in (0, SIGNATURE_BYTES):
            raise reader.fail(f"an aggregate signature is {SIGNATURE_BYTES} bytes or absent")
        return cls(round_id, sender, recipient, survivors, signers, reader.take(size))


# ---- client -> server ----------------------------------------------------------------------


@dataclass(frozen=True)
class AdvertiseKeys(Message):
    """A client's fresh public keys for this round, and in a signed round its MAC on them for
    each neighbour, in increasing neighbour id order (the graph is public, so the ids need
    not travel): ``count u32 | tag[16]*``. The server forwards each MAC with the keys."""

    TYPE: ClassVar[int] = 2
    PHASE: ClassVar[str] = ADVERTISE_KEYS

    keys: PublicKeys
    tags: tuple[bytes, ...] = ()  # MAC for each neighbour, neighbours sorted by id

    def _body(self) -> bytes:
        keys = _public_keys(self.keys, "AdvertiseKeys.keys").to_bytes()
        _check_sized(enumerate(self.tags), TAG_BYTES, "AdvertiseKeys.tags: MAC")
        return keys + _U32.pack(len(self.tags)) + b"".join(self.tags)

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        keys = PublicKeys.read(reader)
        count = reader.count(TAG_BYTES)
        return cls(round_id, sender, keys, tuple(reader.take(TAG_BYTES) for _ in range(count)))


@dataclass(frozen=True)
class ShareKeys(Message):
    """One encrypted share bundle per neighbour, for the server to route."""

    TYPE: ClassVar[int] = 4
    PHASE: ClassVar[str] = SHARE_KEYS

    ciphertexts: Mapping[int, bytes]  # recipient -> AES-GCM(b-share || s-share)

    def _body(self) -> bytes:
        return _fixed_table(self.ciphertexts)

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        return cls(round_id, sender, reader.fixed_table())


@dataclass(frozen=True, eq=False)
class MaskedInput(Message):
    """y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv) mod 2^bits, as raw little-endian words."""

    TYPE: ClassVar[int] = 6
    PHASE: ClassVar[str] = MASKED_INPUT

    bits: int
    masked: np.ndarray

    def _body(self) -> list[bytes | memoryview]:
        words = check_masked_words(self.masked, self.bits)
        return [_U8.pack(self.bits) + _U64.pack(words.size), words.data.cast("B")]

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        bits, dim = reader.u8(), reader.u64()
        try:
            dtype = _word_dtype(bits)
        except TamperedMessageError as exc:
            raise reader.fail(str(exc)) from None
        masked = reader.array(dtype, dim)
        if bits not in (32, 64) and masked.size and int(masked.max()) >> bits:
            raise reader.fail(f"values do not fit in {bits} bits")
        return cls(round_id, sender, bits, masked)


@dataclass(frozen=True)
class ConsistencyResponse(Message):
    """The client's BLS signature on the survivor set it was shown."""

    TYPE: ClassVar[int] = 10
    PHASE: ClassVar[str] = CONSISTENCY_CHECK

    signature: bytes

    def _body(self) -> bytes:
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise TamperedMessageError(f"a signature is {SIGNATURE_BYTES} bytes")
        return self.signature

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        return cls(round_id, sender, reader.take(SIGNATURE_BYTES))


@dataclass(frozen=True)
class UnmaskingResponse(Message):
    """Share values the sender holds: of survivors' b_u, and of dropped neighbours' s_u^SK;
    and the sender's own pair-mask keys with those dropped neighbours.

    The x-coordinate of every share is implied by the sender, so only y travels. Decoded
    messages hold :class:`ShareTable` mappings (arrays underneath). ``pair_keys`` saves the
    server one X25519 agreement per (dropped, surviving) edge: the sender derived each key
    to mask its own input, and s_u^SK, which the server rebuilds anyway, determines it.
    """

    TYPE: ClassVar[int] = 8
    PHASE: ClassVar[str] = UNMASKING

    seed_shares: Mapping[int, bytes]  # owner -> share of b_owner (survivors)
    key_shares: Mapping[int, bytes]  # owner -> share of s_owner^SK (dropped)
    #: dropped neighbour -> PRG key of the pair mask between it and the sender
    pair_keys: Mapping[int, bytes] = field(default_factory=dict)

    def _body(self) -> bytes:
        return b"".join(
            [
                _share_table(self.seed_shares),
                _share_table(self.key_shares),
                _sized_table(self.pair_keys, prg.KEY_BYTES, "the pair-mask key with client"),
            ]
        )

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        seeds = reader.share_table()
        keys = reader.share_table()
        return cls(round_id, sender, seeds, keys, reader.sized_table(prg.KEY_BYTES))


# ---- the run's session (once, before the first round) ---------------------------------------


@dataclass(frozen=True)
class SessionCommit(Message):
    """H(client, nonce): the client's commitment to the nonce it adds to the session."""

    TYPE: ClassVar[int] = 11
    PHASE: ClassVar[str] = SESSION_COMMIT

    commitment: bytes

    def _body(self) -> bytes:
        _check_sized([(self.sender, self.commitment)], DIGEST_BYTES, "the commitment of client")
        return self.commitment

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        return cls(round_id, sender, reader.take(DIGEST_BYTES))


@dataclass(frozen=True)
class SessionCommitments(Message):
    """Every participant's commitment, fixed before any nonce is revealed."""

    TYPE: ClassVar[int] = 12
    PHASE: ClassVar[str] = SESSION_COMMIT

    recipient: int
    commitments: Mapping[int, bytes]  # client -> H(client, nonce)

    def _body(self) -> bytes:
        table = _sized_table(self.commitments, DIGEST_BYTES, "the commitment of client")
        return _U64.pack(self.recipient) + table

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        return cls(round_id, sender, reader.u64(), reader.sized_table(DIGEST_BYTES))


@dataclass(frozen=True)
class SessionReveal(Message):
    """The nonce behind the client's commitment, sent once it has seen every commitment."""

    TYPE: ClassVar[int] = 13
    PHASE: ClassVar[str] = SESSION_REVEAL

    nonce: bytes

    def _body(self) -> bytes:
        _check_sized([(self.sender, self.nonce)], SESSION_NONCE_BYTES, "the nonce of client")
        return self.nonce

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        return cls(round_id, sender, reader.take(SESSION_NONCE_BYTES))


@dataclass(frozen=True)
class SessionNonces(Message):
    """Every participant's revealed nonce: each client derives the session from them."""

    TYPE: ClassVar[int] = 14
    PHASE: ClassVar[str] = SESSION_REVEAL

    recipient: int
    nonces: Mapping[int, bytes]  # client -> nonce

    def _body(self) -> bytes:
        table = _sized_table(self.nonces, SESSION_NONCE_BYTES, "the nonce of client")
        return _U64.pack(self.recipient) + table

    @classmethod
    def _parse(cls, reader: _Reader, round_id: int, sender: int) -> Self:
        return cls(round_id, sender, reader.u64(), reader.sized_table(SESSION_NONCE_BYTES))


def _word_dtype(bits: int) -> np.dtype:
    try:
        return prg.word_dtype(bits)
    except SecAggError as exc:
        raise TamperedMessageError(str(exc)) from None


def check_masked_words(masked: object, bits: int) -> np.ndarray:
    """A masked vector as contiguous words of the round's type, or a TamperedMessageError.

    Floats, signed integers or a wider word would otherwise be cast (or crash) inside NumPy,
    far from the message that carried them.
    """
    dtype = _word_dtype(bits)
    if not isinstance(masked, np.ndarray) or masked.dtype != dtype or masked.ndim != 1:
        got = (
            f"a {masked.ndim}-D {masked.dtype} array"
            if isinstance(masked, np.ndarray)
            else type(masked).__name__
        )
        raise TamperedMessageError(
            f"a masked input is a 1-D {dtype} vector of {bits}-bit words, got {got}"
        )
    if bits not in (32, 64) and masked.size and int(masked.max()) >> bits:
        raise TamperedMessageError(f"masked input values do not fit in {bits} bits")
    return np.ascontiguousarray(masked)


ServerMessage = (
    AdvertiseKeysRequest | KeyDirectory | ShareDelivery | ConsistencyRequest | UnmaskingRequest
)
ClientMessage = AdvertiseKeys | ShareKeys | MaskedInput | ConsistencyResponse | UnmaskingResponse
SessionServerMessage = SessionCommitments | SessionNonces
SessionClientMessage = SessionCommit | SessionReveal

_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        AdvertiseKeysRequest,
        AdvertiseKeys,
        KeyDirectory,
        ShareKeys,
        ShareDelivery,
        MaskedInput,
        ConsistencyRequest,
        ConsistencyResponse,
        UnmaskingRequest,
        UnmaskingResponse,
        SessionCommit,
        SessionCommitments,
        SessionReveal,
        SessionNonces,
    )
}


def decode_message(data: bytes) -> Message:
    """Parse any message; raises TamperedMessageError unless the bytes are a valid encoding."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TamperedMessageError(f"messages are bytes, got {type(data).__name__}")
    reader = _Reader(bytes(data), "secagg")
    version, type_id, round_id, sender = _HEADER.unpack(reader.take(_HEADER.size))
    if version != VERSION:
        raise reader.fail(f"unsupported version {version} (this library speaks {VERSION})")
    cls = _TYPES.get(type_id)
    if cls is None:
        raise reader.fail(f"unknown message type {type_id}")
    reader.what = cls.__name__
    message = cls._parse(reader, round_id, sender)
    reader.finish()
    return message


def decode_server_message(data: bytes) -> ServerMessage:
    """Parse a message a client may receive."""
    message = decode_message(data)
    if not isinstance(message, ServerMessage):
        raise TamperedMessageError(f"{type(message).__name__} is not a server-to-client message")
    return message


def decode_session_message(data: bytes) -> SessionServerMessage | SessionClientMessage:
    """Parse a message of the run's session set-up."""
    message = decode_message(data)
    if not isinstance(message, SessionServerMessage | SessionClientMessage):
        raise TamperedMessageError(f"{type(message).__name__} is not a session message")
    return message


def decode_client_message(data: bytes) -> ClientMessage:
    """Parse a message the server may receive."""
    message = decode_message(data)
    if not isinstance(message, ClientMessage):
        raise TamperedMessageError(f"{type(message).__name__} is not a client-to-server message")
    return message
