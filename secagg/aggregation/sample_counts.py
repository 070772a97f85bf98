"""FedAvg weights from the sample counts clients registered, not from what they say each round.

FedAvg weighs each update by its client's training-sample count, and a client declares that
count in the clear: no protection mode can check it against data the server never sees. A
client that declares 10^6 samples beside hospitals of 100 *is* the mean. In plaintext FedAvg
it moves the model by its whole update; under norm bounding by nearly ``max_norm`` alone;
under masking and HE its encoding stays inside every range the server checks, so even
per-client range proofs would not see it.

So a count is fixed once, when the client registers: a consortium checks it out of band; the
simulation registers the size of the data each client is set up with; a Flower coordinator
registers what each node reports at setup. Each round's declaration is then capped at the
registered count (:meth:`SampleRegistry.admit`), and the round record names who was capped.
A client may declare *fewer* samples than it registered: that only shrinks its own weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real

from secagg.errors import UnregisteredWeightError


@dataclass(frozen=True)
class AdmittedWeights:
    """One round's FedAvg weights after the registry, and why any declaration was not used."""

    weights: dict[int, float]
    #: client -> "UnregisteredWeightError: ..." for each declaration replaced by its registration
    capped: dict[int, str] = field(default_factory=dict)


class SampleRegistry:
    """Each client's training-sample count, fixed at registration: the most weight it may claim."""

    def __init__(self, counts: Mapping[int, float]) -> None:
        if not counts:
            raise UnregisteredWeightError(
                "a sample registry needs at least one client's count; register every client "
                "of the federation before its first round"
            )
        for client, count in counts.items():
            if not _positive_count(count):
                raise UnregisteredWeightError(
                    f"client {client} registered {count!r} training samples; a registered "
                    "count must be a positive number"
                )
        self._counts = {c: float(n) for c, n in counts.items()}

    def registered(self, client: int) -> float:
        """``client``'s registered count; an unregistered client is refused by name."""
        try:
            return self._counts[client]
        except KeyError:
            raise UnregisteredWeightError(
                f"client {client} declares a FedAvg weight but never registered a sample "
                "count; register it before it joins a round"
            ) from None

    def check(self, client: int, declared: float) -> float:
        """``declared`` if it is a positive count within ``client``'s registration.

        Raises :class:`~secagg.errors.UnregisteredWeightError` otherwise.
        """
        registered = self.registered(client)
        if not _positive_count(declared):
            raise UnregisteredWeightError(
                f"client {client} declared {declared!r} training samples, not a positive "
                f"count; counted as its registered {registered:g}"
            )
        if declared > registered:
            raise UnregisteredWeightError(
                f"client {client} declared {declared:g} training samples, more than the "
                f"{registered:g} it registered; counted as its registered {registered:g} (a "
                "grown dataset must be registered again)"
            )
        return float(declared)

    def admit(self, declared: Mapping[int, float]) -> AdmittedWeights:
        """The round's weights: each declaration, or the registered count where it is refused.

        A declaration above the registration (or not a positive number) is replaced by the
        registered count, so a liar weighs what an honest client of its registered size
        weighs; the reason is kept for the round record. Unregistered clients are refused
        (:class:`~secagg.errors.UnregisteredWeightError`): they are not in the federation.
        """
        weights: dict[int, float] = {}
        capped: dict[int, str] = {}
        for client, count in declared.items():
            registered = self.registered(client)  # refuses the unregistered
            try:
                weights[client] = self.check(client, count)
            except UnregisteredWeightError as exc:
                weights[client] = registered
                capped[client] = f"{type(exc).__name__}: {exc}"
        return AdmittedWeights(weights, capped)


def _positive_count(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, Real)
        and math.isfinite(float(value))
        and float(value) > 0
    )
