"""The sample registry: FedAvg weights are capped at the counts clients registered."""

from __future__ import annotations

import pytest

from secagg.aggregation import SampleRegistry
from secagg.errors import UnregisteredWeightError

REGISTRY = SampleRegistry({0: 40, 1: 100, 2: 7})


def test_a_declaration_within_the_registration_is_the_weight() -> None:
    admitted = REGISTRY.admit({0: 40.0, 1: 60.0, 2: 7.0})
    assert admitted.weights == {0: 40.0, 1: 60.0, 2: 7.0}  # fewer samples only shrink a weight
    assert admitted.capped == {}


@pytest.mark.parametrize("declared", [1e6, float("inf"), float("nan"), 0.0, -40.0, True])
def test_any_other_declaration_counts_as_the_registered_count_and_is_named(
    declared: float,
) -> None:
    admitted = REGISTRY.admit({0: declared, 1: 100.0})
    assert admitted.weights == {0: 40.0, 1: 100.0}
    assert set(admitted.capped) == {0}
    assert admitted.capped[0].startswith("UnregisteredWeightError: client 0 declared")
    assert "counted as its registered 40" in admitted.capped[0]


def test_a_client_that_never_registered_is_refused() -> None:
    with pytest.raises(UnregisteredWeightError, match="client 3 declares a FedAvg weight but"):
        REGISTRY.admit({3: 10.0})


@pytest.mark.parametrize("counts", [{}, {0: 0}, {0: -1}, {0: float("nan")}])
def test_a_registration_must_be_positive_counts(counts: dict[int, float]) -> None:
    with pytest.raises(UnregisteredWeightError):
        SampleRegistry(counts)
