"""Ed25519 signatures: the long-term identity keys of the consistency round.

Against a server that lies, masking needs two things agreement and AES-GCM cannot give: keys
the server cannot substitute (each client signs its round keys) and one survivor set that
every client sees (each client signs the set it is told, and reveals shares only once it has
seen enough signatures on that same set). Both rest on identity keys registered out of band,
here a plain mapping from client id to the raw 32-byte public key.

A verification failure raises :class:`~secagg.errors.TamperedMessageError`: a signature that
does not verify is, by definition, a forged or altered message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.errors import CryptoError, TamperedMessageError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw
_RAW_PRIVATE = serialization.PrivateFormat.Raw


@dataclass(frozen=True, repr=False)
class SigningKey:
    """An Ed25519 private key and its raw public encoding (``repr`` never shows the secret)."""

    private: Ed25519PrivateKey
    public: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh identity key from the OS CSPRNG."""
        private = Ed25519PrivateKey.generate()
        return cls(private, private.public_key().public_bytes(_RAW, _RAW_PUBLIC))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> SigningKey:
        """Load a key from its raw 32-byte seed (as stored in a hospital's key file)."""
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise CryptoError("an Ed25519 private key is 32 raw bytes")
        private = Ed25519PrivateKey.from_private_bytes(raw)
        return cls(private, private.public_key().public_bytes(_RAW, _RAW_PUBLIC))

    def private_bytes(self) -> bytes:
        return self.private.private_bytes(_RAW, _RAW_PRIVATE, serialization.NoEncryption())

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public.hex()})"


def load_public_key(raw: object) -> Ed25519PublicKey:
    """Parse a raw public key, with a named error for anything that is not one."""
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_BYTES:
        got = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
        raise CryptoError(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} raw bytes, got {got}")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise CryptoError(f"not an Ed25519 public key: {exc}") from exc


def verify(public: Ed25519PublicKey, signature: bytes, message: bytes, what: str) -> None:
    """Raise TamperedMessageError unless ``signature`` signs ``message`` under ``public``."""
    if len(signature) != SIGNATURE_BYTES:
        raise TamperedMessageError(
            f"{what}: an Ed25519 signature is {SIGNATURE_BYTES} bytes, got {len(signature)}"
        )
    try:
        public.verify(signature, message)
    except InvalidSignature:
        raise TamperedMessageError(f"{what}: the signature does not verify") from None


class IdentityDirectory(Mapping[int, Ed25519PublicKey]):
    """Client id -> Ed25519 public key, registered out of band (the PKI of the protocol).

    Every party holds the same directory; building it checks every entry, so a directory
    with a wrong id or key type fails here with one line instead of deep inside a round.
    """

    def __init__(self, raw_keys: Mapping[int, bytes]) -> None:
        if not isinstance(raw_keys, Mapping):
            raise CryptoError(
                f"an identity directory maps client ids to raw public keys, "
                f"got {type(raw_keys).__name__}"
            )
        keys: dict[int, Ed25519PublicKey] = {}
        raw: dict[int, bytes] = {}
        for client, key in raw_keys.items():
            if isinstance(client, bool) or not isinstance(client, int) or client < 0:
                raise CryptoError(f"identity directory ids are integers >= 0, got {client!r}")
            try:
                keys[client] = load_public_key(key)
            except CryptoError as exc:
                raise CryptoError(f"identity directory entry for client {client}: {exc}") from None
            raw[client] = key
        if len(set(raw.values())) != len(raw):
            raise CryptoError("the identity directory lists one public key for two clients")
        self._keys = keys
        self._raw = raw

    @classmethod
    def generate(cls, client_ids: Iterable[int]) -> tuple[IdentityDirectory, dict[int, SigningKey]]:
        """Fresh identity keys for a simulation: the public directory and each client's key."""
        private = {c: SigningKey.generate() for c in client_ids}
        return cls({c: k.public for c, k in private.items()}), private

    def raw(self, client: int) -> bytes:
        return self._raw[client]

    def __getitem__(self, client: int) -> Ed25519PublicKey:
        return self._keys[client]

    def __iter__(self) -> Iterator[int]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
