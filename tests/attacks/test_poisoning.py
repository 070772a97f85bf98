"""Specifications of the poisoning library (attacks/poisoning): each test can fail."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from attacks.poisoning import (
    ATTACKS,
    alie,
    alie_z,
    apply_trigger,
    backdoor_data,
    build_attack,
    choose_malicious,
    feature_trigger,
    find_gamma,
    flip_labels,
    gaussian_noise,
    ipm,
    min_max,
    min_sum,
    perturbation,
    pixel_trigger,
    replacement_boost,
    scale_update,
    sign_flip,
)
from secagg.data import ClientData
from secagg.errors import ConfigError


def _client(n: int = 40, d: int = 64, classes: int = 10, seed: int = 0) -> ClientData:
    rng = np.random.default_rng(seed)
    return ClientData(
        "c0",
        rng.normal(size=(n, d)),
        rng.integers(0, classes, size=n),
        rng.normal(size=(10, d)),
        rng.integers(0, classes, size=10),
    )


def _snapshot(c: ClientData) -> list[np.ndarray]:
    return [c.X_train.copy(), c.y_train.copy(), c.X_val.copy(), c.y_val.copy()]


def _unchanged(c: ClientData, snap: list[np.ndarray]) -> bool:
    now = [c.X_train, c.y_train, c.X_val, c.y_val]
    return all(np.array_equal(a, b) for a, b in zip(now, snap, strict=True))


def _benign(k: int = 8, d: int = 50, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0.3, 1.0, size=d) + 0.5 * rng.normal(size=(k, d))).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


def _sq(x: np.ndarray, B: np.ndarray) -> np.ndarray:
    return ((B.astype(np.float64) - x.astype(np.float64)) ** 2).sum(axis=1)


# ---- selection -------------------------------------------------------------------------


def test_choose_malicious_deterministic_per_seed_and_rounded_count() -> None:
    ids = list(range(10))
    a = choose_malicious(ids, 0.3, seed=7)
    assert a == choose_malicious(list(reversed(ids)), 0.3, seed=7)
    assert len(a) == 3 and a <= set(ids)
    assert len(choose_malicious(ids, 0.34, seed=7)) == 3  # 3.4 -> 3
    assert len(choose_malicious(ids, 0.36, seed=7)) == 4  # 3.6 -> 4
    assert choose_malicious(ids, 0.0, seed=7) == frozenset()
    assert len(choose_malicious(ids, 0.99, seed=7)) == 9  # never all clients
    picks = {choose_malicious(range(100), 0.1, seed=s) for s in range(5)}
    assert len(picks) > 1  # the seed matters


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), True, "0.2"])
def test_choose_malicious_refuses_bad_fraction(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"attack\.malicious_fraction"):
        choose_malicious(range(10), bad, seed=0)  # type: ignore[arg-type]


# ---- data poisoning --------------------------------------------------------------------


def test_label_flip_maps_every_label_and_leaves_the_rest_alone() -> None:
    c = _client()
    snap = _snapshot(c)
    out = flip_labels(c, 10)
    assert np.array_equal(out.y_train, 9 - c.y_train)
    assert np.array_equal(out.X_train, c.X_train) and out.X_train is not c.X_train
    assert np.array_equal(out.y_val, c.y_val)
    assert _unchanged(c, snap)


def test_targeted_label_flip_moves_only_the_source_class() -> None:
    c = _client()
    out = flip_labels(c, 10, {3: 8})
    src = c.y_train == 3
    assert src.any() and np.all(out.y_train[src] == 8)
    assert np.array_equal(out.y_train[~src], c.y_train[~src])
    with pytest.raises(ConfigError, match=r"attack\.source"):
        flip_labels(c, 10, {3: 10})


def test_pixel_trigger_is_the_documented_corner_patch() -> None:
    assert pixel_trigger().features == (45, 46, 47, 53, 54, 55, 61, 62, 63)
    assert pixel_trigger(2, "top-left").features == (0, 1, 8, 9)


def test_apply_trigger_changes_exactly_the_patch() -> None:
    X = np.random.default_rng(0).normal(size=(20, 64)).astype(np.float32)
    before = X.copy()
    t = pixel_trigger(3, "bottom-right", value=3.0)
    out = apply_trigger(X, t)
    assert np.array_equal(X, before)
    changed = np.flatnonzero((out != X).any(axis=0))
    assert set(changed) == set(t.features)
    assert np.all(out[:, list(t.features)] == 3.0)


def test_feature_trigger_sets_chosen_columns_out_of_distribution() -> None:
    X = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)
    out = apply_trigger(X, feature_trigger([2, 17], value=6.0))
    assert np.all(out[:, [2, 17]] == 6.0)
    keep = [j for j in range(30) if j not in (2, 17)]
    assert np.array_equal(out[:, keep], X[:, keep])
    with pytest.raises(ConfigError, match=r"attack\.trigger_features"):
        apply_trigger(X, feature_trigger([30]))


def test_backdoor_data_poisons_the_stated_fraction_only() -> None:
    c = _client(n=40)
    snap = _snapshot(c)
    t = pixel_trigger()
    out = backdoor_data(c, t, target=7, fraction=0.25, rng=np.random.default_rng(0))
    assert _unchanged(c, snap)
    rows = np.flatnonzero((out.X_train != c.X_train).any(axis=1))
    assert len(rows) == 10
    assert np.all(out.y_train[rows] == 7)
    others = np.setdiff1d(np.arange(40), rows)
    assert np.array_equal(out.y_train[others], c.y_train[others])
    assert np.array_equal(out.X_train[others], c.X_train[others])
    assert np.array_equal(apply_trigger(c.X_train[rows], t), out.X_train[rows])


# ---- model poisoning -------------------------------------------------------------------


def test_sign_flip_is_anti_aligned_with_the_honest_mean() -> None:
    B = _benign()
    mean = B.mean(axis=0)
    assert _cos(sign_flip(mean), mean) == pytest.approx(-1.0, abs=1e-6)
    assert np.allclose(sign_flip(mean, 3.0), -3.0 * mean, rtol=1e-6)


def test_gaussian_replaces_the_update_with_noise_of_sigma() -> None:
    noise = gaussian_noise((200_000,), 0.5, np.random.default_rng(0))
    assert noise.dtype == np.float32
    assert noise.std() == pytest.approx(0.5, rel=0.01) and abs(noise.mean()) < 0.01


def test_scaled_replacement_has_the_stated_norm_ratio() -> None:
    u = _benign()[0]
    boost = replacement_boost(20, server_lr=0.5)
    assert boost == 40.0
    assert replacement_boost(20, weight_share=0.05) == pytest.approx(20.0)
    ratio = np.linalg.norm(scale_update(u, boost)) / np.linalg.norm(u)
    assert ratio == pytest.approx(40.0, rel=1e-6)


def test_alie_z_matches_the_paper_and_stays_within_z_std() -> None:
    # n = 50, f = 12: s = floor(26) - 12 = 14, z = Phi^-1(36 / 50)
    assert alie_z(50, 12) == pytest.approx(norm.ppf(0.72))
    with pytest.raises(ConfigError, match=r"attack\.z"):
        alie_z(10, 6)
    B = _benign()
    z = 1.5
    out = alie(B, z).astype(np.float64)
    mean, std = B.mean(axis=0), B.std(axis=0)
    assert np.all(np.abs(out - mean) <= z * std + 1e-5)
    assert np.allclose(out, mean - z * std, atol=1e-5)


def test_ipm_is_anti_aligned_with_the_mean() -> None:
    B = _benign()
    out = ipm(B, 0.5)
    assert _cos(out, B.mean(axis=0)) == pytest.approx(-1.0, abs=1e-6)
    assert np.linalg.norm(out) == pytest.approx(0.5 * np.linalg.norm(B.mean(axis=0)), rel=1e-5)


@pytest.mark.parametrize("kind", ["unit", "std", "sign"])
def test_min_max_within_benign_max_pairwise_distance(kind: str) -> None:
    B = _benign()
    gamma = find_gamma(B, perturbation(B, kind), "min-max")
    assert gamma > 0
    out = min_max(B, kind)
    pairwise = max(_sq(b, B).max() for b in B)
    assert _sq(out, B).max() <= pairwise * (1 + 1e-5)
    # the bound is (nearly) tight: a slightly larger gamma leaves it
    far = B.mean(axis=0) + 1.01 * gamma * perturbation(B, kind)
    assert _sq(far, B).max() > pairwise
    assert np.allclose(out, B.mean(axis=0) + gamma * perturbation(B, kind), atol=1e-4)


def test_min_sum_within_largest_benign_sum_of_squared_distances() -> None:
    B = _benign()
    gamma = find_gamma(B, perturbation(B, "unit"), "min-sum")
    assert gamma > 0
    out = min_sum(B, "unit")
    assert _sq(out, B).sum() <= max(_sq(b, B).sum() for b in B) * (1 + 1e-5)
    assert _cos(out - B.mean(axis=0), B.mean(axis=0)) == pytest.approx(-1.0, abs=1e-4)


def test_min_max_gamma_is_zero_when_benign_updates_agree() -> None:
    B = np.tile(_benign()[0], (4, 1))
    assert find_gamma(B, perturbation(B, "unit"), "min-max") == 0.0


# ---- registry --------------------------------------------------------------------------


def test_registry_has_the_eight_attacks_and_marks_omniscient_ones() -> None:
    assert set(ATTACKS) == {
        "label-flip",
        "sign-flip",
        "gaussian",
        "backdoor",
        "alie",
        "ipm",
        "min-max",
        "min-sum",
    }
    assert {n for n, cls in ATTACKS.items() if cls.omniscient} == {
        "alie",
        "ipm",
        "min-max",
        "min-sum",
    }
    assert build_attack("ipm", {"knowledge": "omniscient"}).needs_benign
    assert not build_attack("ipm").needs_benign  # default: own honest updates (secure agg.)


@pytest.mark.parametrize(
    ("name", "params", "key"),
    [
        ("sign-flip", {"scale": 0}, "scale"),
        ("gaussian", {"sigma": -1.0}, "sigma"),
        ("gaussian", {"sigma": "big"}, "sigma"),
        ("backdoor", {"fraction": 1.5}, "fraction"),
        ("backdoor", {"trigger": "feature"}, "trigger_features"),
        ("backdoor", {"trigger_size": 9}, "trigger_size"),
        ("alie", {"knowledge": "all"}, "knowledge"),
        ("ipm", {"epsilon": 0.0}, "epsilon"),
        ("min-max", {"perturbation": "random"}, "perturbation"),
        ("min-sum", {"tol": -1.0}, "tol"),
        ("label-flip", {"source": 1}, "source"),
        ("sign-flip", {"sigma": 1.0}, "sigma"),
    ],
)
def test_registry_validation_names_the_key(name: str, params: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"attack\.{key}"):
        build_attack(name, params, n_classes=10)


def test_registry_attacks_poison_as_their_functions() -> None:
    rng = np.random.default_rng(0)
    honest = _benign(k=3, seed=5)
    benign = _benign(k=7)
    flipped = build_attack("label-flip", {"malicious_fraction": 0.2}, n_classes=10)
    c = _client()
    assert np.array_equal(flipped.poison_data(c, rng).y_train, 9 - c.y_train)
    assert np.allclose(build_attack("sign-flip").poison_updates(honest), -honest)
    bd = build_attack("backdoor", {"target": 2})
    assert np.allclose(bd.poison_updates(honest, num_clients=10), 10 * honest, rtol=1e-6)
    omni = build_attack("alie", {"knowledge": "omniscient"})
    with pytest.raises(ValueError, match="benign"):
        omni.poison_updates(honest)
    sent = omni.poison_updates(honest, benign=benign)  # n = 10, f = 3
    assert sent.shape == honest.shape
    assert np.allclose(sent[0], alie(benign, alie_z(10, 3)), atol=1e-6)
    own = build_attack("min-max").poison_updates(honest, num_clients=10)
    assert np.allclose(own[1], min_max(honest), atol=1e-6)
    assert build_attack("min-sum").poison_updates(honest).shape == honest.shape


def test_backdoor_attack_end_to_end_with_a_feature_trigger() -> None:
    c = _client(n=20, d=30)
    bd = build_attack(
        "backdoor",
        {"trigger": "feature", "trigger_features": [0, 5], "fraction": 1.0, "target": 1},
        n_classes=10,
    )
    out = bd.poison_data(c, np.random.default_rng(0))
    assert np.all(out.y_train == 1) and np.all(out.X_train[:, [0, 5]] == 5.0)
    with pytest.raises(ConfigError, match=r"attack\.target"):
        build_attack("backdoor", {"target": 10}, n_classes=10)
    noise = build_attack("gaussian", {"sigma": 2.0}).poison_updates(
        _benign(k=2), rng=np.random.default_rng(0)
    )
    assert noise.shape == (2, 50) and 1.0 < noise.std() < 3.0
