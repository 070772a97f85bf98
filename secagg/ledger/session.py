"""The chain side of a run: deploy (or reach) the contract, register the consortium, record rounds.

One :class:`LedgerSession` per run. It is the engine's single seam to the ledger
(``round_trained`` opens a round, ``round_finished`` posts the aggregate and pays rewards),
and it hands each protection mode what it needs in between: a :class:`MaskingBoard` (the
chain as the masking protocol's PKI and broadcast channel) or :meth:`commit_blob` and
:meth:`post_survivors` for HE, where the sum is over whoever committed.

Every party signs its own transactions with its own local key (eth-account); the node's first
account only deploys and funds them. Bulk data goes to the content-addressed store; the chain
holds digests, roots, ε and identifiers. Gas is recorded per operation and round.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.types import Wei

from secagg.config import Config, config_to_toml
from secagg.crypto.identity import IdentityDirectory, IdentityKey
from secagg.errors import LedgerBudgetError, LedgerConnectionError
from secagg.ledger.chainfile import CHAIN_FILE, ChainRecorder, encode_chain_file
from secagg.ledger.client import LedgerClient
from secagg.ledger.providers import advance_time, block_timestamp, connect, is_embedded
from secagg.ledger.records import TxReceipt, epsilon_to_fixed
from secagg.ledger.roundblobs import (
    encode_masked_blob,
    encode_round_config,
    share_tree,
    vector_blob,
)
from secagg.masking.client import MaskingClient
from secagg.masking.graph import NeighborGraph
from secagg.masking.messages import (
    AdvertiseKeys,
    ClientMessage,
    KeyDirectory,
    MaskedInput,
    PublicKeys,
    ServerMessage,
    UnmaskingRequest,
    UnmaskingResponse,
)
from secagg.masking.params import SERVER_ID, share_digest
from secagg.masking.server import UnmaskedSum
from secagg.storage import LocalBlobStore

#: Wei sent to every party's account so it can pay for its transactions.
FUNDING_WEI = 10**20
#: Seconds each round stays open for commits, then for unmasking (simulated rounds are fast).
COMMIT_WINDOW = 3600
UNMASK_WINDOW = 7200
#: Reward tokens have 18 decimals, like ether.
TOKEN_UNIT = 10**18


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reaching_the_node(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A node that goes away mid-run is a LedgerConnectionError, not a bare socket error."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except OSError as exc:  # requests' connection errors are OSErrors too
            raise LedgerConnectionError(
                f"the ledger node cannot be reached ({type(exc).__name__}: {exc}); the run "
                "stops here, and the rounds it finished are in metrics.json"
            ) from exc

    return wrapper


@dataclass
class RoundState:
    """What the session remembers of one round until the aggregate is posted."""

    chain_round: int
    epsilons: dict[int, int]  # client -> cumulative ε, fixed point
    advertised: set[int] = field(default_factory=set)
    committed: set[int] = field(default_factory=set)
    refused: dict[int, str] = field(default_factory=dict)  # client -> why its commit failed
    commit_deadline: int = 0
    survivors_posted: bool = False
    aggregate_blob: bytes | None = None
    gas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


class LedgerSession:
    """The contract, one account per party, and the blob store, for one run."""

    def __init__(
        self,
        config: Config,
        client_ids: list[int],
        store_dir: str | Path,
        identity_keys: Mapping[int, IdentityKey] | None = None,
        participants: Mapping[int, tuple[str, bytes]] | None = None,
        contract: tuple[str, int] | None = None,
    ) -> None:
        """``participants``: client id -> (account address, Ed25519 public key) of clients
        that hold their own keys elsewhere (a deployment: each node signs its own
        transactions); by default every client's account and identity are created here.
        ``contract``: (address, deployment block) of a ledger the consortium deployed before
        the run (its admin is the chain node's first account), which the run records its
        rounds on after the ones already there; by default the session deploys its own."""
        self.config = config
        self.w3 = connect(config.ledger.rpc_url)
        #: The embedded chain ends with this process: its blocks go into the run folder.
        self.recorder = ChainRecorder(self.w3) if is_embedded(self.w3) else None
        self.store = LocalBlobStore(store_dir)
        external = dict(participants or {})
        if identity_keys is None:
            _, generated = IdentityDirectory.generate([c for c in client_ids if c not in external])
            identity_keys = generated
        self.identity_keys = dict(identity_keys)
        identity_public = {c: k.public for c, k in self.identity_keys.items()}
        identity_public.update({c: key for c, (_, key) in external.items()})
        funder = self.w3.eth.accounts[0]
        if contract is None:
            self.admin = LedgerClient.deploy(
                self.w3,
                admin=funder,
                epsilon_cap=epsilon_to_fixed(config.ledger.epsilon_cap),
                reward_per_round=config.ledger.reward_per_round * TOKEN_UNIT,
            )
        else:
            self.admin = LedgerClient(self.w3, contract[0], funder, from_block=contract[1])
        #: rounds already on the contract: this run's round r is chain round offset + r + 1
        self.round_offset = self.admin.last_round_id
        self.setup_gas: dict[str, int] = {}
        if self.admin.deployment is not None:
            self.setup_gas["deploy"] = self.admin.deployment.gas_used
        self._accounts: dict[int | str, LocalAccount] = {"aggregator": Account.create()}
        for c in client_ids:
            if c not in external:
                self._accounts[c] = Account.create()
        addresses: dict[int | str, str] = {c: a.address for c, a in self._accounts.items()}
        addresses.update({c: address for c, (address, _) in external.items()})
        for address in addresses.values():
            self.w3.eth.send_transaction({"from": funder, "to": address, "value": Wei(FUNDING_WEI)})
        aggregator = self._accounts["aggregator"]
        self.setup_gas["grantRole"] = self.admin.grant_role(
            "AGGREGATOR_ROLE", aggregator.address
        ).gas_used
        register = [
            self.admin.register(str(addresses[c]), identity_public[c]).gas_used for c in client_ids
        ]
        self.setup_gas["register"] = int(np.median(register))
        self.aggregator = self.admin.as_sender(aggregator)
        #: Ledger clients of the participants whose keys live here (all, in a simulation).
        self.clients = {
            c: self.admin.as_sender(self._accounts[c]) for c in client_ids if c not in external
        }
        self.address_of = {c: str(addresses[c]) for c in client_ids}
        self.client_of: dict[str, int] = {a: c for c, a in self.address_of.items()}
        self.rounds: dict[int, RoundState] = {}

    # ---- what the results folder records ---------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Where the run's record lives: enough for ``secagg audit`` to find it."""
        return {
            "chain": "embedded" if is_embedded(self.w3) else self.config.ledger.rpc_url,
            "chain_id": self.admin.chain_id,
            "contract": self.admin.address,
            "deploy_block": self.admin.from_block,
            "store": str(self.store.root),
            "participants": {str(c): a for c, a in self.address_of.items()},
            "aggregator": self._accounts["aggregator"].address,
        }

    @_reaching_the_node
    def run_record(self, run_dir: Path) -> tuple[dict[str, Any], bytes | None]:
        """What the run folder keeps of the ledger: :meth:`describe` with the store's path
        relative to ``run_dir`` (when inside it) and the chain's head now, and for the
        embedded chain the bytes of its chain file (``record["chain_file"]``), which an
        auditor re-executes (:mod:`secagg.ledger.chainfile`)."""
        record = self.describe()
        record["store"] = _path_in(self.store.root, run_dir)
        chain_file = None
        if self.recorder is not None:
            blocks, head = self.recorder.record()
            chain_file = encode_chain_file(blocks)
            record["chain_file"] = CHAIN_FILE
            record["head"] = {"block": head.number, "hash": head.hash}
        else:
            latest = self.w3.eth.get_block("latest")
            record["head"] = {"block": int(latest["number"]), "hash": latest["hash"].to_0x_hex()}
        return record, chain_file

    # ---- the engine's seam ---------------------------------------------------------------

    @_reaching_the_node
    def round_trained(
        self,
        round_idx: int,
        params: np.ndarray,
        epsilons: Mapping[int, float | None],
        weights: Mapping[int, float],
        record: Mapping[str, object],
    ) -> None:
        """Open the round on chain: the global model and the round's rules in the store.

        ``record`` is the protection's public record (what an auditor needs to replay the
        round); ``weights`` are the sample counts the clients declared in the clear.
        """
        # round ids on chain start at 1 and only increase
        chain_round = self.round_offset + round_idx + 1
        state = RoundState(
            chain_round, {c: epsilon_to_fixed(e or 0.0) for c, e in epsilons.items()}
        )
        self.rounds[round_idx] = state
        model_cid = self.store.put(vector_blob(params))
        rules = encode_round_config(config_to_toml(self.config), record, weights)
        config_cid = self.store.put(rules)
        now = block_timestamp(self.w3)
        state.commit_deadline = now + COMMIT_WINDOW
        receipt = self.aggregator.open_round(
            chain_round,
            model_hash=model_cid.digest,
            config_hash=config_cid.digest,
            commit_deadline=now + COMMIT_WINDOW,
            unmask_deadline=now + COMMIT_WINDOW + UNMASK_WINDOW,
            participants=[self.address_of[c] for c in sorted(self.address_of)],
        )
        state.gas["openRound"].append(receipt.gas_used)

    @_reaching_the_node
    def round_finished(
        self, round_idx: int, update: np.ndarray | None, included: Iterable[int]
    ) -> dict[str, Any]:
        """Post the aggregate (when there is one), pay the included, and report gas and ε."""
        state = self.rounds[round_idx]
        members = sorted(included)
        if update is not None and state.aggregate_blob is not None:
            aggregate_cid = self.store.put(state.aggregate_blob)
            update_cid = self.store.put(vector_blob(update))
            receipt = self.aggregator.post_aggregate(
                state.chain_round,
                aggregate_cid=aggregate_cid.digest,
                aggregate_hash=update_cid.digest,
                included=[self.address_of[c] for c in members],
            )
            state.gas["postAggregate"].append(receipt.gas_used)
            for c in members:
                if c not in self.clients:
                    continue  # a participant with its own keys claims for itself
                state.gas["claimReward"].append(
                    self.clients[c].claim_reward(state.chain_round).gas_used
                )
        return self.round_stats(round_idx)

    def round_stats(self, round_idx: int) -> dict[str, Any]:
        state = self.rounds[round_idx]
        per_op = {op: int(np.median(g)) for op, g in state.gas.items() if g}
        client_ops = ("advertiseKeys", "commit", "postShares", "attestSum", "claimReward")
        per_client = sum(per_op.get(op, 0) for op in client_ops)
        return {
            "chain_round": state.chain_round,
            "gas_median_by_operation": per_op,
            "gas_per_client": per_client,
            "gas_total": sum(sum(g) for g in state.gas.values()),
            "epsilon_on_chain": {
                str(c): self.aggregator.epsilon_spent(self.address_of[c]) / 1e6
                for c in sorted(self.address_of)
            },
            "commits_refused": {str(c): why for c, why in state.refused.items()},
        }

    # ---- what protection modes call ----------------------------------------------------

    def _record(self, state: RoundState, op: str, receipt: TxReceipt) -> None:
        state.gas[op].append(receipt.gas_used)

    @_reaching_the_node
    def commit_blob(self, round_idx: int, client: int, blob: bytes, share_root: bytes) -> bool:
        """Store ``blob`` and commit to it with the client's cumulative ε; False if refused.

        A refusal (the ε cap, above all) means the client's update must not be used: the
        contract is what keeps a hospital from being made to overspend.
        """
        state = self.rounds[round_idx]
        cid = self.store.put(blob)
        try:
            receipt = self.clients[client].commit(
                state.chain_round,
                blob_hash=cid.digest,
                share_root=share_root,
                cumulative_epsilon=state.epsilons[client],
            )
        except LedgerBudgetError as exc:
            state.refused[client] = f"{type(exc).__name__}: {exc}"
            return False
        self._record(state, "commit", receipt)
        state.committed.add(client)
        return True

    @_reaching_the_node
    def post_survivors(self, round_idx: int, survivors: Iterable[int]) -> list[int]:
        """Aggregator: post the survivor set (the rest of the active clients dropped)."""
        state = self.rounds[round_idx]
        chosen = sorted(survivors)
        if state.committed != set(self.address_of):
            # Not everyone committed: the set may be posted only once the deadline has passed.
            # A simulation does not wait: it moves the chain's clock there.
            wait = state.commit_deadline - block_timestamp(self.w3) + 1
            if wait > 0:
                advance_time(self.w3, wait)
        active = state.advertised | state.committed
        dropped = sorted(active - set(chosen))
        receipt = self.aggregator.post_survivors(
            state.chain_round,
            [self.address_of[c] for c in chosen],
            [self.address_of[c] for c in dropped],
        )
        self._record(state, "postSurvivors", receipt)
        state.survivors_posted = True
        return self.read_survivors(round_idx)

    @_reaching_the_node
    def read_survivors(self, round_idx: int) -> list[int]:
        """The survivor set as the chain has it: what every client reads."""
        survivors, _ = self.aggregator.survivor_set(self.rounds[round_idx].chain_round)
        return sorted(self.client_of[a] for a in survivors)

    @_reaching_the_node
    def attest_sum(self, round_idx: int, client: int, sum_digest: bytes) -> None:
        """``client`` attests, from its own account, the digest of the sum it added up (HE)."""
        state = self.rounds[round_idx]
        self._record(
            state, "attestSum", self.clients[client].attest_sum(state.chain_round, sum_digest)
        )

    def record_commits(self, round_idx: int, clients: Iterable[int]) -> None:
        """Clients that committed with their own keys (a deployment): the aggregator saw it
        in their replies, and the survivor set it posts is checked by the contract anyway."""
        self.rounds[round_idx].committed.update(clients)

    def set_aggregate(self, round_idx: int, blob: bytes) -> None:
        """The aggregate as the server holds it (masked sum, or ciphertext sum), to post later."""
        self.rounds[round_idx].aggregate_blob = blob

    def masking_board(self, round_idx: int, graph: NeighborGraph) -> MaskingBoard:
        return MaskingBoard(self, round_idx, graph)


def _path_in(path: Path, run_dir: Path) -> str:
    """``path`` relative to ``run_dir`` when inside it (a copied folder stays whole), else
    absolute."""
    target, base = Path(path).resolve(), Path(run_dir).resolve()
    if target == base or base in target.parents:
        return os.path.relpath(target, base)
    return str(target)


class MaskingBoard:
    """The chain as the masking protocol's PKI and broadcast channel (a driver ``Board``).

    Keys and the survivor set that clients read come from the contract, never from the server:
    the server can neither substitute a key nor show different clients different survivors.
    """

    def __init__(self, session: LedgerSession, round_idx: int, graph: NeighborGraph) -> None:
        self.session = session
        self.round_idx = round_idx
        self.state = session.rounds[round_idx]
        self.graph = graph
        self._adverts: dict[str, Any] | None = None  # read once, when the key phase is over
        self._commitments: dict[int, dict[int, tuple[bytes, bytes]]] = {}  # owner -> holder ->
        self._revealed: dict[int, UnmaskingResponse] = {}  # holder -> what it revealed

    @_reaching_the_node
    def publish(self, client: MaskingClient, message: ClientMessage, data: bytes) -> bool:
        s, state = self.session, self.state
        c = client.id
        if isinstance(message, AdvertiseKeys):
            keys = message.keys
            receipt = s.clients[c].advertise_keys(
                state.chain_round,
                encryption_key=keys.encryption,
                masking_key=keys.masking,
                seed_commitment=keys.seed_commitment,
            )
            s._record(state, "advertiseKeys", receipt)
            state.advertised.add(c)
        elif isinstance(message, MaskedInput):
            tree = share_tree(s.admin, state.chain_round, s.address_of, c, client.share_commitments)
            blob = encode_masked_blob(data, client.share_commitments)
            self._commitments[c] = dict(client.share_commitments)
            return s.commit_blob(self.round_idx, c, blob, tree.root)
        elif isinstance(message, UnmaskingResponse):
            self._revealed[c] = message
            cid = s.store.put(data)  # the owners' committed digests check every share in it
            receipt = s.clients[c].post_shares(state.chain_round, cid.digest)
            s._record(state, "postShares", receipt)
        return True

    @_reaching_the_node
    def deliver(self, recipient: int, message: ServerMessage) -> ServerMessage:
        s, state = self.session, self.state
        if isinstance(message, KeyDirectory):
            if self._adverts is None:
                self._adverts = dict(s.admin.key_adverts(state.chain_round))
            adverts = self._adverts
            keys = {}
            for peer in sorted(self.graph.neighbors(recipient)):
                advert = adverts.get(s.address_of[peer])
                if advert is not None:
                    keys[peer] = PublicKeys(
                        advert.encryption_key, advert.masking_key, advert.seed_commitment
                    )
            return KeyDirectory(message.round_id, SERVER_ID, recipient, keys)
        if isinstance(message, UnmaskingRequest):
            if not state.survivors_posted:
                survivors = s.post_survivors(self.round_idx, message.survivors)
            else:
                survivors = s.read_survivors(self.round_idx)
            return UnmaskingRequest(message.round_id, SERVER_ID, recipient, tuple(survivors))
        return message

    @_reaching_the_node
    def finished(self, result: UnmaskedSum) -> None:
        self.session.set_aggregate(self.round_idx, result.total.tobytes())
        for holder, owners in sorted(result.inconsistent_holders.items()):
            for owner in owners:
                self._report(owner, holder)

    def _report(self, owner: int, holder: int) -> None:
        """Put a wrong revealed share on chain as evidence against its holder.

        The leaf built from the digest of what the holder revealed cannot be in the owner's
        committed tree, so the contract accepts the report (it refuses a proof that holds).
        An owner that never committed has no tree to prove against: nothing to report.
        """
        s, state = self.session, self.state
        committed = self._commitments.get(owner)
        revealed = self._revealed.get(holder)
        if committed is None or revealed is None or holder not in committed:
            return
        b_hash, s_hash = committed[holder]
        if owner in revealed.seed_shares:
            b_hash = share_digest(revealed.seed_shares[owner])
        elif owner in revealed.key_shares:
            s_hash = share_digest(revealed.key_shares[owner])
        else:
            return
        tree = share_tree(s.admin, state.chain_round, s.address_of, owner, committed)
        genuine = s.admin.share_leaf(
            state.chain_round,
            owner=s.address_of[owner],
            holder=s.address_of[holder],
            b_share_hash=committed[holder][0],
            s_share_hash=committed[holder][1],
        )
        receipt = s.aggregator.report_bad_share(
            state.chain_round,
            owner=s.address_of[owner],
            holder=s.address_of[holder],
            b_share_hash=b_hash,
            s_share_hash=s_hash,
            proof=tree.proof(genuine),
        )
        s._record(state, "reportBadShare", receipt)
