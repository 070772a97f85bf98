"""Which clients go silent, and when.

Dropout is a property of the clients (a hospital's link fails), not of the protection mode, so
one seeded schedule serves every mode: a plaintext run with the same seed loses exactly the same
updates as a masked run, which is what makes the two comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secagg.masking.params import PHASES


@dataclass(frozen=True)
class DropoutSchedule:
    """Clients that fall silent just before sending their message of each phase."""

    by_phase: dict[str, list[int]]

    def before_input(self) -> set[int]:
        """Clients whose update never reaches the server (dropped up to and at masked_input)."""
        lost: set[int] = set()
        for phase in PHASES[: PHASES.index("masked_input") + 1]:
            lost.update(self.by_phase.get(phase, []))
        return lost

    def all_dropped(self) -> set[int]:
        return {c for ids in self.by_phase.values() for c in ids}


def draw_schedule(
    clients: Sequence[int], rate: float, phases: Sequence[str], rng: np.random.Generator
) -> DropoutSchedule:
    """Each client still alive drops before each listed phase with probability ``rate``."""
    alive = list(clients)
    by_phase: dict[str, list[int]] = {}
    for phase in PHASES:
        if phase not in phases or rate <= 0:
            continue
        drop = rng.random(len(alive)) < rate
        by_phase[phase] = sorted(c for c, d in zip(alive, drop, strict=True) if d)
        alive = [c for c, d in zip(alive, drop, strict=True) if not d]
    return DropoutSchedule(by_phase)
