"""The client side of SecAgg / SecAgg+ as a sans-I/O state machine.

``MaskingClient.handle(message)`` takes one decoded server message and returns the messages
to send back (zero or one). It never touches sockets, threads or clocks: the runner decides
how bytes travel and when a deadline has passed. A message that breaks a protocol rule raises
a :class:`~secagg.errors.ProtocolError` subclass and leaves the client's state unchanged, so
the runner can log it and carry on.

Phases (Bonawitz et al. 2017, with the SecAgg+ neighbourhoods of Bell et al. 2020):

1. ``advertise_keys``: make two X25519 key pairs (c: share encryption, s: masks) and the
   self-mask seed b_u; send both public keys.
2. ``share_keys``: Shamir-share s_u^SK and b_u among the neighbourhood (neighbours + self,
   threshold t_s); encrypt each neighbour's pair of shares under HKDF(X25519(c_u, c_v)) with
   associated data (round, sender, recipient).
3. ``masked_input``: decrypt the neighbours' shares, then send
   y_u = x_u + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv) mod 2^bits over the
   neighbours that shared keys.
4. ``unmasking``: reveal b-shares of survivors and s-shares of dropped neighbours. A request
   that names one client in both sets, or fewer than t survivors, is refused: the server may
   never hold both b_u and s_u of a client whose masked input it has.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from secagg.crypto import aead, shamir
from secagg.crypto.agreement import KeyPair, agree, generate_key_pair
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
    PHASES,
    SERVER_ID,
    MaskingParams,
    pair_mask_key,
    self_mask_key,
    share_associated_data,
    share_encryption_key,
    share_x,
)

SEED_BYTES = 32
#: Plaintext of one share bundle: the b_u share value then the s_u^SK share value.
BUNDLE_BYTES = 2 * shamir.VALUE_BYTES
#: Size of one encrypted share bundle on the wire (the server checks it).
BUNDLE_CIPHERTEXT_BYTES = BUNDLE_BYTES + aead.OVERHEAD


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
    already has the round's word type, and it is never modified.
    """

    def __init__(self, client_id: int, params: MaskingParams, input_vector: np.ndarray) -> None:
        if client_id not in params.members:
            raise UnknownSenderError(f"client {client_id} is not one of this round's clients")
        self.id = client_id
        self.params = params
        self._input: np.ndarray | None = validate_input(input_vector, params)
        self._neighbors = params.graph.neighbors(client_id)
        self._phase = PHASES[0]
        self._accepted: set[type] = set()
        self._secrets: _Secrets | None = None
        # Filled in share_keys: per-neighbour keys derived from the directory.
        self._bundle_keys: dict[int, bytes] = {}
        self._pair_keys: dict[int, bytes] = {}
        # Filled in masked_input: share values this client holds, by owner.
        self._seed_shares: dict[int, bytes] = {}
        self._key_shares: dict[int, bytes] = {}

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
        else:
            reply = self._unmask(message)
        self._accepted.add(type(message))
        index = PHASES.index(self._phase) + 1
        self._phase = PHASES[index] if index < len(PHASES) else FINISHED
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
        if self._phase != message.PHASE:
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
        self._secrets = _Secrets(
            generate_key_pair(), generate_key_pair(), secrets.token_bytes(SEED_BYTES)
        )
        keys = PublicKeys(self._secrets.encryption.public, self._secrets.masking.public)
        return AdvertiseKeys(self.params.round_id, self.id, keys)

    def _share_keys(self, message: KeyDirectory) -> ShareKeys:
        own = self._require_secrets()
        peers: Mapping[int, PublicKeys] = message.keys
        for peer in peers:
            if peer not in self._neighbors:
                raise UnknownSenderError(
                    f"the key directory lists client {peer}, which is not a neighbour of "
                    f"client {self.id} in this round's graph"
                )
        all_keys = [own.encryption.public, own.masking.public]
        all_keys += [k for keys in peers.values() for k in (keys.encryption, keys.masking)]
        if len(set(all_keys)) != len(all_keys):
            raise ProtocolError("the key directory repeats a public key; every key must be fresh")
        self._check_neighborhood(len(peers) + 1, "share_keys")

        round_id, threshold = self.params.round_id, self.params.share_threshold
        bundle_keys, pair_keys = {}, {}
        for peer, keys in peers.items():
            try:
                enc_secret = agree(own.encryption.private, keys.encryption)
                mask_secret = agree(own.masking.private, keys.masking)
            except CryptoError as exc:
                raise TamperedMessageError(f"client {peer}'s public key: {exc}") from exc
            bundle_keys[peer] = share_encryption_key(enc_secret, round_id, self.id, peer)
            pair_keys[peer] = pair_mask_key(mask_secret, round_id, self.id, peer)

        holders = sorted([self.id, *peers])
        xs = [share_x(h) for h in holders]
        seed_shares = shamir.split(own.seed, threshold, xs)
        key_shares = shamir.split(own.masking.private_bytes(), threshold, xs)
        ciphertexts, own_seed_share = {}, b""
        for holder, seed_share, key_share in zip(holders, seed_shares, key_shares, strict=True):
            if holder == self.id:
                # Our own share of b_u, revealed only if we survive; our s-share never is.
                own_seed_share = seed_share.value_bytes()
                continue
            ciphertexts[holder] = aead.encrypt(
                bundle_keys[holder],
                seed_share.value_bytes() + key_share.value_bytes(),
                share_associated_data(round_id, self.id, holder),
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
                bundle = aead.decrypt(self._bundle_keys[sender], sealed, associated_data)
                if len(bundle) != BUNDLE_BYTES:
                    raise TamperedMessageError(f"a share bundle is {BUNDLE_BYTES} bytes")
                x = share_x(self.id)
                seed_part, key_part = bundle[: shamir.VALUE_BYTES], bundle[shamir.VALUE_BYTES :]
                shamir.Share.from_value_bytes(x, seed_part)  # range checks
                shamir.Share.from_value_bytes(x, key_part)
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
        self._pair_keys = {}
        return MaskedInput(round_id, self.id, self.params.bits, masked)

    def _unmask(self, message: UnmaskingRequest) -> UnmaskingResponse:
        survivors, dropped = set(message.survivors), set(message.dropped)
        both = survivors & dropped
        if both:
            raise UnmaskingPolicyError(
                f"the unmasking request names client(s) {sorted(both)} both as survivors and as "
                "dropped; revealing both b_u and s_u of one client would expose its input, "
                f"so client {self.id} refuses"
            )
        if self.id not in survivors:
            raise UnmaskingPolicyError(
                f"client {self.id} sent its masked input but the request does not list it as a "
                "survivor; refusing (its key shares would unmask its input)"
            )
        strangers = (survivors | dropped) - self._neighbors - {self.id}
        if strangers:
            raise UnknownSenderError(
                f"the unmasking request names clients {sorted(strangers)} outside client "
                f"{self.id}'s neighbourhood"
            )
        if message.survivor_count < len(survivors):
            raise ProtocolError(
                f"the unmasking request claims {message.survivor_count} survivors but lists "
                f"{len(survivors)}"
            )
        if message.survivor_count < self.params.threshold:
            raise BelowThresholdError(
                f"the unmasking request reports {message.survivor_count} survivors, fewer than "
                f"the threshold t = {self.params.threshold}; revealing shares could expose a "
                "sum of too few inputs, so the round must abort"
            )
        reply = UnmaskingResponse(
            self.params.round_id,
            self.id,
            seed_shares={o: v for o, v in self._seed_shares.items() if o in survivors},
            key_shares={o: v for o, v in self._key_shares.items() if o in dropped},
        )
        # The round is over for this client: forget every secret.
        self._secrets = None
        self._bundle_keys = {}
        self._seed_shares, self._key_shares = {}, {}
        return reply
