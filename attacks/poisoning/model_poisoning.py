"""Model poisoning: functions from honest updates (flat float vectors) to malicious ones.

Shapes: a single update is ``(d,)``; a set of updates is ``(k, d)``, one row per client. Every
function returns new float32 arrays and never modifies its inputs.

Omniscient attacks (:func:`alie`, :func:`ipm`, :func:`min_max`, :func:`min_sum`) need
``benign``, a ``(k, d)`` matrix of updates, to estimate the benign mean and spread. Given the
true benign clients' updates they are the papers' omniscient attacks; under secure aggregation
the attacker only sees its own clients' updates, and passes the updates those clients *would*
have sent honestly instead (an estimate of the same statistics, from fewer samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import norm

from secagg.errors import ConfigError

PERTURBATIONS = ("unit", "std", "sign")


def _matrix(benign: np.ndarray) -> np.ndarray:
    arr = np.asarray(benign, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"benign updates must be a (k >= 1, d) matrix, got shape {arr.shape}")
    return arr


def sign_flip(update: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``-scale · update``: pushes the model against the descent direction."""
    return (-float(scale) * np.asarray(update, dtype=np.float64)).astype(np.float32)


def gaussian_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """An update replaced by N(0, σ²) noise (a "Byzantine" client sending garbage)."""
    return rng.normal(0.0, float(sigma), size=shape).astype(np.float32)


def replacement_boost(
    num_clients: int, server_lr: float = 1.0, weight_share: float | None = None
) -> float:
    """Boost ``n / η`` of model replacement: after FedAvg over ``n`` equally weighted clients
    with server learning rate ``η`` the boosted update replaces the global model (Bagdasaryan et
    al. 2020, "How To Backdoor Federated Learning", AISTATS). Under sample-weighted FedAvg pass
    ``weight_share`` (the client's share of the summed weights): the boost is then
    ``1 / (weight_share · η)``, which is ``n / η`` for equal weights."""
    if server_lr <= 0:
        raise ConfigError(f"aggregation.server_lr must be > 0, got {server_lr}")
    if weight_share is not None:
        if not 0 < weight_share <= 1:
            raise ConfigError(f"weight_share must be in (0, 1], got {weight_share}")
        return 1.0 / (weight_share * server_lr)
    if num_clients < 1:
        raise ConfigError(f"need num_clients >= 1, got {num_clients}")
    return num_clients / server_lr


def scale_update(update: np.ndarray, boost: float) -> np.ndarray:
    """``boost · update``: the norm ratio to the honest (backdoored) update is exactly ``boost``."""
    return (float(boost) * np.asarray(update, dtype=np.float64)).astype(np.float32)


def alie_z(num_clients: int, num_malicious: int) -> float:
    """z of "A Little Is Enough" (Baruch et al. 2019, NeurIPS): with ``s = floor(n/2 + 1) - f``
    supporters needed, ``z = Φ⁻¹((n - s) / n)``. Needs ``1 <= f <= n/2`` (otherwise ``s < 1``)."""
    n, f = num_clients, num_malicious
    s = math.floor(n / 2 + 1) - f
    if n < 2 or f < 1 or s < 1:
        raise ConfigError(
            f"ALIE's z is defined for 1 <= f <= n/2 malicious clients, got n={n}, f={f}; "
            "set attack.z explicitly"
        )
    return float(norm.ppf((n - s) / n))


def alie(benign: np.ndarray, z: float) -> np.ndarray:
    """Coordinate-wise ``mean - z · std`` of ``benign`` (omniscient: needs benign updates).

    Small enough per coordinate to pass as benign to robust aggregators (Krum, trimmed mean,
    median), yet consistently biased (Baruch et al. 2019, "A Little Is Enough", NeurIPS).
    """
    B = _matrix(benign)
    return (B.mean(axis=0) - float(z) * B.std(axis=0)).astype(np.float32)


def ipm(benign: np.ndarray, epsilon: float) -> np.ndarray:
    """``-ε · mean(benign)``: a negative inner product with the true gradient (omniscient).

    Xie, Koyejo & Gupta 2020, "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
    Manipulation", UAI. Small ε slips past distance-based defences, large ε breaks averaging.
    """
    return (-float(epsilon) * _matrix(benign).mean(axis=0)).astype(np.float32)


def perturbation(benign: np.ndarray, kind: str = "unit") -> np.ndarray:
    """Direction ``p`` of min-max/min-sum: ``-unit(mean)``, ``-std`` or ``-sign(mean)``."""
    B = _matrix(benign)
    mean = B.mean(axis=0)
    if kind == "unit":
        nrm = float(np.linalg.norm(mean))
        return -mean / nrm if nrm > 0 else np.zeros_like(mean)
    if kind == "std":
        return -B.std(axis=0)
    if kind == "sign":
        return -np.sign(mean)
    raise ConfigError(f"attack.perturbation must be one of {PERTURBATIONS}, got {kind!r}")


def _sq_dists(x: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Squared distances from ``x`` to each row of ``B``, by direct differences (the
    ``|x|² + |b|² - 2x·b`` shortcut cancels badly when updates are close together)."""
    return ((B - x) ** 2).sum(axis=1)


def _objective(B: np.ndarray, mode: str) -> tuple[float, Callable[[np.ndarray], float]]:
    pairwise = np.stack([_sq_dists(b, B) for b in B])
    if mode == "min-max":
        return float(pairwise.max()), lambda x: float(_sq_dists(x, B).max())
    if mode == "min-sum":
        return float(pairwise.sum(axis=1).max()), lambda x: float(_sq_dists(x, B).sum())
    raise ValueError(f"mode must be 'min-max' or 'min-sum', got {mode!r}")


def find_gamma(
    benign: np.ndarray,
    direction: np.ndarray,
    mode: str,
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_steps: int = 200,
) -> float:
    """Largest γ >= 0 (to ``tol``) with ``mean + γ · direction`` within the benign threshold.

    Min-max: max squared distance to the benign updates <= max benign pairwise one. Min-sum: sum
    of squared distances <= the largest such sum of one benign update. γ = 0 (the mean) always
    qualifies and each objective is convex in γ, so the feasible set is an interval [0, γ*] and
    binary search finds γ*. As in the paper's code the search starts at ``gamma_init``; we first
    double it until infeasible, so γ* is found however large it is.
    """
    B = _matrix(benign)
    p = np.asarray(direction, dtype=np.float64)
    if not np.any(p):
        return 0.0
    threshold, cost = _objective(B, mode)
    mean = B.mean(axis=0)
    slack = threshold * (1 + 1e-9) + 1e-12  # float noise must not decide the comparison

    def ok(g: float) -> bool:
        return cost(mean + g * p) <= slack

    lo, hi = 0.0, float(gamma_init)
    steps = 0
    while ok(hi) and steps < max_steps:
        lo, hi = hi, 2 * hi
        steps += 1
    while hi - lo > tol and steps < max_steps:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        steps += 1
    return lo


def min_max(
    benign: np.ndarray, kind: str = "unit", gamma_init: float = 10.0, tol: float = 1e-5
) -> np.ndarray:
    """``mean + γ·p`` whose *largest* distance to a benign update is no more than the largest
    distance between two benign updates (omniscient). Shejwalkar & Houmansadr 2021, "Manipulating
    the Byzantine: Optimizing Model Poisoning Attacks and Defenses for FL", NDSS."""
    B = _matrix(benign)
    p = perturbation(B, kind)
    gamma = find_gamma(B, p, "min-max", gamma_init, tol)
    return (B.mean(axis=0) + gamma * p).astype(np.float32)


def min_sum(
    benign: np.ndarray, kind: str = "unit", gamma_init: float = 10.0, tol: float = 1e-5
) -> np.ndarray:
    """``mean + γ·p`` whose *sum* of squared distances to the benign updates is no more than
    any benign update's (omniscient). Shejwalkar & Houmansadr 2021, NDSS (as :func:`min_max`)."""
    B = _matrix(benign)
    p = perturbation(B, kind)
    gamma = find_gamma(B, p, "min-sum", gamma_init, tol)
    return (B.mean(axis=0) + gamma * p).astype(np.float32)
