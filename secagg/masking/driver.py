"""A thin in-process runner: one server and n clients exchanging real bytes in memory.

The simulation engine and the benchmarks use :func:`run_round`. Every message is serialised
with ``to_bytes`` and parsed back with the ``decode_*`` functions, exactly as over a network,
so the byte counts are the protocol's real wire sizes. Dropouts are scripted: a client listed
under a phase goes silent just before sending that phase's message and stays silent; closing
each phase after all live clients have spoken plays the role of the deadline.

Times are CPU seconds (``time.process_time``) so that other load on the machine does not
inflate them; client times include decoding the request and encoding the reply.

A :class:`Board` is the seam for a public record of the round (the ledger): it sees every
client message as it is sent and may refuse it (a commit the contract rejects), and it
decides what each client reads (keys and the survivor set from the chain rather than from
the server). Without one, the server relays everything, as in the paper.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from secagg.crypto.signing import SigningKey
from secagg.errors import ProtocolError
from secagg.masking.client import MaskingClient
from secagg.masking.messages import (
    ClientMessage,
    ServerMessage,
    decode_client_message,
    decode_server_message,
)
from secagg.masking.params import MaskingParams
from secagg.masking.server import MaskingServer, UnmaskedSum


class Board(Protocol):
    """A public record the round is written to and read from (see the module docstring)."""

    def publish(self, client: MaskingClient, message: ClientMessage, data: bytes) -> bool:
        """Record what ``client`` sends; False refuses it (the client goes silent)."""
        ...

    def deliver(self, recipient: int, message: ServerMessage) -> ServerMessage:
        """What ``recipient`` reads in place of the server's ``message``."""
        ...

    def finished(self, result: UnmaskedSum) -> None:
        """Record the round's outcome."""
        ...


@dataclass
class MaskedRoundResult:
    """What a round produced and what it cost."""

    total: np.ndarray  # modular sum (uint32 or uint64, values < 2^bits) of the included inputs
    included: list[int]  # sorted ids whose inputs are in `total`
    dropped: dict[str, list[int]]  # phase -> ids that dropped before sending that phase's message
    bytes_sent: dict[int, int]  # client id -> bytes of all messages it sent
    bytes_received: dict[int, int]  # client id -> bytes of all messages delivered to it
    client_seconds: dict[str, float]  # phase -> mean CPU seconds per client that worked in it
    server_seconds: dict[str, float]  # phase -> server CPU seconds (unmasking incl. the sum)
    inconsistent_holders: dict[int, list[int]]  # holder -> owners whose share it sent wrong


def _silent_schedule(
    params: MaskingParams, dropouts: Mapping[str, Collection[int]] | None
) -> dict[str, set[int]]:
    """Per phase, the clients that have gone silent by the time they would send."""
    dropouts = dropouts or {}
    phases = params.phases
    unknown_phases = set(dropouts) - set(phases)
    if unknown_phases:
        raise ProtocolError(
            f"dropouts name phases {sorted(unknown_phases)} this round does not run; use {phases}"
        )
    silent: set[int] = set()
    schedule = {}
    for phase in phases:
        ids = set(dropouts.get(phase, ()))
        strangers = ids - params.members
        if strangers:
            raise ProtocolError(f"dropouts[{phase!r}] names non-clients {sorted(strangers)}")
        silent |= ids
        schedule[phase] = set(silent)
    return schedule


def run_round(
    inputs: Mapping[int, np.ndarray],
    params: MaskingParams,
    *,
    dropouts: Mapping[str, Collection[int]] | None = None,
    identities: Mapping[int, SigningKey] | None = None,
    board: Board | None = None,
) -> MaskedRoundResult:
    """Run one full masking round in memory; raises BelowThresholdError when it must abort.

    ``identities`` holds each client's Ed25519 key; a signed round (``params.identities``)
    needs it. ``board``: a public record of the round (see the module docstring).
    """
    if set(inputs) != params.members:
        missing = sorted(params.members - set(inputs))
        extra = sorted(set(inputs) - params.members)
        raise ProtocolError(
            f"inputs must hold one vector per client of the round; missing {missing}, "
            f"unexpected {extra}"
        )
    silent_by_phase = _silent_schedule(params, dropouts)
    if params.signed and identities is None:
        raise ProtocolError("a signed round needs every client's identity key (identities=...)")
    keys = identities or {}
    clients = {c: MaskingClient(c, params, inputs[c], keys.get(c)) for c in params.client_ids}
    server = MaskingServer(params)
    sent: dict[int, int] = dict.fromkeys(params.client_ids, 0)
    received: dict[int, int] = dict.fromkeys(params.client_ids, 0)
    client_cpu: dict[str, list[float]] = defaultdict(list)
    server_cpu: dict[str, float] = {}

    start = time.process_time()
    outbox = {c: m.to_bytes() for c, m in server.start().items()}
    server_cpu[params.phases[0]] = time.process_time() - start

    refused: set[int] = set()  # clients whose message the board refused: silent from then on
    for phase in params.phases:
        silent = silent_by_phase[phase] | refused
        server_time = 0.0
        for client_id, data in outbox.items():
            if client_id in silent:
                continue
            received[client_id] += len(data)
            start = time.process_time()
            request = decode_server_message(data)
            if board is not None:
                request = board.deliver(client_id, request)
            messages = clients[client_id].handle(request)
            encoded = [m.to_bytes() for m in messages]
            client_cpu[phase].append(time.process_time() - start)
            if board is not None and not all(
                board.publish(clients[client_id], m, b)
                for m, b in zip(messages, encoded, strict=True)
            ):
                refused.add(client_id)
                continue
            sent[client_id] += sum(map(len, encoded))
            # The server consumes each reply as it arrives: memory stays O(dim), not O(n dim).
            start = time.process_time()
            for reply in encoded:
                server.receive(decode_client_message(reply))
            server_time += time.process_time() - start
        start = time.process_time()
        outbox = {c: m.to_bytes() for c, m in server.close_phase().items()}
        server_time += time.process_time() - start
        server_cpu[phase] = server_cpu.get(phase, 0.0) + server_time

    result = server.result
    if board is not None:
        board.finished(result)
    return MaskedRoundResult(
        total=result.total,
        included=result.included,
        dropped={phase: list(ids) for phase, ids in server.dropped.items()},
        bytes_sent=sent,
        bytes_received=received,
        client_seconds={p: float(np.mean(t)) for p, t in client_cpu.items()},
        server_seconds=server_cpu,
        inconsistent_holders=result.inconsistent_holders,
    )
