"""Gas per SecAggLedger operation: two 10-participant rounds on the embedded chain.

    .venv/bin/python contracts/gas_report.py

Gas is deterministic for a given call sequence, so one run is the measurement. Round 2 is
shown for the operations whose first use of a storage slot could cost more (commit, claim,
openRound). ``python -m benchmarks gas`` measures the same operations at n = 10 and 100.
"""

from __future__ import annotations

import hashlib

from secagg.ledger import (
    LedgerClient,
    MerkleTree,
    advance_time,
    block_timestamp,
    embedded_web3,
    epsilon_to_fixed,
)

N = 10


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def main() -> None:
    w3 = embedded_web3()
    accounts = list(w3.eth.accounts)[:N]
    gas: dict[str, int] = {}
    admin = LedgerClient.deploy(w3, epsilon_cap=epsilon_to_fixed(10), reward_per_round=10**18)
    assert admin.deployment is not None
    gas["deploy (ledger + its token)"] = admin.deployment.gas_used
    gas["grantRole"] = admin.grant_role("AGGREGATOR_ROLE", accounts[1]).gas_used
    admin.grant_role("VALIDATOR_ROLE", accounts[2])
    for i, account in enumerate(accounts):
        gas["register"] = admin.register(account, h(f"ed25519 {i}")).gas_used
    aggregator, validator = admin.as_sender(accounts[1]), admin.as_sender(accounts[2])
    parties = [admin.as_sender(a) for a in accounts]
    survivors, dropped = accounts[: N - 1], accounts[N - 1 :]

    for rid in (1, 2):
        now = block_timestamp(w3)
        gas[f"openRound ({N} participants), round {rid}"] = aggregator.open_round(
            rid,
            model_hash=h("model"),
            config_hash=h("config"),
            commit_deadline=now + 100,
            unmask_deadline=now + 200,
            participants=accounts,
        ).gas_used
        for p in parties:
            gas[f"advertiseKeys, round {rid}"] = p.advertise_keys(
                rid,
                encryption_key=h(f"c {p.sender_address}"),
                masking_key=h(f"s {p.sender_address}"),
                seed_commitment=h("H(b)"),
            ).gas_used
        trees = {}
        for p in parties[: N - 1]:
            o = p.sender_address
            trees[o] = MerkleTree.from_leaves(
                p.share_leaf(
                    rid,
                    owner=o,
                    holder=q,
                    b_share_hash=h(f"b {o} {q}"),
                    s_share_hash=h(f"s {o} {q}"),
                )
                for q in accounts
            )
            gas[f"commit, round {rid}"] = p.commit(
                rid,
                blob_hash=h(f"blob {o}"),
                share_root=trees[o].root,
                cumulative_epsilon=epsilon_to_fixed(rid),
            ).gas_used
        advance_time(w3, aggregator.round_info(rid).commit_deadline + 1 - block_timestamp(w3))
        gas[f"postSurvivors ({N - 1} survivors, 1 dropped)"] = aggregator.post_survivors(
            rid, survivors, dropped
        ).gas_used
        for p in parties[: N - 1]:
            gas["postShares"] = p.post_shares(rid, h(f"shares {p.sender_address}")).gas_used
        for p in parties[: N - 1]:  # HE rounds: each co-signer attests the sum's digest
            gas["attestSum"] = p.attest_sum(rid, h(f"sum {rid}")).gas_used
        owner, holder = accounts[0], accounts[3]
        leaf = parties[0].share_leaf(
            rid,
            owner=owner,
            holder=holder,
            b_share_hash=h(f"b {owner} {holder}"),
            s_share_hash=h(f"s {owner} {holder}"),
        )
        proof = trees[owner].proof(leaf)
        gas[f"verifyShare ({N}-leaf tree; view, eth_estimateGas)"] = (
            aggregator.contract.functions.verifyShare(rid, owner, leaf, proof).estimate_gas()
        )
        gas["reportBadShare"] = validator.report_bad_share(
            rid,
            owner=owner,
            holder=holder,
            b_share_hash=h("forged"),
            s_share_hash=h(f"s {owner} {holder}"),
            proof=proof,
        ).gas_used
        gas[f"postAggregate ({N - 1} included)"] = aggregator.post_aggregate(
            rid, aggregate_cid=h("cid"), aggregate_hash=h("sum"), included=survivors
        ).gas_used
        for p in parties[: N - 1]:
            gas[f"claimReward, round {rid}"] = p.claim_reward(rid).gas_used
    gas["penalize"] = validator.penalize(accounts[5], 10).gas_used

    width = max(map(len, gas))
    for name, used in gas.items():
        print(f"{name:<{width}}  {used:>9,}")


if __name__ == "__main__":
    main()
