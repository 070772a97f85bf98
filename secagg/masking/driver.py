"""A thin in-process runner: one server and n clients exchanging real bytes in memory.

The simulation engine and the benchmarks use :func:`run_round`. Every message is serialised
with ``to_bytes`` and parsed back with the ``decode_*`` functions, exactly as over a network,
so the byte counts are the protocol's real wire sizes. Dropouts are scripted: a client listed
under a phase goes silent just before sending that phase's message and stays silent; closing
each phase after all live clients have spoken plays the role of the deadline.

Times are CPU seconds (``time.process_time`` plus the CPU time of finished child processes,
e.g. the worker that rebuilds half of the pair masks in :func:`secagg.masking.unmask.
remove_masks`) so that other load on the machine does not inflate them and parallel work is
not hidden; client times include decoding the request and encoding the reply.

With ``trace_server_memory=True`` the runner also measures the server's memory with
:mod:`tracemalloc`: every allocation made (and not freed) inside the server's turns, i.e.
decoding client messages, ``receive``, ``close_phase`` and encoding its replies, counts as
the server's, and the peak is the largest "retained so far + transient peak of one turn".
Tracing slows every party down, so a benchmark measures memory in a round of its own.

A :class:`Board` is the seam for a public record of the round (the ledger): it sees every
client message as it is sent and may refuse it (a commit the contract rejects), and it
decides what each client reads (keys and the survivor set from the chain rather than from
the server). Without one, the server relays everything, as in the paper.
"""

from __future__ import annotations

import contextlib
import resource
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from secagg.crypto.identity import IdentityKey
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
from secagg.masking.session import SessionClient


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
    #: phase -> server wall-clock seconds (below the CPU time when a worker process helps)
    server_wall_seconds: dict[str, float]
    inconsistent_holders: dict[int, list[int]]  # holder -> owners whose share it sent wrong
    #: peak bytes allocated by the server's turns (trace_server_memory=True), else None
    server_peak_bytes: int | None = None


class _ServerMemory:
    """tracemalloc accounting of the server's turns (see the module docstring)."""

    def __init__(self) -> None:
        self.retained = 0
        self.peak = 0
        self._before = 0

    def __enter__(self) -> _ServerMemory:
        self._before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        return self

    def __exit__(self, *exc: object) -> None:
        current, peak = tracemalloc.get_traced_memory()
        self.peak = max(self.peak, self.retained + peak - self._before)
        self.retained += current - self._before


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished (reaped) child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


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
    identities: Mapping[int, IdentityKey] | None = None,
    board: Board | None = None,
    sessions: Mapping[int, SessionClient] | None = None,
    trace_server_memory: bool = False,
) -> MaskedRoundResult:
    """Run one full masking round in memory; raises BelowThresholdError when it must abort.

    ``identities`` holds each client's identity key; a signed round (``params.identities``)
    needs it. ``board``: a public record of the round (see the module docstring).
    ``sessions``: each client's :class:`~secagg.masking.session.SessionClient`, which opens
    its round (checking the session and that the round id is new); without them the clients
    take ``params`` as given (tests and benchmarks of one round).
    ``trace_server_memory``: measure the server's peak memory (module docstring).
    """
    memory = _ServerMemory() if trace_server_memory else None
    tracing = memory is not None and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    try:
        return _run_round(inputs, params, dropouts, identities, board, sessions, memory)
    finally:
        if tracing:
            tracemalloc.stop()


def _run_round(
    inputs: Mapping[int, np.ndarray],
    params: MaskingParams,
    dropouts: Mapping[str, Collection[int]] | None,
    identities: Mapping[int, IdentityKey] | None,
    board: Board | None,
    sessions: Mapping[int, SessionClient] | None,
    memory: _ServerMemory | None,
) -> MaskedRoundResult:
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
    clients = {
        c: MaskingClient(c, params, inputs[c], keys.get(c))
        if sessions is None
        else sessions[c].open_round(params, inputs[c], keys.get(c))
        for c in params.client_ids
    }
    server = MaskingServer(params)
    sent: dict[int, int] = dict.fromkeys(params.client_ids, 0)
    received: dict[int, int] = dict.fromkeys(params.client_ids, 0)
    client_cpu: dict[str, list[float]] = defaultdict(list)
    server_cpu: dict[str, float] = {}
    server_wall: dict[str, float] = {}

    def server_turn() -> contextlib.AbstractContextManager[object]:
        return memory if memory is not None else contextlib.nullcontext()

    start, wall = cpu_seconds(), time.perf_counter()
    with server_turn():
        outbox = {c: m.to_bytes() for c, m in server.start().items()}
    server_cpu[params.phases[0]] = cpu_seconds() - start
    server_wall[params.phases[0]] = time.perf_counter() - wall

    refused: set[int] = set()  # clients whose message the board refused: silent from then on
    for phase in params.phases:
        silent = silent_by_phase[phase] | refused
        server_time = server_clock = 0.0
        for client_id, data in outbox.items():
            if client_id in silent:
                continue
            received[client_id] += len(data)
            start = cpu_seconds()
            request = decode_server_message(data)
            if board is not None:
                request = board.deliver(client_id, request)
            messages = clients[client_id].handle(request)
            encoded = [m.to_bytes() for m in messages]
            client_cpu[phase].append(cpu_seconds() - start)
            if board is not None and not all(
                board.publish(clients[client_id], m, b)
                for m, b in zip(messages, encoded, strict=True)
            ):
                refused.add(client_id)
                continue
            sent[client_id] += sum(map(len, encoded))
            # The server consumes each reply as it arrives: memory stays O(dim), not O(n dim).
            start, wall = cpu_seconds(), time.perf_counter()
            with server_turn():
                for reply in encoded:
                    server.receive(decode_client_message(reply))
            server_time += cpu_seconds() - start
            server_clock += time.perf_counter() - wall
        start, wall = cpu_seconds(), time.perf_counter()
        with server_turn():
            outbox = {}  # the old outbox is freed inside the server's turn
            outbox = {c: m.to_bytes() for c, m in server.close_phase().items()}
        server_time += cpu_seconds() - start
        server_clock += time.perf_counter() - wall
        server_cpu[phase] = server_cpu.get(phase, 0.0) + server_time
        server_wall[phase] = server_wall.get(phase, 0.0) + server_clock

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
        server_wall_seconds=server_wall,
        inconsistent_holders=result.inconsistent_holders,
        server_peak_bytes=None if memory is None else memory.peak,
    )
