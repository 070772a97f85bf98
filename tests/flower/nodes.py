"""Helpers of the node tests: a hospital's policy file, and its node built as the ClientApp does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from secagg.config import Config
from secagg.flower import wire
from secagg.flower.node import HospitalNode, NodeSettings


def write_policy(folder: Path, *, client_id: int = 0, **sections: dict[str, Any]) -> Path:
    """``folder/policy.toml`` with the given sections; [state] defaults to ``folder/state``."""
    sections.setdefault("state", {"folder": "state"})
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
    node.on_setup({"client_ids": client_ids})
    return node


def train(node: HospitalNode, round_idx: int, params: np.ndarray, **meta: Any) -> dict[str, Any]:
    """One train message without protection: the node's reply meta, with the update decoded."""
    info, blobs = node.on_train(
        {"round": round_idx, "top_weight": 1e6, **meta}, {"params": wire.f32(params)}
    )
    if "update" in blobs:
        info["update"] = wire.from_f32(blobs["update"])
    return info
