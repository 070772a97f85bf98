"""The pieces of the Flower app that need no federation: envelope, key files, node config, CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="flwr is not installed: pip install -e '.[flower]'")


from secagg.cli import main as secagg_main
from secagg.errors import ConfigError, PolicyError
from secagg.flower import wire
from secagg.flower.keys import (
    generate_identities,
    read_directory,
    read_identity_key,
)
from secagg.flower.node import NodeSettings
from secagg.flower.policy import NodePolicy
from secagg.masking.messages import AdvertiseKeysRequest, decode_server_message


def test_our_bytes_cross_a_flower_message_unchanged() -> None:
    request = AdvertiseKeysRequest(3, 2**64 - 1, 1, bytes(range(32)))
    params = np.linspace(-1, 1, 1000, dtype=np.float32)
    content = wire.pack(
        {"round": 3, "epsilon": None, "top_weight": 40.0},
        {"request": request.to_bytes(), "params": wire.f32(params)},
    )
    meta, blobs = wire.unpack(content)
    assert meta == {"round": 3, "top_weight": 40.0}  # None values are left out
    assert decode_server_message(blobs["request"]) == request
    np.testing.assert_array_equal(wire.from_f32(blobs["params"]), params)
    assert wire.payload_bytes(blobs) == len(request.to_bytes()) + 4 * params.size
    framed = wire.framed_bytes(content)  # the records as Flower transfers them
    assert framed is not None and framed > wire.payload_bytes(blobs)


def test_key_files_private_halves_stay_private(tmp_path: Path) -> None:
    directory_path = generate_identities([0, 1, 2], tmp_path)
    directory = read_directory(directory_path)
    assert sorted(directory) == [0, 1, 2]
    for c in range(3):
        key_file = tmp_path / str(c) / "identity.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert read_identity_key(key_file).record == directory.raw(c)
    assert "private" not in directory_path.read_text()
    (tmp_path / "bad.json").write_text('{"0": "zz"}')
    with pytest.raises(ConfigError, match="hex"):
        read_directory(tmp_path / "bad.json")


def test_node_config_names_what_is_missing() -> None:
    settings = NodeSettings.from_node_config({"client-id": 2, "data-path": "/data/h2.csv"})
    assert (settings.client_id, settings.partition_id, settings.data_path) == (
        2,
        None,
        "/data/h2.csv",
    )
    assert not settings.he_key_holder and not settings.policy
    with pytest.raises(ConfigError, match="policy=<the hospital's policy file>"):
        NodeSettings.from_node_config({"data-path": "/data/h2.csv"})
    with pytest.raises(ConfigError, match="expected an integer"):
        NodeSettings.from_node_config({"client-id": "two"})
    with pytest.raises(PolicyError, match="this node has no policy"):
        NodePolicy.load(settings)


def test_a_policy_file_and_the_older_node_config_keys_complete_each_other(tmp_path: Path) -> None:
    policy = tmp_path / "hospital.toml"
    policy.write_text(
        '[identity]\nkey = "keys/identity.key"\n[data]\npartition = 1\n'
        '[privacy]\nmax_epsilon = 2.0\n[state]\nfolder = "state"\n'
    )
    raw = {
        "policy": str(policy),
        "client-id": 4,
        "identity-key": str(tmp_path / "keys/identity.key"),
    }
    resolved = NodePolicy.load(NodeSettings.from_node_config(raw))
    assert (resolved.client_id, resolved.partition_id) == (4, 1)
    assert resolved.identity_key == str(tmp_path / "keys" / "identity.key")  # relative to the file
    assert resolved.state_folder == tmp_path / "state"
    assert resolved.privacy.mode == "local-dp" and resolved.privacy.max_epsilon == 2.0
    assert resolved.ledger is None
    with pytest.raises(PolicyError, match="give it in one place"):
        NodePolicy.load(NodeSettings.from_node_config({**raw, "partition-id": 3}))
    policy.write_text("[privacy]\nmode = 'local-dp'\n[state]\nfolder = 's'\n")
    with pytest.raises(ConfigError, match="needs max_epsilon"):
        NodePolicy.load(NodeSettings.from_node_config(raw))
    policy.write_text(
        "[privacy]\nmax_epsilon = 1.0\n[ledger]\ncontract = '0x12'\n[state]\nfolder = 's'\n"
    )
    with pytest.raises(ConfigError, match=r"rpc_url is empty.*chain_id must be >= 1.*not a 0x"):
        NodePolicy.load(NodeSettings.from_node_config(raw))
    policy.write_text("[privacy]\nmax_epsilon = 1.0\nmax_epsilom = 2.0\n[state]\nfolder = 's'\n")
    with pytest.raises(ConfigError, match=r"did you mean .privacy\.max_epsilon."):
        NodePolicy.load(NodeSettings.from_node_config(raw))


def test_deploy_refuses_a_folder_with_results_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    hospitals = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
    code = secagg_main(["deploy", str(hospitals), "--output-dir", str(out)])
    assert code == 2
    assert "already holds results" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        secagg_main(["deploy", "--help"])
    assert exit_info.value.code == 0
    assert "SuperLink" in capsys.readouterr().out


def test_secagg_deploy_writes_each_node_a_policy_that_admits_its_runs(tmp_path: Path) -> None:
    from secagg.config import load_config
    from secagg.flower.deploy import admitting_floor
    from secagg.flower.policy import LedgerTrust, policy_toml

    hospitals = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
    dp = load_config(hospitals, ["privacy.delta=1e-6"])
    sigma = load_config(hospitals, ["data.clients=4"])
    sigma.privacy.target_epsilon, sigma.privacy.noise_multiplier = None, 1.2
    plain = load_config(hospitals, ["privacy.mode=none"])
    floor = admitting_floor([dp, sigma, plain])
    assert (floor.mode, floor.delta, floor.accountant) == ("none", 1e-5, "rdp")
    assert 3.0 + 3.0 < floor.max_epsilon < 3.0 + 30.0  # the target, plus σ = 1.2's schedule
    assert admitting_floor([plain]).max_epsilon is None

    contract = "0x" + "ab" * 20
    text = policy_toml(
        client_id=0,
        privacy=floor,
        state_folder="state",
        ledger=LedgerTrust("http://127.0.0.1:8545", 31337, contract),
    )
    (tmp_path / "policy.toml").write_text(text)
    loaded = NodePolicy.load(NodeSettings(policy=str(tmp_path / "policy.toml")))
    assert loaded.privacy == floor and loaded.client_id == 0 and loaded.partition_id == 0
    assert loaded.ledger == LedgerTrust("http://127.0.0.1:8545", 31337, contract)
