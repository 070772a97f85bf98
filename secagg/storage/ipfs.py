"""An IPFS node as the blob store, through Kubo's HTTP RPC API (standard library only).

Blobs are stored as single raw blocks (``/api/v0/block/put`` with ``cid-codec=raw``,
``mhtype=sha2-256``), so the node names them with exactly the CIDs
:class:`~secagg.storage.cid.Cid` computes, and a :class:`LocalBlobStore` and a node can
serve the same blobs under the same names. The CID the node reports is checked against the
local hash, and every read is rehashed here: the node is not trusted.

Limits worth knowing:
- Blocks above 1 MiB need ``allow-big-block`` (sent), and bitswap does not transfer blocks
  above 2 MiB between peers. A node serves such blobs from its own repository (RPC and
  gateway) but other IPFS peers cannot fetch them from it; chunking them into a UnixFS DAG
  would give a different (dag-pb) CID than the one the ledger records.
- The RPC API is an admin interface: never expose it beyond localhost (Kubo's advice).
- Needs Kubo 0.13 or later (``cid-codec`` parameter).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from secagg.errors import BlobNotFoundError, StorageError
from secagg.storage.base import Blob, BlobStore, verified
from secagg.storage.cid import Cid

DEFAULT_API = "http://127.0.0.1:5001"


class IpfsHttpStore(BlobStore):
    """Blobs as raw blocks in the IPFS (Kubo) node whose RPC API listens at ``url``."""

    def __init__(self, url: str = DEFAULT_API, *, timeout: float = 60.0, pin: bool = True) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.pin = pin

    def __repr__(self) -> str:
        return f"IpfsHttpStore({self.url!r})"

    def put(self, data: Blob) -> Cid:
        """Store ``data`` as one raw block (pinned by default); returns its CID."""
        cid = Cid.of(data)
        boundary = uuid.uuid4().hex
        body = b"".join(
            (
                f"--{boundary}\r\n".encode(),
                b'Content-Disposition: form-data; name="file"; filename="blob"\r\n',
                b"Content-Type: application/octet-stream\r\n\r\n",
                bytes(data),
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        params = {
            "cid-codec": "raw",
            "mhtype": "sha2-256",
            "mhlen": "32",
            "pin": "true" if self.pin else "false",
            "allow-big-block": "true",
        }
        reply = self._post(
            "block/put", params, body, f"multipart/form-data; boundary={boundary}", cid
        )
        try:
            key = json.loads(reply)["Key"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{self.url} answered block/put with {reply[:200]!r}") from exc
        if Cid.parse(key) != cid:
            raise StorageError(
                f"{self.url} stored the blob as {key}, but it hashes to {cid}: the node "
                "does not use raw sha2-256 CIDs as asked (Kubo 0.13 or later is needed)"
            )
        return cid

    def get(self, cid: Cid | str) -> bytes:
        """The blob from the node (which may fetch it from its peers), rehashed here."""
        cid = Cid.coerce(cid)
        data = self._post("block/get", {"arg": cid.text}, None, None, cid)
        return verified(cid, data, f"the IPFS node at {self.url}")

    def has(self, cid: Cid | str) -> bool:
        """Whether the node's own repository holds the block (``offline``: no peer lookup)."""
        cid = Cid.coerce(cid)
        try:
            self._post("block/stat", {"arg": cid.text, "offline": "true"}, None, None, cid)
        except BlobNotFoundError:
            return False
        return True

    def _post(
        self,
        command: str,
        params: dict[str, str],
        body: bytes | None,
        content_type: str | None,
        cid: Cid,
    ) -> bytes:
        url = f"{self.url}/api/v0/{command}?{urllib.parse.urlencode(params)}"
        headers = {"Content-Type": content_type} if content_type else {}
        request = urllib.request.Request(url, data=body or b"", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            message = _error_message(exc)
            if "not found" in message.lower():
                raise BlobNotFoundError(f"no blob {cid} on the IPFS node at {self.url}") from None
            raise StorageError(
                f"the IPFS node at {self.url} refused {command} for {cid}: "
                f"HTTP {exc.code}: {message}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise StorageError(
                f"no IPFS node answers at {self.url} ({exc}); start one (`ipfs daemon`) or use "
                "a LocalBlobStore"
            ) from exc


def ipfs_reachable(url: str = DEFAULT_API, timeout: float = 2.0) -> bool:
    """Whether a Kubo RPC API answers at ``url`` (``/api/v0/version``)."""
    request = urllib.request.Request(f"{url.rstrip('/')}/api/v0/version", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            info: Any = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "Version" in info


def _error_message(exc: urllib.error.HTTPError) -> str:
    """Kubo's error text: the ``Message`` of its JSON error body, else the raw body."""
    try:
        raw = exc.read()
    except OSError:
        return exc.reason if isinstance(exc.reason, str) else str(exc)
    try:
        return str(json.loads(raw)["Message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace")[:300]
