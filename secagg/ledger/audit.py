"""Replay every round of a run from the chain's events and the store's blobs, and judge it.

Nothing a hospital keeps to itself is needed: the audit reads the contract (events and
views) and the content-addressed store, and redoes what the aggregator claims to have done.
For the run (round 0):

- ``contract``: the ledger was deployed from the SecAggLedger creation code this package
  ships (a contract that only looks like it would emit whatever its deployer wanted);

per round:

- ``blobs``: the model, the round's rules, every committed update, every revealed-shares
  blob and the aggregate are in the store and hash to what the chain recorded;
- ``share-commitments`` (masking): each committed masked input carries the share digests
  whose Merkle tree has exactly the root its owner committed on chain;
- ``revealed-shares`` (masking): every share a holder revealed matches its owner's
  commitment for that holder;
- ``aggregate``: the unmasking (masking) or the ciphertext sum (HE), redone from the store,
  equals the aggregate the aggregator posted;
- ``update``: the posted update follows from the aggregate (masking: FedAvg of the decoded
  sum with the declared weights; HE: decryption is the key holder's and cannot be redone
  without its key, so only the blob is checked);
- ``model``: the next round's model is this round's plus its update;
- ``epsilon``: every participant's cumulative ε only grows and stays within the cap.

Each failed check names the round and the party at fault: a hospital (its client id and
chain address) or the aggregator (the address that sent the transaction in question). A
failure is recorded and the audit goes on; no exception leaves :func:`audit_run`.

What each protection mode leaves is checked by its own function, registered in
:data:`ROUND_CHECKS` and given one :class:`RoundContext`; a further check of a mode is one
call at the end of that function.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from eth_utils import keccak, to_checksum_address

from secagg.aggregation import FedAvg
from secagg.config import config_from_dict
from secagg.crypto import shamir
from secagg.ledger import he_attestation
from secagg.ledger.client import LedgerClient
from secagg.ledger.compiled import LEDGER, load_artifact
from secagg.ledger.records import LedgerEvent, epsilon_from_fixed
from secagg.ledger.roundblobs import (
    MaskedBlob,
    RoundConfig,
    decode_masked_blob,
    decode_round_config,
    decode_vector_blob,
    share_tree,
    vector_blob,
)
from secagg.masking.messages import MaskedInput, PublicKeys, UnmaskingResponse
from secagg.masking.params import MaskingParams, share_digest, share_x
from secagg.masking.session import Session
from secagg.masking.unmask import remove_masks
from secagg.privacy.sum_plan import update_from_record
from secagg.quantize import QuantizationSpec, dequantize, error_bound
from secagg.storage import BlobStore, Cid

#: What the audit calls the party holding the aggregator role.
AGGREGATOR = "aggregator"
_AGGREGATOR_ROLE = keccak(text="AGGREGATOR_ROLE")


@dataclass
class Check:
    """One verdict: which round (0: the run as a whole), what was checked, whether it held,
    why not, and who is at fault: ``participant`` is the chain address, ``party`` says who
    that is ("hospital 3", "aggregator") or names the file at fault."""

    round: int
    check: str
    ok: bool
    detail: str = ""
    participant: str = ""
    party: str = ""


@dataclass
class AuditReport:
    checks: list[Check] = field(default_factory=list)
    #: client id -> chain address, as the contract registered them
    participants: dict[int, str] = field(default_factory=dict)
    #: the address holding the aggregator role ("" if none was granted)
    aggregator: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def party_of(self, address: str) -> str:
        """Who ``address`` is: "hospital <id>", "aggregator", or "" when unknown."""
        if address and address == self.aggregator:
            return AGGREGATOR
        for client, known in self.participants.items():
            if known == address:
                return f"hospital {client}"
        return ""

    def ok(self, round_: int, check: str, detail: str = "") -> None:
        self.checks.append(Check(round_, check, True, detail))

    def fail(
        self, round_: int, check: str, detail: str, participant: str = "", party: str = ""
    ) -> None:
        """Record a failed check; ``party`` defaults to who ``participant`` is."""
        who = party or self.party_of(participant)
        self.checks.append(Check(round_, check, False, detail, participant, who))

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "pass" if self.passed else "fail",
            "rounds": sorted({c.round for c in self.checks if c.round > 0}),
            "checks": [asdict(c) for c in self.checks],
        }

    def summary(self) -> str:
        """One line per round and check, then the verdict."""
        lines = []
        for c in self.checks:
            who = " ".join(x for x in (c.party, c.participant) if x)
            shown = f" [{who}]" if who else ""
            status = "ok  " if c.ok else "FAIL"
            where = f"round {c.round:>3}" if c.round > 0 else "run      "
            lines.append(f"{where}  {status}  {c.check}{shown}  {c.detail}".rstrip())
        lines.append(f"audit verdict: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


class _RoundAudit:
    """The checks of one round; a failed check is recorded, and the round goes on."""

    def __init__(self, report: AuditReport, chain_round: int) -> None:
        self.report = report
        self.round = chain_round

    def ok(self, check: str, detail: str = "") -> None:
        self.report.ok(self.round, check, detail)

    def fail(self, check: str, detail: str, participant: str = "") -> None:
        self.report.fail(self.round, check, detail, participant)

    def name(self, address: str) -> str:
        """A party as a failure's detail names it: "hospital 3 (0xAB..)"."""
        party = self.report.party_of(address)
        return f"{party} ({address})" if party else address

    @contextmanager
    def guard(self, check: str, participant: str = "") -> Iterator[None]:
        """Turn any error inside into a failed check instead of a crash: everything the
        audit reads (store, chain, decoders) is untrusted, so any exception is a verdict."""
        try:
            yield
        except Exception as exc:
            self.fail(check, f"{type(exc).__name__}: {exc}", participant)


@dataclass
class RoundContext:
    """Everything a protection mode's round checks read."""

    audit: _RoundAudit
    ledger: LedgerClient
    store: BlobStore
    events: list[LedgerEvent]  # this round's, in chain order
    config: RoundConfig
    ids: dict[str, int]  # address -> client id
    poster: str  # the address that posted the survivors and the aggregate
    commits: dict[str, LedgerEvent]  # address -> its Committed event
    blobs: dict[str, bytes]  # address -> its committed blob, when it passed its hash check
    survivors: list[str]
    aggregate: bytes
    update: np.ndarray

    def unavailable(self, check: str, usable: Collection[str]) -> bool:
        """Fail ``check``, naming each survivor whose committed update is not ``usable``
        (missing, or failing its hash or its own checks): what was summed cannot be redone,
        and the blob's owner is the party the failure names."""
        missing = [a for a in self.survivors if a not in usable]
        for who in missing:
            self.audit.fail(
                check,
                f"cannot be redone: the committed update of {self.audit.name(who)} is "
                "missing or fails its checks",
                who,
            )
        return bool(missing)


def audit_run(ledger: LedgerClient, store: BlobStore) -> AuditReport:
    """Audit every round the contract has seen; never raises."""
    report = AuditReport()
    run = _RoundAudit(report, 0)
    try:
        events = ledger.events()
    except Exception as exc:
        run.fail("events", f"the ledger's events cannot be read: {type(exc).__name__}: {exc}")
        return report
    with run.guard("contract"):
        _check_contract(run, ledger, events)
    opened = [e for e in events if e.name == "RoundOpened"]
    rules: dict[int, RoundConfig | str] = {}  # round -> its rules, or why they cannot be read
    for event in opened:
        try:
            blob = store.get(Cid.from_digest(bytes(event.args["configHash"])))
            rules[int(event.args["roundId"])] = decode_round_config(blob)
        except Exception as exc:
            rules[int(event.args["roundId"])] = f"round rules: {type(exc).__name__}: {exc}"
    _identify_parties(report, events, [c for c in rules.values() if isinstance(c, RoundConfig)])
    cap = 0
    with run.guard("epsilon"):
        cap = ledger.epsilon_cap
    previous_eps: dict[str, int] = {}
    models: list[tuple[int, bytes, str]] = []  # (round, model digest, who opened it)
    updates: dict[int, np.ndarray | None] = {}  # a round missing here: its update is unknown
    lr = 1.0
    for event in opened:
        chain_round = int(event.args["roundId"])
        audit = _RoundAudit(report, chain_round)
        opener = _sender(ledger, event)
        mine = [e for e in events if e.round_id == chain_round]
        config = rules[chain_round]
        if isinstance(config, str):
            audit.fail("blobs", config, opener)
        model = _fetch(audit, store, event.args["modelHash"], "global model", opener)
        models.append((chain_round, event.args["modelHash"], opener))
        _check_epsilon(audit, mine, cap, previous_eps)
        if model is None or isinstance(config, str):
            continue
        with audit.guard("blobs", opener):
            lr = config_from_dict(tomllib.loads(config.config_toml)).aggregation.server_lr
        with audit.guard("aggregate", opener):
            _check_round(audit, ledger, store, mine, config, report, updates)
    _check_model_chain(report, store, models, updates, lr)
    return report


def _identify_parties(
    report: AuditReport, events: list[LedgerEvent], configs: list[RoundConfig]
) -> None:
    """Client id -> address from the registrations (the i-th registered is the i-th client id
    of the rounds' rules), and the aggregator from the role grants."""
    registered = [e.args["participant"] for e in events if e.name == "ParticipantRegistered"]
    ids: list[int] = list(range(len(registered)))
    for config in configs:
        listed = config.protection.get("client_ids", sorted(config.declared_weights))
        try:
            ids = [int(c) for c in listed]
        except (TypeError, ValueError):
            continue
        break
    report.participants = dict(zip(ids, registered, strict=False))
    for e in events:
        if e.name == "RoleGranted" and bytes(e.args["role"]) == _AGGREGATOR_ROLE:
            report.aggregator = e.args["account"]


def _check_contract(run: _RoundAudit, ledger: LedgerClient, events: list[LedgerEvent]) -> None:
    """The ledger's first event comes from its constructor: that transaction must create this
    address from the shipped creation code."""
    if not events:
        run.fail("contract", f"no event from a ledger at {ledger.address}: nothing was deployed")
        return
    tx_hash = events[0].tx_hash
    tx = ledger.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    receipt = ledger.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    code = bytes.fromhex(load_artifact(LEDGER).bytecode.removeprefix("0x"))
    created = receipt.get("contractAddress")
    if created is None or to_checksum_address(created) != ledger.address:
        run.fail("contract", f"{ledger.address} was not created by transaction {tx_hash}")
    elif not bytes(tx["input"]).startswith(code):
        run.fail(
            "contract",
            f"{ledger.address} was deployed from other code than the SecAggLedger this "
            "package ships: its events prove nothing",
            to_checksum_address(tx["from"]),
        )
    else:
        run.ok("contract", f"{ledger.address}: SecAggLedger, deployed in block {tx['blockNumber']}")


def _sender(ledger: LedgerClient, event: LedgerEvent) -> str:
    """The address that sent the transaction which emitted ``event``."""
    try:
        tx = ledger.w3.eth.get_transaction(event.tx_hash)  # type: ignore[arg-type]
        return to_checksum_address(tx["from"])
    except Exception:  # a node that lost the transaction: the failure is named without it
        return ""


def _fetch(
    audit: _RoundAudit, store: BlobStore, digest: bytes, what: str, who: str = ""
) -> bytes | None:
    """The blob the chain names by ``digest``; a failure names ``what`` (none: silent)."""
    try:
        return store.get(Cid.from_digest(bytes(digest)))
    except Exception as exc:
        if what:
            audit.fail("blobs", f"{what}: {exc}", who)
        return None


def _events(events: list[LedgerEvent], name: str) -> list[LedgerEvent]:
    return [e for e in events if e.name == name]


def _check_epsilon(
    audit: _RoundAudit, events: list[LedgerEvent], cap: int, previous: dict[str, int]
) -> None:
    bad = False
    for commit in _events(events, "Committed"):
        who, eps = commit.args["participant"], int(commit.args["cumulativeEpsilon"])
        if eps > cap or eps < previous.get(who, 0):
            audit.fail(
                "epsilon",
                f"cumulative ε {epsilon_from_fixed(eps):g} after "
                f"{epsilon_from_fixed(previous.get(who, 0)):g}, cap {epsilon_from_fixed(cap):g}",
                who,
            )
            bad = True
        previous[who] = eps
    if not bad:
        audit.ok("epsilon", f"within the cap {epsilon_from_fixed(cap):g}, never decreasing")


def _check_round(
    audit: _RoundAudit,
    ledger: LedgerClient,
    store: BlobStore,
    events: list[LedgerEvent],
    config: RoundConfig,
    report: AuditReport,
    updates: dict[int, np.ndarray | None],
) -> None:
    """The per-round checks. Records the posted update in ``updates`` (None: none was
    posted); a round left out there has an update that cannot be read, so the model chain
    is not judged at it."""
    commits = {e.args["participant"]: e for e in _events(events, "Committed")}
    blobs: dict[str, bytes] = {}
    for who, commit in commits.items():
        blob = _fetch(audit, store, commit.args["blobHash"], "committed update", who)
        if blob is not None:
            blobs[who] = blob
    posted = _events(events, "AggregatePosted")
    survivors_event = _events(events, "SurvivorsPosted")
    if not posted or not survivors_event:
        audit.ok("aggregate", "no aggregate posted (the round aborted): nothing to replay")
        updates[audit.round] = None
        return
    poster = _sender(ledger, posted[0])
    aggregate = _fetch(audit, store, posted[0].args["aggregateCid"], "aggregate", poster)
    update_blob = _fetch(audit, store, posted[0].args["aggregateHash"], "update", poster)
    if aggregate is None or update_blob is None:
        return
    mode = str(config.protection.get("mode", ""))
    checks = ROUND_CHECKS.get(mode)
    if checks is None:
        audit.fail("aggregate", f"unknown protection mode {mode!r} in the round's rules", poster)
        return
    try:
        update = decode_vector_blob(update_blob, "update")
    except Exception as exc:
        audit.fail("update", f"{type(exc).__name__}: {exc}", poster)
        return
    ids = {a: c for c, a in report.participants.items()}
    context = RoundContext(
        audit,
        ledger,
        store,
        events,
        config,
        ids,
        poster,
        commits,
        blobs,
        list(survivors_event[0].args["survivors"]),
        aggregate,
        update,
    )
    # The posted update is what moved the model, whatever the checks below find.
    updates[audit.round] = update
    checks(context)


# ---- masking ----------------------------------------------------------------------------


def _check_masking_round(ctx: RoundContext) -> None:
    """secagg / secagg+: the share commitments, the revealed shares, the unmasking redone,
    and the update as the FedAvg of the unmasked sum."""
    audit = ctx.audit
    total = _replay_masking(ctx)
    if total is None:
        return
    if total.tobytes() != ctx.aggregate:
        audit.fail(
            "aggregate",
            "the unmasking redone from the store differs from the posted aggregate",
            ctx.poster,
        )
        return
    audit.ok("aggregate", f"unmasking of {len(ctx.survivors)} survivors redone, equal")
    _check_masked_update(ctx, total)


def _replay_masking(ctx: RoundContext) -> np.ndarray | None:
    audit, ledger, store, ids = ctx.audit, ctx.ledger, ctx.store, ctx.ids
    r = ctx.config.protection
    # The session follows from its public nonces: the auditor recomputes it (and so the graph)
    # instead of taking a value the coordinator wrote.
    session = Session.from_record(r["session"])
    params = MaskingParams(
        tuple(int(c) for c in r["client_ids"]),
        int(r["dim"]),
        int(r["threshold"]),
        int(r["neighbors"]),
        int(r["bits"]),
        int(r["round_id"]),
        session.value,
        int(r["colluders"]),
        bool(r["broadcast"]),
    )
    address = {c: a for a, c in ids.items()}
    # Share commitments: every committed blob's digests rebuild its committed root.
    masked: dict[str, MaskedBlob] = {}
    bad = False
    for who, blob in ctx.blobs.items():
        with audit.guard("share-commitments", who):
            parsed = decode_masked_blob(blob)
            tree = share_tree(ledger, audit.round, address, ids[who], parsed.commitments)
            if tree.root != bytes(ctx.commits[who].args["shareRoot"]):
                audit.fail("share-commitments", "digests do not rebuild the committed root", who)
                bad = True
                continue
            masked[who] = parsed
    if not bad and len(masked) == len(ctx.blobs):
        audit.ok("share-commitments", f"{len(masked)} roots rebuilt")
    # Revealed shares: each matches its owner's commitment for this holder.
    seed_shares: dict[int, dict[int, shamir.Share]] = {}
    key_shares: dict[int, dict[int, shamir.Share]] = {}
    bad = False
    for posted in _events(ctx.events, "SharesPosted"):
        holder_address = posted.args["holder"]
        revealed = _fetch(
            audit, store, posted.args["sharesBlobHash"], "revealed shares", holder_address
        )
        if revealed is None:
            bad = True
            continue
        with audit.guard("revealed-shares", holder_address):
            response = UnmaskingResponse.from_bytes(revealed)
            holder = ids[holder_address]
            if response.sender != holder:
                audit.fail(
                    "revealed-shares",
                    f"the blob is client {response.sender}'s, posted by {holder}",
                    holder_address,
                )
                bad = True
                continue
            for table, index, target in (
                (response.seed_shares, 0, seed_shares),
                (response.key_shares, 1, key_shares),
            ):
                for owner, value in table.items():
                    owner_blob = masked.get(address[owner])
                    # An owner that dropped before committing has no share root on chain; its
                    # mask key is checked against its public key when it is rebuilt below.
                    committed = (
                        owner_blob.commitments[holder][index] if owner_blob is not None else None
                    )
                    if committed is not None and share_digest(value) != committed:
                        audit.fail(
                            "revealed-shares",
                            f"its share of client {owner}'s secret does not match the commitment",
                            holder_address,
                        )
                        bad = True
                        continue
                    share = shamir.Share.from_value_bytes(share_x(holder), value)
                    target.setdefault(owner, {})[holder] = share
    if not bad:
        audit.ok("revealed-shares", "every revealed share matches its owner's commitment")
    # Redo the unmasking with the keys the chain published.
    if ctx.unavailable("aggregate", masked):
        return None
    keys = {
        ids[e.args["participant"]]: PublicKeys(
            bytes(e.args["encryptionKey"]),
            bytes(e.args["maskingKey"]),
            bytes(e.args["seedCommitment"]),
        )
        for e in _events(ctx.events, "KeysAdvertised")
    }
    alive = frozenset(ids[a] for a in ctx.survivors)
    total = np.zeros(params.dim, dtype=params.dtype)
    try:
        for who in ctx.survivors:
            message = MaskedInput.from_bytes(masked[who].message)
            np.add(total, message.masked, out=total)
        remove_masks(params, keys, total, alive, frozenset(key_shares), seed_shares, key_shares)
    except Exception as exc:
        if bad:  # shares were missing or wrong: the failures above name their holders
            audit.fail(
                "aggregate", f"cannot be redone without the shares that failed above ({exc})"
            )
        else:
            audit.fail("aggregate", f"{type(exc).__name__}: {exc}", ctx.poster)
        return None
    return total


def _check_masked_update(ctx: RoundContext, total: np.ndarray) -> None:
    r = ctx.config.protection
    included = [ctx.ids[a] for a in ctx.survivors]
    weights = ctx.config.declared_weights
    top = max(weights.values())
    declared = sum(weights[c] / top for c in included)
    if "dp" in r:  # a noisy sum (privacy on the sum): decoded as its record says
        _check_noisy_update(ctx, total)
        return
    spec = QuantizationSpec(int(r["bits"]), float(r["clip"]), len(r["client_ids"]))
    with ctx.audit.guard("update", ctx.poster):
        mean = FedAvg().finalize(
            dequantize(total, spec), spec.clip, declared, error_bound(spec, len(included))
        )
        if not np.array_equal(mean.astype(np.float32), ctx.update):
            ctx.audit.fail(
                "update", "the posted update is not the FedAvg of the unmasked sum", ctx.poster
            )
            return
        ctx.audit.ok("update", "FedAvg of the unmasked sum with the declared weights, equal")


def _check_noisy_update(ctx: RoundContext, total: np.ndarray) -> None:
    """distributed-dp: the posted update is the decoded noisy sum, bit for bit; central-dp:
    the aggregator's own noise is in it, so only its provenance can be stated."""
    r = ctx.config.protection
    with ctx.audit.guard("update", ctx.poster):
        expected = update_from_record(r, total, int(r["round_id"]))
        if expected is None:
            ctx.audit.ok(
                "update",
                "central-dp: the trusted aggregator's noise is in the update and is not "
                "re-derivable; the unmasked sum it decoded is checked above",
            )
            return
        if not np.array_equal(expected, ctx.update):
            ctx.audit.fail("update", "the posted update is not the decoded noisy sum", ctx.poster)
            return
        ctx.audit.ok("update", "the decoded noisy sum (rotation, scale, step), equal")


# ---- homomorphic encryption ---------------------------------------------------------------


def _check_he_round(ctx: RoundContext) -> None:
    """ckks / paillier: the ciphertext sum redone (the decryption is the key holder's)."""
    from secagg import he

    audit = ctx.audit
    if not ctx.unavailable("aggregate", ctx.blobs):
        with audit.guard("aggregate", ctx.poster):
            public = he.load_public_key(bytes.fromhex(str(ctx.config.protection["he_public_key"])))
            # The aggregator adds in client order; ciphertext sums are then byte-identical.
            order = sorted(ctx.survivors, key=ctx.ids.__getitem__)
            total = public.sum_serialized(ctx.blobs[a] for a in order)
            if total.serialize() != ctx.aggregate:
                audit.fail(
                    "aggregate",
                    "the ciphertext sum redone from the store differs from the posted one",
                    ctx.poster,
                )
            else:
                audit.ok("aggregate", f"ciphertext sum of {len(ctx.survivors)} survivors redone")
    with audit.guard(he_attestation.CHECK, ctx.poster):
        he_attestation.check_attestations(
            audit, ctx.ledger, ctx.events, ctx.aggregate, ctx.config.protection
        )
    audit.ok("update", "decryption is the key holder's (no threshold decryption): not redone")


#: Protection mode -> the checks of what a round in that mode leaves on chain and in store.
ROUND_CHECKS: dict[str, Callable[[RoundContext], None]] = {
    "secagg": _check_masking_round,
    "secagg+": _check_masking_round,
    "ckks": _check_he_round,
    "paillier": _check_he_round,
}


# ---- across rounds ----------------------------------------------------------------------


def _check_model_chain(
    report: AuditReport,
    store: BlobStore,
    models: list[tuple[int, bytes, str]],
    updates: dict[int, np.ndarray | None],
    lr: float,
) -> None:
    for (r, digest, _), (_, next_digest, opener) in itertools.pairwise(models):
        audit = _RoundAudit(report, r)
        if r not in updates:
            continue  # the round's update could not be read: that failure is recorded
        with audit.guard("model", opener):
            blob = store.get(Cid.from_digest(bytes(digest)))
            params = decode_vector_blob(blob, "global model")
            update = updates[r]
            if update is not None and update.shape != params.shape:
                audit.fail("model", f"the update has {update.size} values, the model {params.size}")
                continue
            expected = params if update is None else (params + lr * update).astype(np.float32)
            if Cid.digest_of(vector_blob(expected)) != bytes(next_digest):
                audit.fail(
                    "model",
                    "the next round's model is not this round's plus its update",
                    opener,
                )
                continue
            audit.ok("model", "the next round starts from this round's model plus its update")
