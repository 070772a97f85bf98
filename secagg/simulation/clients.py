"""Clients behind one small interface, so attacks wrap honest clients instead of the engine
growing attack flags.

The engine drives a list of :class:`Client`. An honest client is a
:class:`~secagg.training.LocalTrainer`; an attack (``attacks/``) is a :class:`Client` that
holds an honest one and changes what it trains on or what it returns. Which client is which
is decided by a :data:`ClientFactory` handed to :func:`~secagg.simulation.run_simulation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from secagg.data import ClientData
from secagg.training import LocalResult


class Client(Protocol):
    """What the engine needs of a client: one round of training, and its public facts."""

    noise_multiplier: float | None
    sample_rate: float
    steps_per_round: int

    def train(self, global_params: np.ndarray, round_idx: int) -> LocalResult:
        """Train one round from the global model; the update and the ε spent so far."""
        ...


#: Builds an honest client (a LocalTrainer with the run's model, training and privacy
#: settings and this client's seed, or the client of a noisy sum) on the data it is given.
HonestBuilder = Callable[[ClientData], "Client"]

#: Decides what client ``index`` is: ``factory(index, data, build_honest) -> Client``.
ClientFactory = Callable[[int, ClientData, HonestBuilder], Client]


@runtime_checkable
class RoundAware(Protocol):
    """A client factory whose clients act together once everyone has trained in a round
    (colluding attackers); the engine hands it every result and uses what it returns."""

    def after_training(
        self, round_idx: int, results: Mapping[int, LocalResult]
    ) -> dict[int, LocalResult]: ...


def honest(index: int, data: ClientData, build: HonestBuilder) -> Client:
    """The default factory: every client is honest."""
    return build(data)
