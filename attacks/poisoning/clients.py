"""Malicious clients in the real pipeline, through the engine's client seam.

:class:`Poisoners` is a client factory (:data:`secagg.simulation.clients.ClientFactory`): it
makes the chosen clients malicious and leaves the others honest. Data poisoning happens when a
malicious client is built (it trains on poisoned data through the ordinary DP trainer); update
poisoning happens once every client has trained in a round
(:meth:`Poisoners.after_training`), because the malicious clients act together: their
statistics (ALIE, min-max, ...) come from all of their honest updates at once, and from the
benign clients' updates only when the attack's ``knowledge`` is ``"omniscient"``, a threat
model that secure aggregation rules out and that the run reports (:attr:`Poisoners.sees`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from attacks.poisoning.registry import Attack
from secagg.data import ClientData
from secagg.simulation.clients import Client, HonestBuilder
from secagg.training import LocalResult


class Poisoners:
    """The malicious clients of a run, and how they poison what they send."""

    def __init__(
        self, attack: Attack, malicious: Iterable[int], *, num_clients: int, seed: int
    ) -> None:
        self.attack = attack
        self.malicious = frozenset(malicious)
        self.num_clients = num_clients
        self.seed = seed
        #: Whose updates the attack's statistics use: for the run's report.
        self.sees = "every client's updates" if attack.needs_benign else "its own clients' only"

    def __call__(self, index: int, data: ClientData, build: HonestBuilder) -> Client:
        if index in self.malicious and self.attack.poisons_data:
            data = self.attack.poison_data(data, np.random.default_rng([self.seed, index]))
        return build(data)

    def after_training(
        self, round_idx: int, results: Mapping[int, LocalResult]
    ) -> dict[int, LocalResult]:
        """Replace the malicious clients' updates by the poisoned ones (ε, weights unchanged)."""
        out = dict(results)
        mine = sorted(c for c in results if c in self.malicious)
        if not mine or not self.attack.poisons_updates:
            return out
        honest = np.stack([results[c].update for c in mine])
        benign = None
        if self.attack.needs_benign:
            benign = np.stack(
                [r.update for c, r in sorted(results.items()) if c not in self.malicious]
            )
        poisoned = self.attack.poison_updates(
            honest,
            benign=benign,
            num_clients=self.num_clients,
            rng=np.random.default_rng([self.seed, round_idx, 0xBAD]),
        )
        for c, update in zip(mine, poisoned, strict=True):
            r = results[c]
            out[c] = LocalResult(
                update.astype(np.float32), r.num_samples, r.train_loss, r.epsilon, r.steps
            )
        return out
