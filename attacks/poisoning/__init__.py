"""Poisoning attacks as pure functions: honest material in, malicious material out.

Independent of the engine: data attacks map a :class:`~secagg.data.ClientData` to a poisoned
copy, model attacks map flat float update vectors to malicious ones, and :mod:`.registry` builds
them by name from ``attack.<key>`` config values.
"""

from attacks.poisoning.backdoor import (
    Trigger,
    apply_trigger,
    backdoor_data,
    feature_trigger,
    pixel_trigger,
)
from attacks.poisoning.data_poisoning import flip_labels
from attacks.poisoning.model_poisoning import (
    alie,
    alie_z,
    find_gamma,
    gaussian_noise,
    ipm,
    min_max,
    min_sum,
    perturbation,
    replacement_boost,
    scale_update,
    sign_flip,
)
from attacks.poisoning.registry import ATTACKS, KNOWLEDGE, Attack, Param, build_attack
from attacks.poisoning.selection import choose_malicious

__all__ = [
    "ATTACKS",
    "KNOWLEDGE",
    "Attack",
    "Param",
    "Trigger",
    "alie",
    "alie_z",
    "apply_trigger",
    "backdoor_data",
    "build_attack",
    "choose_malicious",
    "feature_trigger",
    "find_gamma",
    "flip_labels",
    "gaussian_noise",
    "ipm",
    "min_max",
    "min_sum",
    "perturbation",
    "pixel_trigger",
    "replacement_boost",
    "scale_update",
    "sign_flip",
]
