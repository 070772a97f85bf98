"""Inference attacks: what an observer of updates or models learns about the training records.

- :mod:`.membership`: was this record in the training data (loss threshold, LiRA)?
- :mod:`.gradient_inversion`: what did the record look like (iDLG labels, analytic first-layer
  inversion, DLG, inverting gradients), from one client's update, an aggregate or a DP update.
"""

from attacks.inference.gradient_inversion import (
    Reconstruction,
    analytic_first_layer_candidates,
    analytic_first_layer_inversion,
    dlg,
    inverting_gradients,
    mse,
    plot_reconstructions,
    psnr,
    recover_label,
    ssim,
    update_to_gradient,
)
from attacks.inference.membership import (
    LiraAttack,
    logit_confidence,
    loss_scores,
    noisy_sum_shadow_trainer,
    pipeline_shadow_trainer,
    plot_roc,
    roc,
    tpr_at_fpr,
)

__all__ = [
    "LiraAttack",
    "Reconstruction",
    "analytic_first_layer_candidates",
    "analytic_first_layer_inversion",
    "dlg",
    "inverting_gradients",
    "logit_confidence",
    "loss_scores",
    "mse",
    "noisy_sum_shadow_trainer",
    "pipeline_shadow_trainer",
    "plot_reconstructions",
    "plot_roc",
    "psnr",
    "recover_label",
    "roc",
    "ssim",
    "tpr_at_fpr",
    "update_to_gradient",
]
