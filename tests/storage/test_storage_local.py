"""The local directory store: names, verified reads, atomic idempotent writes, big blobs."""

from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from secagg.errors import BlobNotFoundError, StorageError, TamperedBlobError
from secagg.storage import BlobStore, Cid, LocalBlobStore

MB = 1 << 20


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def _stored_files(store: LocalBlobStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


@pytest.mark.parametrize("data", [b"", b"hello world", os.urandom(3 * MB + 7)])
def test_round_trip(store: LocalBlobStore, data: bytes) -> None:
    cid = store.put(data)
    assert cid == Cid.of(data)
    assert store.has(cid) and store.has(str(cid))
    assert store.get(cid) == data and store.get(str(cid)) == data


def test_is_a_blob_store(store: LocalBlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_files_are_named_by_cid_in_flatfs_shards(store: LocalBlobStore) -> None:
    cid = store.put(b"hello world")
    path = store.path_of(cid)
    assert path.name == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert path.parent.name == path.name[-3:-1] and path.parent.parent == store.root
    assert path.read_bytes() == b"hello world"


def test_a_float32_update_is_stored_from_its_buffer(store: LocalBlobStore) -> None:
    update = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    cid = store.put(update.data)
    assert cid == Cid.of(update.tobytes())
    assert np.array_equal(np.frombuffer(store.get(cid), dtype=np.float32), update)


def test_a_flipped_byte_is_detected_on_read(store: LocalBlobStore) -> None:
    data = b"masked update " * 1000
    cid = store.put(data)
    path = store.path_of(cid)
    damaged = bytearray(path.read_bytes())
    damaged[5000] ^= 0x01
    path.write_bytes(damaged)
    with pytest.raises(TamperedBlobError, match=f"blob {cid} from .* fails its hash check"):
        store.get(cid)
    assert store.has(cid)  # presence is not integrity: only get() vouches for the bytes


def test_a_truncated_or_replaced_blob_is_detected(store: LocalBlobStore) -> None:
    cid = store.put(b"the real aggregate")
    store.path_of(cid).write_bytes(b"the real aggregat")
    with pytest.raises(TamperedBlobError):
        store.get(cid)
    store.path_of(cid).write_bytes(b"another aggregate!")  # same length, other bytes
    with pytest.raises(TamperedBlobError):
        store.get(cid)


def test_putting_again_repairs_a_damaged_copy(store: LocalBlobStore) -> None:
    data = b"shares revealed by a survivor"
    cid = store.put(data)
    store.path_of(cid).write_bytes(b"garbage")
    assert store.put(data) == cid
    assert store.get(cid) == data


def test_missing_blob(store: LocalBlobStore) -> None:
    absent = Cid.of(b"never stored")
    assert not store.has(absent)
    with pytest.raises(BlobNotFoundError, match=f"no blob {absent} in"):
        store.get(absent)
    with pytest.raises(BlobNotFoundError):
        store.path_of(absent)
    with pytest.raises(StorageError):  # the common base class of every storage failure
        store.get(str(absent))


def test_puts_are_idempotent(store: LocalBlobStore) -> None:
    cid = store.put(b"same bytes")
    path = store.path_of(cid)
    before = path.stat()
    assert store.put(b"same bytes") == cid
    assert store.put_stream([b"same ", b"bytes"]) == cid
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # untouched
    assert _stored_files(store) == [path]


def test_concurrent_puts_of_the_same_and_of_different_blobs(store: LocalBlobStore) -> None:
    shared = os.urandom(2 * MB)
    own = [os.urandom(64 * 1024) for _ in range(8)]
    results: list[Cid] = []
    barrier = threading.Barrier(16)

    def put(data: bytes) -> None:
        barrier.wait()
        results.append(store.put(data))

    threads = [threading.Thread(target=put, args=(shared,)) for _ in range(8)]
    threads += [threading.Thread(target=put, args=(d,)) for d in own]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)) == sorted(
        map(str, [Cid.of(shared)] * 8 + list(map(Cid.of, own)))
    )
    assert store.get(Cid.of(shared)) == shared
    assert all(store.get(Cid.of(d)) == d for d in own)
    assert len(_stored_files(store)) == 9  # one file per distinct blob, no temporary left over


class _CountingReader:
    """A file-like source that counts what was read from it."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        cut = len(self._pending) if size < 0 else size
        out, self._pending = self._pending[:cut], self._pending[cut:]
        self.bytes_read += len(out)
        return out


def _deterministic_chunks(total: int, size: int = MB) -> Iterator[bytes]:
    """``total`` pseudo-random bytes in ``size`` pieces, regenerated identically on demand."""
    rng = np.random.default_rng(8)
    for start in range(0, total, size):
        yield rng.bytes(min(size, total - start))


def test_a_50_mb_blob_is_streamed_in_once_and_never_held_whole(store: LocalBlobStore) -> None:
    total = 50 * MB
    expected = hashlib.sha256()
    for chunk in _deterministic_chunks(total):
        expected.update(chunk)
    source = _CountingReader(_deterministic_chunks(total))

    tracemalloc.start()
    try:
        cid = store.put_stream(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert cid.digest == expected.digest()
    assert source.bytes_read == total  # each byte read from the source exactly once
    assert peak < 10 * MB, f"peak {peak / MB:.1f} MB traced while storing {total / MB:.0f} MB"
    assert store.path_of(cid).stat().st_size == total
    assert hashlib.sha256(store.get(cid)).digest() == expected.digest()
    assert _stored_files(store) == [store.path_of(cid)]


def test_an_interrupted_stream_leaves_nothing_behind(store: LocalBlobStore) -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * MB
        raise OSError("the network dropped")

    with pytest.raises(StorageError, match="the network dropped"):
        store.put_stream(failing())
    assert _stored_files(store) == []
