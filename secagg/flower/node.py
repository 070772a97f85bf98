"""One hospital's side of a deployed run: its data, trainer, keys and the round's state machine.

Sans-I/O like the masking client: each ``on_*`` method takes what a server message carried
(``meta``, ``blobs``; see :mod:`secagg.flower.wire`) and returns what to reply; the
ClientApp (:mod:`secagg.flower.client_app`) is the thin transport around it. The node builds
the same :class:`~secagg.simulation.federation.Federation`, trainer and protection as the
simulation does for its client index, so it trains, encodes, quantises and masks exactly as
its simulated twin, with one difference: its DP randomness.

What the coordinator sends is a request, checked against the hospital's own policy
(:mod:`secagg.flower.policy`: its privacy floor, identity, data, trusted contract and chain,
state folder), never obeyed as such:

- a run weaker than the policy's privacy floor is refused at setup, a round that would take
  the node's lifetime ε past ``max_epsilon`` before training, a contract or chain id other
  than the trusted ones before anything is sent to them (:class:`~secagg.errors.PolicyError`);
- the DP sampling and noise come from :meth:`~secagg.privacy.noise.NoiseSource.fresh`, a key
  from this node's CSPRNG, never from ``run.seed`` or anything else in a message;
- the accountant's history and the rounds trained are read from the node's disk before each
  round and written back before its update leaves (:mod:`secagg.flower.budget`): a restart or a
  second setup resumes them, so ε only grows and a round is never trained twice.

Under ``privacy.mode = "distributed-dp"`` (over masking, without the ledger; see
:mod:`secagg.flower.sum_dp` for what the node trusts and checks) the node's client is the
noisy sum's (:meth:`~secagg.simulation.federation.Federation.client`: DP-FedSGD's clipped
batch sum, or DP-FedAvg's coin and clipped update), its randomness from the same fresh key.
At its first round it builds the plan itself from the config and the clients' sizes the
round's message carries, checks its own planned ε against its policy, and from then on each
round: checks the lifetime ε with one more worst-case release, trains, records the release on
disk, encodes with its noise share and opens the masking round with that input.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from secagg.config import Config, config_from_dict, config_to_toml
from secagg.errors import (
    ConfigError,
    LedgerBudgetError,
    PrivacyError,
    ProtocolError,
    SecAggError,
    TamperedMessageError,
)
from secagg.flower import wire
from secagg.flower.budget import BudgetState, NodeBudget, SumRelease, run_key
from secagg.flower.policy import NodePolicy, NodeSettings
from secagg.flower.sum_dp import SIZES, bind_plan, refuse_unsupported
from secagg.masking.client import MaskingClient
from secagg.masking.messages import (
    SessionCommitments,
    SessionNonces,
    decode_server_message,
    decode_session_message,
)
from secagg.masking.session import SessionClient
from secagg.privacy.noise import NoiseSource
from secagg.privacy.sum_clients import ClippedUpdateClient, GradientSumClient
from secagg.protection import HiddenFedAvg, make_protection
from secagg.protection.he import HESum, KeyHolder, decryption_threshold
from secagg.protection.masking import MaskingSum
from secagg.protection.noisy_sum import NoisySumProtection, make_noisy_sum
from secagg.simulation.federation import SEED_PROTECTION, Federation, derive_seed
from secagg.training import LocalTrainer

if TYPE_CHECKING:
    from secagg.crypto.identity import IdentityDirectory, IdentityKey
    from secagg.he.attest import AttestingClient
    from secagg.ledger.client import LedgerClient
    from secagg.protection.base import Protection
    from secagg.storage import LocalBlobStore
    from secagg.training import LocalResult


log = logging.getLogger("secagg.flower.node")

_NEEDS_IDENTITY = (
    "this run needs identity-key and identities in the node config (secagg deploy writes "
    "them): signed masking rounds and HE rounds sign with the node's identity"
)


def config_from_text(text: str) -> Config:
    """A run config from its TOML text (as the server sends it and ``config.toml`` holds it)."""
    try:
        return config_from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the run config sent is not valid TOML: {exc}") from None


#: The most clients a setup message may name (bounds the parsing of its id list).
MAX_CLIENTS = 1 << 16

#: What trains on a node: a DP-SGD (or plain) trainer, or the noisy sum's client.
Learner: TypeAlias = LocalTrainer | GradientSumClient | ClippedUpdateClient

__all__ = ["HospitalNode", "NodeSettings", "config_from_text"]


class HospitalNode:
    """Everything one node keeps for a run between Flower messages; what it spent, on disk."""

    def __init__(self, settings: NodeSettings, config: Config) -> None:
        refuse_unsupported(config)  # central-dp; distributed-dp over HE or with the ledger
        self.policy = NodePolicy.load(settings)
        self.policy.check_run(config)
        #: the run's config as sent (before [data] path is replaced): the run key, the plan
        self.config_text = config_to_toml(config)
        self.run_key = run_key(self.config_text)
        self.settings = settings = self.policy.node
        if settings.data_path:
            config = replace(config, data=replace(config.data, path=settings.data_path))
        self.config = config
        self.federation = Federation.load(config)
        clients = self.federation.data.clients
        partition = self.policy.partition_id
        if not 0 <= partition < len(clients):
            raise ConfigError(
                f"partition-id = {partition}, but the data hold {len(clients)} "
                f"client(s): use 0..{len(clients) - 1}"
            )
        self.id = self.policy.client_id
        self.data = clients[partition]
        # The DP sampling and noise (distributed DP: the batch or the coin, and the noise
        # share) are keyed by this node alone: nothing a message carries (run.seed included)
        # enters the key, so no one else can regenerate them.
        self.trainer: Learner = self.federation.client(
            self.id, self.data, noise=NoiseSource.fresh()
        )
        self.sum_dp = config.privacy.mode == "distributed-dp"
        if isinstance(self.trainer, LocalTrainer):
            self.policy.check_trainer(self.trainer)
        self.budget = NodeBudget(self.policy.state_folder, self.id)
        state = self.budget.load()
        if isinstance(self.trainer, LocalTrainer):
            self._resume(state)  # a run it already has rounds in resumes; ε never restarts
            self.policy.check_round(self.trainer, state.run(self.run_key).last_round + 1, state)
        #: distributed DP: the clients' sizes its plan was built from (fixed for the run)
        self.sizes: dict[int, int] | None = None
        self.dim = self.federation.initial_params().size
        self.client_ids: list[int] = []
        self.protection: Protection | None = None
        self.key_holder: KeyHolder | None = None
        self.masking: MaskingClient | None = None  # this round's state machine
        #: masking: the run's session, agreed with the other nodes after setup (it opens rounds)
        self.session: SessionClient | None = None
        self.identity: IdentityKey | None = None
        self.ledger: LedgerClient | None = None
        self.store: LocalBlobStore | None = None
        self.refused: dict[int, str] = {}

    @property
    def _trainer(self) -> LocalTrainer:
        """The DP-SGD (or plain) trainer: every mode but the noisy sum's."""
        assert isinstance(self.trainer, LocalTrainer)
        return self.trainer

    def _resume(self, state: BudgetState) -> None:
        """The trainer continues from what the node's disk says it spent and trained."""
        run = state.run(self.run_key)
        self._trainer.restore(state.history, run.rounds_trained, run.last_round)

    def _train(self, params: np.ndarray, round_idx: int) -> LocalResult:
        """Train one round under the node's budget: read it, check it, spend it, write it.

        The new state is on disk before the update can leave the node; a round refused or
        failed writes nothing. The ε reported is the node's lifetime ε: its noisy sums'
        releases on disk compose with the DP-SGD history.
        """
        trainer = self._trainer
        with self.budget.spending() as state:
            self._resume(state)
            self.policy.check_round(trainer, round_idx, state)
            local = trainer.train(params, round_idx)
            spent = trainer.history if trainer.dp else state.history  # no DP: as was
            state.record_round(self.run_key, round_idx, spent)
            if trainer.dp and state.sum_releases:
                p = trainer.privacy
                local = replace(local, epsilon=state.epsilon(p.delta, p.accountant))
        return local

    def _train_sum(
        self, noisy: NoisySumProtection, params: np.ndarray, round_idx: int
    ) -> tuple[LocalResult, float]:
        """One distributed-dp round under the node's budget: the round number after every one
        it trained, no more rounds than planned, the lifetime ε with this round's release at
        its worst case (``min_shares`` honest shares) within ``max_epsilon``; then train and
        record the release, on disk before the masked input leaves. Returns the result and
        the lifetime ε after the round."""
        client = self.trainer
        assert isinstance(client, GradientSumClient | ClippedUpdateClient)
        plan = noisy.plan
        release = SumRelease.of(plan.release(plan.min_shares), client.sample_rate)
        accountant = self.policy.privacy.accountant  # of the DP-SGD history on disk, if any
        with self.budget.spending() as state:
            run = state.run(self.run_key)
            if round_idx <= run.last_round:
                raise PrivacyError(
                    f"client {self.data.name!r} already trained round {run.last_round}; round "
                    f"{round_idx} does not come after it. A client sends each round's noisy "
                    "share once: a second one only spends more of its budget"
                )
            if run.rounds_trained >= plan.rounds:
                raise PrivacyError(
                    f"client {self.data.name!r} already sent the {plan.rounds} noisy sums its "
                    "plan was made for; another would exceed it (raise run.rounds to plan "
                    "for more)"
                )
            now = state.epsilon(plan.delta, accountant)
            after = state.epsilon(plan.delta, accountant, release=release)
            self.policy.check_spend(round_idx, now, after)
            local = client.train(params, round_idx)
            state.record_sum_round(self.run_key, round_idx, release)
        return local, after

    # ---- setup ---------------------------------------------------------------------------

    def on_setup(self, meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Public facts about this client, and the HE public key if it holds the key."""
        self.client_ids = wire.meta_ids(meta, "client_ids", limit=MAX_CLIENTS)
        if self.id not in self.client_ids:
            raise ConfigError(f"client-id {self.id} is not one of the run's {self.client_ids}")
        self.policy.check_protection(self.config, len(self.client_ids))
        pt = self.config.protection
        blobs: dict[str, bytes] = {}
        if pt.mode in HESum.MODES and self.settings.he_key_holder:
            blobs["he_public_key"] = self._hold_he_key()
        if pt.mode in MaskingSum.MODES:
            # A fresh session for every setup: nothing signed in an earlier one counts here.
            self.session = SessionClient(self.id, self._registered())
            blobs["session_commit"] = self.session.commit().to_bytes()
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

    def _registered(self) -> list[int]:
        """The clients this node agreed to run with: its own identity directory if it has one,
        else the run's list as sent."""
        if self.settings.identities:
            from secagg.flower.keys import read_directory

            return sorted(read_directory(self.settings.identities))
        return self.client_ids

    def on_session(self, blobs: Mapping[str, bytes]) -> dict[str, bytes]:
        """The session set-up (masking): the commitments table in, this node's nonce out; then
        the nonces table in, nothing out (the session is set)."""
        if self.session is None:
            raise ProtocolError("a session message arrived, but this run does not mask")
        message = decode_session_message(wire.blob(blobs, "session"))
        if not isinstance(message, SessionCommitments | SessionNonces):
            raise TamperedMessageError(f"a {type(message).__name__} is not for a node")
        reply = self.session.handle(message)
        return {} if reply is None else {"reveal": reply.to_bytes()}

    def _identities(self) -> IdentityDirectory | None:
        """The registered identities, when the run signs (signed masking, HE)."""
        pt = self.config.protection
        signed = pt.mode in MaskingSum.MODES and pt.consistency == "signatures"
        if not (signed or pt.mode in HESum.MODES):  # HE: every client signs its ciphertext
            return None
        if self.identity is None:
            raise ConfigError(_NEEDS_IDENTITY)
        from secagg.flower.keys import read_directory

        identities = read_directory(self.settings.identities)
        if identities.raw(self.id) != self.identity.record:
            raise ConfigError(
                f"identity-key does not match client {self.id}'s entry in "
                f"{self.settings.identities}"
            )
        return identities

    def _protection(self, he_public_key: bytes | None) -> Protection:
        if self.protection is None:
            identities = self._identities()
            pt = self.config.protection
            if self.config.protection.mode in HESum.MODES and he_public_key is None:
                raise ProtocolError("the first round's message carries no HE public key")
            session = None
            if pt.mode in MaskingSum.MODES:
                if self.session is None or self.session.session is None:
                    raise ProtocolError(
                        "a masking round arrived before this node agreed the run's session"
                    )
                session = self.session.session
            self.protection = make_protection(
                self.config,
                self.federation.rule(),
                self.client_ids if session is None else list(session.participants),
                self.dim,
                derive_seed(self.config.run.seed, SEED_PROTECTION),
                identities=identities,
                he_public_key=he_public_key,
                he_key_holder=self.policy.protection.he_key_holder,
                session=session,
            )
        return self.protection

    def _connect_ledger(self, meta: Mapping[str, Any]) -> None:
        """Reach the contract the policy trusts, on the chain it trusts, and no other.

        The coordinator names the contract in every round's message; the node checks the name
        against its policy each time and talks to its own chain endpoint, never one it is sent.
        """
        if not self.config.ledger.enabled:
            return
        contract = wire.meta_text(meta, "contract", max_chars=42)
        if self.ledger is not None:
            self.policy.check_ledger(contract, self.ledger.chain_id)
            return
        from eth_account import Account

        from secagg.flower.keys import read_chain_key
        from secagg.ledger.client import LedgerClient
        from secagg.ledger.providers import connect
        from secagg.storage import LocalBlobStore

        trusted = self.policy.ledger
        assert trusted is not None  # check_run refused a ledger run without one
        w3 = connect(trusted.rpc_url)
        self.policy.check_ledger(contract, int(w3.eth.chain_id))
        account = Account.from_key(read_chain_key(self.settings.chain_key))
        self.ledger = LedgerClient(
            w3, contract, account, from_block=wire.meta_int(meta, "deploy_block")
        )
        self.store = LocalBlobStore(wire.meta_text(meta, "store"))

    def _noisy_sum(self, meta: Mapping[str, Any]) -> NoisySumProtection:
        """The run's noisy sum, built by this node from the config and the clients' sizes the
        message carries, checked against its policy (its own ε, its colluders floor) before
        anything is spent; the same sizes every round after (see :mod:`.sum_dp`)."""
        sizes = wire.meta_counts(meta, SIZES, limit=MAX_CLIENTS)
        if self.protection is not None:
            assert isinstance(self.protection, NoisySumProtection)
            if sizes != self.sizes:
                raise ProtocolError(
                    "this round's message carries other clients' sizes than the run's first: "
                    "the noise plan of a run does not change"
                )
            return self.protection
        client = self.trainer
        assert isinstance(client, GradientSumClient | ClippedUpdateClient)
        if self.session is None or self.session.session is None:
            raise ProtocolError("a masking round arrived before this node agreed the run's session")
        agreed = self.session.session
        self._check_sizes(sizes, agreed.participants)
        bound = bind_plan(agreed, self.config_text, sizes)
        noisy = make_noisy_sum(
            self.config,
            sizes,
            self.dim,
            derive_seed(self.config.run.seed, SEED_PROTECTION),
            {self.id: client.noise_share},
            None,
            identities=self._identities(),
            session=bound,
        )
        self.policy.check_sum_plan(noisy.plan, self.id, client.sample_rate)
        # From now on this node opens its rounds only under the plan-bound session: a round
        # whose parameters another plan produced has another digest, and is refused.
        self.session.session = bound
        client.noise_multiplier = noisy.plan.noise_multiplier
        self.protection, self.sizes = noisy, sizes
        return noisy

    def _check_sizes(self, sizes: Mapping[int, int], participants: tuple[int, ...]) -> None:
        """What of the coordinator's sizes this node can check: its own, and who is named."""
        own = sizes.get(self.id)
        if own != self.data.num_samples:
            raise ProtocolError(
                f"the coordinator's sizes give client {self.id} {own} training samples, it "
                f"has {self.data.num_samples} (as its setup reply said): the plan would not "
                "be this node's"
            )
        if tuple(sorted(sizes)) != participants:
            raise ProtocolError(
                f"the coordinator's sizes name clients {sorted(sizes)}, the session's "
                f"participants are {list(participants)}"
            )

    def _train_noisy_sum(
        self, meta: Mapping[str, Any], blobs: Mapping[str, bytes], r: int
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Distributed DP: plan (checked), train (charged), encode + noise share, mask."""
        noisy = self._noisy_sum(meta)
        params = wire.from_f32(wire.blob(blobs, "params"), self.dim)
        request = decode_server_message(wire.blob(blobs, "request"))  # before anything is spent
        local, epsilon = self._train_sum(noisy, params, r)
        secure_sum = noisy.secure_sum
        assert isinstance(secure_sum, MaskingSum) and self.session is not None
        self.masking = self.session.open_round(
            secure_sum.params(r), noisy.client_input(self.id, local.update, r), self.identity
        )
        (message,) = self.masking.handle(request)
        # Nothing in the clear beside the masked input says how the node trained: its loss is
        # computed on raw data under no DP, and a loss or step count would tell the coordinator
        # whether a client-level round's coin let it in (the amplification rests on not knowing).
        reply = {
            "client_id": self.id,
            "num_samples": local.num_samples,
            "train_loss": float("nan"),
            "epsilon": epsilon,
        }
        return reply, {"reply": message.to_bytes()}

    # ---- a round ---------------------------------------------------------------------------

    def on_train(
        self, meta: Mapping[str, Any], blobs: Mapping[str, bytes]
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Train, encode, protect; the first protocol message of the round rides along."""
        r = wire.meta_int(meta, "round")
        if self.sum_dp:
            return self._train_noisy_sum(meta, blobs, r)
        protection = self._protection(blobs.get("he_public_key"))
        self._connect_ledger(meta)
        self._claim(meta)
        params = wire.from_f32(wire.blob(blobs, "params"), self.dim)
        top_weight = wire.meta_number(meta, "top_weight")
        if top_weight < self.data.num_samples:  # refused before anything is spent
            raise ProtocolError(
                f"top_weight = {top_weight:g} is below this client's {self.data.num_samples} "
                "samples: a declared weight share must be at most 1"
            )
        request = None  # the masking round's first request, parsed before anything is spent
        if isinstance(protection, HiddenFedAvg) and isinstance(protection.secure_sum, MaskingSum):
            request = decode_server_message(wire.blob(blobs, "request"))
        local = self._train(params, r)
        reply: dict[str, Any] = {
            "client_id": self.id,
            "num_samples": local.num_samples,
            "train_loss": local.train_loss,
            "epsilon": local.epsilon,
            "steps": local.steps,
        }
        if not isinstance(protection, HiddenFedAvg):  # protection.mode = "none"
            return reply, {"update": wire.f32(local.update)}
        declared = local.num_samples / top_weight
        encoding = protection.encode(self.id, local.update, declared, r)
        secure_sum = protection.secure_sum
        if isinstance(secure_sum, MaskingSum):
            params_r = secure_sum.params(r)
            assert self.session is not None  # _protection refused a round without one
            self.masking = self.session.open_round(
                params_r, secure_sum.client_input(self.id, encoding, r), self.identity
            )
            assert request is not None
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
        (message,) = self.masking.handle(decode_server_message(wire.blob(blobs, "request")))
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
            self.ledger.claim_reward(wire.meta_int(meta, "claim_round"))
        except SecAggError as exc:
            log.warning("client %s: reward claim refused: %s", self.id, exc)

    def on_finish(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The run is over: claim the last round's reward when included."""
        self._claim(meta)
        self.masking = None
        return {"client_id": self.id}
