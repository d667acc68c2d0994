"""NVAE trained from scratch by its own objective: stage 1 of the diffusion EBM prior on NVAE (Cui & Han,
ICML 2024, Sec. 4), at a size this library can train (the paper uses NVIDIA's pretrained checkpoints; see
``python -m experiments.convert_nvae``).

The loss is NVAE's (Vahdat & Kautz 2020, Sec. 3.3 and App. A; NVlabs/NVAE ``train.py``), computed by
:func:`~latentebm_jax.backbones.nvae_objective.nvae_loss`: the negative ELBO with a posterior draw
(top-down residual posterior, flows), the KL term warmed up by ``kl_coeff`` (linear from
``kl_const_coeff`` over ``kl_anneal_portion`` of training) and balanced across groups while it warms up,
plus ``λ`` times NVAE's spectral regularisation (the largest singular value of every weight-normalised
convolution, by persistent power iteration) and its BatchNorm loss (``max |γ|`` per layer), ``λ`` annealed
from ``weight_decay_norm_init`` to ``weight_decay_norm`` as the KL warms up when ``weight_decay_norm_anneal``.
The optimiser is NVAE's: Adamax (ε = 1e-3, coupled weight decay), learning rate warmed up linearly over
``warmup_epochs``, then cosine-annealed per epoch to ``learning_rate_min``.

Its samples (``ε ~ N(0, I)`` through the prior) are the "backbone alone" baseline of the diffusion prior's
Table 1. Config groups: ``backbone`` (the architecture,
:class:`~latentebm_jax.backbones.nvae_backbone.NVAEArchitecture`) and ``nvae`` (:class:`NVAETraining`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from latentebm_jax.backbones import nvae_backbone
from latentebm_jax.backbones.nvae_backbone import NVAEArchitecture, NVAEBackbone
from latentebm_jax.backbones.nvae_objective import NVAEObjective, init_spectral_state, nvae_loss
from latentebm_jax.config_schema import (
    ConfigError,
    check_group,
    group_of,
    non_negative,
    positive,
    positive_int,
    setting,
    settings_of,
    unit_interval,
    values_of,
)
from latentebm_jax.data.settings import is_text
from latentebm_jax.methods.base import LatentSpace, Method, MethodSpec, shapes_of
from latentebm_jax.methods.common import apply_updates, cross_replica_mean, example_keys, normal_layers
from latentebm_jax.methods.hvae import POSTERIOR_STREAM, backbone_predict
from latentebm_jax.state import TrainState, new_train_state

Params = dict[str, Any]
Latents = tuple[jax.Array, ...]


@dataclasses.dataclass(frozen=True)
class NVAETraining:
    """NVAE's optimiser and objective settings (config group ``nvae``), NVlabs/NVAE ``train.py`` names and
    defaults."""

    learning_rate: float = setting(1e-2, "Adamax learning rate", check=positive)
    learning_rate_min: float = setting(1e-4, "end of the cosine annealing", check=non_negative)
    weight_decay: float = setting(3e-4, "Adamax weight decay (coupled)", check=non_negative)
    warmup_epochs: int = setting(
        5, "epochs of linear learning-rate warm-up", check=lambda x: x >= 0, what="a non-negative integer"
    )
    kl_anneal_portion: float = setting(
        0.3, "portion of training over which the KL warms up", check=unit_interval
    )
    kl_const_portion: float = setting(
        1e-4, "portion of training at the constant KL coefficient", check=unit_interval
    )
    kl_const_coeff: float = setting(1e-4, "the KL coefficient at the start", check=unit_interval)
    weight_decay_norm: float = setting(
        0.0, "λ of the spectral and BatchNorm regularisation", check=non_negative
    )
    weight_decay_norm_init: float = setting(10.0, "λ at the start when annealed", check=positive)
    weight_decay_norm_anneal: bool = setting(False, "anneal λ from its init value as the KL warms up")
    num_power_iter: int = setting(
        4, "power iterations per step of the spectral regularisation", check=positive_int
    )


def adamax_schedule(t: NVAETraining, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
    """NVAE's learning rate: ``lr·step/warmup_iters`` during the warm-up iterations, then cosine annealing
    stepped once per epoch after ``warmup_epochs`` (PyTorch ``CosineAnnealingLR`` with ``T_max = epochs −
    warmup_epochs − 1``), to ``learning_rate_min``."""
    warmup_iters = t.warmup_epochs * steps_per_epoch
    t_max = max(num_epochs - t.warmup_epochs - 1, 1)

    def schedule(step):
        epoch = step // steps_per_epoch
        n = jnp.maximum(epoch - t.warmup_epochs, 0)
        cosine = t.learning_rate_min + (t.learning_rate - t.learning_rate_min) * 0.5 * (
            1.0 + jnp.cos(jnp.pi * n / t_max)
        )
        if warmup_iters == 0:
            return cosine
        return jnp.where(step < warmup_iters, t.learning_rate * step / warmup_iters, cosine)

    return schedule


def adamax(t: NVAETraining, steps_per_epoch: int, num_epochs: int) -> optax.GradientTransformation:
    """PyTorch ``Adamax(lr, weight_decay, eps=1e-3)`` (coupled decay) on :func:`adamax_schedule`."""
    parts = []
    if t.weight_decay > 0:
        parts.append(optax.add_decayed_weights(t.weight_decay))
    parts.append(optax.scale_by_adamax(eps=1e-3))
    parts.append(optax.scale_by_learning_rate(adamax_schedule(t, steps_per_epoch, num_epochs)))
    return optax.chain(*parts)


def init(bb: NVAEBackbone, tx: optax.GradientTransformation, objective: NVAEObjective, key: jax.Array):
    """Fresh NVAE variables, Adamax state, the power-iteration vectors and the run key."""
    k_bb, k_sr, k_run = jax.random.split(key, 3)
    variables = bb.init(k_bb)
    sr = init_spectral_state(bb.config, variables, k_sr, objective.num_power_iter)
    params = {"backbone": variables["params"]}
    model_state = {"batch_stats": variables["batch_stats"], "spectral": sr}
    return new_train_state(params, {"backbone": tx.init(params["backbone"])}, k_run, model_state)


def train_step(
    bb: NVAEBackbone,
    tx: optax.GradientTransformation,
    objective: NVAEObjective,
    state: TrainState,
    batch: dict,
    axis_name=None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adamax step on NVAE's loss (module docstring), BatchNorm in training mode (statistics of this
    device's share of the batch, running averages averaged over devices)."""
    x = bb.to_nvae_input(batch["image"])
    keys = example_keys(state.step_key(), x.shape[0], axis_name)
    noise = normal_layers(bb.latent_shapes, keys, POSTERIOR_STREAM)
    stats, sr = state.model_state["batch_stats"], state.model_state["spectral"]

    def loss_fn(p):
        variables = {"params": p, "batch_stats": stats}
        loss, aux, new_stats, new_sr = nvae_loss(
            bb.config, variables, x, bb._top_first(noise), state.step, objective, sr
        )
        return loss, (aux, new_stats, new_sr)

    (loss, (aux, new_stats, new_sr)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params["backbone"]
    )
    grads = cross_replica_mean(grads, axis_name)
    new_params, new_opt = apply_updates(tx, grads, state.opt_state["backbone"], state.params["backbone"])
    kl_groups = aux.pop("kl_per_group")
    aux.pop("kl_balance_coeffs")
    d = math.prod(bb.image_shape)
    metrics = {
        "loss": loss,
        **aux,
        "bits_per_dim": aux["nelbo"] / (d * math.log(2.0)),
        **{f"kl_{i + 1}": k for i, k in enumerate(kl_groups[::-1])},  # bottom group first
        "grad_norm": optax.tree.norm(grads),
    }
    new_state = state.replace(
        step=state.step + 1,
        params={"backbone": new_params},
        opt_state={"backbone": new_opt},
        model_state={"batch_stats": cross_replica_mean(new_stats, axis_name), "spectral": new_sr},
    )
    return new_state, cross_replica_mean(metrics, axis_name)


def inference_params(state: TrainState) -> Params:
    """``{"backbone": {"params", "batch_stats"}}``: what the predict functions take (those of a trained
    backbone alone, :func:`~latentebm_jax.methods.hvae.backbone_predict`, shared with ``hvae``)."""
    return {"backbone": {"params": state.params["backbone"], "batch_stats": state.model_state["batch_stats"]}}


# ----------------------------------------------------------------------------- config binding

_GROUP = settings_of(NVAETraining)


def _configure(config) -> None:
    """NVAE's CIFAR-10 model and NVAE's optimiser defaults (the README's CIFAR-10 command: 400 epochs,
    λ = 1e-2)."""
    config.backbone = group_of(NVAEArchitecture)
    config.nvae = group_of(_GROUP)
    config.nvae.weight_decay_norm = 1e-2
    config.data.name = "cifar10"
    config.train.batch_size = 32
    config.train.num_epochs = 400
    config.eval.metrics = ("reconstruction", "fd", "probe", "samples")
    config.eval.interval_metrics = ("interval_samples", "interval_reconstructions")


def _validate(config) -> None:
    if is_text(config.data.name):
        raise ConfigError(
            f"config key 'data.name' is the text corpus {config.data.name!r}; method 'nvae' models images"
        )
    check_group(config.backbone, settings_of(NVAEArchitecture), "backbone")
    check_group(config.nvae, _GROUP, "nvae")
    d = config.data
    nvae_backbone.check(config.backbone, (d.image_size, d.image_size, d.channels))
    if config.nvae.weight_decay_norm_anneal and config.nvae.weight_decay_norm <= 0:
        raise ConfigError(
            "config key 'nvae.weight_decay_norm' must be > 0 with 'nvae.weight_decay_norm_anneal' (the "
            "annealing is geometric); set it or turn the annealing off"
        )


def total_steps(config, steps_per_epoch: int) -> int:
    """The run's length in steps (``train.num_steps``, else ``num_epochs × steps_per_epoch``): NVAE's
    ``num_total_iter``, of which the KL warm-up is a portion."""
    t = config.train
    return t.num_steps if t.num_steps > 0 else t.num_epochs * steps_per_epoch


def make(config, splits, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (predict functions jitted)."""
    del splits
    d = config.data
    bb = nvae_backbone.build(config.backbone, (d.image_size, d.image_size, d.channels))
    t = NVAETraining(**values_of(config.nvae, NVAETraining))
    total = total_steps(config, steps_per_epoch)
    epochs = max(math.ceil(total / steps_per_epoch), 1)
    tx = adamax(t, steps_per_epoch, epochs)
    objective = NVAEObjective(
        kl_anneal_portion=t.kl_anneal_portion,
        kl_const_portion=t.kl_const_portion,
        kl_const_coeff=t.kl_const_coeff,
        weight_decay_norm=t.weight_decay_norm,
        weight_decay_norm_init=t.weight_decay_norm_init,
        weight_decay_norm_anneal=t.weight_decay_norm_anneal,
        num_power_iter=t.num_power_iter,
        num_total_iter=total,
    )
    pure_init = functools.partial(init, bb, tx, objective)
    return Method(
        name="nvae",
        init=pure_init,
        state_shapes=shapes_of(pure_init),
        train_step=functools.partial(train_step, bb, tx, objective),
        predict=backbone_predict(bb),
        inference_params=inference_params,
        latents=LatentSpace(dims=bb.latent_dims, prior_steps=0),
        watch={"generator_grad": ("grad_norm",)},
    )


SPEC = MethodSpec(
    name="nvae",
    doc="NVAE by its own objective (KL warm-up and balancing, spectral regularisation): stage 1 on NVAE",
    configure=_configure,
    validate=_validate,
    make=make,
    batch_fields=("image",),
)
