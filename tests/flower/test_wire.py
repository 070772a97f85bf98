"""What a node and the server read from a Flower message is bounded by the bytes present
(issue 18, item 3): inflated lengths and truncations are refused by name, in milliseconds."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="flwr is not installed: pip install -e '.[flower]'")

from flower.nodes import join_session, start_node, write_policy
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from secagg.config import load_config
from secagg.errors import ConfigError, TamperedMessageError
from secagg.flower import wire
from secagg.flower.node import config_from_text
from secagg.masking.messages import AdvertiseKeysRequest

HOSPITALS = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"


def _blob_message(array: Array) -> RecordDict:
    return RecordDict(
        {wire.META: ConfigRecord({"round": 0}), wire.BLOBS: ArrayRecord({"x": array})}
    )


def _npy(shape: tuple[int, ...], payload: bytes, dtype: str = "|u1") -> bytes:
    """A .npy header declaring ``shape``, followed by ``payload`` (whatever its length)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return header.getvalue() + payload


def test_a_blob_declaring_two_to_the_44_bytes_is_refused_before_anything_is_allocated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An 83-byte-class frame claiming 2^44 bytes: refused from its header; decoded the way
    Flower's ``Array.numpy()`` does it, the same frame asks for 16 TiB at once."""
    huge = Array(dtype="uint8", shape=(2**44,), stype="numpy.ndarray", data=_npy((2**44,), b"x"))
    with pytest.raises(TamperedMessageError, match="declares 17592186044416 bytes, 1 are present"):
        wire.unpack(_blob_message(huge))

    monkeypatch.setattr(wire, "array_bytes", lambda name, array: array.numpy().tobytes())
    with pytest.raises(MemoryError):  # not ours, not named: the allocation itself
        wire.unpack(_blob_message(huge))


@pytest.mark.parametrize(
    ("shape", "data", "why"),
    [
        ((100,), _npy((100,), bytes(50)), "declares 100 bytes, 50 are present"),
        ((100,), _npy((100,), bytes(150)), "declares 100 bytes, 150 are present"),
        ((50,), _npy((100,), bytes(100)), "its header declares (100,)"),
        ((100,), _npy((100,), bytes(400), "<f4"), "header declares (100,) float32"),
        ((10, 10), _npy((10, 10), bytes(100)), "is not one byte string"),
        ((100,), b"\x93NUMPY\x01\x00\xff\xff{", "bad .npy header"),
        ((100,), b"", "bad .npy header"),
    ],
)
def test_a_truncated_or_inconsistent_blob_is_refused_by_name(
    shape: tuple[int, ...], data: bytes, why: str
) -> None:
    array = Array(dtype="uint8", shape=shape, stype="numpy.ndarray", data=data)
    with pytest.raises(TamperedMessageError, match=why.replace("(", r"\(").replace(")", r"\)")):
        wire.unpack(_blob_message(array))


def test_vectors_and_meta_values_are_checked_against_what_the_reader_expects() -> None:
    with pytest.raises(TamperedMessageError, match="has 41 bytes"):
        wire.from_f32(bytes(41))
    with pytest.raises(TamperedMessageError, match="expected 11 values"):
        wire.from_f32(bytes(40), 11)
    np.testing.assert_array_equal(wire.from_f64(bytes(16), 2), np.zeros(2))
    with pytest.raises(TamperedMessageError, match="round"):
        wire.meta_int({"round": "3"}, "round")
    with pytest.raises(TamperedMessageError, match="top_weight"):
        wire.meta_number({"top_weight": float("nan")}, "top_weight")
    with pytest.raises(TamperedMessageError, match="an id appears twice"):
        wire.meta_ids({"ids": "0,1,1"}, "ids", limit=10)
    with pytest.raises(TamperedMessageError, match="at most 10 comma-separated ids"):
        wire.meta_ids({"ids": ",".join(map(str, range(11)))}, "ids", limit=10)
    with pytest.raises(TamperedMessageError, match="at most 210 characters"):
        wire.meta_ids({"ids": "1" * 10**6}, "ids", limit=10)  # bounded before it is split
    assert wire.meta_ids({"ids": "3,0,2"}, "ids", limit=10) == [0, 2, 3]
    with pytest.raises(TamperedMessageError, match="no 'params' blob"):
        wire.blob({}, "params")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_from_text('[run]\nname = "unterminated')


def test_a_node_refuses_malformed_messages_by_name_before_training(tmp_path: Path) -> None:
    """A node's parameters one float short, its masking request truncated, its setup listing
    an id twice: each a TamperedMessageError before the round trains, so a coordinator cannot
    make a node spend budget on a round whose message it then fails to parse."""
    config = load_config(
        HOSPITALS,
        [
            "data.clients=4",
            "run.rounds=3",
            "protection.mode=secagg+",
            "ledger.enabled=false",
            "protection.consistency=none",
        ],
    )
    policy = write_policy(tmp_path, privacy={"mode": "local-dp", "max_epsilon": 3.0, "delta": 1e-5})
    node = start_node(policy, config)
    join_session(node)
    params = node.federation.initial_params()
    request = AdvertiseKeysRequest(0, 1, 1, bytes(32)).to_bytes()

    def send(params: np.ndarray, request: bytes) -> None:
        meta = {"round": 0, "top_weight": 1e6}
        node.on_train(meta, {"params": wire.f32(params), "request": request})

    with pytest.raises(TamperedMessageError, match="expected 62 values"):
        send(params[:-1], request)
    with pytest.raises(TamperedMessageError, match="truncated"):
        send(params, request[:-3])
    with pytest.raises(TamperedMessageError, match="appears twice"):
        node.on_setup({"client_ids": "0,1,1,2"})
    assert not (tmp_path / "state" / "budget.json").exists()  # no round was spent


def test_the_server_checks_what_a_node_states_about_itself(tmp_path: Path) -> None:
    """A node's setup facts feed the weights, the metrics and the ledger: a node stating them
    malformed stays out of the run (named), instead of crashing the coordinator."""
    from secagg.flower.server_app import _check_facts, _states_training

    config = load_config(HOSPITALS, ["data.clients=4", "ledger.enabled=false"])
    config.protection.mode = "none"
    node = start_node(write_policy(tmp_path, privacy={"mode": "none"}), config)
    facts, _ = node.on_setup({"client_ids": "0,1,2,3"})
    _check_facts(facts)
    for lie in ({"train_samples": "45"}, {"sample_rate": 2.0}, {"noise_multiplier": -1.0}):
        with pytest.raises(TamperedMessageError, match=next(iter(lie))):
            _check_facts({**facts, **lie})
    with pytest.raises(TamperedMessageError, match="name"):
        _check_facts({k: v for k, v in facts.items() if k != "name"})
    assert _states_training({"train_loss": 0.3, "epsilon": None})
    assert not _states_training({"train_loss": "0.3"})
    assert not _states_training({"train_loss": 0.3, "epsilon": "lots"})
