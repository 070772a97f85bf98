"""One hospital's side of a deployed run: its data, trainer, keys and the round's state machine.

Sans-I/O like the masking client: each ``on_*`` method takes what a server message carried
(``meta``, ``blobs``; see :mod:`secagg.flower.wire`) and returns what to reply; the
ClientApp (:mod:`secagg.flower.client_app`) is the thin transport around it. The node builds
the same :class:`~secagg.simulation.federation.Federation`, trainer and protection as the
simulation does for its client index, so it trains, encodes, quantises and masks exactly as
its simulated twin (and with the same seeds).

What a hospital configures (``flower-supernode --node-config``, see :class:`NodeSettings`):
its client id, its data (a partition index of the run's dataset, or its own CSV path), its
identity key and the public identity directory (signed masking rounds), its chain account key
(ledger), whether it is the HE key holder.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.config import Config, config_from_dict
from secagg.errors import ConfigError, LedgerBudgetError, ProtocolError, SecAggError
from secagg.flower import wire
from secagg.masking.client import MaskingClient
from secagg.masking.messages import decode_server_message
from secagg.protection import HiddenFedAvg, make_protection
from secagg.protection.he import HESum, KeyHolder, decryption_threshold
from secagg.protection.masking import MaskingSum
from secagg.simulation.federation import SEED_PROTECTION, Federation, derive_seed

if TYPE_CHECKING:
    from secagg.crypto.identity import IdentityKey
    from secagg.he.attest import AttestingClient
    from secagg.ledger.client import LedgerClient
    from secagg.protection.base import Protection
    from secagg.storage import LocalBlobStore
    from secagg.training import LocalTrainer


log = logging.getLogger("secagg.flower.node")

_NEEDS_IDENTITY = (
    "this run needs identity-key and identities in the node config (secagg deploy writes "
    "them): signed masking rounds and HE rounds sign with the node's identity"
)


def config_from_text(text: str) -> Config:
    """A run config from its TOML text (as the server sends it and ``config.toml`` holds it)."""
    return config_from_dict(tomllib.loads(text))


@dataclass(frozen=True)
class NodeSettings:
    """A hospital's node configuration (``--node-config`` keys in brackets)."""

    client_id: int  # [client-id] its id in the protocol (and its seed stream)
    partition_id: int  # [partition-id] which client of the locally loaded split is its data
    data_path: str = ""  # [data-path] its own CSV, replacing the config's data.path
    identity_key: str = ""  # [identity-key] identity seed file (signed masking)
    identities: str = ""  # [identities] the public identity directory (JSON)
    chain_key: str = ""  # [chain-key] Ethereum account key file (ledger)
    he_key_holder: bool = False  # [he-key-holder] this node generates and holds the HE key

    @classmethod
    def from_node_config(cls, raw: Mapping[str, Any]) -> NodeSettings:
        if "client-id" not in raw and "partition-id" not in raw:
            raise ConfigError(
                "the SuperNode's --node-config needs client-id=<int> (and optionally "
                "partition-id, data-path, identity-key, identities, chain-key, he-key-holder)"
            )
        client_id = int(raw.get("client-id", raw.get("partition-id", 0)))
        return cls(
            client_id=client_id,
            partition_id=int(raw.get("partition-id", client_id)),
            data_path=str(raw.get("data-path", "")),
            identity_key=str(raw.get("identity-key", "")),
            identities=str(raw.get("identities", "")),
            chain_key=str(raw.get("chain-key", "")),
            he_key_holder=bool(raw.get("he-key-holder", False)),
        )


class HospitalNode:
    """Everything one node keeps for a run, in memory only, between Flower messages."""

    def __init__(self, settings: NodeSettings, config: Config) -> None:
        self.settings = settings
        if settings.data_path:
            config = replace(config, data=replace(config.data, path=settings.data_path))
        self.config = config
        self.federation = Federation.load(config)
        clients = self.federation.data.clients
        if not 0 <= settings.partition_id < len(clients):
            raise ConfigError(
                f"partition-id = {settings.partition_id}, but the data hold {len(clients)} "
                f"client(s): use 0..{len(clients) - 1}"
            )
        self.id = settings.client_id
        self.data = clients[settings.partition_id]
        self.trainer: LocalTrainer = self.federation.trainer(self.id, self.data)
        self.dim = self.federation.initial_params().size
        self.client_ids: list[int] = []
        self.protection: Protection | None = None
        self.key_holder: KeyHolder | None = None
        self.masking: MaskingClient | None = None  # this round's state machine
        self.identity: IdentityKey | None = None
        self.ledger: LedgerClient | None = None
        self.store: LocalBlobStore | None = None
        self.refused: dict[int, str] = {}

    # ---- setup ---------------------------------------------------------------------------

    def on_setup(self, meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Public facts about this client, and the HE public key if it holds the key."""
        self.client_ids = sorted(int(c) for c in str(meta["client_ids"]).split(","))
        if self.id not in self.client_ids:
            raise ConfigError(f"client-id {self.id} is not one of the run's {self.client_ids}")
        pt = self.config.protection
        blobs: dict[str, bytes] = {}
        if pt.mode in HESum.MODES and self.settings.he_key_holder:
            blobs["he_public_key"] = self._hold_he_key()
        if pt.mode in MaskingSum.MODES and self.config.ledger.enabled:
            raise ConfigError(
                "a Flower deployment does not run masking with the ledger yet: use "
                "protection.mode = 'ckks' or 'paillier' with ledger.enabled, or masking "
                "without the ledger"
            )
        signed = pt.mode in MaskingSum.MODES and pt.consistency == "signatures"
        if signed and not (self.settings.identity_key and self.settings.identities):
            raise ConfigError(
                "protection.consistency = 'signatures' needs identity-key and identities "
                "in the node config (secagg deploy writes them)"
            )
        if self.config.ledger.enabled and not (
            self.settings.chain_key and self.settings.identity_key
        ):
            raise ConfigError(
                "ledger.enabled needs chain-key and identity-key in the node config (the "
                "contract registers the node's account with its identity key)"
            )
        if self.settings.identity_key:
            from secagg.flower.keys import read_identity_key

            self.identity = read_identity_key(self.settings.identity_key)
        address = ""
        if self.config.ledger.enabled:
            from eth_account import Account

            from secagg.flower.keys import read_chain_key

            address = Account.from_key(read_chain_key(self.settings.chain_key)).address
        t = self.trainer
        return {
            "client_id": self.id,
            "name": self.data.name,
            "train_samples": self.data.num_samples,
            "val_samples": len(self.data.y_val),
            "noise_multiplier": t.noise_multiplier,
            "sample_rate": t.sample_rate,
            "steps_per_round": t.steps_per_round,
            "chain_address": address,
            "identity": self.identity.public.hex() if self.identity is not None else "",
        }, blobs

    def _protection(self, he_public_key: bytes | None) -> Protection:
        if self.protection is None:
            identities = None
            pt = self.config.protection
            signed = pt.mode in MaskingSum.MODES and pt.consistency == "signatures"
            if signed or pt.mode in HESum.MODES:  # HE: every client signs its ciphertext
                if self.identity is None:
                    raise ConfigError(_NEEDS_IDENTITY)
                from secagg.flower.keys import read_directory

                identities = read_directory(self.settings.identities)
                if identities.raw(self.id) != self.identity.record:
                    raise ConfigError(
                        f"identity-key does not match client {self.id}'s entry in "
                        f"{self.settings.identities}"
                    )
            if self.config.protection.mode in HESum.MODES and he_public_key is None:
                raise ProtocolError("the first round's message carries no HE public key")
            self.protection = make_protection(
                self.config,
                self.federation.rule(),
                self.client_ids,
                self.dim,
                derive_seed(self.config.run.seed, SEED_PROTECTION),
                identities=identities,
                he_public_key=he_public_key,
            )
        return self.protection

    def _connect_ledger(self, meta: Mapping[str, Any]) -> None:
        if self.ledger is not None or not self.config.ledger.enabled:
            return
        from eth_account import Account

        from secagg.flower.keys import read_chain_key
        from secagg.ledger.client import LedgerClient
        from secagg.ledger.providers import connect
        from secagg.storage import LocalBlobStore

        account = Account.from_key(read_chain_key(self.settings.chain_key))
        self.ledger = LedgerClient(
            connect(self.config.ledger.rpc_url),
            str(meta["contract"]),
            account,
            from_block=int(meta["deploy_block"]),
        )
        self.store = LocalBlobStore(str(meta["store"]))

    # ---- a round ---------------------------------------------------------------------------

    def on_train(
        self, meta: Mapping[str, Any], blobs: Mapping[str, bytes]
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Train, encode, protect; the first protocol message of the round rides along."""
        r = int(meta["round"])
        protection = self._protection(blobs.get("he_public_key"))
        self._connect_ledger(meta)
        self._claim(meta)
        params = wire.from_f32(blobs["params"])
        local = self.trainer.train(params, r)
        reply: dict[str, Any] = {
            "client_id": self.id,
            "num_samples": local.num_samples,
            "train_loss": local.train_loss,
            "epsilon": local.epsilon,
            "steps": local.steps,
        }
        if not isinstance(protection, HiddenFedAvg):  # protection.mode = "none"
            return reply, {"update": wire.f32(local.update)}
        declared = local.num_samples / float(meta["top_weight"])
        encoding = protection.encode(self.id, local.update, declared, r)
        secure_sum = protection.secure_sum
        if isinstance(secure_sum, MaskingSum):
            params_r = secure_sum.params(r)
            self.masking = MaskingClient(
                self.id, params_r, secure_sum.client_input(self.id, encoding, r), self.identity
            )
            request = decode_server_message(blobs["request"])
            (message,) = self.masking.handle(request)
            return reply, {"reply": message.to_bytes()}
        assert isinstance(secure_sum, HESum)
        submission = self._he_client(secure_sum).submit(r, encoding)
        if self.ledger is not None:
            assert self.store is not None
            from secagg.he.attest import Submission
            from secagg.ledger.records import epsilon_to_fixed

            cid = self.store.put(Submission.from_bytes(submission).ciphertext)
            try:
                self.ledger.commit(
                    int(meta["chain_round"]),
                    blob_hash=cid.digest,
                    share_root=bytes(32),
                    cumulative_epsilon=epsilon_to_fixed(local.epsilon or 0.0),
                )
            except LedgerBudgetError as exc:
                # The contract refuses to let this hospital overspend: its update stays home.
                reply["refused"] = f"{type(exc).__name__}: {exc}"
                return reply, {}
        return reply, {"submission": submission}

    def on_masking(self, blobs: Mapping[str, bytes]) -> dict[str, bytes]:
        """One server message of the masking round in, this client's reply out."""
        if self.masking is None:
            raise ProtocolError("a masking message arrived before this round's training")
        (message,) = self.masking.handle(decode_server_message(blobs["request"]))
        return {"reply": message.to_bytes()}

    # ---- HE: the key holder's key, this node's signatures, attestation, decryption -------

    def _hold_he_key(self) -> bytes:
        """Key holder: make the run's key pair; its public half, signed with this identity."""
        if not (self.settings.identity_key and self.settings.identities):
            raise ConfigError(_NEEDS_IDENTITY)
        from secagg.flower.keys import read_directory, read_identity_key

        n = len(self.client_ids)
        self.key_holder = KeyHolder(
            self.config,
            n,
            decryption_threshold(self.config, n),
            dim=self.dim + 1,
            directory=read_directory(self.settings.identities),
        )
        identity = read_identity_key(self.settings.identity_key)
        return self.key_holder.signed_public_key(identity, self.id)

    def _he_client(self, secure_sum: HESum) -> AttestingClient:
        """This node's side of every attested HE round: its identity signs."""
        if self.identity is None:
            raise ConfigError(_NEEDS_IDENTITY)
        return secure_sum.client(self.id, self.identity)

    def on_attest(self, meta: Mapping[str, Any], blobs: Mapping[str, bytes]) -> dict[str, bytes]:
        """Co-sign the sum of the round's signed ciphertexts after adding them up here.

        Without the ledger the board comes from the aggregator (every signature on it is
        checked); with it, the survivors and their digests come from the chain and the
        ciphertexts from the store, and the attestation goes on chain from this node's
        account. The key holder refuses: it never looks at a ciphertext.
        """
        protection = self.protection
        if not isinstance(protection, HiddenFedAvg) or not isinstance(protection.secure_sum, HESum):
            raise ProtocolError("an attestation request arrived outside an HE run's round")
        client = self._he_client(protection.secure_sum)
        if self.ledger is None:
            if "board" not in blobs:
                raise ProtocolError("the attestation request carries no board")
            return {"attestation": client.attest(blobs["board"])}
        from secagg.ledger.he_attestation import survivor_ciphertexts

        assert self.store is not None
        chain_round = int(meta["chain_round"])
        ciphertexts = survivor_ciphertexts(self.ledger, self.store, chain_round)
        self.ledger.attest_sum(chain_round, client.attest_committed(chain_round, ciphertexts))
        return {}

    def on_decrypt(self, meta: Mapping[str, Any], blobs: Mapping[str, bytes]) -> dict[str, bytes]:
        """Key holder: decrypt an attested sum, nothing else (see :mod:`secagg.he.attest`).

        Without the ledger the request carries the signed digests and the co-signatures;
        with it, the key holder reads the sum's pedigree from the chain itself.
        """
        if self.key_holder is None:
            raise ProtocolError(f"client {self.id} is not the HE key holder")
        if self.ledger is None:
            if "request" not in blobs:
                raise ProtocolError(
                    "the key holder decrypts only an attested request (signed ciphertext "
                    "digests and t co-signatures), never a bare sum"
                )
            values = self.key_holder.decrypt_request(blobs["request"])
        else:
            from secagg.he.attest import digest
            from secagg.ledger.he_attestation import attested_sum

            total = blobs["total"]
            pedigree = attested_sum(self.ledger, int(meta["chain_round"]), digest(total))
            values = self.key_holder.decrypt_attested(pedigree, total)
        return {"values": wire.f64(np.asarray(values, dtype=np.float64))}

    def _claim(self, meta: Mapping[str, Any]) -> None:
        """Claim the reward of the round the server says this node was included in.

        A refused claim (say, a penalty, or a round the contract does not know) is logged
        and costs the node nothing else: it must not make the node miss the round.
        """
        if self.ledger is None or "claim_round" not in meta:
            return
        try:
            self.ledger.claim_reward(int(meta["claim_round"]))
        except SecAggError as exc:
            log.warning("client %s: reward claim refused: %s", self.id, exc)

    def on_finish(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The run is over: claim the last round's reward when included."""
        self._claim(meta)
        self.masking = None
        return {"client_id": self.id}
