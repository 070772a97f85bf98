"""The blob-store interface: content-addressed put/get where every read is verified.

A store holds opaque blobs (masked updates, ciphertexts, revealed shares, aggregates) named
by their :class:`~secagg.storage.cid.Cid`. The ledger keeps only the 32-byte digests; the
store keeps the bytes. Because names are hashes, a reader never has to trust the store:
:meth:`BlobStore.get` rehashes what it read and raises
:class:`~secagg.errors.TamperedBlobError` instead of returning bytes that do not match.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from secagg.errors import TamperedBlobError
from secagg.storage.cid import Cid

#: Anything whose bytes can be stored: bytes, bytearray or a memoryview (e.g. of an array).
Blob = bytes | bytearray | memoryview


@runtime_checkable
class SupportsRead(Protocol):
    """A binary source read in steps: an open file, a socket file, a response body."""

    def read(self, size: int = -1, /) -> bytes: ...


#: Bytes read per step when a blob is streamed in.
CHUNK_SIZE = 1 << 20


class BlobStore(ABC):
    """Content-addressed storage: ``put`` returns the CID, ``get`` returns verified bytes."""

    @abstractmethod
    def put(self, data: Blob) -> Cid:
        """Store ``data`` and return its CID. Idempotent: the same bytes, the same CID."""

    @abstractmethod
    def get(self, cid: Cid | str) -> bytes:
        """The blob named ``cid``, after checking that it hashes to ``cid``.

        Raises :class:`~secagg.errors.BlobNotFoundError` if the store lacks it and
        :class:`~secagg.errors.TamperedBlobError` if the stored bytes do not match.
        """

    @abstractmethod
    def has(self, cid: Cid | str) -> bool:
        """Whether the store holds a blob under ``cid`` (presence only: ``get`` verifies)."""

    def put_stream(self, source: SupportsRead | Iterable[bytes]) -> Cid:
        """Store a blob read from a binary file object or an iterable of chunks.

        This default collects the chunks and calls :meth:`put`; stores that can write as
        they read (the local directory) override it so a large blob is never held whole.
        """
        return self.put(b"".join(iter_chunks(source)))


def iter_chunks(source: SupportsRead | Iterable[bytes], size: int = CHUNK_SIZE) -> Iterable[bytes]:
    """The bytes of ``source`` in order: ``read(size)`` calls on a file, else its items."""
    if isinstance(source, SupportsRead):
        while chunk := source.read(size):
            yield chunk
    else:
        yield from source


def verified(cid: Cid, data: bytes, where: str) -> bytes:
    """``data`` if it hashes to ``cid``; otherwise a TamperedBlobError naming ``where``."""
    actual = hashlib.sha256(data).digest()
    if actual != cid.digest:
        raise TamperedBlobError(
            f"blob {cid} from {where} fails its hash check: sha2-256 is {actual.hex()}, the "
            f"CID says {cid.digest.hex()} ({len(data)} bytes read). The stored copy was "
            "modified or corrupted; do not use it: fetch the blob again from another copy"
        )
    return data
