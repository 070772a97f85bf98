"""``protection.mode = "ckks" | "paillier"``: homomorphic encryption (:mod:`secagg.he`).

Three roles, three objects, so that no object holds what its role must not:

- the **key holder** (a key authority, or one client the consortium picks) generates the key
  pair, publishes the public key (signed with its identity in a deployment) and decrypts
  *attested sums only* (:class:`~secagg.he.attest.KeyHolderGate`): a sum of at least t
  distinct clients' own signed ciphertexts, which at least t clients recomputed and
  co-signed. It is shown the sum and the ciphertexts' digests, never a ciphertext;
- **clients** (:class:`~secagg.he.attest.AttestingClient`) encrypt their encodings and sign
  them, and co-sign the sum of a board of signed ciphertexts after adding it up themselves;
- the **aggregator** (:class:`~secagg.he.attest.AttestedAggregator`) checks every signed
  ciphertext (a forged, altered or malformed one costs its client, like a dropout, not the
  round), adds the rest, publishes them for co-signing and asks the key holder. It never
  holds the secret key, so it cannot decrypt.

Neither backend has threshold decryption (see :mod:`secagg.he.attest` for why the sum is
attested instead). Dropouts need no recovery round: the sum is over whoever sent.
:meth:`HESum.sum` runs every role in process, each message through its byte encoding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from secagg import he
from secagg.config import Config
from secagg.crypto.identity import IdentityDirectory, IdentityKey
from secagg.errors import ConfigError, HEError, ProtocolError
from secagg.he.attest import (
    AttestedAggregator,
    AttestedSum,
    AttestingClient,
    KeyHolderGate,
    SignedPublicKey,
    Submission,
    digest,
    session_from_public_key,
)
from secagg.he.base import HEPublicKey, HESecretKey
from secagg.masking.params import CONSISTENCY_CHECK, UNMASKING
from secagg.masking.session import establish_session
from secagg.protection.base import SumOutcome
from secagg.protection.dropout import DropoutSchedule

if TYPE_CHECKING:
    from secagg.ledger.session import LedgerSession

#: The config keys that decide whether a parameter set exists, named in capacity errors.
_CAPACITY_KEYS = {
    "ckks": "protection.he_precision, protection.clip_range or the number of clients",
    "paillier": "protection.he_precision, protection.he_key_bits, protection.clip_range or "
    "the number of clients",
}


class KeyHolder:
    """Generates the key pair and decrypts attested sums; the only object that holds the
    secret key.

    ``directory``: the clients' identities, to check the signatures of an off-chain
    request; ``dim``: the length of every summed vector; ``session``: the one session it
    decrypts for (None: the first one it admits).
    """

    def __init__(
        self,
        config: Config,
        max_summands: int,
        min_summands: int,
        *,
        dim: int,
        directory: IdentityDirectory | None,
        session: bytes | None = None,
    ) -> None:
        pt = config.protection
        self.min_summands = min_summands
        public: HEPublicKey
        self._secret: HESecretKey
        if not pt.he_precision > 0:
            raise ConfigError(f"protection.he_precision must be > 0, got {pt.he_precision}")
        if pt.he_workers < 1:
            raise ConfigError(f"protection.he_workers must be >= 1, got {pt.he_workers}")
        try:
            if pt.mode == "paillier":
                from secagg.he import paillier

                params: Any = paillier.choose_params(
                    pt.clip_range, max_summands, pt.he_precision, key_bits=pt.he_key_bits
                )
                public, self._secret = paillier.generate_keys(params, workers=pt.he_workers)
            else:
                backend = he.backend(pt.mode)
                params = backend.choose_params(pt.clip_range, max_summands, pt.he_precision)
                public, self._secret = backend.generate_keys(params)
        except HEError as exc:
            raise ConfigError(f"{_CAPACITY_KEYS[pt.mode]}: {exc}") from None
        self.params = params
        self.public_bytes = public.serialize()
        self.gate = KeyHolderGate(directory, min_summands, dim, session)

    def signed_public_key(self, identity: IdentityKey, client: int) -> bytes:
        """The public key signed by this key holder's identity (it is client ``client``)."""
        return SignedPublicKey.sign(identity, client, self.public_bytes).to_bytes()

    def decrypt_request(self, data: bytes) -> np.ndarray:
        """Decrypt the sum of an off-chain :class:`~secagg.he.attest.DecryptRequest`, once
        every signature in it and every rule of the gate holds."""
        attested, total = self.gate.verify_request(data)
        return self.decrypt_attested(attested, total)

    def decrypt_attested(self, attested: AttestedSum, total: bytes) -> np.ndarray:
        """Decrypt ``total`` once the gate admits it with ``attested`` (whose authenticity the
        caller established: signatures, or the chain)."""
        return self._secret.decrypt(self.gate.admit(attested, total, self._secret.public_key))

    @property
    def secret_key(self) -> HESecretKey:
        """For tests that show what the secret key can do; the protocol never hands it out."""
        return self._secret


def decryption_threshold(config: Config, n: int) -> int:
    """t: the fewest summands the key holder decrypts (``protection.threshold`` of n)."""
    pt = config.protection
    t = pt.threshold if pt.threshold >= 1 else math.ceil(round(pt.threshold * n, 9))
    if not 2 <= t <= n:
        raise ConfigError(
            f"protection.threshold gives t = {t}; the key holder decrypts sums of t to n "
            f"clients, so t must be in [2, {n}]"
        )
    return int(t)


def load_client_key(mode: str, public: bytes, workers: int = 1) -> HEPublicKey:
    """A client's encryption key from the key holder's public bytes."""
    if mode == "paillier":
        from secagg.he import paillier

        return paillier.load_public_key(public, workers=workers)
    return he.load_public_key(public)


class HESum:
    """CKKS or packed Paillier over the run's clients, one key pair for the whole run.

    ``public_key``: in a deployment, the key holder node's public key signed with its
    identity (:class:`~secagg.he.attest.SignedPublicKey`); by default a key authority is
    made here. ``identities``: the clients' registered identities (by default generated
    here, with every client's key). ``session``: bytes no party can repeat, bound into every
    statement (by default, in a simulation: the chain and contract with the ledger, the
    run's session of the clients' fresh nonces without; in a deployment: the key holder's
    fresh public key, which every node and the aggregator derive alike; on-chain
    attestations are bound to the chain).
    ``key_holder``: the client id this party trusts as key holder (a node's own settings);
    None accepts any registered client who signed the key.
    """

    MODES: ClassVar[tuple[str, ...]] = he.SCHEMES

    def __init__(
        self,
        config: Config,
        client_ids: list[int],
        dim: int,
        seed: int,
        ledger: LedgerSession | None = None,
        public_key: bytes | None = None,
        identities: IdentityDirectory | None = None,
        session: bytes | None = None,
        key_holder: int | None = None,
    ) -> None:
        pt = config.protection
        self.mode = pt.mode
        self.ledger = ledger
        self.client_ids = list(client_ids)
        self.dim = dim
        self.workers = pt.he_workers
        n = len(client_ids)
        self.threshold = decryption_threshold(config, n)
        self.identity_keys: dict[int, IdentityKey] = {}
        if identities is None and public_key is not None:
            raise ConfigError(
                "an HE key holder elsewhere signs its public key with its identity: pass the "
                "clients' identity directory (a deployment's identities.json)"
            )
        if identities is None:
            identities, self.identity_keys = IdentityDirectory.generate(self.client_ids)
        self.directory = identities
        self.key_holder: KeyHolder | None = None
        self.key_holder_id: int | None = None  # the key holder's client id (a deployment)
        #: a deployment's public key as the key holder signed it (forwarded to the clients)
        self.signed_public_key: bytes | None = None
        if public_key is None:  # a simulation: every role is here
            if session is None and ledger is not None:
                from secagg.ledger.he_attestation import chain_session

                session = chain_session(ledger.admin)
            # No ledger: the clients agree the run's session (secagg.masking.session).
            session = session or establish_session(self.client_ids)[1].value
            self.key_holder = KeyHolder(
                config, n, self.threshold, dim=dim, directory=self.directory, session=session
            )
            public_key = self.key_holder.public_bytes
        else:
            self.signed_public_key = public_key
            signed = SignedPublicKey.from_bytes(public_key)
            public_key = signed.verify(self.directory, key_holder)
            self.key_holder_id = signed.key_holder
        self.public_bytes = public_key
        self.session = session or session_from_public_key(public_key)
        # Clients and the aggregator get the public key as bytes, as over a network.
        self.client_key = load_client_key(self.mode, public_key, self.workers)
        self.public_key = he.load_public_key(public_key)  # the aggregator's
        self._clients: dict[int, AttestingClient] = {}

    def public_record(self, round_idx: int) -> dict[str, Any]:
        """What an auditor needs to redo the aggregator's sum and count the attestations."""
        return {
            "he_public_key": self.public_bytes.hex(),
            "dim": self.dim,
            "client_ids": self.client_ids,
            "threshold": self.threshold,
        }

    def client(self, c: int, identity: IdentityKey | None = None) -> AttestingClient:
        """Client ``c``'s side of every round (its identity: generated here, or given)."""
        found = self._clients.get(c)
        if found is None:
            key = identity if identity is not None else self.identity_keys[c]
            found = AttestingClient(
                c,
                key,
                self.directory,
                self.client_key,
                self.session,
                self.threshold,
                self.dim,
                self.key_holder_id,
            )
            self._clients[c] = found
        return found

    def aggregator(self, round_idx: int) -> AttestedAggregator:
        """The aggregator's side of one round."""
        return AttestedAggregator(
            self.public_key,
            self.directory,
            self.session,
            round_idx,
            self.threshold,
            self.dim,
            self.key_holder_id,
        )

    def outcome(self, values: np.ndarray, included: list[int], stats: dict[str, Any]) -> SumOutcome:
        """The decrypted sum of the ``included`` clients' encodings, with its error bound."""
        return SumOutcome(
            values, included, self.public_key.params.error_bound(len(included)), stats=stats
        )

    def sum(
        self, encodings: Mapping[int, np.ndarray], schedule: DropoutSchedule, round_idx: int
    ) -> SumOutcome:
        if self.key_holder is None:
            raise ProtocolError("this HESum has no key holder here: its sum runs elsewhere")
        lost = schedule.before_input()
        start = time.process_time()
        sent = {
            c: self.client(c).submit(round_idx, v)
            for c, v in sorted(encodings.items())
            if c not in lost
        }
        encrypt_seconds = (time.process_time() - start) / max(1, len(sent))
        if self.ledger is not None:
            # A client whose commit the contract refuses (its ε cap) is left out.
            sent = {
                c: m
                for c, m in sent.items()
                if self.ledger.commit_blob(
                    round_idx, c, Submission.from_bytes(m).ciphertext, bytes(32)
                )
            }
        aggregator = self.aggregator(round_idx)
        start = time.process_time()
        for c, message in sent.items():
            aggregator.receive(c, message)
        board = aggregator.board()
        aggregate_seconds = time.process_time() - start
        silent = set(schedule.by_phase.get(CONSISTENCY_CHECK, []))
        silent |= set(schedule.by_phase.get(UNMASKING, []))
        cosigners = [c for c in aggregator.included if c not in silent]
        total = aggregator.total.serialize()
        start = time.process_time()
        if self.ledger is None:
            attestations = {c: self.client(c).attest(board) for c in cosigners}
            attest_seconds = (time.process_time() - start) / max(1, len(cosigners))
            start = time.process_time()
            for c, attestation in attestations.items():
                aggregator.receive_attestation(c, attestation)
            request = aggregator.decrypt_request()
            aggregate_seconds += time.process_time() - start
            start = time.process_time()
            values = self.key_holder.decrypt_request(request)
            attest_sent = float(np.mean([len(a) for a in attestations.values()]))
            attest_received = len(board)
        else:
            attest_seconds, attest_received = self._attest_on_chain(
                round_idx, aggregator.included, cosigners
            )
            attest_sent = 0.0  # a transaction: its gas is in the round's ledger record
            start = time.process_time()
            values = self._decrypt_from_chain(round_idx, total)
        decrypt_seconds = time.process_time() - start
        if self.ledger is not None:
            self.ledger.set_aggregate(round_idx, total)
        sizes = [len(m) for m in sent.values()]
        return self.outcome(
            values,
            aggregator.included,
            {
                "bytes_sent_per_client": float(np.mean(sizes)),
                "bytes_over_float32_update": float(np.mean(sizes)) / (4 * (self.dim - 1)),
                "attestation_bytes_received_per_cosigner": attest_received,
                "attestation_bytes_sent_per_cosigner": attest_sent,
                "cosigners": len(cosigners),
                "client_seconds": {"encrypt": encrypt_seconds, "attest": attest_seconds},
                "server_seconds": aggregate_seconds,
                "key_holder_seconds": decrypt_seconds,
                "rejected_ciphertexts": {str(c): why for c, why in aggregator.rejected.items()},
            },
        )

    def _attest_on_chain(
        self, round_idx: int, included: list[int], cosigners: list[int]
    ) -> tuple[float, int]:
        """Post the survivors; each co-signer adds up what the chain and the store hold and
        attests the sum's digest from its own account. (CPU seconds per co-signer, bytes it
        reads from the store.)"""
        from secagg.ledger.he_attestation import survivor_ciphertexts

        ledger = self.ledger
        assert ledger is not None
        ledger.post_survivors(round_idx, included)
        chain_round = ledger.rounds[round_idx].chain_round
        start = time.process_time()
        # Every co-signer reads the same chain and store: read once here.
        ciphertexts = survivor_ciphertexts(ledger.admin, ledger.store, chain_round)
        for c in cosigners:
            sum_digest = self.client(c).attest_committed(chain_round, ciphertexts)
            ledger.attest_sum(round_idx, c, sum_digest)
        seconds = (time.process_time() - start) / max(1, len(cosigners))
        return seconds, sum(len(b) for b in ciphertexts)

    def _decrypt_from_chain(self, round_idx: int, total: bytes) -> np.ndarray:
        """The key holder reads the sum's pedigree from the chain, then decrypts."""
        from secagg.ledger.he_attestation import attested_sum

        ledger, holder = self.ledger, self.key_holder
        assert ledger is not None and holder is not None
        chain_round = ledger.rounds[round_idx].chain_round
        return holder.decrypt_attested(
            attested_sum(ledger.admin, chain_round, digest(total)), total
        )
