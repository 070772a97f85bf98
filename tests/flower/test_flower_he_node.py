"""The deployed HE key holder decrypts only attested sums (issue 18 item 1 through the node).

:class:`~secagg.flower.node.HospitalNode` is sans-I/O (meta and blobs in, reply out), so the
coordinator's messages are played here directly, with four real nodes: their own data,
identity files and keys, node 0 holding the HE key.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flower.nodes import write_policy

from secagg import he
from secagg.config import load_config
from secagg.errors import ProtocolError, SecAggError
from secagg.flower import wire
from secagg.flower.keys import generate_identities, read_directory
from secagg.flower.node import HospitalNode, NodeSettings
from secagg.protection import HiddenFedAvg, make_protection
from secagg.simulation.federation import Federation

HOSPITALS = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
IDS = [0, 1, 2, 3]
HOLDER, VICTIM = 0, 2


@pytest.fixture
def federation(tmp_path: Path) -> tuple[dict[int, HospitalNode], bytes, str]:
    """Four set-up nodes, the key holder's public key as it sent it, the directory's path."""
    config = load_config(
        HOSPITALS, ["protection.mode=ckks", "ledger.enabled=false", "data.clients=4"]
    )
    directory = str(generate_identities(IDS, tmp_path / "keys"))
    nodes = {}
    for c in IDS:
        policy = write_policy(
            tmp_path / f"node{c}",
            client_id=c,
            privacy={"mode": "local-dp", "max_epsilon": 3.0, "delta": 1e-5},
        )
        settings = NodeSettings.from_node_config(
            {
                "client-id": c,
                "policy": str(policy),
                "identity-key": str(tmp_path / "keys" / str(c) / "identity.key"),
                "identities": directory,
                "he-key-holder": c == HOLDER,
            }
        )
        nodes[c] = HospitalNode(settings, config)
    replies = {c: node.on_setup({"client_ids": "0,1,2,3"}) for c, node in nodes.items()}
    return nodes, replies[HOLDER][1]["he_public_key"], directory


def test_the_deployed_key_holder_never_decrypts_a_victim_padded_with_zeros(
    federation: tuple[dict[int, HospitalNode], bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator holds the public key: it adds t - 1 = 2 encryptions of zero to the
    victim's ciphertext and sends the key holder that "sum of 3", first as the bare sum the
    node used to decrypt, then inside the best attested requests it can build."""
    nodes, signed_key, directory = federation
    holder = nodes[HOLDER]
    assert holder.key_holder is not None
    public = he.load_public_key(holder.key_holder.public_bytes)
    dim = holder.dim + 1
    update = np.random.default_rng(0).uniform(-0.5, 0.5, dim)  # what the victim encrypts
    padded = public.encrypt(update)
    for _ in range(2):
        padded.add_(public.encrypt(np.zeros(dim)))
    with pytest.raises(ProtocolError, match="attested"):
        holder.on_decrypt({"round": 0, "summands": 3}, {"total": padded.serialize()})

    # The attested protocol from here on (imported here, so that on the code before it the
    # test fails above, where that code decrypted the victim's update).
    from support.he_round import padded_with_zeros, switch_off_the_gate

    from secagg.he.attest import DecryptRequest, Submission
    from secagg.protection.he import HESum

    # Round 0 for real: every node trains and signs its ciphertext, three co-sign the sum.
    params = Federation.load(holder.config).initial_params()
    train = {"round": 0, "top_weight": 1e6}
    sent = {
        c: node.on_train(train, {"params": wire.f32(params), "he_public_key": signed_key})[1]
        for c, node in nodes.items()
    }
    protection = make_protection(
        holder.config,
        holder.federation.rule(),
        IDS,
        holder.dim,
        0,
        identities=read_directory(directory),
        he_public_key=signed_key,
    )
    assert isinstance(protection, HiddenFedAvg) and isinstance(protection.secure_sum, HESum)
    server = protection.secure_sum
    aggregator = server.aggregator(0)
    for c, reply in sent.items():
        assert aggregator.receive(c, reply["submission"])
    board = {"board": aggregator.board()}
    with pytest.raises(ProtocolError, match="never looks at individual ciphertexts"):
        holder.on_attest({"round": 0}, board)
    for c in (1, 2, 3):
        aggregator.receive_attestation(c, nodes[c].on_attest({"round": 0}, board)["attestation"])
    honest = DecryptRequest.from_bytes(aggregator.decrypt_request())
    victim = Submission.from_bytes(sent[VICTIM]["submission"]).ciphertext
    fake = padded_with_zeros(server, victim, 3).serialize()
    victim_alone = replace(
        honest, entries=tuple(e for e in honest.entries if e[0] == VICTIM), signers=(), total=fake
    )
    for forged in (replace(honest, total=fake), victim_alone):
        with pytest.raises(SecAggError):
            holder.on_decrypt({"round": 0}, {"request": forged.to_bytes()})

    switch_off_the_gate(monkeypatch)  # the node's key holder as it was: any sum it is handed
    values = wire.from_f64(
        holder.on_decrypt({"round": 0}, {"request": victim_alone.to_bytes()})["values"]
    )
    secret = holder.key_holder.secret_key
    truth = secret.decrypt(public.deserialize_vector(victim))  # what the victim encrypted
    assert np.abs(values - truth).max() <= 2 * public.params.error_bound(3)
