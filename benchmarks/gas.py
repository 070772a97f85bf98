"""Ledger gas: every operation, and per client per round at n clients and model size d.

Runs whole rounds of the SecAggLedger contract on the embedded chain (eth-tester + py-evm,
the committed artifacts): registration, then three rounds per consortium size n. Round 1
is each participant's first round (d = 10^3); rounds 2 and 3 are steady state, with
d = 10^3 and d = 10^6. Every committing client builds a real d-length float32 update, puts
nothing on chain but the sha2-256 digest of its CID (``secagg.storage.Cid``), and commits
it; one client per round advertises keys and then drops out, so the survivor set has a
dropped member as in a real round.

The model size only changes the off-chain blob, so the d = 10^6 / d = 10^3 ratios should
be 1.0: a commit always carries one 32-byte hash. (Calldata costs 4 gas per zero byte and
16 per non-zero byte, so hashes with a zero byte or two move a figure by a few gas.)

Gas is deterministic for a given call sequence: one run is the measurement, no repeats.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from eth_utils import keccak
from web3 import Web3

from benchmarks import log, ratio
from secagg.ledger import (
    LedgerClient,
    MerkleTree,
    TxReceipt,
    advance_time,
    block_timestamp,
    epsilon_to_fixed,
    share_hash,
)
from secagg.ledger.compiled import LEDGER, load_artifact
from secagg.storage import Cid

CLIENTS_FULL = (10, 100)
CLIENTS_QUICK = (10,)
MODEL_SIZES = (10**3, 10**6)
#: Issue #8: a commit must cost at most this much gas, whatever the model size.
COMMIT_GAS_LIMIT = 60_000
#: Clients per round that advertise keys but never commit (they are posted as dropped).
DROPPED = 1
#: Per-client operations: what one surviving client pays in one round.
CLIENT_OPS = ("advertiseKeys", "commit", "postShares", "claimReward")
#: The same under HE: no keys or shares, and each co-signer attests the sum's digest.
HE_CLIENT_OPS = ("commit", "attestSum", "claimReward")
#: Per-round operations of the aggregator.
AGGREGATOR_OPS = ("openRound", "postSurvivors", "postAggregate")
SEED = 8
PARTIES = 3  # admin, aggregator, validator


def _chain(accounts: int) -> Web3:
    """A fresh embedded chain with ``accounts`` funded, unlocked accounts."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3.providers.eth_tester import EthereumTesterProvider

    state = PyEVMBackend.generate_genesis_state(num_accounts=accounts)
    return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend(genesis_state=state))))


def _label(n: int, d: int) -> str:
    return f"n={n} d=1e{len(str(d)) - 1}"


class _Consortium:
    """One ledger with n registered participants, driven round by round."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.w3 = _chain(n + PARTIES)
        accounts = list(self.w3.eth.accounts)
        admin_address, aggregator_address, validator_address = accounts[:PARTIES]
        self.one_off: dict[str, int] = {}
        self.admin = LedgerClient.deploy(
            self.w3,
            admin=admin_address,
            epsilon_cap=epsilon_to_fixed(1000.0),
            reward_per_round=10**18,
        )
        if self.admin.deployment is not None:  # always set by deploy(); typed as optional
            self.one_off["deploy (ledger + reward token)"] = self.admin.deployment.gas_used
        self.one_off["grantRole"] = self.admin.grant_role(
            "AGGREGATOR_ROLE", aggregator_address
        ).gas_used
        self.admin.grant_role("VALIDATOR_ROLE", validator_address)
        self.aggregator = self.admin.as_sender(aggregator_address)
        self.validator = self.admin.as_sender(validator_address)
        self.clients = [self.admin.as_sender(a) for a in accounts[PARTIES:]]
        registered = [
            self.admin.register(c.sender_address, keccak(text=f"ed25519 {i}")).gas_used
            for i, c in enumerate(self.clients)
        ]
        self.one_off["register, first participant"] = registered[0]
        self.one_off["register"] = int(statistics.median(registered))
        self.rng = np.random.default_rng([SEED, n])

    def round(self, round_id: int, d: int, epsilon: float) -> dict[str, Any]:
        """Play one full round with d-length float32 updates; gas of every call in it."""
        survivors = self.clients[: self.n - DROPPED]
        dropped = self.clients[self.n - DROPPED :]
        addresses = [c.sender_address for c in self.clients]
        gas: dict[str, list[int]] = {}

        def record(op: str, receipt: TxReceipt) -> None:
            gas.setdefault(op, []).append(receipt.gas_used)

        now = block_timestamp(self.w3)
        record(
            "openRound",
            self.aggregator.open_round(
                round_id,
                model_hash=keccak(text=f"model {round_id}"),
                config_hash=keccak(text="config"),
                commit_deadline=now + 3600,
                unmask_deadline=now + 7200,
                participants=addresses,
            ),
        )
        for c in self.clients:
            who = c.sender_address
            record(
                "advertiseKeys",
                c.advertise_keys(
                    round_id,
                    encryption_key=keccak(text=f"c {who} {round_id}"),
                    masking_key=keccak(text=f"s {who} {round_id}"),
                    seed_commitment=keccak(text=f"H(b) {who} {round_id}"),
                ),
            )

        trees: dict[str, MerkleTree] = {}
        aggregate = np.zeros(d, dtype=np.float32)
        blob_cid = ""
        for c in survivors:
            update = self.rng.standard_normal(d, dtype=np.float32)  # the protected update
            np.add(aggregate, update, out=aggregate)
            cid = Cid.of(update.data)  # what the client puts in the store
            blob_cid = blob_cid or str(cid)
            trees[c.sender_address] = self._share_tree(c, round_id, addresses)
            record(
                "commit",
                c.commit(
                    round_id,
                    blob_hash=cid.digest,
                    share_root=trees[c.sender_address].root,
                    cumulative_epsilon=epsilon_to_fixed(epsilon),
                ),
            )
            del update

        deadline = self.aggregator.round_info(round_id).commit_deadline
        advance_time(self.w3, deadline + 1 - block_timestamp(self.w3))
        record(
            "postSurvivors",
            self.aggregator.post_survivors(
                round_id, [c.sender_address for c in survivors], [c.sender_address for c in dropped]
            ),
        )
        for c in survivors:
            revealed = b"".join(share_hash(f"{c.sender_address} {a}".encode()) for a in addresses)
            record("postShares", c.post_shares(round_id, Cid.of(revealed).digest))
        # Under HE each co-signer attests the digest of the survivors' ciphertext sum instead
        # (played here in the same round: the call does not depend on the protection mode).
        for c in survivors:
            record("attestSum", c.attest_sum(round_id, keccak(text=f"sum {round_id}")))
        aggregate_blob = aggregate.tobytes()
        record(
            "postAggregate",
            self.aggregator.post_aggregate(
                round_id,
                aggregate_cid=Cid.of(aggregate_blob).digest,
                aggregate_hash=keccak(aggregate_blob),
                included=[c.sender_address for c in survivors],
            ),
        )
        for c in survivors:
            record("claimReward", c.claim_reward(round_id))

        if round_id == 1:
            self._evidence_ops(round_id, trees)
        return self._row(round_id, d, gas, blob_cid)

    def _share_tree(self, owner: LedgerClient, round_id: int, holders: Sequence[str]) -> MerkleTree:
        o = owner.sender_address
        return MerkleTree.from_leaves(
            owner.share_leaf(
                round_id,
                owner=o,
                holder=h,
                b_share_hash=share_hash(f"b {o} {h}".encode()),
                s_share_hash=share_hash(f"s {o} {h}".encode()),
            )
            for h in holders
        )

    def _evidence_ops(self, round_id: int, trees: dict[str, MerkleTree]) -> None:
        """verifyShare (a view: eth_estimateGas), reportBadShare and penalize, once."""
        owner, holder = self.clients[0], self.clients[1]
        o, h = owner.sender_address, holder.sender_address
        honest = {
            "b_share_hash": share_hash(f"b {o} {h}".encode()),
            "s_share_hash": share_hash(f"s {o} {h}".encode()),
        }
        leaf = owner.share_leaf(round_id, owner=o, holder=h, **honest)
        proof = trees[o].proof(leaf)
        self.one_off[f"verifyShare ({self.n}-leaf tree, view)"] = int(
            self.validator.contract.functions.verifyShare(round_id, o, leaf, proof).estimate_gas()
        )
        forged = {**honest, "b_share_hash": keccak(text="forged")}
        self.one_off["reportBadShare"] = self.validator.report_bad_share(
            round_id, owner=o, holder=h, proof=proof, **forged
        ).gas_used
        # The dropped client never claims, so this debt changes no later figure.
        dropped = self.clients[-1].sender_address
        self.one_off["penalize"] = self.validator.penalize(dropped, 1).gas_used

    def _row(self, round_id: int, d: int, gas: dict[str, list[int]], cid: str) -> dict[str, Any]:
        per_client = statistics.mean(
            sum(gas[op][i] for op in CLIENT_OPS) for i in range(self.n - DROPPED)
        )
        he_per_client = statistics.mean(
            sum(gas[op][i] for op in HE_CLIENT_OPS) for i in range(self.n - DROPPED)
        )
        aggregator = {op: gas[op][0] for op in AGGREGATOR_OPS}
        aggregator_total = sum(aggregator.values())
        return {
            "case": _label(self.n, d) + (" first round" if round_id == 1 else ""),
            "n": self.n,
            "d": d,
            "round_id": round_id,
            "steady_state": round_id > 1,
            "blob_bytes": 4 * d,
            "example_blob_cid": cid,
            "gas": {op: statistics.mean(values) for op, values in gas.items()},
            "gas_min_max": {op: [min(values), max(values)] for op, values in gas.items()},
            "commit_gas_max": max(gas["commit"]),
            "per_client_per_round_gas": per_client,
            "he_per_client_per_round_gas": he_per_client,
            "aggregator_per_round_gas": {**aggregator, "total": aggregator_total},
            "aggregator_gas_per_client": aggregator_total / self.n,
        }


def _play(consortium: _Consortium, round_id: int, d: int) -> dict[str, Any]:
    """One round (cumulative ε grows by 1 per round), with its wall time on stderr."""
    start = time.perf_counter()
    row = consortium.round(round_id, d, epsilon=float(round_id))
    kind = "first round" if round_id == 1 else "steady state"
    seconds = time.perf_counter() - start
    log(f"  round {round_id} ({kind}), {_label(consortium.n, d)}: {seconds:.1f} s")
    return row


def run(quick: bool) -> dict[str, Any]:
    sizes = CLIENTS_QUICK if quick else CLIENTS_FULL
    results: list[dict[str, Any]] = []
    steady: dict[tuple[int, int], dict[str, Any]] = {}
    first: dict[int, dict[str, Any]] = {}
    for n in sizes:
        log(f"n = {n}: deploy and register")
        consortium = _Consortium(n)
        d_small, d_large = MODEL_SIZES
        first[n] = _play(consortium, 1, d_small)
        steady[n, d_small] = _play(consortium, 2, d_small)
        steady[n, d_large] = _play(consortium, 3, d_large)
        results.append(
            {"case": f"n={n} one-off operations", "n": n, "gas": dict(consortium.one_off)}
        )
        base = steady[n, d_small]
        for row in (first[n], steady[n, d_small], steady[n, d_large]):
            row["ratios"] = {
                "per_client_over_steady_d1e3": ratio(
                    row["per_client_per_round_gas"], base["per_client_per_round_gas"]
                ),
                "commit_over_steady_d1e3": ratio(row["commit_gas_max"], base["commit_gas_max"]),
                "aggregator_over_steady_d1e3": ratio(
                    row["aggregator_per_round_gas"]["total"],
                    base["aggregator_per_round_gas"]["total"],
                ),
                "commit_over_limit": ratio(row["commit_gas_max"], COMMIT_GAS_LIMIT),
            }
            results.append(row)

    n_head, (d_small, d_large) = sizes[-1], MODEL_SIZES
    large, small = steady[n_head, d_large], steady[n_head, d_small]
    commit_steady = max(steady[n, d]["commit_gas_max"] for n in sizes for d in MODEL_SIZES)
    ratios: dict[str, Any] = {
        "per_client_d1e6_over_d1e3": ratio(
            large["per_client_per_round_gas"], small["per_client_per_round_gas"]
        ),
        "commit_d1e6_over_d1e3": ratio(large["commit_gas_max"], small["commit_gas_max"]),
        "aggregator_d1e6_over_d1e3": ratio(
            large["aggregator_per_round_gas"]["total"], small["aggregator_per_round_gas"]["total"]
        ),
        "commit_steady_state_over_limit": ratio(commit_steady, COMMIT_GAS_LIMIT),
        "first_round_over_steady_per_client": ratio(
            first[n_head]["per_client_per_round_gas"], small["per_client_per_round_gas"]
        ),
    }
    if len(sizes) > 1:
        n_low = sizes[0]
        ratios["per_client_n100_over_n10"] = ratio(
            large["per_client_per_round_gas"],
            steady[n_low, d_large]["per_client_per_round_gas"],
        )
        ratios["aggregator_per_client_n100_over_n10"] = ratio(
            large["aggregator_gas_per_client"], steady[n_low, d_large]["aggregator_gas_per_client"]
        )
    return {
        "benchmark": "gas",
        "params": {
            "clients": list(sizes),
            "model_sizes": list(MODEL_SIZES),
            "dropped_per_round": DROPPED,
            "rounds": "1: first round (d=1e3); 2: steady state, d=1e3; 3: steady state, d=1e6",
            "blob": "float32 update of d values, named by CIDv1 (raw, sha2-256); its 32-byte "
            "digest is the commit's blobHash",
            "client_ops": list(CLIENT_OPS),
            "aggregator_ops": list(AGGREGATOR_OPS),
            "commit_gas_limit": COMMIT_GAS_LIMIT,
            "headline": {"n": n_head, "d": d_large},
            "chain": "embedded eth-tester + py-evm; same gas on any EVM chain with the "
            "contract's fork rules (cancun)",
            "compiler": load_artifact(LEDGER).compiler_version,
        },
        "commit_steady_state_gas": commit_steady,
        "commit_first_round_gas": max(first[n]["commit_gas_max"] for n in sizes),
        "per_client_per_round_gas": {
            _label(n, d): steady[n, d]["per_client_per_round_gas"] for n, d in steady
        },
        "aggregator_per_round_gas": {
            _label(n, d): steady[n, d]["aggregator_per_round_gas"] for n, d in steady
        },
        "results": results,
        "ratios": ratios,
        "environment": {p: _version(p) for p in ("web3", "eth-tester", "py-evm", "multiformats")},
    }


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def render(result: Mapping[str, Any]) -> str:
    """The headline figures, then gas per operation (rows) for each case (columns)."""
    lines = [
        f"benchmark: {result['benchmark']}",
        f"commit, steady state (max over clients):  {result['commit_steady_state_gas']:,} gas "
        f"(limit {result['params']['commit_gas_limit']:,})",
        f"commit, first round:                      {result['commit_first_round_gas']:,} gas",
    ]
    rounds = [r for r in result["results"] if "round_id" in r]
    one_off = [r for r in result["results"] if "round_id" not in r]
    ops = [op for op in (*CLIENT_OPS, *AGGREGATOR_OPS) if op in rounds[0]["gas"]]
    width = max(len(r["case"]) for r in rounds)
    lines.append("")
    lines.append(
        "gas (mean over clients)".ljust(26) + "".join(r["case"].rjust(width + 2) for r in rounds)
    )
    for op in ops:
        lines.append(op.ljust(26) + "".join(f"{r['gas'][op]:>{width + 2},.0f}" for r in rounds))
    for label, key in (
        ("per client per round", "per_client_per_round_gas"),
        ("aggregator per client", "aggregator_gas_per_client"),
    ):
        lines.append(label.ljust(26) + "".join(f"{r[key]:>{width + 2},.0f}" for r in rounds))
    for row in one_off:
        lines.append(f"\n{row['case']}:")
        lines += [f"  {op:<34} {gas:>11,}" for op, gas in row["gas"].items()]
    lines.append("\nratios:")
    lines += [
        f"  {k:<40} {v if v is None else format(v, '.6f')}" for k, v in result["ratios"].items()
    ]
    return "\n".join(lines)
