"""Attested HE sums on chain: what co-signers add up, what the key holder reads, what the
audit checks.

With the ledger the chain replaces the off-chain signatures of :mod:`secagg.he.attest`:

- each hospital commits its ciphertext's digest from its own account (``commit``): that is
  its ciphertext's authentication;
- the aggregator posts the survivor set (``postSurvivors``): the list the sum is made of,
  the same for everyone once posted;
- each co-signing hospital reads the survivors and their committed digests from the chain,
  fetches the ciphertexts from the content-addressed store (:func:`survivor_ciphertexts`),
  adds them up itself and attests the sum's digest from its own account (``attestSum``);
- the key holder reads that pedigree from the chain (:func:`attested_sum`) into the same
  :class:`~secagg.he.attest.AttestedSum` its gate checks off chain: at least t committed
  contributions with distinct digests, at least t attesters of this very sum's digest, one
  decryption per round. It never sees a ciphertext, and needs nothing from the aggregator
  but the sum itself;
- the audit (:func:`check_attestations`) checks that the posted aggregate is the sum that at
  least t participants attested, and names any participant who attested another.

The session of these statements is the chain and the contract (:func:`chain_session`); the
contract's round ids strictly increase.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from eth_typing import HexStr

from secagg.he.attest import AttestedSum, digest
from secagg.ledger.client import LedgerClient
from secagg.ledger.records import LedgerEvent
from secagg.storage import BlobStore, Cid

#: The audit check this module adds to every HE round.
CHECK = "he-attestation"


def chain_session(ledger: LedgerClient) -> bytes:
    """The session of a ledger run's HE statements: this chain id and this contract."""
    chain = ledger.chain_id.to_bytes(32, "big")
    return hashlib.sha256(
        b"secagg/he/chain-session/v1" + chain + bytes.fromhex(ledger.address[2:])
    ).digest()


def _committed(events: list[LedgerEvent]) -> dict[str, bytes]:
    return {
        e.args["participant"]: bytes(e.args["blobHash"]) for e in events if e.name == "Committed"
    }


def survivor_ciphertexts(ledger: LedgerClient, store: BlobStore, chain_round: int) -> list[bytes]:
    """The ciphertexts a co-signer adds up: each posted survivor's, fetched from the store by
    the digest that survivor committed from its own account (the store checks the digest).
    Neither the list nor the bytes come from the aggregator."""
    survivors, _ = ledger.survivor_set(chain_round)
    committed = _committed(ledger.round_events(chain_round))
    return [store.get(Cid.from_digest(committed[a])) for a in survivors]


def attested_sum(ledger: LedgerClient, chain_round: int, sum_digest: bytes) -> AttestedSum:
    """The pedigree of the sum whose digest is ``sum_digest``, as the chain records it: the
    survivors' committed digests and the participants who attested that very digest."""
    events = ledger.round_events(chain_round)
    survivors, _ = ledger.survivor_set(chain_round)
    committed = _committed(events)
    attesters = frozenset(
        e.args["participant"]
        for e in events
        if e.name == "SumAttested" and bytes(e.args["sumDigest"]) == sum_digest
    )
    return AttestedSum(
        chain_session(ledger),
        chain_round,
        sum_digest,
        {a: committed[a] for a in survivors},
        attesters,
    )


def _sender(ledger: LedgerClient, event: LedgerEvent) -> str:
    """The account that sent the transaction which emitted ``event``."""
    return str(ledger.w3.eth.get_transaction(HexStr(event.tx_hash))["from"])


class Verdicts(Protocol):
    """Where the audit records one round's verdicts."""

    def ok(self, check: str, detail: str = "") -> None: ...

    def fail(self, check: str, detail: str, participant: str = "") -> None: ...


def check_attestations(
    audit: Verdicts,
    ledger: LedgerClient,
    events: list[LedgerEvent],
    aggregate: bytes,
    record: dict[str, Any],
) -> None:
    """The posted aggregate is the sum at least t participants attested; every attester
    attested it (one who attested another digest is named; so is the aggregator when fewer
    than t attested what it posted)."""
    posted = digest(aggregate)
    attested = [e for e in events if e.name == "SumAttested"]
    good = {e.args["participant"] for e in attested if bytes(e.args["sumDigest"]) == posted}
    for e in attested:
        if bytes(e.args["sumDigest"]) != posted:
            audit.fail(
                CHECK, "attested a sum other than the posted aggregate", e.args["participant"]
            )
    threshold = int(record.get("threshold", 0))
    if len(good) < threshold:
        aggregator = next((e for e in events if e.name == "AggregatePosted"), None)
        who = "" if aggregator is None else _sender(ledger, aggregator)
        audit.fail(
            CHECK,
            f"{len(good)} participant(s) attested the posted aggregate, the key holder needs "
            f"t = {threshold}: it was decrypted without its pedigree",
            who,
        )
        return
    if len(good) == len(attested):
        audit.ok(CHECK, f"{len(good)} participants attested the posted sum (t = {threshold})")
