"""The IPFS (Kubo RPC) store: against a stand-in node speaking the same HTTP API, which
checks the requests and can misbehave, and against a real node when one is reachable
(``SECAGG_IPFS_API``, default http://127.0.0.1:5001; skipped otherwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from secagg.errors import BlobNotFoundError, StorageError, TamperedBlobError
from secagg.storage import Cid, IpfsHttpStore, LocalBlobStore, ipfs_reachable
from secagg.storage.ipfs import DEFAULT_API


class _FakeKubo(BaseHTTPRequestHandler):
    """Just enough of Kubo's /api/v0 for block put/get/stat and version."""

    blocks: ClassVar[dict[str, bytes]] = {}
    behaviour: ClassVar[str] = "honest"  # or "flip-bytes", "wrong-cid"
    requests: ClassVar[list[tuple[str, dict[str, list[str]]]]] = []

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append((url.path, query))
        command = url.path.removeprefix("/api/v0/")
        if command == "version":
            self._json(200, {"Version": "0.0.0-fake"})
        elif command == "block/put":
            data = self._multipart_file(body)
            cid = str(Cid.of(data))
            self.blocks[cid] = data
            key = str(Cid.of(data + b"!")) if self.behaviour == "wrong-cid" else cid
            self._json(200, {"Key": key, "Size": len(data)})
        elif command in ("block/get", "block/stat"):
            cid = query["arg"][0]
            if cid not in self.blocks:
                self._json(500, {"Message": f"block was not found locally: {cid}", "Type": "error"})
            elif command == "block/stat":
                self._json(200, {"Key": cid, "Size": len(self.blocks[cid])})
            else:
                data = self.blocks[cid]
                if self.behaviour == "flip-bytes":
                    data = bytes([data[0] ^ 1]) + data[1:]
                self._reply(200, data, "application/octet-stream")
        else:
            self._json(404, {"Message": f"unknown command {command}", "Type": "error"})

    def _multipart_file(self, body: bytes) -> bytes:
        boundary = self.headers["Content-Type"].split("boundary=")[1].encode()
        part = body.split(b"--" + boundary)[1]
        headers, _, content = part.partition(b"\r\n\r\n")
        assert b'name="file"' in headers
        return content.removesuffix(b"\r\n")

    def _json(self, status: int, payload: object) -> None:
        self._reply(status, json.dumps(payload).encode(), "application/json")

    def _reply(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_node() -> Iterator[str]:
    _FakeKubo.blocks = {}
    _FakeKubo.behaviour = "honest"
    _FakeKubo.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubo)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_round_trip_as_raw_sha256_blocks(fake_node: str) -> None:
    store = IpfsHttpStore(fake_node)
    data = b"hello world"
    cid = store.put(data)
    assert str(cid) == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert store.get(cid) == data and store.has(str(cid))
    path, query = _FakeKubo.requests[0]
    assert path == "/api/v0/block/put"
    assert query["cid-codec"] == ["raw"] and query["mhtype"] == ["sha2-256"]
    assert query["pin"] == ["true"] and query["allow-big-block"] == ["true"]
    assert ipfs_reachable(fake_node)


def test_a_node_and_a_local_directory_agree_on_names(fake_node: str, tmp_path: Path) -> None:
    blob = os.urandom(70_000)
    assert IpfsHttpStore(fake_node).put(blob) == LocalBlobStore(tmp_path).put(blob)


def test_bytes_from_the_node_are_rehashed(fake_node: str) -> None:
    store = IpfsHttpStore(fake_node)
    cid = store.put(b"an aggregate")
    _FakeKubo.behaviour = "flip-bytes"
    with pytest.raises(TamperedBlobError, match="the IPFS node at"):
        store.get(cid)


def test_a_node_naming_the_blob_differently_is_refused(fake_node: str) -> None:
    _FakeKubo.behaviour = "wrong-cid"
    with pytest.raises(StorageError, match="stored the blob as"):
        IpfsHttpStore(fake_node).put(b"an update")


def test_missing_blob_on_the_node(fake_node: str) -> None:
    store = IpfsHttpStore(fake_node)
    absent = Cid.of(b"never stored")
    assert not store.has(absent)
    with pytest.raises(BlobNotFoundError, match=f"no blob {absent} on the IPFS node"):
        store.get(absent)
    assert _FakeKubo.requests[0][1]["offline"] == ["true"]  # has() never asks the network


def test_unreachable_node() -> None:
    store = IpfsHttpStore("http://127.0.0.1:9", timeout=2)  # discard port: nothing listens
    with pytest.raises(StorageError, match="no IPFS node answers"):
        store.put(b"x")
    assert not ipfs_reachable("http://127.0.0.1:9", timeout=1)


REAL_NODE = os.environ.get("SECAGG_IPFS_API", DEFAULT_API)


@pytest.mark.skipif(not ipfs_reachable(REAL_NODE, 1.0), reason=f"no IPFS node at {REAL_NODE}")
def test_against_a_real_ipfs_node(tmp_path: Path) -> None:
    store = IpfsHttpStore(REAL_NODE)
    blob = hashlib.sha256(os.urandom(16)).digest() * 1000  # fresh, so the node lacks it
    assert not store.has(Cid.of(blob))
    cid = store.put(blob)
    assert cid == LocalBlobStore(tmp_path).put(blob)
    assert store.has(cid) and store.get(cid) == blob
