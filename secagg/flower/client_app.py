"""The ClientApp: Flower messages in, :class:`~secagg.flower.node.HospitalNode` calls, replies out.

Message types (the server app sends them in this order each run):

- ``query.setup``: the run's config; the node builds its trainer and keys, replies its public
  facts (sample count, DP schedule, identity and chain address, HE public key if it holds it,
  masking: its commitment to a fresh session nonce);
- ``query.session`` (masking, twice): the table of every node's commitment to its session
  nonce in, its nonce out; then the table of nonces in (:mod:`secagg.masking.session`);
- ``train`` (once per round): global parameters, plus the first masking message of the round
  (AdvertiseKeysRequest); the node trains, encodes, protects and replies with its first
  protocol message (AdvertiseKeys, a ciphertext, or the plain update);
- ``query.masking``: one masking message in, the state machine's reply out;
- ``query.attest`` (HE): the round's signed ciphertexts in (or, with the ledger, read from the
  chain and the store), the node's co-signature on their sum out (or on chain);
- ``query.decrypt`` (HE key holder only): an attested sum in, the plaintext out;
- ``query.finish``: the run is over.

The node's state lives in this process between messages (see :mod:`secagg.flower.worker`):
a node that is started as a one-message subprocess refuses ``query.masking`` by name. What it
has spent lives on its disk (:mod:`secagg.flower.budget`).

A node that refuses a setup or a round (its policy forbids it: a
:class:`~secagg.errors.PolicyError`, or any other named :class:`~secagg.errors.SecAggError`)
replies with its client id and ``refused = "<ErrorName>: <message>"`` instead of an update:
the server counts it as a dropout and records why.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from secagg.errors import ConfigError, SecAggError
from secagg.flower import wire
from secagg.flower.node import HospitalNode, NodeSettings, config_from_text
from secagg.flower.policy import NodePolicy

app = ClientApp()

#: run id -> this node's state for that run (in memory only)
_NODES: dict[int, HospitalNode] = {}


def _node(context: Context) -> HospitalNode:
    node = _NODES.get(context.run_id)
    if node is None:
        raise RuntimeError(
            f"run {context.run_id}: no setup message reached this node's ClientApp process; "
            "run the node with flower-supernode --isolation process and `python -m "
            "secagg.flower.worker` (see secagg deploy), which keeps the node's state in memory"
        )
    return node


def _reply(
    message: Message, meta: dict[str, Any], blobs: dict[str, bytes] | None = None
) -> Message:
    return Message(wire.pack(meta, blobs), reply_to=message)


def _client_id(settings: NodeSettings) -> int | None:
    """The node's client id, from its node config or its policy file, if either says."""
    if settings.client_id is not None:
        return settings.client_id
    try:
        return NodePolicy.load(settings).client_id
    except SecAggError:
        return None


def _refusal(message: Message, client_id: int, exc: SecAggError) -> Message:
    return _reply(message, {"client_id": client_id, "refused": f"{type(exc).__name__}: {exc}"})


@app.query("setup")
def setup(message: Message, context: Context) -> Message:
    settings = NodeSettings.from_node_config(dict(context.node_config))
    _NODES.clear()  # one run at a time per node; an earlier run's secrets go now
    try:
        meta, blobs = wire.unpack(message.content)
        try:
            text = wire.blob(blobs, "config").decode()
        except UnicodeDecodeError:
            raise ConfigError("the run config sent is not UTF-8 text") from None
        node = HospitalNode(settings, config_from_text(text))
        info, out = node.on_setup(meta)
    except SecAggError as exc:
        client_id = _client_id(settings)
        if client_id is None:
            raise  # no id to answer for: the server sees an error reply
        return _refusal(message, client_id, exc)
    _NODES[context.run_id] = node
    return _reply(message, info, out)


@app.train()
def train(message: Message, context: Context) -> Message:
    node = _node(context)
    try:
        meta, blobs = wire.unpack(message.content)
        info, out = node.on_train(meta, blobs)
    except SecAggError as exc:
        return _refusal(message, node.id, exc)
    return _reply(message, info, out)


@app.query("session")
def session(message: Message, context: Context) -> Message:
    _, blobs = wire.unpack(message.content)
    node = _node(context)
    return _reply(message, {"client_id": node.id}, node.on_session(blobs))


@app.query("masking")
def masking(message: Message, context: Context) -> Message:
    _, blobs = wire.unpack(message.content)
    node = _node(context)
    return _reply(message, {"client_id": node.id}, node.on_masking(blobs))


@app.query("attest")
def attest(message: Message, context: Context) -> Message:
    meta, blobs = wire.unpack(message.content)
    node = _node(context)
    return _reply(message, {"client_id": node.id}, node.on_attest(meta, blobs))


@app.query("decrypt")
def decrypt(message: Message, context: Context) -> Message:
    meta, blobs = wire.unpack(message.content)
    node = _node(context)
    return _reply(message, {"client_id": node.id}, node.on_decrypt(meta, blobs))


@app.query("finish")
def finish(message: Message, context: Context) -> Message:
    meta, _ = wire.unpack(message.content)
    reply = _node(context).on_finish(meta)
    _NODES.pop(context.run_id, None)
    return _reply(message, reply)
