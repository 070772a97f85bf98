"""The server's transport: send one message per node, collect replies until a deadline.

This is where the in-process runner's "close each phase after all live clients have spoken"
becomes a real deadline: a phase closes when every addressed node has replied or when
``timeout`` seconds have passed, whichever comes first; a node that has not replied by then
is silent for the protocol (a dropout). Replies that are Flower errors (the node's ClientApp
raised, or the SuperLink reports the node unreachable) count as silence too.

Polling is short (Flower's ``Grid.send_and_receive`` sleeps 3 s between pulls; a masking
round has four or five exchanges).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from secagg.flower import wire

POLL_SECONDS = 0.1
log = logging.getLogger("secagg.flower")


@dataclass
class Reply:
    """One node's reply: its meta, its blobs, and the bytes it cost."""

    meta: dict[str, Any]
    blobs: dict[str, bytes]
    payload_bytes: int
    framed_bytes: int | None


@dataclass
class Traffic:
    """Bytes per client id in one round, both directions (payload and Flower-framed)."""

    sent: dict[int, int] = field(default_factory=dict)
    received: dict[int, int] = field(default_factory=dict)
    sent_framed: dict[int, int] = field(default_factory=dict)
    received_framed: dict[int, int] = field(default_factory=dict)

    def add(self, table: dict[int, int], client: int, n: int | None) -> None:
        if n is not None:
            table[client] = table.get(client, 0) + n


class Exchange:
    """Send and collect over a Flower :class:`~flwr.serverapp.Grid`."""

    def __init__(self, grid: Any, timeout: float) -> None:
        self.grid = grid
        self.timeout = timeout

    def round_trip(
        self,
        outgoing: Mapping[int, tuple[int, Any]],
        message_type: str,
        group: str,
        traffic: Traffic | None = None,
    ) -> dict[int, Reply]:
        """``outgoing``: client id -> (node id, RecordDict). Returns client id -> reply."""
        from flwr.app import Message

        pending: dict[str, int] = {}
        messages = []
        for client, (node_id, content) in outgoing.items():
            message = Message(
                content, dst_node_id=node_id, message_type=message_type, group_id=group
            )
            if traffic is not None:
                _, blobs = wire.unpack(content)
                traffic.add(traffic.received, client, wire.payload_bytes(blobs))
                traffic.add(traffic.received_framed, client, wire.framed_bytes(message))
            messages.append((client, message))
        try:
            ids = list(self.grid.push_messages([m for _, m in messages]))
        except Exception as exc:  # a node gone from the SuperLink: push the others one by one
            log.warning("pushing %s messages failed (%s); pushing one at a time", message_type, exc)
            ids = []
            for _, m in messages:
                try:
                    ids.extend(self.grid.push_messages([m]))
                except Exception:
                    ids.append("")
        for (client, _), message_id in zip(messages, ids, strict=True):
            if message_id:
                pending[message_id] = client
        replies: dict[int, Reply] = {}
        deadline = time.monotonic() + self.timeout
        while pending and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(list(pending)):
                if reply.metadata.reply_to_message_id not in pending:
                    continue
                client = pending.pop(reply.metadata.reply_to_message_id)
                if reply.has_error():
                    log.warning("client %s replied with an error: %s", client, reply.error.reason)
                    continue
                meta, blobs = wire.unpack(reply.content)
                claimed = meta.get("client_id")
                if isinstance(claimed, bool) or not isinstance(claimed, int) or claimed != client:
                    log.warning("a reply for client %s claims to be from %s", client, meta)
                    continue
                replies[client] = Reply(
                    meta, blobs, wire.payload_bytes(blobs), wire.framed_bytes(reply)
                )
                if traffic is not None:
                    traffic.add(traffic.sent, client, replies[client].payload_bytes)
                    traffic.add(traffic.sent_framed, client, replies[client].framed_bytes)
            if pending:
                time.sleep(POLL_SECONDS)
        return replies
