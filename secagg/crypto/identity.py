"""Long-term identity keys: the PKI of a signed masking round.

Against a server that lies, masking needs two things agreement and AES-GCM cannot give: round
keys the server cannot substitute when it relays them, and one survivor set that every client
sees. Both rest on identities registered out of band. A client's identity is one 32-byte
secret seed (what a hospital's key file holds); three keys derive from it, one per job:

- an **Ed25519** key, the identity's name: what the ledger registers, and what signs a
  client's own statements one by one (:meth:`IdentityKey.sign`: an HE client's ciphertext
  digest, an HE key holder's public key);
- a static **X25519** key. Two clients' static keys agree on the same secret every round, so
  each pair computes it once (:meth:`IdentityKey.pair_key`), and a MAC under it authenticates
  the round keys a client advertises to that neighbour: an authenticated key exchange in the
  manner of Noise's KK pattern, where Bonawitz et al. have every client verify an Ed25519
  signature per neighbour per round (about 3x the cost of an agreement, and paid again every
  round);
- a **BLS** key (:mod:`secagg.crypto.aggregate`) for the survivor set: the survivors'
  signatures on one set add up to one, which each client checks in one pairing.

The public halves form one 208-byte directory entry, ``ed25519 | x25519 | bls | proof of
possession of the bls key``. :class:`IdentityDirectory` checks every entry when it is built
(once per party, not per round), so a bad directory fails there with one line.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from blspy import G1Element
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.crypto import aggregate
from secagg.crypto.agreement import (
    KEY_BYTES,
    KeyPair,
    agree,
    key_pair_from_private_bytes,
    validate_public_key,
)
from secagg.crypto.kdf import derive_key, encode_context
from secagg.errors import CryptoError, TamperedMessageError

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32  # Ed25519, the identity's name
SIGNATURE_BYTES = 64  # Ed25519
#: One directory entry: Ed25519 | X25519 | BLS public key | BLS proof of possession.
RECORD_BYTES = PUBLIC_KEY_BYTES + KEY_BYTES + aggregate.PUBLIC_KEY_BYTES + aggregate.PROOF_BYTES

_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw
_AGREEMENT = encode_context(b"secagg identity x25519")
_AGGREGATE = encode_context(b"secagg identity bls")
_PAIR = encode_context(b"secagg identity pair")


@dataclass(frozen=True)
class PublicIdentity:
    """One parsed directory entry."""

    name: bytes  # raw Ed25519 public key
    agreement: bytes  # raw static X25519 public key
    aggregate: G1Element  # BLS public key, its proof of possession checked

    def verify(self, signature: object, message: bytes, what: str) -> None:
        """Raise TamperedMessageError unless ``signature`` is this identity's Ed25519
        signature of ``message`` (``what`` names the statement in the error)."""
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
            raise TamperedMessageError(f"{what}: an Ed25519 signature is {SIGNATURE_BYTES} bytes")
        try:
            Ed25519PublicKey.from_public_bytes(self.name).verify(signature, message)
        except InvalidSignature:
            raise TamperedMessageError(f"{what}: the signature does not verify") from None


@dataclass(frozen=True, repr=False, eq=False)
class IdentityKey:
    """A client's identity: the seed and the three keys derived from it (``repr`` shows the
    public name only)."""

    seed: bytes
    signing: Ed25519PrivateKey
    agreement: KeyPair
    aggregate: aggregate.AggregateSigningKey
    public: bytes  # the Ed25519 public key
    record: bytes  # this identity's directory entry
    #: peer's static X25519 key -> pair key; a pair's key is the same every round
    _pairs: dict[bytes, bytes] = field(default_factory=dict, compare=False)

    @classmethod
    def generate(cls) -> IdentityKey:
        """A fresh identity from the OS CSPRNG."""
        return cls.from_private_bytes(secrets.token_bytes(SEED_BYTES))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> IdentityKey:
        """Load an identity from its 32-byte seed (as stored in a hospital's key file)."""
        if not isinstance(raw, bytes) or len(raw) != SEED_BYTES:
            raise CryptoError(f"an identity key is a {SEED_BYTES}-byte seed")
        signing = Ed25519PrivateKey.from_private_bytes(raw)
        name = signing.public_key().public_bytes(_RAW, _RAW_PUBLIC)
        agreement = key_pair_from_private_bytes(derive_key(raw, info=_AGREEMENT))
        bls = aggregate.AggregateSigningKey.from_seed(derive_key(raw, info=_AGGREGATE))
        record = name + agreement.public + bls.public + bls.prove_possession()
        return cls(raw, signing, agreement, bls, name, record)

    def private_bytes(self) -> bytes:
        return self.seed

    def sign(self, message: bytes) -> bytes:
        """This identity's Ed25519 signature of ``message`` (checked by
        :meth:`PublicIdentity.verify` against the directory entry)."""
        return self.signing.sign(message)

    def pair_key(self, peer: PublicIdentity) -> bytes:
        """The key this identity shares with ``peer``: HKDF of their static X25519 agreement.

        Cached: it is the same every round, so a client pays one agreement per peer, ever.
        """
        key = self._pairs.get(peer.agreement)
        if key is None:
            key = derive_key(agree(self.agreement.private, peer.agreement), info=_PAIR)
            self._pairs[peer.agreement] = key
        return key

    def __repr__(self) -> str:
        return f"IdentityKey(public={self.public.hex()})"


def parse_record(raw: object) -> PublicIdentity:
    """Parse and check one directory entry, with a named error for anything wrong in it."""
    if not isinstance(raw, bytes) or len(raw) != RECORD_BYTES:
        got = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
        raise CryptoError(f"an identity directory entry is {RECORD_BYTES} bytes, got {got}")
    name, raw = raw[:PUBLIC_KEY_BYTES], raw[PUBLIC_KEY_BYTES:]
    agreement, raw = raw[:KEY_BYTES], raw[KEY_BYTES:]
    bls, proof = raw[: aggregate.PUBLIC_KEY_BYTES], raw[aggregate.PUBLIC_KEY_BYTES :]
    try:
        Ed25519PublicKey.from_public_bytes(name)
    except ValueError as exc:
        raise CryptoError(f"not an Ed25519 public key: {exc}") from None
    validate_public_key(agreement)
    return PublicIdentity(name, agreement, aggregate.load_public_key(bls, proof))


class IdentityDirectory(Mapping[int, PublicIdentity]):
    """Client id -> registered identity (the PKI of the protocol), from raw directory entries.

    Every party holds the same directory; building it checks every entry, the proofs of
    possession included (about 1.3 ms an entry: once per party, not per round).
    """

    def __init__(self, records: Mapping[int, bytes]) -> None:
        if not isinstance(records, Mapping):
            raise CryptoError(
                f"an identity directory maps client ids to directory entries, "
                f"got {type(records).__name__}"
            )
        parsed: dict[int, PublicIdentity] = {}
        for client, record in records.items():
            _check_id(client)
            try:
                parsed[client] = parse_record(record)
            except CryptoError as exc:
                raise CryptoError(f"identity directory entry for client {client}: {exc}") from None
        self._init(parsed, dict(records))

    def _init(self, parsed: dict[int, PublicIdentity], raw: dict[int, bytes]) -> None:
        # A proof of possession is not bound to an identity, so a registrant could copy
        # another's BLS key with its proof; the sum would then count that signature twice.
        parts = {
            "name": [p.name for p in parsed.values()],
            "agreement": [p.agreement for p in parsed.values()],
            "BLS": [bytes(p.aggregate) for p in parsed.values()],
        }
        for part, keys in parts.items():
            if len(set(keys)) != len(keys):
                raise CryptoError(f"the identity directory lists one {part} key for two clients")
        self._parsed = parsed
        self._raw = raw

    @classmethod
    def generate(
        cls, client_ids: Iterable[int]
    ) -> tuple[IdentityDirectory, dict[int, IdentityKey]]:
        """Fresh identities for a simulation: the public directory and each client's key.

        The proofs of possession are not re-checked: the keys were made right here.
        """
        keys = {c: IdentityKey.generate() for c in client_ids}
        directory = cls.__new__(cls)
        parsed = {
            c: PublicIdentity(k.public, k.agreement.public, k.aggregate.private.get_g1())
            for c, k in keys.items()
        }
        for c in parsed:
            _check_id(c)
        directory._init(parsed, {c: k.record for c, k in keys.items()})
        return directory, keys

    def raw(self, client: int) -> bytes:
        """``client``'s directory entry as registered."""
        return self._raw[client]

    def __getitem__(self, client: int) -> PublicIdentity:
        return self._parsed[client]

    def __iter__(self) -> Iterator[int]:
        return iter(self._parsed)

    def __len__(self) -> int:
        return len(self._parsed)


def _check_id(client: object) -> None:
    if isinstance(client, bool) or not isinstance(client, int) or client < 0:
        raise CryptoError(f"identity directory ids are integers >= 0, got {client!r}")
