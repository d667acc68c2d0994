"""Optimisers as the authors' PyTorch code builds them, from small optax transforms.

* PyTorch Adam's ``weight_decay`` is *coupled* L2: ``λθ`` is added to the gradient before the Adam moments,
  so it is ``add_decayed_weights`` chained *before* ``scale_by_adam`` (not ``adamw``).
* Per-epoch exponential learning-rate decay ``lr = lr₀ γ^e``. LEBM calls its scheduler at the *end* of
  epoch ``e`` (epochs 0 and 1 both run at ``lr₀``, epoch ``e ≥ 1`` at ``lr₀ γ^{e−1}``:
  ``decay_at='epoch_end'``);
  the later papers call it at the start (``lr₀ γ^e`` during epoch ``e``: ``decay_at='epoch_start'``).
  The schedule is a function of the optimiser's step count, so it resumes exactly from a checkpoint.
* Optional gradient clipping by global norm, applied first (as ``clip_grad_norm_`` before ``step()``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import optax

from latentebm_jax.config_schema import non_negative, setting, unit_interval


def per_epoch_exponential_decay(
    lr: float,
    decay: float,
    steps_per_epoch: int,
    decay_at: Literal["epoch_end", "epoch_start"] = "epoch_end",
) -> optax.Schedule:
    """``lr·γ^e`` with ``e`` the epoch index (``epoch_start``) or ``max(e − 1, 0)`` (``epoch_end``)."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if decay_at not in ("epoch_end", "epoch_start"):
        raise ValueError(f"unknown decay_at {decay_at!r}; allowed: 'epoch_end', 'epoch_start'")
    begin = steps_per_epoch if decay_at == "epoch_end" else 0
    return optax.exponential_decay(
        init_value=lr,
        transition_steps=steps_per_epoch,
        decay_rate=decay,
        transition_begin=begin,
        staircase=True,
    )


def torch_adam(
    lr: float,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    lr_decay: float = 1.0,
    steps_per_epoch: int = 1,
    decay_at: Literal["epoch_end", "epoch_start"] = "epoch_end",
    grad_clip_norm: float = 0.0,
) -> optax.GradientTransformation:
    """PyTorch ``Adam`` (coupled weight decay) with a per-epoch exponential schedule and optional clipping."""
    parts = []
    if grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(grad_clip_norm))
    if weight_decay > 0:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
    schedule = per_epoch_exponential_decay(lr, lr_decay, steps_per_epoch, decay_at)
    parts.append(optax.scale_by_learning_rate(schedule))
    return optax.chain(*parts)


@dataclasses.dataclass(frozen=True)
class AdamSchedule:
    """The Adam settings a method's networks share (config keys of the method's group): betas, the
    per-epoch decay and when it applies, and clipping. Methods add their learning rates and weight decays."""

    beta1: float = setting(0.5, "Adam beta1", check=unit_interval)
    beta2: float = setting(0.999, "Adam beta2", check=unit_interval)
    lr_decay: float = setting(
        0.998, "per-epoch learning-rate decay gamma", check=lambda x: 0 < x <= 1, what="in (0, 1]"
    )
    lr_decay_at: str = setting(
        "epoch_end",
        "LEBM decays at epoch end, the later papers at epoch start",
        choices=("epoch_end", "epoch_start"),
    )
    grad_clip_norm: float = setting(
        0.0,
        "clip gradients by global norm (0 = off, the authors' default)",
        check=non_negative,
        what="non-negative (0 = off)",
    )

    def adam(self, lr: float, weight_decay: float, steps_per_epoch: int) -> optax.GradientTransformation:
        """One network's :func:`torch_adam` with these settings."""
        return torch_adam(
            lr,
            b1=self.beta1,
            b2=self.beta2,
            weight_decay=weight_decay,
            lr_decay=self.lr_decay,
            steps_per_epoch=steps_per_epoch,
            decay_at=self.lr_decay_at,
            grad_clip_norm=self.grad_clip_norm,
        )
