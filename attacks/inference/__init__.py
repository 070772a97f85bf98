"""Inference attacks: what a released model reveals about the records it was trained on."""

from attacks.inference.membership import (
    LiraAttack,
    logit_confidence,
    loss_scores,
    pipeline_shadow_trainer,
    plot_roc,
    roc,
    tpr_at_fpr,
)

__all__ = [
    "LiraAttack",
    "logit_confidence",
    "loss_scores",
    "pipeline_shadow_trainer",
    "plot_roc",
    "roc",
    "tpr_at_fpr",
]
