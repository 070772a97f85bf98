"""Helpers of the node tests: a hospital's policy file, and its node built as the ClientApp does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from secagg.config import Config
from secagg.flower import wire
from secagg.flower.node import HospitalNode, NodeSettings
from secagg.masking.messages import SessionCommit, SessionReveal, decode_session_message
from secagg.masking.session import SessionClient, SessionServer


def write_policy(folder: Path, *, client_id: int = 0, **sections: dict[str, Any]) -> Path:
    """``folder/policy.toml`` with the given sections; [state] defaults to ``folder/state``.

    Without a [protection] section the policy admits every mode and unsigned masking rounds:
    the tests that use it are about other parts of the policy; the protection floor has its
    own tests, which write the section."""
    sections.setdefault("state", {"folder": "state"})
    sections.setdefault(
        "protection",
        {"modes": ["none", "secagg", "secagg+", "ckks", "paillier"], "consistency": "none"},
    )
    sections.setdefault("identity", {})
    sections["identity"] = {"client_id": client_id, **sections["identity"]}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policy.toml"
    lines = []
    for name, body in sections.items():  # JSON spells str, int, float and bool the TOML way
        lines += [f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in body.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_node(
    policy: Path, config: Config, client_ids: str = "0,1,2,3", **node_config: Any
) -> HospitalNode:
    """A node as the ClientApp starts it on a setup message: its node config names its policy
    file (and may repeat the policy's keys the older way, e.g. ``client-id``)."""
    raw = {"client-id": 0, "policy": str(policy), **node_config}
    settings = NodeSettings.from_node_config(raw)
    node = HospitalNode(settings, config)
    node.setup_reply = node.on_setup({"client_ids": client_ids})  # type: ignore[attr-defined]
    return node


def train(node: HospitalNode, round_idx: int, params: np.ndarray, **meta: Any) -> dict[str, Any]:
    """One train message without protection: the node's reply meta, with the update decoded."""
    info, blobs = node.on_train(
        {"round": round_idx, "top_weight": 1e6, **meta}, {"params": wire.f32(params)}
    )
    if "update" in blobs:
        info["update"] = wire.from_f32(blobs["update"])
    return info


def join_session(node: HospitalNode, client_ids: list[int] | None = None) -> None:
    """Agree a masking run's session between ``node`` and in-memory peers, as the server app
    relays it (the node's setup reply carried its commitment)."""
    ids = client_ids or [0, 1, 2, 3]
    assert node.session is not None
    peers = {c: SessionClient(c, ids) for c in ids if c != node.id}
    server = SessionServer(ids)
    server.receive(_own_commit(node))
    for peer in peers.values():
        server.receive(peer.commit())
    for _ in range(2):
        for c, table in server.close_phase().items():
            if c == node.id:
                out = node.on_session({"session": table.to_bytes()})
                reply = decode_session_message(out["reveal"]) if "reveal" in out else None
            else:
                reply = peers[c].handle(table)
            if isinstance(reply, SessionReveal):
                server.receive(reply)


def _own_commit(node: HospitalNode) -> SessionCommit:
    """The commitment the node's setup reply carried."""
    _, blobs = node.setup_reply  # type: ignore[attr-defined]
    commit = decode_session_message(blobs["session_commit"])
    assert isinstance(commit, SessionCommit)
    return commit


class SumCoordinator:
    """What a coordinator computes for one node's distributed-dp rounds: the plan from the
    sizes it reports, bound to the session the node agreed (as the server app builds it), and
    each round's first masking request under it."""

    def __init__(self, node: HospitalNode, sizes: dict[int, int]) -> None:
        from secagg.flower.sum_dp import bind_plan
        from secagg.protection.noisy_sum import make_noisy_sum
        from secagg.simulation.federation import SEED_PROTECTION, derive_seed

        assert node.session is not None and node.session.session is not None
        self.node = node
        self.sizes = sizes
        self.protection = make_noisy_sum(
            node.config,
            sizes,
            node.dim,
            derive_seed(node.config.run.seed, SEED_PROTECTION),
            {},
            None,
            session=bind_plan(node.session.session, node.config_text, sizes),
        )

    def request(self, round_idx: int) -> bytes:
        from secagg.masking.messages import AdvertiseKeysRequest
        from secagg.masking.params import SERVER_ID
        from secagg.protection.masking import MaskingSum

        masking = self.protection.secure_sum
        assert isinstance(masking, MaskingSum)
        digest = masking.params(round_idx).digest
        return AdvertiseKeysRequest(round_idx, SERVER_ID, self.node.id, digest).to_bytes()

    def train(
        self,
        round_idx: int,
        params: np.ndarray,
        sizes: dict[int, int] | None = None,
        request: bytes | None = None,
    ) -> dict[str, Any]:
        """One train message (``sizes``: what it says, by default the plan's): the reply meta."""
        sent = wire.counts_text(sizes or self.sizes)
        meta = {"round": round_idx, "top_weight": 1e6, "sizes": sent}
        blobs = {
            "params": wire.f32(params),
            "request": request if request is not None else self.request(round_idx),
        }
        info, _ = self.node.on_train(meta, blobs)
        return info


def sizes_of(node: HospitalNode) -> dict[int, int]:
    """Every client's training-set size, as the nodes report them at setup."""
    return {c: d.num_samples for c, d in enumerate(node.federation.data.clients)}
