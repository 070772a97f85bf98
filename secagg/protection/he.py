"""``protection.mode = "ckks" | "paillier"``: homomorphic encryption (:mod:`secagg.he`).

Three roles, three objects, so that no object holds what its role must not:

- the **key holder** (a key authority, or one client the consortium picks) generates the key
  pair, publishes the public key as bytes and decrypts *sums only*: it refuses a ciphertext
  that does not hold exactly the summands the aggregator says it included;
- **clients** load the public bytes and encrypt their encodings;
- the **aggregator** loads the same public bytes, checks every ciphertext it receives (a
  truncated or altered one is refused by name and that client is left out, like a dropout),
  and adds the rest. It never holds the secret key, so it cannot decrypt.

Neither backend has threshold decryption: the key holder could decrypt a single client's
ciphertext if it ever saw one. The trust placed in it is what masking spreads over t clients.
Dropouts need no recovery round: the sum is over whoever sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from secagg import he
from secagg.config import Config
from secagg.errors import (
    BelowThresholdError,
    ConfigError,
    HEError,
    ProtocolError,
    TamperedMessageError,
)
from secagg.he.base import EncryptedVector, HEPublicKey, HESecretKey
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
    """Generates the key pair and decrypts sums; the only object that holds the secret key."""

    def __init__(self, config: Config, max_summands: int, min_summands: int) -> None:
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

    def decrypt_sum(self, total: EncryptedVector, summands: int) -> np.ndarray:
        """Decrypt an aggregate, refusing anything but a sum of exactly ``summands`` vectors."""
        if total.summands != summands:
            raise ProtocolError(
                f"the aggregator asks to decrypt a ciphertext of {total.summands} summand(s) "
                f"while it reports {summands} included clients; the key holder decrypts only "
                "the announced sum"
            )
        if summands < self.min_summands:
            raise BelowThresholdError(
                f"the key holder refuses to decrypt a sum of {summands} client(s), fewer than "
                f"the threshold t = {self.min_summands}: a sum of too few updates reveals too "
                "much about each"
            )
        return self._secret.decrypt(total)

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

    ``public_key``: the key pair's public half when its key holder lives elsewhere (a
    deployment, where one node holds the secret key); by default it is generated here.
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
    ) -> None:
        pt = config.protection
        self.mode = pt.mode
        self.ledger = ledger
        self.client_ids = list(client_ids)
        self.dim = dim
        n = len(client_ids)
        t = decryption_threshold(config, n)
        self.key_holder: KeyHolder | None = None
        if public_key is None:
            self.key_holder = KeyHolder(config, n, t)
            public_key = self.key_holder.public_bytes
        self.public_bytes = public_key
        # Clients and the aggregator get the public key as bytes, as over a network.
        self.client_key = load_client_key(self.mode, public_key, pt.he_workers)
        self.aggregator = HEAggregator(public_key)

    def public_record(self, round_idx: int) -> dict[str, Any]:
        """What an auditor needs to redo the aggregator's sum: the public key."""
        return {
            "he_public_key": self.public_bytes.hex(),
            "dim": self.dim,
            "client_ids": self.client_ids,
        }

    def encrypt(self, encoding: np.ndarray) -> bytes:
        """A client's ciphertext of its encoding (the client's side)."""
        return self.client_key.encrypt(encoding).serialize()

    def outcome(self, values: np.ndarray, included: list[int], stats: dict[str, Any]) -> SumOutcome:
        """The decrypted sum of the ``included`` clients' encodings, with its error bound."""
        return SumOutcome(
            values,
            included,
            self.aggregator.public_key.params.error_bound(len(included)),
            stats=stats,
        )

    def sum(
        self, encodings: Mapping[int, np.ndarray], schedule: DropoutSchedule, round_idx: int
    ) -> SumOutcome:
        if self.key_holder is None:
            raise ProtocolError("this HESum has no key holder here: its sum runs elsewhere")
        lost = schedule.before_input()
        start = time.process_time()
        blobs = {c: self.encrypt(v) for c, v in sorted(encodings.items()) if c not in lost}
        encrypt_seconds = (time.process_time() - start) / max(1, len(blobs))
        if self.ledger is not None:
            # A client whose commit the contract refuses (its ε cap) is left out.
            blobs = {
                c: b
                for c, b in blobs.items()
                if self.ledger.commit_blob(round_idx, c, b, bytes(32))
            }
        start = time.process_time()
        total, included, rejected = self.aggregator.sum(blobs)
        aggregate_seconds = time.process_time() - start
        if self.ledger is not None:
            self.ledger.post_survivors(round_idx, included)
            self.ledger.set_aggregate(round_idx, total.serialize())
        start = time.process_time()
        values = self.key_holder.decrypt_sum(total, len(included))
        decrypt_seconds = time.process_time() - start
        sizes = [len(b) for b in blobs.values()]
        return self.outcome(
            values,
            included,
            {
                "bytes_sent_per_client": float(np.mean(sizes)),
                "bytes_over_float32_update": float(np.mean(sizes)) / (4 * (self.dim - 1)),
                "client_seconds": {"encrypt": encrypt_seconds},
                "server_seconds": aggregate_seconds,
                "key_holder_seconds": decrypt_seconds,
                "rejected_ciphertexts": rejected,
            },
        )


class HEAggregator:
    """Adds ciphertexts it cannot read; holds only the public key."""

    def __init__(self, public_bytes: bytes) -> None:
        self.public_key = he.load_public_key(public_bytes)

    def sum(self, blobs: Mapping[int, bytes]) -> tuple[EncryptedVector, list[int], dict[str, str]]:
        """The sum of every valid ciphertext, who is in it, and why the others were refused.

        A ciphertext that does not parse, belongs to another key or has another length is
        left out (its client counts as dropped), so one bad blob costs one client, not the
        round. Fewer than two valid ciphertexts abort: there would be no sum to hide behind.
        """
        total: EncryptedVector | None = None
        included: list[int] = []
        rejected: dict[str, str] = {}
        for client, blob in sorted(blobs.items()):
            try:
                vector = self.public_key.deserialize_vector(blob)
                total = vector if total is None else total.add_(vector)
            except (TamperedMessageError, HEError) as exc:
                rejected[str(client)] = f"{type(exc).__name__}: {exc}"
                continue
            included.append(client)
        if total is None or len(included) < 2:
            raise HEError(
                f"only {len(included)} valid ciphertext(s) arrived; a sum needs at least 2, "
                "so the round aborts and nothing is decrypted"
            )
        return total, included, rejected
