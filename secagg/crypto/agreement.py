"""X25519 key agreement: the only public-key primitive of the masking protocol.

Each client holds two key pairs per round: one whose agreements key the share encryption,
one whose agreements seed the pairwise masks. Keeping them apart means revealing the mask
key of a dropped client (by Shamir reconstruction) never exposes the shares it exchanged.
Keys travel as raw 32-byte encodings (RFC 7748), the most compact unambiguous form.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from secagg.errors import CryptoError

KEY_BYTES = 32

_RAW = serialization.Encoding.Raw
_RAW_PRIVATE = serialization.PrivateFormat.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw
_NO_ENCRYPTION = serialization.NoEncryption()


@dataclass(frozen=True, repr=False)
class KeyPair:
    """An X25519 private key and its raw public encoding (``repr`` never shows the secret)."""

    private: X25519PrivateKey
    public: bytes

    def private_bytes(self) -> bytes:
        """Raw 32-byte private scalar: what gets Shamir-shared for dropout recovery."""
        return self.private.private_bytes(_RAW, _RAW_PRIVATE, _NO_ENCRYPTION)

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()})"


def generate_key_pair() -> KeyPair:
    """A fresh key pair from the OS CSPRNG."""
    private = X25519PrivateKey.generate()
    return KeyPair(private, private.public_key().public_bytes(_RAW, _RAW_PUBLIC))


def key_pair_from_private_bytes(raw: bytes) -> KeyPair:
    """Rebuild a key pair from its raw private scalar (e.g. after Shamir reconstruction)."""
    if len(raw) != KEY_BYTES:
        raise CryptoError(f"an X25519 private key is {KEY_BYTES} bytes, got {len(raw)}")
    private = X25519PrivateKey.from_private_bytes(raw)
    return KeyPair(private, private.public_key().public_bytes(_RAW, _RAW_PUBLIC))


def _public_key(raw: bytes) -> X25519PublicKey:
    if len(raw) != KEY_BYTES:
        raise CryptoError(f"an X25519 public key is {KEY_BYTES} bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def agree(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """The raw 32-byte X25519 shared secret; feed it to HKDF, never use it as a key directly.

    Raises CryptoError for a low-order peer key, whose shared secret would be all zeros and
    therefore known to everyone.
    """
    try:
        return private.exchange(_public_key(peer_public))
    except ValueError as exc:
        raise CryptoError(
            "X25519 agreement failed: the peer public key is a low-order point; "
            "reject the key that carried it"
        ) from exc


_PROBE = X25519PrivateKey.generate()


def validate_public_key(raw: bytes) -> None:
    """Reject malformed or low-order public keys before anyone agrees with them.

    A low-order point sends every clamped scalar to the identity, so one exchange with a
    throwaway key detects it for all future partners.
    """
    agree(_PROBE, raw)
