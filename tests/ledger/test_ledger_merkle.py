"""The Python share tree is OpenZeppelin's: same leaves, roots and proofs as the contract's
``shareLeaf``/``verifyShare`` and as the JS ``@openzeppelin/merkle-tree`` library.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from secagg.errors import LedgerInputError, LedgerStateError
from secagg.ledger import MerkleTree, share_hash, share_leaf
from secagg.ledger.merkle import SHARE_LEAF_TYPES, process_proof, standard_leaf, verify


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
def test_tree_proves_every_leaf_and_nothing_else(n: int) -> None:
    leaves = [standard_leaf(["uint256"], [i]) for i in range(n)]
    tree = MerkleTree.from_leaves(reversed(leaves))  # input order does not matter
    assert tree == MerkleTree.from_leaves(leaves)
    for leaf in leaves:
        proof = tree.proof(leaf)
        assert verify(proof, tree.root, leaf)
        assert not verify(proof, tree.root, standard_leaf(["uint256"], [n + 1]))
        if proof:
            tampered = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
            assert not verify(tampered, tree.root, leaf)
    assert MerkleTree.from_leaves(leaves[:1]).root == leaves[0]  # one leaf is its own root


def test_tree_refuses_empty_duplicate_and_unknown_leaves() -> None:
    leaf = standard_leaf(["uint256"], [1])
    with pytest.raises(LedgerInputError, match="at least one leaf"):
        MerkleTree.from_leaves([])
    with pytest.raises(LedgerInputError, match="duplicate"):
        MerkleTree.from_leaves([leaf, leaf])
    with pytest.raises(LedgerInputError, match="not in this tree"):
        MerkleTree.from_leaves([leaf]).proof(standard_leaf(["uint256"], [2]))
    with pytest.raises(LedgerInputError, match="32 bytes"):
        MerkleTree.from_leaves([b"short"])


def test_python_leaves_and_proofs_verify_in_the_contract(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    owner = c.participants[0]
    c.open_round(1)
    c.commit(owner, 1)  # commits the root of c.share_tree(owner, 1), built in Python
    tree = c.share_tree(owner, 1)
    o = owner.sender_address
    for holder in c.addresses:
        hashes = c.share_hashes(o, holder)
        leaf = owner.share_leaf(1, owner=o, holder=holder, **hashes)
        # Python leaf == contract leaf; Python proof verifies on chain.
        assert leaf == owner.share_leaf_on_chain(1, owner=o, holder=holder, **hashes)
        assert c.outsider.verify_share(1, o, leaf, tree.proof(leaf))
        # A leaf bound to another round, holder or share is refused by both sides.
        for wrong in (
            owner.share_leaf(2, owner=o, holder=holder, **hashes),
            owner.share_leaf(1, owner=o, holder=c.outsider.sender_address, **hashes),
            owner.share_leaf(1, owner=o, holder=holder, **c.share_hashes(o, "forged")),
        ):
            assert not c.outsider.verify_share(1, o, wrong, tree.proof(leaf))
            assert not verify(tree.proof(leaf), tree.root, wrong)
    # Another owner's root does not vouch for this owner's shares.
    leaf = tree.leaves[0]
    assert not c.outsider.verify_share(1, c.addresses[1], leaf, tree.proof(leaf))


def test_contract_leaves_build_the_committed_tree(consortium) -> None:  # type: ignore[no-untyped-def]
    """The reverse direction: leaves computed by the contract, tree and proofs in Python."""
    c = consortium
    owner = c.participants[1]
    c.open_round(1)
    o = owner.sender_address
    onchain_leaves = [
        owner.share_leaf_on_chain(1, owner=o, holder=h, **c.share_hashes(o, h)) for h in c.addresses
    ]
    tree = MerkleTree.from_leaves(onchain_leaves)
    c.commit(owner, 1)
    assert owner.member(1, o).share_root == tree.root
    for leaf in onchain_leaves:
        proof = tree.proof(leaf)
        assert process_proof(proof, leaf) == tree.root
        assert c.outsider.verify_share(1, o, leaf, proof)


def test_leaves_bind_chain_and_ledger(consortium) -> None:  # type: ignore[no-untyped-def]
    c = consortium
    owner = c.participants[0]
    o, h = owner.sender_address, c.addresses[1]
    fields = {"round_id": 1, "owner": o, "holder": h, **c.share_hashes(o, h)}
    here = share_leaf(chain_id=owner.chain_id, ledger=owner.address, **fields)
    assert here == owner.share_leaf(**fields)
    assert here != share_leaf(chain_id=owner.chain_id + 1, ledger=owner.address, **fields)
    assert here != share_leaf(chain_id=owner.chain_id, ledger=c.outsider.sender_address, **fields)


def test_same_tree_as_openzeppelin_merkle_tree_js(node_tools) -> None:  # type: ignore[no-untyped-def]
    values: list[list[int | str]] = [
        [
            31337,
            "0x" + "ab" * 20,
            7,
            "0x" + f"{i:040x}",
            "0x" + f"{i + 100:040x}",
            "0x" + share_hash(b"b%d" % i).hex(),
            "0x" + share_hash(b"s%d" % i).hex(),
        ]
        for i in range(1, 7)
    ]
    request = json.dumps({"types": list(SHARE_LEAF_TYPES), "values": values})
    done = subprocess.run(
        ["node", "merkle_reference.js"],
        input=request,
        capture_output=True,
        text=True,
        cwd=node_tools,
        check=True,
        timeout=60,
    )
    reference = json.loads(done.stdout)
    leaves = [
        standard_leaf(SHARE_LEAF_TYPES, [*v[:5], *(bytes.fromhex(str(h)[2:]) for h in v[5:])])
        for v in values
    ]
    tree = MerkleTree.from_leaves(leaves)
    assert "0x" + tree.root.hex() == reference["root"]
    for leaf, entry in zip(leaves, reference["entries"], strict=True):
        assert "0x" + leaf.hex() == entry["leaf"]
        assert ["0x" + p.hex() for p in tree.proof(leaf)] == entry["proof"]


def test_share_proofs_do_not_replay_across_chain_ids(consortium) -> None:  # type: ignore[no-untyped-def]
    """A share tree is bound to one chain: leaves and proofs made for another chain id do
    not verify here, and a commitment copied from another chain vouches for nothing here."""
    c = consortium
    alice, bob, carol = c.participants[:3]
    a, b = alice.sender_address, bob.sender_address
    other_chain = alice.chain_id + 1
    c.open_round(1, [alice, bob, carol])
    holders = [p.sender_address for p in (alice, bob, carol)]

    def leaf_on(chain_id: int, owner: str, holder: str) -> bytes:
        return share_leaf(
            chain_id=chain_id,
            ledger=alice.address,
            round_id=1,
            owner=owner,
            holder=holder,
            **c.share_hashes(owner, holder),
        )

    # Alice commits her tree for this chain; a leaf + proof from the same tree built for
    # another chain id (same ledger address, round, parties and shares) does not verify.
    c.commit(alice, 1)
    here = c.share_tree(alice, 1)
    elsewhere = MerkleTree.from_leaves(leaf_on(other_chain, a, h) for h in holders)
    foreign = leaf_on(other_chain, a, b)
    assert elsewhere.root != here.root
    assert verify(elsewhere.proof(foreign), elsewhere.root, foreign)  # valid over there
    assert not c.outsider.verify_share(1, a, foreign, elsewhere.proof(foreign))
    assert not c.outsider.verify_share(1, a, foreign, here.proof(leaf_on(alice.chain_id, a, b)))
    assert alice.share_leaf_on_chain(1, owner=a, holder=b, **c.share_hashes(a, b)) != foreign

    # Bob replays a commitment made on the other chain (its root, same shares): the
    # contract computes this chain's leaf, which is not in that tree, so a holder revealing
    # one of those shares is reportable rather than vouched for.
    bob_elsewhere = MerkleTree.from_leaves(leaf_on(other_chain, b, h) for h in holders)
    bob.commit(1, blob_hash=c.digest("blob"), share_root=bob_elsewhere.root, cumulative_epsilon=1)
    c.pass_deadline(1)
    c.aggregator.post_survivors(1, [a, b], [])
    alice.post_shares(1, c.digest("alice's revealed shares"))
    replayed = leaf_on(other_chain, b, a)
    honest_here = bob.share_leaf(1, owner=b, holder=a, **c.share_hashes(b, a))
    assert not c.outsider.verify_share(1, b, honest_here, bob_elsewhere.proof(replayed))
    receipt = c.validator.report_bad_share(
        1, owner=b, holder=a, proof=bob_elsewhere.proof(replayed), **c.share_hashes(b, a)
    )
    assert [e.name for e in receipt.events] == ["BadShareReported"]


def test_commit_without_shares_has_no_provable_root(consortium) -> None:  # type: ignore[no-untyped-def]
    """HE modes commit a zero share root: the commit counts, but no proof can verify
    against it, including the contract's internal marker for "committed, no shares"."""
    c = consortium
    alice, bob = c.participants[:2]
    a = alice.sender_address
    c.open_round(1, [alice, bob])
    alice.commit(1, blob_hash=c.digest("ciphertext"), share_root=bytes(32), cumulative_epsilon=5)
    record = c.admin.member(1, a)
    assert record.committed and record.share_root == bytes(32)
    assert record.blob_hash == c.digest("ciphertext") and record.cumulative_epsilon == 5
    marker = (1).to_bytes(32, "big")
    for leaf in (bytes(32), marker, c.leaf(alice, 1, bob.sender_address)):
        assert not c.outsider.verify_share(1, a, leaf, [])
    c.commit(bob, 1)
    c.aggregator.post_survivors(1, [a, bob.sender_address], [])
    bob.post_shares(1, c.digest("shares"))
    with pytest.raises(LedgerStateError, match="NoShareRoot"):
        c.validator.report_bad_share(
            1, owner=a, holder=bob.sender_address, proof=[], **c.share_hashes(a, "x")
        )
