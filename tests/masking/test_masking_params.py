"""Round parameters: thresholds, the automatic SecAgg+ degree, and validation."""

from __future__ import annotations

import math

import pytest

from secagg.crypto.identity import IdentityDirectory
from secagg.errors import ProtocolError
from secagg.masking.params import (
    PHASES,
    MaskingParams,
    advert_tag,
    auto_degree,
    pair_mask_key,
    self_mask_key,
    share_encryption_key,
    share_encryption_keys,
)


def test_phase_names_are_the_protocol_constants() -> None:
    assert PHASES == (
        "advertise_keys",
        "share_keys",
        "masked_input",
        "consistency_check",
        "unmasking",
    )
    directory, _ = IdentityDirectory.generate(range(3))
    assert MaskingParams.create(range(3), 4, identities=directory).phases == PHASES
    assert "consistency_check" not in MaskingParams.create(range(3), 4).phases


def test_the_identity_directory_is_part_of_the_round_digest() -> None:
    one, _ = IdentityDirectory.generate(range(3))
    two, _ = IdentityDirectory.generate(range(3))
    digests = {MaskingParams.create(range(3), 4, identities=d).digest for d in (one, two, None)}
    assert len(digests) == 3


def test_every_client_of_a_signed_round_needs_a_registered_identity() -> None:
    directory, _ = IdentityDirectory.generate(range(2))
    with pytest.raises(ProtocolError, match=r"no key for client\(s\) \[2\]"):
        MaskingParams.create(range(3), 4, identities=directory)


def test_fractional_threshold_is_rounded_up_and_exact_on_round_numbers() -> None:
    assert MaskingParams.create(range(10), 4, threshold=0.6).threshold == 6  # not 7 (0.6*10)
    assert MaskingParams.create(range(10), 4, threshold=0.55).threshold == 6
    assert MaskingParams.create(range(10), 4, threshold=8).threshold == 8
    assert MaskingParams.create(range(10), 4, threshold=8.0).threshold == 8


@pytest.mark.parametrize("threshold", [0.5, 0.3, 5, 11, 0, -1, 2.5, True, "0.6"])
def test_threshold_must_be_a_strict_majority_count_or_fraction(threshold: object) -> None:
    with pytest.raises(ProtocolError, match="threshold"):
        MaskingParams.create(range(10), 4, threshold=threshold)  # type: ignore[arg-type]


def test_auto_degree_grows_logarithmically_and_is_even() -> None:
    sizes = (100, 1000, 10_000)

    def degrees(**kwargs: float) -> dict[int, int]:
        return {n: MaskingParams.create(range(n), 1, **kwargs).neighbors for n in sizes}

    # security alone (no dropout expected, no colluders): the connectivity bound
    secure = degrees(dropout_rate=0, colluding_fraction=0)
    assert secure == {100: 42, 1000: 46, 10_000: 52}
    # 10 % loss needs no more than security does (with a majority t_s) ...
    assert degrees(colluding_fraction=0) == secure
    # ... but the default gamma = 0.1 does: 100 colluders of 1,000 must not hold t_s - 1 of
    # any honest client's neighbours
    assert degrees() == {100: 42, 1000: 58, 10_000: 68}
    # 30 % loss: k ~ 200, not the near-complete 792 of a t_s tied to t = 0.6 n; gamma = 0.1
    # costs nothing more there
    lossy = degrees(dropout_rate=0.3)
    assert lossy == degrees(dropout_rate=0.3, colluding_fraction=0)
    assert lossy == {100: 99, 1000: 206, 10_000: 232}
    assert all(k % 2 == 0 for k in (*secure.values(), *degrees().values()))
    # the security formula from the params docstring, spelled out
    n, t = 1000, 600
    rho = 1 - t / n
    k_sec = 2 * math.ceil((40 + 2 * math.log2(n)) / (2 * math.log2(1 / rho)))
    assert auto_degree(n, t, 0) == k_sec
    assert auto_degree(n, t) >= k_sec


def test_auto_degree_falls_back_to_the_complete_graph_for_small_n() -> None:
    params = MaskingParams.create(range(10), 4)
    assert params.neighbors == 9
    assert params.graph.is_complete


def test_per_neighbourhood_threshold() -> None:
    complete = MaskingParams.create(range(10), 4, threshold=7, neighbors=9)
    assert complete.share_threshold == 7  # original SecAgg: t of the n holders
    sparse = MaskingParams.create(range(100), 4, threshold=60, neighbors=20, colluding_fraction=0)
    assert sparse.share_threshold == 11  # a strict majority of the k + 1 = 21 holders
    # ... whatever the global threshold: t no longer sizes the neighbourhoods
    for t in (51, 60, 90):
        params = MaskingParams.create(
            range(100), 4, threshold=t, neighbors=20, colluding_fraction=0
        )
        assert params.share_threshold == 11
    # a strict majority of each neighbourhood, so one holder set cannot serve both secrets
    for params in (complete, sparse):
        assert 2 * params.share_threshold > params.neighbors + 1
    assert 2 * (sparse.share_threshold - 1) <= sparse.neighbors + 1  # and no more (sparse)


def test_share_points_are_positions_so_any_client_ids_fit_the_field() -> None:
    ids = [2**63 + 5, 7, 2**40]
    params = MaskingParams.create(ids, 4)
    assert [params.share_point(c) for c in sorted(ids)] == [1, 2, 3]
    with pytest.raises(ProtocolError, match="not one of"):
        params.share_point(8)


@pytest.mark.parametrize("neighbors", [3, 1, 10, 11, -2])
def test_degree_must_be_even_or_complete_and_below_n(neighbors: int) -> None:
    with pytest.raises(ProtocolError, match="neighbors"):
        MaskingParams.create(range(10), 4, neighbors=neighbors)


def test_odd_complete_degree_is_allowed() -> None:
    assert MaskingParams.create(range(10), 4, neighbors=9).graph.is_complete


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"client_ids": [1, 1, 2]}, "distinct"),
        ({"client_ids": [-1, 1, 2]}, "client ids"),
        ({"client_ids": [2**64 - 1, 1, 2]}, "client ids"),
        ({"client_ids": [1]}, "at least 2"),
        ({"dim": 0}, "dim"),
        ({"bits": 0}, "bits"),
        ({"bits": 65}, "bits"),
        ({"round_id": -1}, "round_id"),
        ({"session": "seed"}, "session"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"dropout_rate": -0.5}, "dropout_rate"),
    ],
)
def test_invalid_parameters_raise_protocol_errors(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"client_ids": [1, 2, 3], "dim": 4}
    args.update(kwargs)
    client_ids, dim = args.pop("client_ids"), args.pop("dim")
    with pytest.raises(ProtocolError, match=match):
        MaskingParams.create(client_ids, dim, **args)  # type: ignore[arg-type]


def test_digest_changes_with_every_parameter() -> None:
    base = MaskingParams.create([1, 2, 3], 4)
    variants = [
        MaskingParams.create([1, 2, 4], 4),
        MaskingParams.create([1, 2, 3], 5),
        MaskingParams.create([1, 2, 3], 4, threshold=3),
        MaskingParams.create([1, 2, 3], 4, bits=16),
        MaskingParams.create([1, 2, 3], 4, round_id=1),
        MaskingParams.create([1, 2, 3], 4, session=b"x"),
    ]
    assert len({base.digest, *(v.digest for v in variants)}) == 7
    assert MaskingParams.create([3, 2, 1], 4).digest == base.digest  # order does not matter


def test_derived_keys_are_bound_to_round_and_pair() -> None:
    secret = b"\x01" * 32
    assert pair_mask_key(secret, 1, 2, 3) == pair_mask_key(secret, 1, 3, 2)  # symmetric
    assert pair_mask_key(secret, 1, 2, 3) != pair_mask_key(secret, 2, 2, 3)
    assert pair_mask_key(secret, 1, 2, 3) != pair_mask_key(secret, 1, 2, 4)
    assert self_mask_key(secret, 1, 2) != self_mask_key(secret, 1, 3)
    assert share_encryption_key(secret, 1, 2, 3)[:16] != pair_mask_key(secret, 1, 2, 3)
    # one bundle key per direction: each seals a single bundle (fixed-nonce AES-GCM)
    assert share_encryption_key(secret, 1, 2, 3) != share_encryption_key(secret, 1, 3, 2)
    both = share_encryption_keys(secret, 1, 2, 3)
    assert both == (share_encryption_key(secret, 1, 2, 3), share_encryption_key(secret, 1, 3, 2))
    assert share_encryption_keys(secret, 1, 3, 2) == both[::-1]  # both ends agree


def test_an_advert_mac_is_bound_to_its_round_direction_and_keys() -> None:
    params = MaskingParams.create(range(4), 4)
    key, keys = b"\x01" * 32, (b"\x02" * 32, b"\x03" * 32, b"\x04" * 32)
    tag = advert_tag(key, params, 1, 2, *keys)
    assert len(tag) == 16
    other_round = MaskingParams.create(range(4), 4, round_id=1)
    assert advert_tag(key, other_round, 1, 2, *keys) != tag
    assert advert_tag(key, params, 2, 1, *keys) != tag  # the other direction
    assert advert_tag(key, params, 1, 3, *keys) != tag  # another recipient
    assert advert_tag(key, params, 1, 2, keys[1], keys[0], keys[2]) != tag  # keys swapped
    assert advert_tag(b"\x09" * 32, params, 1, 2, *keys) != tag
