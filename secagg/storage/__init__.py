"""Content-addressed blob storage: protected updates, shares and aggregates, named by hash.

Bulk data stays off chain (design §3, §6): a client puts its masked update or ciphertext in
a store and commits only the blob's 32-byte digest on the ledger; anyone holding the digest
can fetch the blob from any copy and check it. Names are IPFS CIDv1 (raw codec, sha2-256),
so the local directory store and an IPFS node agree on every name.

- :class:`Cid`: the identifier; ``Cid.of(data)``, ``Cid.parse("bafkrei...")``,
  ``cid.digest`` (the on-chain ``bytes32``) and ``Cid.from_digest(bytes32)``.
- :class:`BlobStore`: ``put(data) -> Cid``, ``get(cid) -> bytes`` (always verified),
  ``has(cid)``, ``put_stream(file_or_chunks)``.
- :class:`LocalBlobStore`: the default, a directory of files named by CID (``path_of``).
- :class:`IpfsHttpStore`: an IPFS (Kubo) node through its HTTP RPC API.
"""

from secagg.storage.base import Blob, BlobStore
from secagg.storage.cid import Cid
from secagg.storage.ipfs import IpfsHttpStore, ipfs_reachable
from secagg.storage.local import LocalBlobStore

__all__ = ["Blob", "BlobStore", "Cid", "IpfsHttpStore", "LocalBlobStore", "ipfs_reachable"]
