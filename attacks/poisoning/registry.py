"""Attacks by name, with validated parameters: what an experiment grid builds from its config.

Each attack is a frozen dataclass whose fields are its config keys (``attack.<key>``). It
poisons a malicious client's data before training (:meth:`Attack.poison_data`), its update after
training (:meth:`Attack.poison_updates`), or both (the backdoor); the other step is the
identity. ``omniscient = True`` marks attacks whose maths needs a benign-update matrix; their
``knowledge`` field says which one the runner must pass:

* ``"omniscient"``: the benign clients' updates (the papers' threat model; impossible under
  secure aggregation, where no one sees individual updates);
* ``"own"``: the malicious clients' own honest updates, the only ones the attacker has under
  secure aggregation; mean and std are then estimates from ``f`` samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from attacks.poisoning.backdoor import (
    CORNERS,
    Trigger,
    backdoor_data,
    feature_trigger,
    pixel_trigger,
)
from attacks.poisoning.data_poisoning import flip_labels
from attacks.poisoning.model_poisoning import (
    PERTURBATIONS,
    alie,
    alie_z,
    gaussian_noise,
    ipm,
    min_max,
    min_sum,
    replacement_boost,
    scale_update,
    sign_flip,
)
from secagg.data import ClientData
from secagg.errors import ConfigError

KNOWLEDGE = ("omniscient", "own")

# Keys of the [attack] section that belong to the runner, not to one attack.
RUNNER_KEYS = frozenset({"name", "malicious_fraction"})


@dataclass(frozen=True)
class Param:
    """One config key: its type, default (``None``: optional/derived) and allowed range."""

    kind: str  # "int" | "float" | "str" | "int-list"
    default: Any
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""

    def check(self, key: str, value: object) -> Any:
        full = f"attack.{key}"
        if value is None:
            return None
        if self.kind == "str":
            if value not in self.choices:
                raise ConfigError(f"{full} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.kind == "int-list":
            if not isinstance(value, list | tuple) or not value:
                raise ConfigError(f"{full}: expected a non-empty list of integers, got {value!r}")
            return tuple(self.check_number(full, v, integer=True) for v in value)
        return self.check_number(full, value, integer=self.kind == "int")

    def check_number(self, full: str, value: object, integer: bool) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{full}: expected a number, got {type(value).__name__} {value!r}")
        if integer and not isinstance(value, int):
            raise ConfigError(f"{full}: expected an integer, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{full}: expected a finite number, got {value!r}")
        lo_bad = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        hi_bad = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if lo_bad or hi_bad:
            raise ConfigError(f"{full} must be in {self.range_text()}, got {value!r}")
        return value if integer else float(value)

    def range_text(self) -> str:
        if self.choices:
            return "{" + ", ".join(self.choices) + "}"
        lo = "(-inf" if self.lo is None else ("(" if self.lo_open else "[") + f"{self.lo:g}"
        hi = "inf)" if self.hi is None else f"{self.hi:g}" + (")" if self.hi_open else "]")
        return f"{lo}, {hi}"


@dataclass(frozen=True)
class Attack:
    """Base class: both poisoning steps are the identity."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    omniscient: ClassVar[bool] = False  # needs a benign-update matrix (see module docstring)
    poisons_data: ClassVar[bool] = False
    poisons_updates: ClassVar[bool] = False

    @property
    def needs_benign(self) -> bool:
        """True if the runner must pass the benign clients' updates to poison_updates."""
        return self.omniscient and getattr(self, "knowledge", "own") == "omniscient"

    def poison_data(self, data: ClientData, rng: np.random.Generator) -> ClientData:
        """The data a malicious client trains on (default: its own, untouched)."""
        return data

    def poison_updates(
        self,
        honest: np.ndarray,
        *,
        benign: np.ndarray | None = None,
        num_clients: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Updates the ``f`` malicious clients send, shape ``(f, d)``, from the updates they
        would have sent honestly (``honest``, ``(f, d)``). ``benign`` (``(n - f, d)``) is
        required when :attr:`needs_benign`; ``num_clients`` ``n`` defaults to ``f + len(benign)``.
        """
        return np.array(honest, dtype=np.float32, copy=True)

    # helpers for subclasses
    def _reference(self, honest: np.ndarray, benign: np.ndarray | None) -> np.ndarray:
        if not self.needs_benign:
            return np.asarray(honest)
        if benign is None:
            raise ValueError(
                f"attack {self.name!r} with knowledge = 'omniscient' needs the benign updates"
            )
        return np.asarray(benign)

    @staticmethod
    def _num_clients(honest: np.ndarray, benign: np.ndarray | None, num_clients: int | None) -> int:
        if num_clients is not None:
            return int(num_clients)
        if benign is None:
            raise ValueError("pass num_clients (the number of clients in the round)")
        return len(honest) + len(benign)


def _rows(vector: np.ndarray, f: int) -> np.ndarray:
    return np.repeat(np.asarray(vector, dtype=np.float32)[None, :], f, axis=0)


_KNOW = Param("str", "own", choices=KNOWLEDGE, doc="which benign matrix is used")


@dataclass(frozen=True)
class LabelFlip(Attack):
    """Train on flipped labels (all y -> C-1-y, or only source -> target)."""

    name: ClassVar[str] = "label-flip"
    params: ClassVar[dict[str, Param]] = {
        "n_classes": Param("int", None, lo=2, doc="filled from the dataset if omitted"),
        "source": Param("int", None, lo=0, doc="targeted flip: with target, only source moves"),
        "target": Param("int", None, lo=0, doc="targeted flip: source's new label"),
    }
    poisons_data: ClassVar[bool] = True
    n_classes: int | None = None
    source: int | None = None
    target: int | None = None

    def __post_init__(self) -> None:
        if (self.source is None) != (self.target is None):
            raise ConfigError("attack.source and attack.target must be given together")
        if self.n_classes is None:
            raise ConfigError("attack.n_classes is required for label-flip")
        for key in ("source", "target"):
            v = getattr(self, key)
            if v is not None and v >= self.n_classes:
                raise ConfigError(f"attack.{key} must be < n_classes = {self.n_classes}, got {v}")

    def poison_data(self, data: ClientData, rng: np.random.Generator) -> ClientData:
        assert self.n_classes is not None
        mapping = None if self.source is None else {self.source: int(self.target or 0)}
        return flip_labels(data, self.n_classes, mapping)


@dataclass(frozen=True)
class SignFlip(Attack):
    """Send ``-scale`` times the honest update."""

    name: ClassVar[str] = "sign-flip"
    params: ClassVar[dict[str, Param]] = {"scale": Param("float", 1.0, lo=0, lo_open=True)}
    poisons_updates: ClassVar[bool] = True
    scale: float = 1.0

    def poison_updates(
        self,
        honest: np.ndarray,
        *,
        benign: np.ndarray | None = None,
        num_clients: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        return sign_flip(honest, self.scale)


@dataclass(frozen=True)
class Gaussian(Attack):
    """Replace the update by N(0, sigma^2) noise."""

    name: ClassVar[str] = "gaussian"
    params: ClassVar[dict[str, Param]] = {"sigma": Param("float", 1.0, lo=0, lo_open=True)}
    poisons_updates: ClassVar[bool] = True
    sigma: float = 1.0

    def poison_updates(
        self,
        honest: np.ndarray,
        *,
        benign: np.ndarray | None = None,
        num_clients: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        if rng is None:
            raise ValueError("the gaussian attack needs rng")
        return gaussian_noise(np.shape(honest), self.sigma, rng)


@dataclass(frozen=True)
class Backdoor(Attack):
    """Trigger + relabel a fraction of the training data, then boost the update (model
    replacement): Bagdasaryan et al. 2020, AISTATS; trigger as in BadNets (Gu et al. 2017)."""

    name: ClassVar[str] = "backdoor"
    params: ClassVar[dict[str, Param]] = {
        "target": Param("int", 0, lo=0, doc="class the trigger maps to"),
        "fraction": Param("float", 0.5, lo=0, hi=1, lo_open=True, doc="records poisoned"),
        "trigger": Param("str", "pixel", choices=("pixel", "feature")),
        "trigger_size": Param("int", 3, lo=1, hi=8, doc="pixel: side of the square patch"),
        "trigger_corner": Param("str", "bottom-right", choices=CORNERS),
        "trigger_features": Param("int-list", None, doc="feature: columns (required)"),
        "trigger_value": Param("float", None, doc="standardised value; 3.0 pixel, 5.0 feature"),
        "boost": Param("float", None, lo=0, lo_open=True, doc="update factor; omitted: n / eta"),
        "server_lr": Param("float", 1.0, lo=0, lo_open=True, doc="eta in n / eta"),
    }
    poisons_data: ClassVar[bool] = True
    poisons_updates: ClassVar[bool] = True
    target: int = 0
    fraction: float = 0.5
    trigger: str = "pixel"
    trigger_size: int = 3
    trigger_corner: str = "bottom-right"
    trigger_features: tuple[int, ...] | None = None
    trigger_value: float | None = None
    boost: float | None = None
    server_lr: float = 1.0
    n_classes: int | None = None

    def __post_init__(self) -> None:
        if self.trigger == "feature" and not self.trigger_features:
            raise ConfigError("attack.trigger_features is required with attack.trigger = 'feature'")
        if self.n_classes is not None and self.target >= self.n_classes:
            raise ConfigError(f"attack.target must be < n_classes = {self.n_classes}")
        self.pattern()  # validate the trigger now, not at the first round

    def pattern(self) -> Trigger:
        """The trigger to stamp (also on test inputs, to measure attack success)."""
        if self.trigger == "pixel":
            value = 3.0 if self.trigger_value is None else self.trigger_value
            return pixel_trigger(self.trigger_size, self.trigger_corner, value)
        value = 5.0 if self.trigger_value is None else self.trigger_value
        return feature_trigger(self.trigger_features or (), value)

    def poison_data(self, data: ClientData, rng: np.random.Generator) -> ClientData:
        return backdoor_data(data, self.pattern(), self.target, self.fraction, rng)

    def poison_updates(
        self,
        honest: np.ndarray,
        *,
        benign: np.ndarray | None = None,
        num_clients: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        if self.boost is not None:
            boost = self.boost
        else:
            boost = replacement_boost(
                self._num_clients(honest, benign, num_clients), self.server_lr
            )
        return scale_update(honest, boost)


@dataclass(frozen=True)
class Alie(Attack):
    """All malicious clients send mean - z*std (Baruch et al. 2019, NeurIPS)."""

    name: ClassVar[str] = "alie"
    params: ClassVar[dict[str, Param]] = {
        "z": Param("float", None, lo=0, lo_open=True, doc="omitted: from n and f as in the paper"),
        "knowledge": _KNOW,
    }
    omniscient: ClassVar[bool] = True
    poisons_updates: ClassVar[bool] = True
    z: float | None = None
    knowledge: str = "own"

    def poison_updates(
        self,
        honest: np.ndarray,
        *,
        benign: np.ndarray | None = None,
        num_clients: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        ref = self._reference(honest, benign)
        z = self.z
        if z is None:
            z = alie_z(self._num_clients(honest, benign, num_clients), len(honest))
        return _rows(alie(ref, z), len(honest))


@dataclass(frozen=True)
class Ipm(Attack):
    """All malicious clients send -epsilon * mean (Xie et al. 2020, UAI)."""

    name: ClassVar[str] = "ipm"
    params: ClassVar[dict[str, Param]] = {
        "epsilon": Param("float", 0.5, lo=0, lo_open=True),
        "knowledge": _KNOW,
    }
    omniscient: ClassVar[bool] = True
    poisons_updates: ClassVar[bool] = True
    epsilon: float = 0.5
    knowledge: str = "own"

    def poison_updates(
        self,
        honest: np.ndarray,
        *,
        benign: np.ndarray | None = None,
        num_clients: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        return _rows(ipm(self._reference(honest, benign), self.epsilon), len(honest))


@dataclass(frozen=True)
class MinMax(Attack):
    """mean + gamma*p within the benign max pairwise distance (Shejwalkar & Houmansadr 2021)."""

    name: ClassVar[str] = "min-max"
    params: ClassVar[dict[str, Param]] = {
        "perturbation": Param("str", "unit", choices=PERTURBATIONS),
        "gamma_init": Param("float", 10.0, lo=0, lo_open=True),
        "tol": Param("float", 1e-5, lo=0, lo_open=True),
        "knowledge": _KNOW,
    }
    omniscient: ClassVar[bool] = True
    poisons_updates: ClassVar[bool] = True
    perturbation: str = "unit"
    gamma_init: float = 10.0
    tol: float = 1e-5
    knowledge: str = "own"
    _craft: ClassVar[Callable[..., np.ndarray]] = staticmethod(min_max)

    def poison_updates(
        self,
        honest: np.ndarray,
        *,
        benign: np.ndarray | None = None,
        num_clients: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        ref = self._reference(honest, benign)
        crafted = type(self)._craft(ref, self.perturbation, self.gamma_init, self.tol)
        return _rows(crafted, len(honest))


@dataclass(frozen=True)
class MinSum(MinMax):
    """mean + gamma*p within the benign sum of squared distances (Shejwalkar & Houmansadr 2021)."""

    name: ClassVar[str] = "min-sum"
    _craft: ClassVar[Callable[..., np.ndarray]] = staticmethod(min_sum)


ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (LabelFlip, SignFlip, Gaussian, Backdoor, Alie, Ipm, MinMax, MinSum)
}


def build_attack(
    name: str, params: Mapping[str, object] | None = None, *, n_classes: int | None = None
) -> Attack:
    """The attack ``name`` with its ``attack.<key>`` parameters validated (defaults filled in).

    ``params`` may contain the runner's keys (``name``, ``malicious_fraction``), which are
    skipped; any other unknown key is an error. ``n_classes`` (from the dataset) fills
    label-flip's ``n_classes`` and lets the backdoor check its target class.
    """
    if name not in ATTACKS:
        raise ConfigError(f"attack.name = {name!r} is not one of: {', '.join(ATTACKS)}")
    cls = ATTACKS[name]
    given = {k: v for k, v in (params or {}).items() if k not in RUNNER_KEYS}
    unknown = sorted(set(given) - set(cls.params))
    if unknown:
        allowed = ", ".join(cls.params) or "none"
        raise ConfigError(
            f"unknown key(s) for attack {name!r}: {', '.join('attack.' + k for k in unknown)}; "
            f"allowed: {allowed}"
        )
    kwargs: dict[str, Any] = {
        key: spec.check(key, given.get(key, spec.default)) for key, spec in cls.params.items()
    }
    if "n_classes" in {f.name for f in fields(cls)} and kwargs.get("n_classes") is None:
        kwargs["n_classes"] = n_classes
    return cls(**kwargs)
