"""Replay every round of a run from the chain's events and the store's blobs, and judge it.

Nothing a hospital keeps to itself is needed: the audit reads the contract (events and
views) and the content-addressed store, and redoes what the aggregator claims to have done.
Per round:

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
  without its key, so only the blob is checked) and moves the model to the next round's;
- ``epsilon``: every participant's cumulative ε only grows and stays within the cap.

A check names the round and, where one is at fault, the participant.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from secagg.aggregation import FedAvg
from secagg.config import config_from_dict
from secagg.crypto import shamir
from secagg.errors import SecAggError
from secagg.ledger import he_attestation
from secagg.ledger.client import LedgerClient
from secagg.ledger.records import LedgerEvent, epsilon_from_fixed
from secagg.ledger.roundblobs import (
    VECTOR_DTYPE,
    MaskedBlob,
    RoundConfig,
    decode_masked_blob,
    decode_round_config,
    share_tree,
    vector_blob,
)
from secagg.masking.messages import MaskedInput, PublicKeys, UnmaskingResponse
from secagg.masking.params import MaskingParams, share_digest, share_x
from secagg.masking.session import Session
from secagg.masking.unmask import remove_masks
from secagg.quantize import QuantizationSpec, dequantize, error_bound
from secagg.storage import BlobStore, Cid


@dataclass
class Check:
    """One verdict: which round, what was checked, whether it held, and why not."""

    round: int
    check: str
    ok: bool
    detail: str = ""
    participant: str = ""


@dataclass
class AuditReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "pass" if self.passed else "fail",
            "rounds": sorted({c.round for c in self.checks}),
            "checks": [asdict(c) for c in self.checks],
        }

    def summary(self) -> str:
        """One line per round and check, then the verdict."""
        lines = []
        for c in self.checks:
            who = f" [{c.participant}]" if c.participant else ""
            status = "ok  " if c.ok else "FAIL"
            lines.append(f"round {c.round:>3}  {status}  {c.check}{who}  {c.detail}".rstrip())
        lines.append(f"audit verdict: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


class _RoundAudit:
    """The checks of one round; a failed check is recorded, and the round goes on."""

    def __init__(self, report: AuditReport, chain_round: int) -> None:
        self.report = report
        self.round = chain_round

    def ok(self, check: str, detail: str = "") -> None:
        self.report.checks.append(Check(self.round, check, True, detail))

    def fail(self, check: str, detail: str, participant: str = "") -> None:
        self.report.checks.append(Check(self.round, check, False, detail, participant))

    @contextmanager
    def guard(self, check: str, participant: str = "") -> Iterator[None]:
        """Turn any library error inside into a failed check instead of a crash."""
        try:
            yield
        except (SecAggError, ValueError, KeyError) as exc:
            self.fail(check, f"{type(exc).__name__}: {exc}", participant)


def audit_run(ledger: LedgerClient, store: BlobStore) -> AuditReport:
    """Audit every round the contract has seen."""
    report = AuditReport()
    events = ledger.events()
    opened = [e for e in events if e.name == "RoundOpened"]
    cap = ledger.epsilon_cap
    previous_eps: dict[str, int] = {}
    models: list[tuple[int, bytes]] = []  # (round, model digest) in round order
    updates: dict[int, np.ndarray | None] = {}
    lr = 1.0
    for event in opened:
        chain_round = int(event.args["roundId"])
        audit = _RoundAudit(report, chain_round)
        mine = [e for e in events if e.round_id == chain_round]
        rules = _fetch(audit, store, event.args["configHash"], "round rules")
        model = _fetch(audit, store, event.args["modelHash"], "global model")
        if rules is None or model is None:
            continue
        with audit.guard("blobs"):
            config = decode_round_config(rules)
            lr = config_from_dict(tomllib.loads(config.config_toml)).aggregation.server_lr
        models.append((chain_round, event.args["modelHash"]))
        _check_epsilon(audit, mine, cap, previous_eps)
        updates[chain_round] = _check_round(audit, ledger, store, mine, config)
    _check_model_chain(report, store, models, updates, lr)
    return report


def _fetch(
    audit: _RoundAudit, store: BlobStore, digest: bytes, what: str, who: str = ""
) -> bytes | None:
    try:
        return store.get(Cid.from_digest(bytes(digest)))
    except SecAggError as exc:
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
) -> np.ndarray | None:
    """The per-round checks; returns the posted update (None when none was posted)."""
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
        return None
    aggregate = _fetch(audit, store, posted[0].args["aggregateCid"], "aggregate")
    update_blob = _fetch(audit, store, posted[0].args["aggregateHash"], "update")
    if aggregate is None or update_blob is None:
        return None
    survivors = list(survivors_event[0].args["survivors"])
    update = np.frombuffer(update_blob, dtype=VECTOR_DTYPE).astype(np.float32)
    record = config.protection
    mode = str(record.get("mode", ""))
    if mode in ("secagg", "secagg+"):
        total = _replay_masking(audit, ledger, store, events, config, blobs, commits, survivors)
        if total is not None and total.tobytes() != aggregate:
            audit.fail(
                "aggregate", "the unmasking redone from the store differs from the posted aggregate"
            )
        elif total is not None:
            audit.ok("aggregate", f"unmasking of {len(survivors)} survivors redone, equal")
            _check_masked_update(audit, config, total, update, survivors, ledger)
    elif mode in ("ckks", "paillier"):
        _replay_he(audit, record, blobs, survivors, aggregate, _participants(ledger, config))
        he_attestation.check_attestations(audit, ledger, events, aggregate, record)
        audit.ok("update", "decryption is the key holder's (no threshold decryption): not redone")
    else:
        audit.fail("aggregate", f"unknown protection mode {mode!r} in the round's rules")
    # The posted update is what moved the model, whatever the checks above found.
    return update


def _participants(ledger: LedgerClient, config: RoundConfig) -> dict[str, int]:
    """Address -> client id: the clients are the participants in registration order."""
    ids = [int(c) for c in config.protection.get("client_ids", sorted(config.declared_weights))]
    registered = [
        e.args["participant"] for e in ledger.events() if e.name == "ParticipantRegistered"
    ]
    return dict(zip(registered, ids, strict=False))


def _replay_masking(
    audit: _RoundAudit,
    ledger: LedgerClient,
    store: BlobStore,
    events: list[LedgerEvent],
    config: RoundConfig,
    blobs: dict[str, bytes],
    commits: dict[str, LedgerEvent],
    survivors: list[str],
) -> np.ndarray | None:
    r = config.protection
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
    ids = _participants(ledger, config)
    address = {c: a for a, c in ids.items()}
    chain_round = audit.round
    # Share commitments: every committed blob's digests rebuild its committed root.
    masked: dict[str, MaskedBlob] = {}
    bad = False
    for who, blob in blobs.items():
        with audit.guard("share-commitments", who):
            parsed = decode_masked_blob(blob)
            tree = share_tree(ledger, chain_round, address, ids[who], parsed.commitments)
            if tree.root != bytes(commits[who].args["shareRoot"]):
                audit.fail("share-commitments", "digests do not rebuild the committed root", who)
                bad = True
                continue
            masked[who] = parsed
    if not bad:
        audit.ok("share-commitments", f"{len(masked)} roots rebuilt")
    # Revealed shares: each matches its owner's commitment for this holder.
    seed_shares: dict[int, dict[int, shamir.Share]] = {}
    key_shares: dict[int, dict[int, shamir.Share]] = {}
    bad = False
    for posted in _events(events, "SharesPosted"):
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
                raise ValueError(f"the blob is client {response.sender}'s, posted by {holder}")
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
    keys = {
        ids[e.args["participant"]]: PublicKeys(
            bytes(e.args["encryptionKey"]),
            bytes(e.args["maskingKey"]),
            bytes(e.args["seedCommitment"]),
        )
        for e in _events(events, "KeysAdvertised")
    }
    alive = frozenset(ids[a] for a in survivors)
    total = np.zeros(params.dim, dtype=params.dtype)
    with audit.guard("aggregate"):
        for who in survivors:
            message = MaskedInput.from_bytes(masked[who].message)
            np.add(total, message.masked, out=total)
        to_recover = frozenset(key_shares)
        remove_masks(params, keys, total, alive, to_recover, seed_shares, key_shares)
        return total
    return None


def _check_masked_update(
    audit: _RoundAudit,
    config: RoundConfig,
    total: np.ndarray,
    update: np.ndarray,
    survivors: list[str],
    ledger: LedgerClient,
) -> None:
    r = config.protection
    ids = _participants(ledger, config)
    included = [ids[a] for a in survivors]
    weights = config.declared_weights
    top = max(weights.values())
    declared = sum(weights[c] / top for c in included)
    spec = QuantizationSpec(int(r["bits"]), float(r["clip"]), len(r["client_ids"]))
    with audit.guard("update"):
        mean = FedAvg().finalize(
            dequantize(total, spec), spec.clip, declared, error_bound(spec, len(included))
        )
        if not np.array_equal(mean.astype(np.float32), update):
            audit.fail("update", "the posted update is not the FedAvg of the unmasked sum")
            return
        audit.ok("update", "FedAvg of the unmasked sum with the declared weights, equal")


def _replay_he(
    audit: _RoundAudit,
    record: dict[str, Any],
    blobs: dict[str, bytes],
    survivors: list[str],
    aggregate: bytes,
    ids: dict[str, int],
) -> None:
    from secagg import he

    with audit.guard("aggregate"):
        public = he.load_public_key(bytes.fromhex(str(record["he_public_key"])))
        # The aggregator adds in client order; ciphertext sums are then byte-identical.
        total = public.sum_serialized(blobs[a] for a in sorted(survivors, key=ids.__getitem__))
        if total.serialize() != aggregate:
            audit.fail(
                "aggregate", "the ciphertext sum redone from the store differs from the posted one"
            )
            return
        audit.ok("aggregate", f"ciphertext sum of {len(survivors)} survivors redone, equal")


def _check_model_chain(
    report: AuditReport,
    store: BlobStore,
    models: list[tuple[int, bytes]],
    updates: dict[int, np.ndarray | None],
    lr: float,
) -> None:
    for (r, digest), (_, next_digest) in itertools.pairwise(models):
        audit = _RoundAudit(report, r)
        with audit.guard("model"):
            params = np.frombuffer(store.get(Cid.from_digest(bytes(digest))), dtype=VECTOR_DTYPE)
            update = updates.get(r)
            expected = params if update is None else (params + lr * update).astype(np.float32)
            if Cid.digest_of(vector_blob(expected)) != bytes(next_digest):
                audit.fail("model", "the next round's model is not this round's plus its update")
                continue
            audit.ok("model", "the next round starts from this round's model plus its update")
