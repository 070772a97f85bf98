"""Content identifiers: IPFS CIDv1 of a raw blob hashed with sha2-256.

Every blob in a :class:`~secagg.storage.BlobStore` is named by the CID an IPFS node would
give the same bytes stored as one raw block (``ipfs block put --cid-codec raw``): version 1,
multicodec ``raw`` (0x55), multihash ``sha2-256`` (0x12, 32 bytes), written in lowercase
base32 (``bafkrei...``). Fixing codec and hash function means a CID and its 32-byte digest
carry the same information, so the digest is what goes on chain as ``bytes32`` and
:meth:`Cid.from_digest` turns a chain record back into the name to fetch.

The encoding itself is delegated to the ``multiformats`` library, so what is written here
is the policy (which CIDs are accepted), not a re-implementation of the formats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from multiformats import CID, multihash

from secagg.errors import InvalidCidError

#: Multicodec of the blocks this store names (raw bytes, no IPLD structure).
CODEC = "raw"
#: Multihash function of every CID here; its 32-byte digest is the on-chain bytes32.
HASH_FUNCTION = "sha2-256"
DIGEST_SIZE = 32


@dataclass(frozen=True)
class Cid:
    """The identifier of one blob: a CIDv1 (raw, sha2-256), equal when the digests are."""

    digest: bytes
    """The raw 32-byte sha2-256 of the blob: what the ledger stores as ``bytes32``."""

    def __post_init__(self) -> None:
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_SIZE:
            raise InvalidCidError(
                f"a sha2-256 digest is {DIGEST_SIZE} bytes, got {self.digest!r:.80}"
            )

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> Cid:
        """The CID of ``data``."""
        return cls(hashlib.sha256(data).digest())

    @staticmethod
    def digest_of(data: bytes | bytearray | memoryview) -> bytes:
        """The 32-byte digest ``Cid.of(data)`` would carry: the on-chain ``bytes32`` of a blob."""
        return hashlib.sha256(data).digest()

    @classmethod
    def from_digest(cls, digest: bytes) -> Cid:
        """The CID whose sha2-256 digest is ``digest`` (e.g. a ``bytes32`` read from chain)."""
        return cls(bytes(digest))

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Read a CID string; anything but a CIDv1 of a raw sha2-256 block is refused.

        Other CIDs (CIDv0 ``Qm...``, dag-pb, other hashes) name things this store never
        issues, so accepting them would only postpone the failure to the hash check.
        """
        try:
            cid = CID.decode(text)
        except Exception as exc:  # multiformats raises several unrelated types
            raise InvalidCidError(f"{text!r:.80} is not a CID: {exc}") from None
        if cid.version != 1 or cid.codec.name != CODEC or cid.hashfun.name != HASH_FUNCTION:
            raise InvalidCidError(
                f"{text} is a CIDv{cid.version} ({cid.codec.name}, {cid.hashfun.name}); this "
                f"store names blobs by CIDv1 ({CODEC}, {HASH_FUNCTION}) only"
            )
        return cls(bytes(cid.raw_digest))

    @classmethod
    def coerce(cls, value: Cid | str) -> Cid:
        """``value`` as a Cid: returned as is, or parsed from its string form."""
        return value if isinstance(value, Cid) else cls.parse(value)

    @cached_property
    def text(self) -> str:
        """The canonical string form: base32 lowercase, ``bafkrei...``."""
        return str(CID("base32", 1, CODEC, multihash.wrap(self.digest, HASH_FUNCTION)))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cid({self.text!r})"

    def matches(self, data: bytes | bytearray | memoryview) -> bool:
        """True when ``data`` hashes to this CID."""
        return hashlib.sha256(data).digest() == self.digest
