"""The default store: one file per blob in a local directory, named by its CID.

Layout: ``ROOT/<xy>/<cid>``, where ``xy`` are the next-to-last two characters of the CID
(the sharding IPFS's flatfs uses), so no directory grows past about a thousand entries per
million blobs. Writes go to a temporary file in the same directory and are renamed into
place (``os.replace`` is atomic on POSIX and Windows), so a reader never sees half a blob
and concurrent puts of the same bytes simply race to rename identical files. Puts are
idempotent: an intact copy is left alone, a damaged one is rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from secagg.errors import BlobNotFoundError, StorageError
from secagg.storage.base import CHUNK_SIZE, Blob, BlobStore, SupportsRead, iter_chunks, verified
from secagg.storage.cid import Cid


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the blob store directory {self.root}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def put(self, data: Blob) -> Cid:
        """Store ``data``; returns its CID. An intact copy already there is kept as is."""
        cid = Cid.of(data)
        if not self._intact(cid):
            self._write_atomically(cid, [data])
        return cid

    def put_stream(self, source: SupportsRead | Iterable[bytes]) -> Cid:
        """Store a blob read in chunks, hashing while writing: the source is read once and
        never held whole in memory, whatever its size."""
        hasher = hashlib.sha256()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=".put-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter_chunks(source, CHUNK_SIZE):
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            cid = Cid.from_digest(hasher.digest())
            if self._intact(cid):
                return cid
            target = self._path(cid)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)  # same filesystem: root and its shards
            return cid
        except OSError as exc:
            raise StorageError(f"writing a blob into {self.root} failed: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def get(self, cid: Cid | str) -> bytes:
        """The blob's bytes, read once and checked against the CID before they are returned."""
        cid = Cid.coerce(cid)
        path = self._path(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(
                f"no blob {cid} in {self.root}: it was never put here, or was deleted; "
                "fetch it from the party that published it"
            ) from None
        except OSError as exc:
            raise StorageError(f"reading blob {cid} from {path} failed: {exc}") from exc
        return verified(cid, data, str(path))

    def has(self, cid: Cid | str) -> bool:
        """Whether a file is stored under ``cid`` (not verified: :meth:`get` does that)."""
        return self._path(Cid.coerce(cid)).is_file()

    def path_of(self, cid: Cid | str) -> Path:
        """The file holding ``cid``, e.g. to hand to a tool that reads files.

        Reading the file directly skips the hash check that :meth:`get` makes.
        """
        cid = Cid.coerce(cid)
        path = self._path(cid)
        if not path.is_file():
            raise BlobNotFoundError(f"no blob {cid} in {self.root}")
        return path

    # ------------------------------------------------------------------ internals

    def _path(self, cid: Cid) -> Path:
        text = cid.text
        return self.root / text[-3:-1] / text

    def _intact(self, cid: Cid) -> bool:
        """True when ``cid`` is stored and its bytes still match (so a put can skip)."""
        path = self._path(cid)
        hasher = hashlib.sha256()
        try:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    hasher.update(chunk)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"reading blob {cid} from {path} failed: {exc}") from exc
        return hasher.digest() == cid.digest

    def _write_atomically(self, cid: Cid, chunks: Iterable[Blob]) -> None:
        target = self._path(cid)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".put-", suffix=".tmp")
        except OSError as exc:
            raise StorageError(f"cannot write into {target.parent}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except OSError as exc:
            raise StorageError(f"writing blob {cid} to {target} failed: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
