"""Typed Python client of the SecAggLedger contract, over web3.py.

One :class:`LedgerClient` is one party's view of one ledger: it signs as its ``sender``
(an unlocked node account given by address, or a local ``eth_account`` key) and exposes one
method per contract call. Every transaction returns a :class:`TxReceipt` with its gas and
decoded events; every refusal raises the :class:`~secagg.errors.LedgerError` subclass named
after the contract's custom error. The transport is whatever ``Web3`` is passed in (see
:mod:`secagg.ledger.providers`); hashing, proofs, revert decoding and the records are pure
modules beside this one, usable without a chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, ProviderConnectionError, Web3RPCError

from secagg.errors import (
    LedgerConnectionError,
    LedgerError,
    LedgerInputError,
    LedgerRecordError,
)
from secagg.ledger import merkle
from secagg.ledger.compiled import LEDGER, REWARD_TOKEN, load_artifact
from secagg.ledger.records import (
    KeyAdvert,
    LedgerEvent,
    MemberRecord,
    Phase,
    RoundInfo,
    TxReceipt,
)
from secagg.ledger.revert import ErrorSpec, decode_revert, error_specs, extract_revert_data

#: An account that signs: a node-unlocked address, or a local private key.
Sender = str | LocalAccount

#: Events whose first indexed argument is the round id.
ROUND_EVENTS = frozenset(
    {
        "RoundOpened",
        "KeysAdvertised",
        "Committed",
        "SurvivorsPosted",
        "SharesPosted",
        "BadShareReported",
        "SumAttested",
        "AggregatePosted",
        "RewardClaimed",
    }
)

_GRANTABLE_ROLES = ("AGGREGATOR_ROLE", "VALIDATOR_ROLE")


def _translatable() -> tuple[type[BaseException], ...]:
    """Exceptions that may carry a revert: web3's, and eth-tester's when it is installed."""
    kinds: list[type[BaseException]] = [ContractLogicError, Web3RPCError]
    try:
        from eth_tester.exceptions import TransactionFailed
    except ImportError:  # pragma: no cover - eth-tester is optional for JSON-RPC users
        pass
    else:
        kinds.append(TransactionFailed)
    return tuple(kinds)


_REVERTS = _translatable()


class LedgerClient:
    """One party's handle on a deployed SecAggLedger (and its reward token)."""

    def __init__(self, w3: Web3, address: str, sender: Sender, *, from_block: int = 0) -> None:
        """Bind to the ledger at ``address``; ``from_block`` bounds event scans (deploy block)."""
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.sender = sender
        self.sender_address = to_checksum_address(
            sender.address if isinstance(sender, LocalAccount) else sender
        )
        self.from_block = from_block
        self._event_cache: list[LedgerEvent] = []
        self._scanned_to = from_block  # the first block not read yet
        #: Receipt of the deployment when this client deployed the ledger (gas for benchmarks).
        self.deployment: TxReceipt | None = None
        ledger, token = load_artifact(LEDGER), load_artifact(REWARD_TOKEN)
        self.contract = w3.eth.contract(address=self.address, abi=ledger.abi)
        self._token_abi = token.abi
        self._token: Any = None
        self._chain_id: int | None = None
        self._errors = error_specs([ledger.abi, token.abi])
        self._event_names = {
            keccak(text=_event_signature(e)): e["name"] for e in ledger.abi if e["type"] == "event"
        }
        self._token_event_names = {
            keccak(text=_event_signature(e)): e["name"] for e in token.abi if e["type"] == "event"
        }

    # ------------------------------------------------------------------ deployment

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        *,
        admin: Sender | None = None,
        epsilon_cap: int,
        reward_per_round: int,
    ) -> LedgerClient:
        """Deploy a ledger (which creates its reward token); returns the admin's client.

        ``epsilon_cap`` is fixed point (see :func:`~secagg.ledger.records.epsilon_to_fixed`).
        The deployment's receipt is kept in ``client.deployment`` (its gas for benchmarks).
        """
        sender: Sender = admin if admin is not None else w3.eth.accounts[0]
        artifact = load_artifact(LEDGER)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        admin_address = sender.address if isinstance(sender, LocalAccount) else sender
        call = factory.constructor(
            to_checksum_address(admin_address), _uint(epsilon_cap, 64), _uint(reward_per_round)
        )
        specs = error_specs([artifact.abi, load_artifact(REWARD_TOKEN).abi])
        receipt = _send(w3, call, sender, "deploy SecAggLedger", specs)
        client = cls(w3, receipt["contractAddress"], sender, from_block=receipt["blockNumber"])
        client.deployment = TxReceipt(
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            block_number=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            events=client._decode_logs(receipt["logs"]),
        )
        return client

    def as_sender(self, sender: Sender) -> LedgerClient:
        """The same ledger seen by another account (each party signs its own calls)."""
        return LedgerClient(self.w3, self.address, sender, from_block=self.from_block)

    # ------------------------------------------------------------------ admin

    def register(self, participant: str, ed25519_key: bytes) -> TxReceipt:
        """Admin: register ``participant`` with its Ed25519 identity public key."""
        fn = self.contract.functions.register(
            to_checksum_address(participant), _b32(ed25519_key, "ed25519_key")
        )
        return self._transact(fn, f"register({participant})")

    def grant_role(self, role: str, account: str) -> TxReceipt:
        """Admin: grant ``AGGREGATOR_ROLE`` or ``VALIDATOR_ROLE`` (participants: register)."""
        if role not in _GRANTABLE_ROLES:
            raise LedgerInputError(
                f"cannot grant {role!r} here; use one of {_GRANTABLE_ROLES} "
                "(participants get their role through register)"
            )
        fn = self.contract.functions.grantRole(self.role_id(role), to_checksum_address(account))
        return self._transact(fn, f"grantRole({role}, {account})")

    def penalize(self, participant: str, amount: int) -> TxReceipt:
        """Admin or validator: record a penalty, deducted from the participant's next rewards."""
        fn = self.contract.functions.penalize(to_checksum_address(participant), _uint(amount))
        return self._transact(fn, f"penalize({participant}, {amount})")

    # ------------------------------------------------------------------ aggregator

    def open_round(
        self,
        round_id: int,
        *,
        model_hash: bytes,
        config_hash: bytes,
        commit_deadline: int,
        unmask_deadline: int,
        participants: Sequence[str],
    ) -> TxReceipt:
        """Aggregator: open ``round_id`` (> every earlier id); deadlines are block timestamps."""
        fn = self.contract.functions.openRound(
            _uint(round_id, 64),
            _b32(model_hash, "model_hash"),
            _b32(config_hash, "config_hash"),
            _uint(commit_deadline, 64),
            _uint(unmask_deadline, 64),
            _addresses(participants),
        )
        return self._transact(fn, f"openRound({round_id})")

    def post_survivors(
        self, round_id: int, survivors: Sequence[str], dropped: Sequence[str]
    ) -> TxReceipt:
        """Aggregator: publish the survivor and dropped sets (closes commits)."""
        fn = self.contract.functions.postSurvivors(
            _uint(round_id, 64), _addresses(survivors), _addresses(dropped)
        )
        return self._transact(fn, f"postSurvivors({round_id})")

    def post_aggregate(
        self,
        round_id: int,
        *,
        aggregate_cid: bytes,
        aggregate_hash: bytes,
        included: Sequence[str],
    ) -> TxReceipt:
        """Aggregator: publish the aggregate's CID, hash and the included participants."""
        fn = self.contract.functions.postAggregate(
            _uint(round_id, 64),
            _b32(aggregate_cid, "aggregate_cid"),
            _b32(aggregate_hash, "aggregate_hash"),
            _addresses(included),
        )
        return self._transact(fn, f"postAggregate({round_id})")

    def report_bad_share(
        self,
        round_id: int,
        *,
        owner: str,
        holder: str,
        b_share_hash: bytes,
        s_share_hash: bytes,
        proof: Sequence[bytes],
    ) -> TxReceipt:
        """Aggregator or validator: record that ``holder`` revealed a share not in the tree."""
        fn = self.contract.functions.reportBadShare(
            _uint(round_id, 64),
            to_checksum_address(owner),
            to_checksum_address(holder),
            _b32(b_share_hash, "b_share_hash"),
            _b32(s_share_hash, "s_share_hash"),
            [_b32(p, "proof node") for p in proof],
        )
        return self._transact(fn, f"reportBadShare({round_id}, owner={owner}, holder={holder})")

    # ------------------------------------------------------------------ participant

    def advertise_keys(
        self,
        round_id: int,
        *,
        encryption_key: bytes,
        masking_key: bytes,
        seed_commitment: bytes,
    ) -> TxReceipt:
        """Participant: publish this round's X25519 public keys and H(b_u)."""
        fn = self.contract.functions.advertiseKeys(
            _uint(round_id, 64),
            _b32(encryption_key, "encryption_key"),
            _b32(masking_key, "masking_key"),
            _b32(seed_commitment, "seed_commitment"),
        )
        return self._transact(fn, f"advertiseKeys({round_id})")

    def commit(
        self,
        round_id: int,
        *,
        blob_hash: bytes,
        share_root: bytes,
        cumulative_epsilon: int,
    ) -> TxReceipt:
        """Participant: commit the protected update and the CUMULATIVE ε (fixed point)."""
        fn = self.contract.functions.commit(
            _uint(round_id, 64),
            _b32(blob_hash, "blob_hash"),
            _b32(share_root, "share_root"),
            _uint(cumulative_epsilon, 64),
        )
        return self._transact(fn, f"commit({round_id})")

    def post_shares(self, round_id: int, shares_blob_hash: bytes) -> TxReceipt:
        """Survivor: publish the hash of its revealed-shares blob."""
        fn = self.contract.functions.postShares(
            _uint(round_id, 64), _b32(shares_blob_hash, "shares_blob_hash")
        )
        return self._transact(fn, f"postShares({round_id})")

    def attest_sum(self, round_id: int, sum_digest: bytes) -> TxReceipt:
        """Participant: attest the digest of the sum of the survivors' committed ciphertexts
        (HE modes), once per round, after adding them up itself."""
        fn = self.contract.functions.attestSum(_uint(round_id, 64), _b32(sum_digest, "sum_digest"))
        return self._transact(fn, f"attestSum({round_id})")

    def claim_reward(self, round_id: int) -> TxReceipt:
        """Included participant: mint this round's reward (less any outstanding penalty)."""
        fn = self.contract.functions.claimReward(_uint(round_id, 64))
        return self._transact(fn, f"claimReward({round_id})")

    # ------------------------------------------------------------------ views

    @property
    def chain_id(self) -> int:
        """The chain id, bound into every share leaf."""
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def role_id(self, role: str) -> bytes:
        """keccak256 of the role name, as AccessControl stores it."""
        return keccak(text=role)

    def has_role(self, role: str, account: str) -> bool:
        """Whether ``account`` holds ``role`` (e.g. ``"PARTICIPANT_ROLE"``)."""
        role_id = b"\x00" * 32 if role == "DEFAULT_ADMIN_ROLE" else self.role_id(role)
        fn = self.contract.functions.hasRole(role_id, to_checksum_address(account))
        return bool(self._call(fn, "hasRole"))

    @property
    def epsilon_cap(self) -> int:
        """The per-participant cap on cumulative ε (fixed point)."""
        return int(self._call(self.contract.functions.EPSILON_CAP(), "EPSILON_CAP"))

    @property
    def reward_per_round(self) -> int:
        """Tokens minted per claimed round."""
        return int(self._call(self.contract.functions.REWARD_PER_ROUND(), "REWARD_PER_ROUND"))

    @property
    def last_round_id(self) -> int:
        """Highest round id opened so far (0: none)."""
        return int(self._call(self.contract.functions.lastRoundId(), "lastRoundId"))

    @property
    def token_address(self) -> ChecksumAddress:
        """Address of the reward token this ledger mints."""
        return to_checksum_address(
            self._call(self.contract.functions.REWARD_TOKEN(), "REWARD_TOKEN")
        )

    def identity_key(self, participant: str) -> bytes:
        """The participant's registered Ed25519 key (zeros: not registered)."""
        fn = self.contract.functions.identityKey(to_checksum_address(participant))
        return bytes(self._call(fn, "identityKey"))

    def epsilon_spent(self, participant: str) -> int:
        """The participant's last committed cumulative ε (fixed point)."""
        fn = self.contract.functions.epsilonSpent(to_checksum_address(participant))
        return int(self._call(fn, "epsilonSpent"))

    def penalty_outstanding(self, participant: str) -> int:
        """Penalty still to be deducted from the participant's future rewards."""
        fn = self.contract.functions.penaltyOutstanding(to_checksum_address(participant))
        return int(self._call(fn, "penaltyOutstanding"))

    def bad_share_reports(self, holder: str) -> int:
        """How many bad-share reports were recorded against ``holder``."""
        fn = self.contract.functions.badShareReports(to_checksum_address(holder))
        return int(self._call(fn, "badShareReports"))

    def reward_balance(self, account: str) -> int:
        """Reward-token balance of ``account``."""
        fn = self._token_contract().functions.balanceOf(to_checksum_address(account))
        return int(self._call(fn, "balanceOf"))

    def participant_count(self) -> int:
        """How many participants were ever registered (their indices run 0 .. count - 1)."""
        return int(self._call(self.contract.functions.participantCount(), "participantCount"))

    def round_info(self, round_id: int) -> RoundInfo:
        """The public record of ``round_id`` (phase NONE if never opened).

        Deadlines, phase and counts come from contract state; the model and config hashes
        and the aggregate's CID and hash from the round's events (the contract keeps them
        in events only, as it never checks them again).
        """
        r = self._call(self.contract.functions.roundInfo(_uint(round_id, 64)), "roundInfo")
        opened = aggregated = None
        if Phase(r[2]) is not Phase.NONE:
            events = self.round_events(round_id)
            opened = _last(events, "RoundOpened")
            aggregated = _last(events, "AggregatePosted")
        return RoundInfo(
            round_id=round_id,
            model_hash=_arg(opened, "modelHash"),
            config_hash=_arg(opened, "configHash"),
            aggregate_cid=_arg(aggregated, "aggregateCid"),
            aggregate_hash=_arg(aggregated, "aggregateHash"),
            commit_deadline=int(r[0]),
            unmask_deadline=int(r[1]),
            participant_count=int(r[3]),
            active_count=int(r[4]),
            committed_count=int(r[5]),
            phase=Phase(r[2]),
        )

    def round_participants(self, round_id: int) -> list[str]:
        """The participants of ``round_id``, in registration order (from contract state)."""
        fn = self.contract.functions.roundParticipants(_uint(round_id, 64))
        return _checksummed(self._call(fn, "roundParticipants"))

    def member(self, round_id: int, participant: str) -> MemberRecord:
        """What ``participant`` did in ``round_id``: flags and share root from contract
        state, keys, blob hash, per-round ε and revealed-shares hash from its events."""
        address = to_checksum_address(participant)
        m = self._call(self.contract.functions.memberOf(_uint(round_id, 64), address), "memberOf")
        mine = [e for e in self.round_events(round_id) if _party(e) == address]
        keys = _last(mine, "KeysAdvertised")
        committed = _last(mine, "Committed")
        shares = _last(mine, "SharesPosted")
        return MemberRecord(
            round_id=round_id,
            participant=address,
            encryption_key=_arg(keys, "encryptionKey"),
            masking_key=_arg(keys, "maskingKey"),
            seed_commitment=_arg(keys, "seedCommitment"),
            blob_hash=_arg(committed, "blobHash"),
            share_root=bytes(m[0]),
            shares_blob_hash=_arg(shares, "sharesBlobHash"),
            cumulative_epsilon=int(committed.args["cumulativeEpsilon"]) if committed else 0,
            in_round=bool(m[1]),
            advertised=bool(m[2]),
            committed=bool(m[3]),
            survivor=bool(m[4]),
            dropped=bool(m[5]),
            shares_posted=bool(m[6]),
            included=bool(m[7]),
            reward_claimed=bool(m[8]),
        )

    def key_adverts(self, round_id: int) -> dict[str, KeyAdvert]:
        """Round keys of every participant that advertised them, in registration order.

        This is where clients get their neighbours' keys: from the chain's KeysAdvertised
        events (emitted only by the contract, once per participant and round), never from
        the aggregator.
        """
        found: dict[str, KeyAdvert] = {}
        for event in self.round_events(round_id):
            if event.name == "KeysAdvertised":
                who = event.args["participant"]
                found[who] = KeyAdvert(
                    participant=who,
                    encryption_key=event.args["encryptionKey"],
                    masking_key=event.args["maskingKey"],
                    seed_commitment=event.args["seedCommitment"],
                )
        order = self.round_participants(round_id)
        return {p: found[p] for p in order if p in found}

    def survivor_set(self, round_id: int) -> tuple[list[str], list[str]]:
        """The posted (survivors, dropped) in registration order; empty before posting."""
        fn = self.contract.functions.survivorSet(_uint(round_id, 64))
        survivors, dropped = self._call(fn, "survivorSet")
        return _checksummed(survivors), _checksummed(dropped)

    def verify_share(self, round_id: int, owner: str, leaf: bytes, proof: Sequence[bytes]) -> bool:
        """On-chain check that ``leaf`` is in the share tree ``owner`` committed."""
        fn = self.contract.functions.verifyShare(
            _uint(round_id, 64),
            to_checksum_address(owner),
            _b32(leaf, "leaf"),
            [_b32(p, "proof node") for p in proof],
        )
        return bool(self._call(fn, "verifyShare"))

    def share_leaf(
        self,
        round_id: int,
        *,
        owner: str,
        holder: str,
        b_share_hash: bytes,
        s_share_hash: bytes,
    ) -> bytes:
        """The share leaf for this ledger and chain, computed locally (no call)."""
        return merkle.share_leaf(
            chain_id=self.chain_id,
            ledger=self.address,
            round_id=round_id,
            owner=owner,
            holder=holder,
            b_share_hash=b_share_hash,
            s_share_hash=s_share_hash,
        )

    def share_leaf_on_chain(
        self,
        round_id: int,
        *,
        owner: str,
        holder: str,
        b_share_hash: bytes,
        s_share_hash: bytes,
    ) -> bytes:
        """The same leaf as the contract computes it (for cross-checks)."""
        fn = self.contract.functions.shareLeaf(
            _uint(round_id, 64),
            to_checksum_address(owner),
            to_checksum_address(holder),
            _b32(b_share_hash, "b_share_hash"),
            _b32(s_share_hash, "s_share_hash"),
        )
        return bytes(self._call(fn, "shareLeaf"))

    # ------------------------------------------------------------------ events

    def events(self, *, round_id: int | None = None) -> list[LedgerEvent]:
        """The ledger's events since deployment in chain order; only one round's if given.

        Events once mined never change here (the embedded chain and a permissioned chain
        with immediate finality do not reorganise), so each call fetches only the blocks
        since the last one: reading the trail every round stays linear in its length.
        """
        latest = self.w3.eth.block_number
        if latest >= self._scanned_to:
            params: dict[str, Any] = {
                "address": self.address,
                "fromBlock": self._scanned_to,
                "toBlock": latest,
            }
            try:
                logs = self.w3.eth.get_logs(params)  # type: ignore[arg-type]
            except (Web3RPCError, ProviderConnectionError, OSError) as exc:
                raise LedgerConnectionError(
                    f"reading ledger events failed: {exc}; a node that limits log ranges "
                    "needs from_block set to the deployment block"
                ) from exc
            new = sorted(self._decode_logs(logs), key=lambda e: (e.block_number, e.log_index))
            self._event_cache.extend(new)
            self._scanned_to = latest + 1
        if round_id is None:
            return list(self._event_cache)
        return [e for e in self._event_cache if e.round_id == round_id and e.name in ROUND_EVENTS]

    def forget_events(self) -> None:
        """Drop the events read so far: needed after the chain was rewound (a snapshot revert
        in tests, a reorganisation on a chain without immediate finality)."""
        self._event_cache = []
        self._scanned_to = self.from_block

    def round_events(self, round_id: int) -> list[LedgerEvent]:
        """The audit trail of one round: every event carrying ``round_id``, in chain order."""
        return self.events(round_id=round_id)

    # ------------------------------------------------------------------ internals

    def _transact(self, fn: Any, action: str) -> TxReceipt:
        receipt = _send(self.w3, fn, self.sender, action, self._errors)
        return TxReceipt(
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            block_number=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            events=self._decode_logs(receipt["logs"]),
        )

    def _token_address(self) -> ChecksumAddress:
        if self._token is None:
            self._token = self.w3.eth.contract(address=self.token_address, abi=self._token_abi)
        return to_checksum_address(self._token.address)

    def _token_contract(self) -> Any:
        self._token_address()
        return self._token

    def _call(self, fn: Any, action: str) -> Any:
        try:
            return fn.call({"from": self.sender_address})
        except _REVERTS as exc:
            raise _revert_error(exc, action, self._errors) from exc
        except (ProviderConnectionError, OSError) as exc:
            raise LedgerConnectionError(f"{action}: the node cannot be reached: {exc}") from exc

    def _decode_logs(self, logs: Iterable[Any]) -> tuple[LedgerEvent, ...]:
        events: list[LedgerEvent] = []
        for log in logs:
            if not log["topics"]:
                continue
            topic0 = bytes(log["topics"][0])
            if log["address"] == self.address and topic0 in self._event_names:
                name = self._event_names[topic0]
                event = getattr(self.contract.events, name)()
            elif topic0 in self._token_event_names and log["address"] == self._token_address():
                name = self._token_event_names[topic0]
                event = getattr(self._token_contract().events, name)()
            else:
                continue
            try:
                data = event.process_log(log)
            except Exception as exc:  # eth_abi's and web3's decoding errors, several types
                raise LedgerRecordError(
                    f"the node returned a {name} log (tx {HexBytes(log['transactionHash'])!r}, "
                    f"log {log.get('logIndex')}) that does not decode: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            args = {k: _plain(v) for k, v in data["args"].items()}
            round_id = args.get("roundId") if name in ROUND_EVENTS else None
            events.append(
                LedgerEvent(
                    name=name,
                    args=args,
                    block_number=int(log["blockNumber"]),
                    tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
                    log_index=int(log["logIndex"]),
                    round_id=round_id,
                )
            )
        return tuple(events)


#: Gas limit of every transaction: above any one operation's need (openRound at 100
#: participants is about 0.5M), below the block gas limit of anvil and eth-tester (30M).
TX_GAS_LIMIT = 10_000_000


def _send(w3: Web3, fn: Any, sender: Sender, action: str, specs: Mapping[bytes, ErrorSpec]) -> Any:
    """Send one transaction as ``sender`` and wait for it; refusals become LedgerErrors."""
    try:
        address = to_checksum_address(
            sender.address if isinstance(sender, LocalAccount) else sender
        )
        # One dry run finds a refusal, with its reason, before anything is signed. A fixed gas
        # limit then spares the node a gas estimate, a binary search of a dozen more runs:
        # unused gas is refunded, and the receipt records what was really used.
        fields: dict[str, Any] = {"from": address}
        if hasattr(fn, "call"):  # a function call; a deployment keeps its estimate
            fn.call({"from": address}, block_identifier="pending")
            fields["gas"] = TX_GAS_LIMIT
        if isinstance(sender, LocalAccount):
            fields["nonce"] = w3.eth.get_transaction_count(address, "pending")
            fields["chainId"] = w3.eth.chain_id
            tx = fn.build_transaction(fields)
            tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        else:
            tx_hash = fn.transact(fields)
    except _REVERTS as exc:
        raise _revert_error(exc, action, specs) from exc
    except (ProviderConnectionError, OSError) as exc:
        raise LedgerConnectionError(f"{action}: the node cannot be reached: {exc}") from exc
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise LedgerError(
            f"{action} was mined but reverted (tx {HexBytes(tx_hash).to_0x_hex()}, "
            f"gas used {receipt['gasUsed']}); state changed between estimate and inclusion, "
            "e.g. a deadline passed: read the round and retry if still allowed"
        )
    return receipt


def _revert_error(exc: BaseException, action: str, specs: Mapping[bytes, ErrorSpec]) -> LedgerError:
    data = extract_revert_data(exc)
    if data is None:
        return LedgerError(f"{action} failed: {exc}")
    return decode_revert(data, specs, action)


def _event_signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"


def _plain(value: Any) -> Any:
    """web3 result values as plain Python: bytes, checksummed addresses, lists."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str) and Web3.is_address(value):
        return to_checksum_address(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _last(events: Iterable[LedgerEvent], name: str) -> LedgerEvent | None:
    """The latest event called ``name`` (the contract emits each round event once)."""
    found = None
    for event in events:
        if event.name == name:
            found = event
    return found


def _arg(event: LedgerEvent | None, name: str) -> bytes:
    """A bytes32 argument of ``event``, or 32 zero bytes when there is no such event."""
    return bytes(event.args[name]) if event is not None else bytes(32)


def _party(event: LedgerEvent) -> str | None:
    """The participant a per-participant round event is about."""
    return event.args.get("participant", event.args.get("holder"))


def _checksummed(values: Iterable[str]) -> list[str]:
    return [to_checksum_address(v) for v in values]


def _b32(value: bytes, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise LedgerInputError(f"{name} must be exactly 32 bytes, got {value!r:.80}")
    return bytes(value)


def _uint(value: int, bits: int = 256) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise LedgerInputError(f"expected an integer in [0, 2^{bits}), got {value!r}")
    return value


def _addresses(values: Iterable[str]) -> list[str]:
    try:
        return [to_checksum_address(v) for v in values]
    except ValueError as exc:
        raise LedgerInputError(f"not an Ethereum address: {exc}") from exc
