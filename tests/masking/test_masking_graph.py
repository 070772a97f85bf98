"""The SecAgg+ graph: k-regular, symmetric, deterministic from the public seed and round."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ProtocolError
from secagg.masking.graph import harary_graph, ring_order


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 80), data=st.data(), seed=st.binary(max_size=8), round_id=st.integers(0, 9))
def test_graph_is_k_regular_and_symmetric(
    n: int, data: st.DataObject, seed: bytes, round_id: int
) -> None:
    k = data.draw(st.sampled_from([n - 1, *range(2, n - 1, 2)]))
    ids = data.draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n, unique=True))
    graph = harary_graph(ids, k, seed, round_id)
    for u in ids:
        assert len(graph.neighbors(u)) == k
        assert u not in graph.neighbors(u)
        assert graph.neighborhood(u) == graph.neighbors(u) | {u}
        for v in graph.neighbors(u):
            assert u in graph.neighbors(v)


def test_complete_degree_gives_the_complete_graph() -> None:
    graph = harary_graph(range(7), 6, b"s", 0)
    assert graph.is_complete
    assert all(graph.neighbors(u) == set(range(7)) - {u} for u in range(7))


def test_graph_is_deterministic_per_seed_and_round() -> None:
    ids = list(range(50))
    assert harary_graph(ids, 6, b"seed", 3) == harary_graph(list(reversed(ids)), 6, b"seed", 3)
    assert harary_graph(ids, 6, b"seed", 3) != harary_graph(ids, 6, b"seed", 4)
    assert harary_graph(ids, 6, b"seed", 3) != harary_graph(ids, 6, b"other", 3)


def test_ring_order_is_a_permutation() -> None:
    order = ring_order(range(100), b"s", 0)
    assert sorted(order) == list(range(100))
    assert order != list(range(100))


def test_neighbours_are_the_adjacent_ring_positions() -> None:
    ring = ring_order(range(20), b"s", 1)
    graph = harary_graph(range(20), 4, b"s", 1)
    i = ring.index(0)
    assert graph.neighbors(0) == {ring[(i + d) % 20] for d in (-2, -1, 1, 2)}


@pytest.mark.parametrize("k", [0, 3, 10, 11])
def test_invalid_degrees_are_refused(k: int) -> None:
    with pytest.raises(ProtocolError, match="degree"):
        harary_graph(range(10), k, b"", 0)


def test_unknown_client_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not in this round"):
        harary_graph(range(5), 4, b"", 0).neighbors(99)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(3, 60), data=st.data())
def test_connects_agrees_with_a_plain_graph_search(n: int, data: st.DataObject) -> None:
    degree = data.draw(st.sampled_from([n - 1, *range(2, n - 1, 2)]))
    graph = harary_graph(range(n), degree, b"seed", 3)
    members = data.draw(st.sets(st.sampled_from(range(n)), min_size=1))
    seen, frontier = {min(members)}, [min(members)]
    while frontier:
        for other in graph.neighbors(frontier.pop()) & members:
            if other not in seen:
                seen.add(other)
                frontier.append(other)
    assert graph.connects(members) == (seen == members)
