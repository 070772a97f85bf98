"""A deployed node masks only under the session it agreed at this setup (issue 18, #5).

The coordinator re-sends setup (say, after aborting a run) and then opens a round with the
parameters of the earlier session, so that statements the node signed there would count
here. Played through the real node, twice: with fresh nonces at every setup the node refuses;
with the nonces made predictable (the defence off) the two setups agree the same session and
the stale round is accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="flwr is not installed: pip install -e '.[flower]'")

from flower.nodes import join_session, start_node, write_policy

from secagg.config import load_config
from secagg.errors import ProtocolError
from secagg.flower import wire
from secagg.flower.node import HospitalNode
from secagg.masking import session as session_module
from secagg.masking.messages import AdvertiseKeys, AdvertiseKeysRequest
from secagg.masking.params import SERVER_ID
from secagg.protection import HiddenFedAvg
from secagg.protection.masking import MaskingSum

HOSPITALS = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
FLOOR = {"mode": "local-dp", "max_epsilon": 6.0, "delta": 1e-5}


def _masking_node(tmp_path: Path) -> HospitalNode:
    config = load_config(
        HOSPITALS,
        [
            "data.clients=4",
            "run.rounds=3",
            "protection.mode=secagg+",
            "protection.consistency=none",
            "ledger.enabled=false",
        ],
    )
    node = start_node(write_policy(tmp_path, privacy=FLOOR), config)
    join_session(node)
    return node


def _round_0_request(node: HospitalNode) -> bytes:
    """What a coordinator sends to open round 0 under the node's current session."""
    protection = node._protection(None)
    assert isinstance(protection, HiddenFedAvg)
    secure_sum = protection.secure_sum
    assert isinstance(secure_sum, MaskingSum)
    digest = secure_sum.params(0).digest
    return AdvertiseKeysRequest(0, SERVER_ID, node.id, digest).to_bytes()


def _open_round_0(node: HospitalNode, request: bytes) -> object:
    params = node.federation.initial_params()
    meta = {"round": 0, "top_weight": 1e6}
    _, blobs = node.on_train(meta, {"params": wire.f32(params), "request": request})
    return blobs


def test_a_second_setup_draws_a_new_session_and_the_old_rounds_request_is_refused(
    tmp_path: Path,
) -> None:
    first = _masking_node(tmp_path / "a")
    stale = _round_0_request(first)
    again = _masking_node(tmp_path / "b")  # the coordinator sets the node up once more
    assert again.session is not None and first.session is not None
    assert again.session.session != first.session.session
    with pytest.raises(ProtocolError, match="digest mismatch"):
        _open_round_0(again, stale)


def test_with_predictable_nonces_a_second_setup_accepts_the_old_sessions_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "draw_nonce", lambda: bytes(32))
    first = _masking_node(tmp_path / "a")
    stale = _round_0_request(first)
    again = _masking_node(tmp_path / "b")
    blobs = _open_round_0(again, stale)
    assert isinstance(blobs, dict)
    reply = AdvertiseKeys.from_bytes(blobs["reply"])
    assert reply.sender == again.id  # it answered a round of a session it never agreed anew
