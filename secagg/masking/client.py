"""The client side of SecAgg / SecAgg+ as a sans-I/O state machine.

``MaskingClient.handle(message)`` takes one decoded server message and returns the messages
to send back (zero or one). It never touches sockets, threads or clocks: the runner decides
how bytes travel and when a deadline has passed. A message that breaks a protocol rule raises
a :class:`~secagg.errors.ProtocolError` subclass and leaves the client's state unchanged, so
the runner can log it and carry on.

Phases (Bonawitz et al. 2017, with the SecAgg+ neighbourhoods of Bell et al. 2020):

1. ``advertise_keys``: make two X25519 key pairs (c: share encryption, s: masks) and the
   self-mask seed b_u; send both public keys, and in a signed round a MAC on them for each
   neighbour under the pair key of the two identities
   (:meth:`secagg.crypto.identity.IdentityKey.pair_key`), so the server cannot substitute them.
2. ``share_keys``: check each relayed key's MAC (signed rounds), then Shamir-share s_u^SK and
   b_u among the neighbourhood (neighbours + self, threshold t_s), both secrets' polynomials
   evaluated at all k + 1 holders' points in one vectorised product
   (:func:`secagg.crypto.shamir.split_many`); seal each neighbour's pair of shares under its
   single-use key HKDF(X25519(c_u, c_v), round, u -> v) with associated data (round, sender,
   recipient).
3. ``masked_input``: decrypt the neighbours' shares, then send
   y_u = x_u + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv) mod 2^bits over the
   neighbours that shared keys.
4. ``consistency_check`` (signed rounds only): check the survivor set the server names and
   sign it with the client's BLS identity key.
5. ``unmasking``: reveal b-shares of the survivors, and s-shares of the neighbours that shared
   keys but are not survivors together with this client's pair-mask keys with them (they
   spare the server an X25519 agreement per edge; see :mod:`secagg.masking.unmask` for why
   they are safe). The client derives these lists from the survivor set, which it
   checks itself: it names this client, at least t clients, at least t_s of this client's
   neighbourhood, no neighbour that never shared keys, and survivors that stay one
   connected piece of the graph (else the sum of a piece could be unmasked alone). In a
   signed round it is the set this client signed, and the aggregate of at least t survivors'
   signatures on it comes with it, which the client checks whole (one pairing,
   :mod:`secagg.crypto.aggregate`). With t > n/2 two different sets can never both gather t
   signatures, so every honest client answers for the same set and the server never holds
   both b_u and s_u of a survivor.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from secagg.crypto import aead, shamir
from secagg.crypto.aggregate import verify_aggregate
from secagg.crypto.agreement import KeyPair, agree, generate_key_pair
from secagg.crypto.identity import IdentityKey
from secagg.crypto.prg import MaskGenerator
from secagg.errors import (
    BelowThresholdError,
    CryptoError,
    PhaseError,
    ProtocolError,
    QuantizationError,
    ReplayError,
    TamperedMessageError,
    UnknownSenderError,
    UnmaskingPolicyError,
    WrongRoundError,
)
from secagg.masking.messages import (
    AdvertiseKeys,
    AdvertiseKeysRequest,
    ClientMessage,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyDirectory,
    MaskedInput,
    PublicKeys,
    ServerMessage,
    ShareDelivery,
    ShareKeys,
    UnmaskingRequest,
    UnmaskingResponse,
)
from secagg.masking.params import (
    FINISHED,
    SERVER_ID,
    MaskingParams,
    advert_tag,
    pair_mask_key,
    seed_commitment,
    self_mask_key,
    share_associated_data,
    share_digest,
    share_encryption_keys,
    survivors_signature_message,
)

SEED_BYTES = 32
#: Plaintext of one share bundle: the b_u share value then the s_u^SK share value.
BUNDLE_BYTES = 2 * shamir.VALUE_BYTES
#: Size of one sealed share bundle on the wire (the server checks it): no nonce, the key
#: seals this bundle only (:func:`secagg.crypto.aead.seal_once`).
BUNDLE_CIPHERTEXT_BYTES = BUNDLE_BYTES + aead.ONCE_OVERHEAD


def validate_input(vector: np.ndarray, params: MaskingParams) -> np.ndarray:
    """The input as a 1-D array of the round's word type, checked to lie in [0, 2^bits)."""
    array = np.asarray(vector)
    if array.shape != (params.dim,):
        raise QuantizationError(
            f"a client input must be a vector of length dim = {params.dim}, got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise QuantizationError(
            f"a client input must hold integers in [0, 2^{params.bits}) (quantize it first), "
            f"got dtype {array.dtype}"
        )
    if array.size and (int(array.min()) < 0 or int(array.max()) >> params.bits):
        raise QuantizationError(f"client input values must lie in [0, 2^{params.bits})")
    # No copy when the caller already hands over the word type: masking works on a copy anyway.
    return np.ascontiguousarray(array, dtype=params.dtype)


@dataclass(repr=False)
class _Secrets:
    """Everything a client must forget once the round is over (never shown by ``repr``)."""

    encryption: KeyPair
    masking: KeyPair
    seed: bytes


class MaskingClient:
    """One client's half of a masking round.

    ``input_vector`` holds values in [0, 2^bits) (already quantized); it is not copied when it
    already has the round's word type, and it is never modified. ``identity`` is the client's
    identity key, required in a signed round (``params.identities`` set) and matching its
    directory entry.
    """

    def __init__(
        self,
        client_id: int,
        params: MaskingParams,
        input_vector: np.ndarray,
        identity: IdentityKey | None = None,
    ) -> None:
        if client_id not in params.members:
            raise UnknownSenderError(f"client {client_id} is not one of this round's clients")
        if params.identities is not None and (
            identity is None or identity.record != params.identities.raw(client_id)
        ):
            raise ProtocolError(
                f"client {client_id} needs its own identity key in a signed round: the key "
                "given does not match its entry in the identity directory"
            )
        self.id = client_id
        self.params = params
        self._identity = identity if params.signed else None
        self._input: np.ndarray | None = validate_input(input_vector, params)
        self._neighbors = params.graph.neighbors(client_id)
        self._phases = params.phases
        self._phase = self._phases[0]
        self._accepted: set[type] = set()
        self._secrets: _Secrets | None = None
        # Filled in share_keys: per-neighbour keys derived from the directory (the key of the
        # bundle each neighbour sends this client).
        self._bundle_keys: dict[int, bytes] = {}
        self._pair_keys: dict[int, bytes] = {}
        # Filled in masked_input: share values this client holds, by owner.
        self._seed_shares: dict[int, bytes] = {}
        self._key_shares: dict[int, bytes] = {}
        # Filled in consistency_check: the survivor set this client signed.
        self._signed_survivors: frozenset[int] | None = None
        #: holder -> (digest of its b-share, digest of its s-share) of this client's secrets:
        #: public commitments (a ledger publishes their Merkle root), filled in share_keys.
        self.share_commitments: dict[int, tuple[bytes, bytes]] = {}

    @property
    def phase(self) -> str:
        """The phase whose server message this client waits for (``"finished"`` at the end)."""
        return self._phase

    def handle(self, message: ServerMessage) -> list[ClientMessage]:
        """Process one server message; return what to send back. Atomic: raises or advances."""
        self._check_envelope(message)
        if isinstance(message, AdvertiseKeysRequest):
            reply: ClientMessage = self._advertise_keys(message)
        elif isinstance(message, KeyDirectory):
            reply = self._share_keys(message)
        elif isinstance(message, ShareDelivery):
            reply = self._masked_input(message)
        elif isinstance(message, ConsistencyRequest):
            reply = self._sign_survivors(message)
        else:
            reply = self._unmask(message)
        self._accepted.add(type(message))
        index = self._phases.index(self._phase) + 1
        self._phase = self._phases[index] if index < len(self._phases) else FINISHED
        return [reply]

    # ---- checks common to every message ------------------------------------------------------

    def _check_envelope(self, message: ServerMessage) -> None:
        if not isinstance(message, ServerMessage):
            raise TamperedMessageError(f"{type(message).__name__} is not a server message")
        name = type(message).__name__
        if message.round_id != self.params.round_id:
            raise WrongRoundError(
                f"{name} is for round {message.round_id}, client {self.id} is in round "
                f"{self.params.round_id}; messages are never reused across rounds"
            )
        if message.sender != SERVER_ID:
            raise UnknownSenderError(f"{name} claims sender {message.sender}, not the server")
        if message.recipient != self.id:
            raise ProtocolError(f"{name} is addressed to client {message.recipient}, not {self.id}")
        if type(message) in self._accepted:
            raise ReplayError(f"client {self.id} already accepted a {name} in this round")
        if self._phase != message.PHASE or message.PHASE not in self._phases:
            raise PhaseError(
                f"client {self.id} is in phase {self._phase!r}; a {name} belongs to "
                f"{message.PHASE!r}"
            )

    def _require_secrets(self) -> _Secrets:
        if self._secrets is None:  # unreachable through handle(): phases are ordered
            raise PhaseError(f"client {self.id} has no keys for this round")
        return self._secrets

    def _check_neighborhood(self, present: int, phase: str) -> None:
        needed = self.params.share_threshold
        if present < needed:
            raise BelowThresholdError(
                f"only {present} of client {self.id}'s neighbourhood remain at {phase}; "
                f"{needed} are needed to recover its secrets, so the round must abort"
            )

    # ---- phase handlers ----------------------------------------------------------------------

    def _advertise_keys(self, message: AdvertiseKeysRequest) -> AdvertiseKeys:
        if message.params_digest != self.params.digest:
            raise ProtocolError(
                f"the server runs round {message.round_id} with parameters that differ from "
                f"client {self.id}'s (digest mismatch); check n, t, k, bits, dim and graph seed"
            )
        own = _Secrets(generate_key_pair(), generate_key_pair(), secrets.token_bytes(SEED_BYTES))
        self._secrets = own
        commitment = seed_commitment(own.seed, self.params.round_id, self.id)
        public = (own.encryption.public, own.masking.public, commitment)
        tags: tuple[bytes, ...] = ()
        if self._identity is not None:
            tags = tuple(
                advert_tag(self._pair_key(peer), self.params, self.id, peer, *public)
                for peer in sorted(self._neighbors)
            )
        return AdvertiseKeys(self.params.round_id, self.id, PublicKeys(*public), tags)

    def _pair_key(self, peer: int) -> bytes:
        assert self._identity is not None and self.params.identities is not None
        try:
            return self._identity.pair_key(self.params.identities[peer])
        except CryptoError as exc:  # unreachable for a directory that was checked when built
            raise TamperedMessageError(f"client {peer}'s identity key: {exc}") from exc

    def _share_keys(self, message: KeyDirectory) -> ShareKeys:
        own = self._require_secrets()
        peers: Mapping[int, PublicKeys] = message.keys
        for peer, keys in peers.items():
            if peer not in self._neighbors:
                raise UnknownSenderError(
                    f"the key directory lists client {peer}, which is not a neighbour of "
                    f"client {self.id} in this round's graph"
                )
            if self._identity is not None:
                # The server relays the keys: only the owner's MAC says they are its own.
                public = (keys.encryption, keys.masking, keys.seed_commitment)
                expected = advert_tag(self._pair_key(peer), self.params, peer, self.id, *public)
                if not hmac.compare_digest(message.tags.get(peer, b""), expected):
                    raise TamperedMessageError(
                        f"client {peer}'s advertised keys (relayed to client {self.id}): the "
                        "MAC does not verify"
                    )
        if self._identity is None and message.tags:
            raise TamperedMessageError("a key directory of an unsigned round carries MACs")
        all_keys = [own.encryption.public, own.masking.public]
        all_keys += [k for keys in peers.values() for k in (keys.encryption, keys.masking)]
        if len(set(all_keys)) != len(all_keys):
            raise ProtocolError("the key directory repeats a public key; every key must be fresh")
        self._check_neighborhood(len(peers) + 1, "share_keys")

        p = self.params
        round_id, threshold = p.round_id, p.share_threshold
        send_keys, bundle_keys, pair_keys = {}, {}, {}
        for peer, keys in peers.items():
            try:
                enc_secret = agree(own.encryption.private, keys.encryption)
                mask_secret = agree(own.masking.private, keys.masking)
            except CryptoError as exc:
                raise TamperedMessageError(f"client {peer}'s public key: {exc}") from exc
            send_keys[peer], bundle_keys[peer] = share_encryption_keys(
                enc_secret, round_id, self.id, peer
            )
            pair_keys[peer] = pair_mask_key(mask_secret, round_id, self.id, peer)

        holders = sorted([self.id, *peers])
        values = shamir.split_many(
            [own.seed, own.masking.private_bytes()],
            threshold,
            [p.share_point(h) for h in holders],
        )
        encoded = shamir.encode_values(values)  # holder-major: b-share then s-share per holder
        size = shamir.VALUE_BYTES
        ciphertexts, own_seed_share = {}, b""
        for i, holder in enumerate(holders):
            bundle = encoded[2 * size * i : 2 * size * (i + 1)]
            seed_share, key_share = bundle[:size], bundle[size:]
            self.share_commitments[holder] = (share_digest(seed_share), share_digest(key_share))
            if holder == self.id:
                # Our own share of b_u, revealed only if we survive; our s-share never is.
                own_seed_share = seed_share
                continue
            ciphertexts[holder] = aead.seal_once(
                send_keys[holder], bundle, share_associated_data(round_id, self.id, holder)
            )
        self._bundle_keys, self._pair_keys = bundle_keys, pair_keys
        self._seed_shares[self.id] = own_seed_share
        return ShareKeys(round_id, self.id, ciphertexts)

    def _masked_input(self, message: ShareDelivery) -> MaskedInput:
        own = self._require_secrets()
        round_id = self.params.round_id
        for sender in message.ciphertexts:
            if sender not in self._bundle_keys:
                raise UnknownSenderError(
                    f"shares from client {sender}, which is not a neighbour of client {self.id} "
                    "that advertised keys this round"
                )
        self._check_neighborhood(len(message.ciphertexts) + 1, "masked_input")
        seed_shares, key_shares = {}, {}
        for sender, sealed in message.ciphertexts.items():
            try:
                associated_data = share_associated_data(round_id, sender, self.id)
                bundle = aead.open_once(self._bundle_keys[sender], sealed, associated_data)
                if len(bundle) != BUNDLE_BYTES:
                    raise TamperedMessageError(f"a share bundle is {BUNDLE_BYTES} bytes")
                shamir.decode_values(bundle, 2)  # range checks
                seed_part, key_part = bundle[: shamir.VALUE_BYTES], bundle[shamir.VALUE_BYTES :]
            except (TamperedMessageError, CryptoError) as exc:
                raise TamperedMessageError(
                    f"the share bundle from client {sender} to client {self.id} does not "
                    f"verify: {exc}"
                ) from exc
            seed_shares[sender], key_shares[sender] = seed_part, key_part

        if self._input is None:  # unreachable: the input is dropped only after masking
            raise PhaseError(f"client {self.id} has already sent its masked input")
        peers = sorted(message.ciphertexts)
        masked = np.empty_like(self._input)
        MaskGenerator(self.params.bits).apply(
            masked,
            add=[self_mask_key(own.seed, round_id, self.id)]
            + [self._pair_keys[v] for v in peers if v > self.id],
            subtract=[self._pair_keys[v] for v in peers if v < self.id],
            start=self._input,
            reduce=True,
        )

        self._seed_shares.update(seed_shares)
        self._key_shares.update(key_shares)
        self._input = None
        # Kept for unmasking: the server needs those of neighbours that drop from here on.
        self._pair_keys = {v: self._pair_keys[v] for v in peers}
        return MaskedInput(round_id, self.id, self.params.bits, masked)

    def _check_survivors(self, survivors: frozenset[int]) -> None:
        """Refuse a survivor set that could make this client's answer expose an input."""
        p = self.params
        if self.id not in survivors:
            raise UnmaskingPolicyError(
                f"client {self.id} sent its masked input but the survivor set does not name "
                "it; refusing (its key shares would unmask its input)"
            )
        strangers = survivors - p.members
        if strangers:
            raise UnknownSenderError(
                f"the survivor set names {sorted(strangers)[:10]}, who are not clients of "
                "this round"
            )
        silent = (survivors & self._neighbors) - self._key_shares.keys()
        if silent:
            raise UnmaskingPolicyError(
                f"the survivor set names neighbours {sorted(silent)[:10]} of client {self.id} "
                "that never shared keys with it, so they cannot have sent a masked input"
            )
        if len(survivors) < p.threshold:
            raise BelowThresholdError(
                f"the survivor set names {len(survivors)} clients, fewer than the threshold "
                f"t = {p.threshold}; revealing shares could expose a sum of too few inputs, so "
                f"client {self.id} refuses and the round must abort"
            )
        local = len(survivors & p.graph.neighborhood(self.id))
        if local < p.share_threshold:
            raise BelowThresholdError(
                f"the survivor set names {local} of client {self.id}'s neighbourhood, fewer "
                f"than t_s = {p.share_threshold}; the round must abort"
            )
        if not p.graph.connects(survivors):
            raise UnmaskingPolicyError(
                "the survivor set cuts the neighbour graph into pieces: the server could "
                f"unmask the sum of one piece alone, with fewer than t = {p.threshold} inputs; "
                f"client {self.id} refuses"
            )

    def _sign_survivors(self, message: ConsistencyRequest) -> ConsistencyResponse:
        survivors = frozenset(message.survivors)
        self._check_survivors(survivors)
        assert self._identity is not None  # ConsistencyRequest is only a phase of signed rounds
        message_bytes = survivors_signature_message(self.params, survivors)
        signature = self._identity.aggregate.sign(message_bytes)
        self._signed_survivors = survivors
        return ConsistencyResponse(self.params.round_id, self.id, signature)

    def _check_signatures(self, message: UnmaskingRequest, survivors: frozenset[int]) -> None:
        """In a signed round: the set this client signed, with >= t survivors' signatures."""
        p = self.params
        assert p.identities is not None
        if survivors != self._signed_survivors:
            raise UnmaskingPolicyError(
                f"the unmasking request names another survivor set than the one client "
                f"{self.id} signed; the server is telling clients different stories, refusing"
            )
        signers = frozenset(message.signers)
        if len(signers) != len(message.signers):  # one signature must not count twice
            raise TamperedMessageError("the unmasking request names a signer twice")
        outsiders = signers - survivors
        if outsiders:
            raise UnmaskingPolicyError(
                f"the unmasking request carries signatures of {sorted(outsiders)[:10]}, who "
                "are not survivors; only survivors sign the survivor set"
            )
        if len(signers) < p.threshold:
            raise BelowThresholdError(
                f"the unmasking request carries {len(signers)} signatures on the survivor set, "
                f"fewer than t = {p.threshold}; client {self.id} cannot tell that other clients "
                "saw the same set, so it refuses and the round must abort"
            )
        verify_aggregate(
            [p.identities[signer].aggregate for signer in message.signers],
            message.signature,
            survivors_signature_message(p, survivors),
            f"the {len(signers)} survivors' signatures on the survivor set shown to {self.id}",
        )

    def _unmask(self, message: UnmaskingRequest) -> UnmaskingResponse:
        survivors = frozenset(message.survivors)
        if self.params.signed:
            self._check_signatures(message, survivors)
        else:
            self._check_survivors(survivors)
        dropped = [o for o in self._key_shares if o not in survivors]
        reply = UnmaskingResponse(
            self.params.round_id,
            self.id,
            seed_shares={o: v for o, v in self._seed_shares.items() if o in survivors},
            key_shares={o: self._key_shares[o] for o in dropped},
            # Revealed under the same condition as the s-shares (any t_s of those rebuild
            # s_o, which determines every one of o's pair keys), and only where every client
            # answers for one survivor set: unsigned, a server could ask this client for its
            # keys with the neighbours it calls dropped and the others for this client's b_u.
            pair_keys={o: self._pair_keys[o] for o in dropped}
            if self.params.reveals_pair_keys
            else {},
        )
        # The round is over for this client: forget every secret.
        self._secrets = None
        self._bundle_keys, self._pair_keys = {}, {}
        self._seed_shares, self._key_shares = {}, {}
        return reply
