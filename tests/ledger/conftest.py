"""A consortium on a fresh embedded chain: admin, aggregator, validator, five participants."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import Web3

from secagg.ledger import (
    LedgerClient,
    MerkleTree,
    TxReceipt,
    advance_time,
    block_timestamp,
    embedded_web3,
    epsilon_to_fixed,
    share_hash,
)

CAP = epsilon_to_fixed(3.0)
REWARD = 10**18
CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
ANVIL = CONTRACTS / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def digest(label: str) -> bytes:
    """A deterministic 32-byte value standing in for a hash or a key."""
    return hashlib.sha256(label.encode()).digest()


def node_tools_missing() -> str | None:
    """Why the Node-based checks cannot run here, or None if they can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (CONTRACTS / "node_modules").is_dir():
        return "contracts/node_modules is absent: run `npm ci --prefix contracts`"
    return None


@dataclass
class Consortium:
    """The parties of one ledger, each with its own client (its own signing account)."""

    w3: Web3
    admin: LedgerClient
    aggregator: LedgerClient
    validator: LedgerClient
    participants: list[LedgerClient]
    outsider: LedgerClient
    cap: int = CAP
    reward: int = REWARD
    digest = staticmethod(digest)

    @property
    def addresses(self) -> list[str]:
        return [p.sender_address for p in self.participants]

    def open_round(
        self,
        round_id: int,
        members: Sequence[LedgerClient] | None = None,
        *,
        commit_in: int = 100,
        unmask_in: int = 200,
    ) -> TxReceipt:
        now = block_timestamp(self.w3)
        chosen = self.participants if members is None else members
        return self.aggregator.open_round(
            round_id,
            model_hash=digest(f"model {round_id}"),
            config_hash=digest("config"),
            commit_deadline=now + commit_in,
            unmask_deadline=now + unmask_in,
            participants=[m.sender_address for m in chosen],
        )

    def pass_deadline(self, round_id: int, which: str = "commit") -> None:
        """Make the next block come after the round's commit (or unmask) deadline."""
        info = self.aggregator.round_info(round_id)
        deadline = info.commit_deadline if which == "commit" else info.unmask_deadline
        advance_time(self.w3, deadline + 1 - block_timestamp(self.w3))

    def advertise(self, member: LedgerClient, round_id: int) -> TxReceipt:
        who = member.sender_address
        return member.advertise_keys(
            round_id,
            encryption_key=digest(f"c {who} {round_id}"),
            masking_key=digest(f"s {who} {round_id}"),
            seed_commitment=digest(f"H(b) {who} {round_id}"),
        )

    @staticmethod
    def share_hashes(owner: str, holder: str) -> dict[str, bytes]:
        """Stand-in hashes of the b-share and s-share ``owner`` gave ``holder``."""
        return {
            "b_share_hash": share_hash(f"b {owner} {holder}".encode()),
            "s_share_hash": share_hash(f"s {owner} {holder}".encode()),
        }

    def leaf(self, owner: LedgerClient, round_id: int, holder: str) -> bytes:
        """The leaf of ``owner``'s honest share tree for ``holder``."""
        o = owner.sender_address
        return owner.share_leaf(round_id, owner=o, holder=holder, **self.share_hashes(o, holder))

    def share_tree(self, owner: LedgerClient, round_id: int) -> MerkleTree:
        """The owner's tree over one (b-share, s-share) pair per participant of the round."""
        holders = self.aggregator.round_participants(round_id)
        return MerkleTree.from_leaves(self.leaf(owner, round_id, h) for h in holders)

    def commit(self, member: LedgerClient, round_id: int, epsilon: float = 1.0) -> TxReceipt:
        return member.commit(
            round_id,
            blob_hash=digest(f"blob {member.sender_address} {round_id}"),
            share_root=self.share_tree(member, round_id).root,
            cumulative_epsilon=epsilon_to_fixed(epsilon),
        )


@pytest.fixture
def node_tools() -> Path:
    """The contracts/ folder, when Node and its installed packages are available."""
    reason = node_tools_missing()
    if reason is not None:
        pytest.skip(reason)
    return CONTRACTS


@pytest.fixture(scope="session")
def _deployed() -> tuple[Consortium, int]:
    """Deploy and register once per session; each test starts from this snapshot."""
    w3 = embedded_web3()
    accounts = list(w3.eth.accounts)
    admin = LedgerClient.deploy(w3, admin=accounts[0], epsilon_cap=CAP, reward_per_round=REWARD)
    admin.grant_role("AGGREGATOR_ROLE", accounts[1])
    admin.grant_role("VALIDATOR_ROLE", accounts[2])
    participants = [admin.as_sender(a) for a in accounts[3:8]]
    for p in participants:
        admin.register(p.sender_address, digest(f"ed25519 {p.sender_address}"))
    consortium = Consortium(
        w3=w3,
        admin=admin,
        aggregator=admin.as_sender(accounts[1]),
        validator=admin.as_sender(accounts[2]),
        participants=participants,
        outsider=admin.as_sender(accounts[9]),
    )
    return consortium, w3.provider.ethereum_tester.take_snapshot()  # type: ignore[attr-defined]


@pytest.fixture
def consortium(_deployed: tuple[Consortium, int]) -> Consortium:
    """A freshly deployed consortium: the session's chain reverted to just after setup."""
    deployed, snapshot = _deployed
    deployed.w3.provider.ethereum_tester.revert_to_snapshot(snapshot)  # type: ignore[attr-defined]
    parties = [deployed.admin, deployed.aggregator, deployed.validator, deployed.outsider]
    for party in [*parties, *deployed.participants]:
        party.forget_events()  # the chain was rewound: what they read of it is gone
    return deployed


@pytest.fixture
def anvil_process(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start anvil on 127.0.0.1 at a port it picks itself; always stop it.

    Its output goes to a file, not a pipe, so a chatty node can never block on a full pipe.
    """
    if not ANVIL.is_file():
        pytest.skip(f"anvil is absent ({ANVIL}): run `npm ci --prefix contracts`")
    log = tmp_path / "anvil.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", "0", "--accounts", "3"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    proc.url = _wait_for_listening(proc, log)  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def anvil_url(anvil_process: subprocess.Popen[bytes]) -> str:
    """The JSON-RPC URL of the test's anvil node."""
    return str(anvil_process.url)  # type: ignore[attr-defined]


def _wait_for_listening(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"Listening on (\S+)", log.read_text(errors="replace"))
        if found:
            return "http://" + found.group(1)
        time.sleep(0.05)
    pytest.fail("anvil did not start:\n" + log.read_text(errors="replace")[-2000:])
