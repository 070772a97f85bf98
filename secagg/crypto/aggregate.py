"""BLS aggregate signatures on BLS12-381: the quorum of the consistency round.

Every survivor signs the same survivor set, and t of those signatures must convince each
client that no other set can gather t. Checked one by one (Ed25519, as Bonawitz et al. do)
that is t verifications per client, which at n = 1,000 was most of a round's CPU. BLS
signatures on one message add up to one 96-byte signature that verifies against the sum of
the signers' public keys with one pairing check, so each client checks the whole quorum, not
a sample of it, for about the cost of one verification (the proof-of-possession scheme of
draft-irtf-cfrg-bls-signature, through ``blspy``).

Summing public keys is safe only for keys whose owners proved they hold the secret:
otherwise a registrant could publish a key built from the others' and forge the quorum. So
every public key is loaded together with its proof of possession (:func:`load_public_key`),
once, when the identity directory is built.

Every failure to parse or verify raises :class:`~secagg.errors.TamperedMessageError` (a
signature) or :class:`~secagg.errors.CryptoError` (a registered key).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from blspy import G1Element, G2Element, PopSchemeMPL, PrivateKey

from secagg.errors import CryptoError, TamperedMessageError

PUBLIC_KEY_BYTES = 48
SIGNATURE_BYTES = 96
PROOF_BYTES = SIGNATURE_BYTES

_INFINITY = G1Element()


@dataclass(frozen=True, repr=False)
class AggregateSigningKey:
    """A BLS private key (``repr`` never shows it)."""

    private: PrivateKey
    public: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> AggregateSigningKey:
        """The key generated from ``seed`` (at least 32 secret bytes), as KeyGen specifies."""
        if len(seed) < 32:
            raise CryptoError(f"a BLS key seed is at least 32 bytes, got {len(seed)}")
        private = PopSchemeMPL.key_gen(seed)
        return cls(private, bytes(private.get_g1()))

    def sign(self, message: bytes) -> bytes:
        return bytes(PopSchemeMPL.sign(self.private, message))

    def prove_possession(self) -> bytes:
        return bytes(PopSchemeMPL.pop_prove(self.private))

    def __repr__(self) -> str:
        return f"AggregateSigningKey(public={self.public.hex()})"


def load_public_key(raw: object, proof: object) -> G1Element:
    """Parse a registered public key and check its proof of possession."""
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_BYTES:
        got = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
        raise CryptoError(f"a BLS public key is {PUBLIC_KEY_BYTES} bytes, got {got}")
    try:
        public = G1Element.from_bytes(raw)
        valid = public != _INFINITY and PopSchemeMPL.pop_verify(public, _signature(proof))
    except (ValueError, TamperedMessageError) as exc:
        raise CryptoError(f"not a BLS public key with its proof of possession: {exc}") from None
    if not valid:
        raise CryptoError("the BLS public key comes without a valid proof of possession")
    return public


def _signature(raw: object) -> G2Element:
    if not isinstance(raw, bytes) or len(raw) != SIGNATURE_BYTES:
        got = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
        raise TamperedMessageError(f"a BLS signature is {SIGNATURE_BYTES} bytes, got {got}")
    try:
        return G2Element.from_bytes(raw)  # checks the point is on the curve and in G2
    except ValueError as exc:
        raise TamperedMessageError(f"not a BLS signature: {exc}") from None


def check_signature(raw: object) -> None:
    """Refuse bytes that are not a point of G2, before anyone adds them up."""
    _signature(raw)


def aggregate(signatures: Iterable[bytes]) -> bytes:
    """One signature standing for all of ``signatures`` (each checked to be a G2 point)."""
    return bytes(PopSchemeMPL.aggregate([_signature(s) for s in signatures]))


def verify(public: G1Element, signature: bytes, message: bytes, what: str) -> None:
    """Raise TamperedMessageError unless ``signature`` signs ``message`` under ``public``."""
    verify_aggregate([public], signature, message, what)


def verify_aggregate(
    publics: Sequence[G1Element], signature: bytes, message: bytes, what: str
) -> None:
    """Raise TamperedMessageError unless ``signature`` is every key of ``publics`` signing
    ``message``: one pairing check for the lot."""
    if not publics:
        raise TamperedMessageError(f"{what}: an aggregate signature needs at least one signer")
    if not PopSchemeMPL.fast_aggregate_verify(list(publics), message, _signature(signature)):
        raise TamperedMessageError(f"{what}: the aggregate signature does not verify")
