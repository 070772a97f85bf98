"""The SecAgg+ neighbour graph: a Harary graph laid on a seeded random ring (Bell et al. 2020).

Clients are placed on a ring in an order derived from the run's session and the round id;
each is connected to the ``k/2`` clients on either side. Why this shape: removing clients
disconnects the survivors only if two separate runs of ``k/2`` consecutive ring positions are
all removed, which is what makes a degree of O(log n) enough (see
:mod:`secagg.masking.params`). ``k = n - 1`` is the complete graph of the original SecAgg.

The seed is public, so the ordering need not be secret: sorting by SHA-256(seed, round, id)
is simply a deterministic, uniformly spread permutation every party computes identically. The
seed must be fixed only after the participants are, by no one of them: the session
(:mod:`secagg.masking.session`) is such a seed, so colluders cannot choose where they sit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from secagg.crypto.kdf import encode_context
from secagg.errors import ProtocolError

_ORDER_LABEL = b"secagg/v1/graph-order"


@dataclass(frozen=True)
class NeighborGraph:
    """Who exchanges masks and shares with whom in one round (an undirected regular graph).

    ``ring`` is the seeded ring order the graph was laid on; besides defining the graph it
    lets the server pick the same share holders for neighbouring owners (see the server).
    """

    degree: int
    ring: tuple[int, ...]
    adjacency: Mapping[int, frozenset[int]]

    @property
    def is_complete(self) -> bool:
        return self.degree == len(self.adjacency) - 1

    def neighbors(self, client: int) -> frozenset[int]:
        """Clients ``client`` shares masks with (never itself)."""
        try:
            return self.adjacency[client]
        except KeyError:
            raise ProtocolError(f"client {client} is not in this round's graph") from None

    def neighborhood(self, client: int) -> frozenset[int]:
        """Holders of ``client``'s Shamir shares: its neighbours and itself."""
        return self.neighbors(client) | {client}

    def ring_offset(self, origin: int, client: int) -> int:
        """Signed distance from ``origin`` to ``client`` along the ring, in [-n/2, n/2)."""
        n = len(self.ring)
        positions = self._positions
        return (positions[client] - positions[origin] + n // 2) % n - n // 2

    def connects(self, survivors: Iterable[int]) -> bool:
        """Whether the survivors' subgraph is connected, i.e. only their whole sum unmasks.

        Masks between two survivors are never revealed, so the sums a server can unmask are
        those of the connected pieces of this subgraph. On the ring, two survivors that
        follow each other (in ring order, among survivors) are adjacent exactly when at most
        k/2 positions apart, so the subgraph falls apart exactly when two such gaps are wider.
        """
        if self.is_complete:
            return True
        positions = np.sort(np.fromiter((self._positions[c] for c in survivors), dtype=np.int64))
        if positions.size <= 1:
            return True
        gaps = np.diff(positions, append=positions[0] + len(self.ring))
        return int(np.count_nonzero(gaps > self.degree // 2)) <= 1

    @cached_property
    def _positions(self) -> dict[int, int]:
        return {client: i for i, client in enumerate(self.ring)}


def ring_order(client_ids: Iterable[int], seed: bytes, round_id: int) -> list[int]:
    """The clients in ring order for this (seed, round); the same on every machine."""
    prefix = encode_context(_ORDER_LABEL, round_id, len(seed)) + seed

    def position(client: int) -> bytes:
        return hashlib.sha256(prefix + client.to_bytes(8, "big")).digest()

    return sorted(client_ids, key=position)


def harary_graph(
    client_ids: Iterable[int], degree: int, seed: bytes, round_id: int
) -> NeighborGraph:
    """The degree-``k`` Harary graph on the seeded ring (complete when ``k = n - 1``)."""
    ring = ring_order(client_ids, seed, round_id)
    n = len(ring)
    if degree == n - 1:
        everyone = frozenset(ring)
        return NeighborGraph(degree, tuple(ring), {c: everyone - {c} for c in ring})
    if degree < 2 or degree % 2 or degree >= n:
        raise ProtocolError(
            f"a Harary ring graph on {n} clients needs an even degree in [2, {n - 2}] "
            f"or the complete graph (degree {n - 1}); got {degree}"
        )
    half = degree // 2
    adjacency = {
        client: frozenset(ring[(i + j) % n] for j in range(-half, half + 1) if j)
        for i, client in enumerate(ring)
    }
    return NeighborGraph(degree, tuple(ring), adjacency)
