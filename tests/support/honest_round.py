"""An honest SecAgg round driven phase by phase in memory, for tests of either party."""

from __future__ import annotations

import numpy as np

from secagg.crypto.identity import IdentityDirectory
from secagg.masking.client import MaskingClient
from secagg.masking.messages import ClientMessage, ServerMessage
from secagg.masking.params import MaskingParams
from secagg.masking.server import MaskingServer


class HonestRound:
    """n honest clients and a server; the test decides who stays silent in each phase.

    ``signed`` (the default) gives every client an identity key, so the round runs
    the consistency phase between ``masked_input`` and ``unmasking``. The parameters assume no
    colluders (``colluding_fraction``) unless asked: these rounds test the protocol's rules,
    and tests/masking/test_masking_colluders.py tests the sizing against gamma.
    """

    def __init__(
        self,
        n: int = 6,
        neighbors: int = 0,
        threshold: float = 0.6,
        *,
        round_id: int,
        dim: int = 8,
        seed: int = 0,
        session: bytes = b"",
        signed: bool = True,
        colluding_fraction: float = 0.0,
    ) -> None:
        directory, self.identities = IdentityDirectory.generate(range(n))
        self.params = MaskingParams.create(
            range(n),
            dim,
            threshold=threshold,
            neighbors=neighbors,
            round_id=round_id,
            session=session,
            colluding_fraction=colluding_fraction,
            identities=directory if signed else None,
        )
        rng = np.random.default_rng(seed)
        self.inputs = {c: rng.integers(0, 2**32, dim, dtype=np.uint32) for c in range(n)}
        self.clients = {
            c: MaskingClient(c, self.params, self.inputs[c], self.identities[c]) for c in range(n)
        }
        self.server = MaskingServer(self.params)
        self.outbox: dict[int, ServerMessage] = self.server.start()

    def replies(self, silent: frozenset[int] = frozenset()) -> dict[int, ClientMessage]:
        """Each non-silent client's reply to its pending message, not yet sent to the server."""
        return {c: self.clients[c].handle(m)[0] for c, m in self.outbox.items() if c not in silent}

    def advance(self, silent: frozenset[int] = frozenset()) -> dict[int, ServerMessage]:
        """Deliver the pending server messages, collect the replies, close the phase."""
        for client, message in self.outbox.items():
            if client not in silent:
                for reply in self.clients[client].handle(message):
                    self.server.receive(reply)
        self.outbox = self.server.close_phase()
        return self.outbox
