"""Key material of a deployment, as files: where each key lives and who may read it.

- ``identity.key`` (one per hospital, private): the node's 32-byte identity seed, hex
  (:class:`~secagg.crypto.identity.IdentityKey`). Only that hospital's node reads it; in a
  signed masking round it authenticates the node's round keys and signs the survivor set.
- ``identities.json`` (public, every party holds the same copy): client id -> directory entry
  (the public keys derived from the seed and a proof of possession), hex. It is the PKI of a
  signed round: a node checks the MACs and signatures it is shown against it, so the
  aggregator cannot substitute a key. Distribute it out of band.
- ``chain.key`` (one per hospital, private): the node's Ethereum account key, hex. The node
  signs its own ledger transactions with it; the chain node never holds it.

Private files are written with mode 0600.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from secagg.crypto.identity import IdentityDirectory, IdentityKey
from secagg.errors import ConfigError, CryptoError


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def _read_hex(path: str | Path, what: str) -> bytes:
    try:
        return bytes.fromhex(Path(path).read_text().strip().removeprefix("0x"))
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    except ValueError:
        raise ConfigError(f"{what} file {path} does not hold one hex string") from None


def write_identity_key(path: str | Path, key: IdentityKey) -> None:
    _write_private(Path(path), key.private_bytes().hex())


def read_identity_key(path: str | Path) -> IdentityKey:
    return IdentityKey.from_private_bytes(_read_hex(path, "identity key"))


def write_directory(path: str | Path, keys: Mapping[int, IdentityKey]) -> None:
    """The public identity directory of ``keys`` (public halves only)."""
    table = {str(c): k.record.hex() for c, k in sorted(keys.items())}
    Path(path).write_text(json.dumps(table, indent=2) + "\n")


def read_directory(path: str | Path) -> IdentityDirectory:
    try:
        table = json.loads(Path(path).read_text())
        return IdentityDirectory({int(c): bytes.fromhex(h) for c, h in table.items()})
    except FileNotFoundError:
        raise ConfigError(f"identity directory {path} does not exist") from None
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"identity directory {path} is not id -> hex entry: {exc}") from None
    except CryptoError as exc:
        raise ConfigError(f"identity directory {path}: {exc}") from None


def generate_identities(client_ids: Iterable[int], folder: str | Path) -> Path:
    """One ``identity.key`` per client under ``folder/<id>/`` and the public directory."""
    root = Path(folder)
    _, keys = IdentityDirectory.generate(list(client_ids))
    for c, key in keys.items():
        write_identity_key(root / str(c) / "identity.key", key)
    write_directory(root / "identities.json", keys)
    return root / "identities.json"


def write_chain_key(path: str | Path, private_key: bytes) -> None:
    _write_private(Path(path), private_key.hex())


def read_chain_key(path: str | Path) -> bytes:
    return _read_hex(path, "chain account key")
