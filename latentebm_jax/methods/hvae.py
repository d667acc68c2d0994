"""The hierarchical VAE backbone trained by its ELBO: stage 1 of the diffusion EBM prior (Cui & Han, ICML
2024, Sec. 2.1 and Sec. 5.5's "simple backbone hierarchical VAE with 3-layer latent variables").

The negative ELBO, as batch means at ``z̃ = μ_φ(x) + σ_φ(x) ε``:

    ‖x − g(z̃)‖²/(2σ²) + KL(q(z_L|x) ‖ N(0, I)) + Σ_{i<L} KL(q(z_i|x) ‖ N(μ_i(z_{i+1}), σ_i²(z_{i+1})))

(closed-form Gaussian KLs at the sampled ``z_{i+1}``). Its samples are the "backbone alone" baseline of
Table 1: ``ũ ~ N(0, I)``, ``z̃ = T(ũ)``, ``x = g(z̃)``. The trained run is what stage 2 reads
(``--config.diffusion.backbone_dir``). Config groups: ``backbone`` (the architecture,
:class:`~latentebm_jax.backbones.hvae.HVAESettings`) and ``hvae`` (:class:`HVAEOptimizer`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from latentebm_jax import losses
from latentebm_jax.backbones import hvae as hvae_backbone
from latentebm_jax.backbones.base import Backbone
from latentebm_jax.backbones.hvae import HVAEBackbone, HVAESettings
from latentebm_jax.config_schema import (
    ConfigError,
    check_group,
    group_of,
    non_negative,
    positive,
    setting,
    settings_of,
    values_of,
)
from latentebm_jax.data.settings import is_text
from latentebm_jax.methods.base import LatentSpace, Method, MethodSpec, shapes_of
from latentebm_jax.methods.common import apply_updates, cross_replica_mean, example_keys, normal_layers
from latentebm_jax.optim import AdamSchedule
from latentebm_jax.state import TrainState, new_train_state

Params = dict[str, Any]
Latents = tuple[jax.Array, ...]

# Named sub-streams of an example's key (the numbering the diffusion prior shares).
POSTERIOR_STREAM, PRIOR_STREAM = 0, 4


@dataclasses.dataclass(frozen=True)
class HVAEOptimizer(AdamSchedule):
    """Adam on the backbone (constant learning rate by default)."""

    lr: float = setting(1e-3, "learning rate", check=positive)
    weight_decay: float = setting(0.0, "weight decay (coupled)", check=non_negative)


def elbo_terms(bb: HVAEBackbone, params: Params, x: jax.Array, noise: Latents) -> dict[str, Any]:
    """The negative ELBO (module docstring) and its parts at ``z̃ = μ_φ(x) + σ_φ(x)·noise``, batch means.

    ``loss = recon + Σ_i kl_i`` with ``recon = ‖x − g(z̃)‖²/(2σ²)``; ``kl_L`` is ``KL(q ‖ N(0, I))`` and
    ``kl_i`` (``i < L``) ``KL(q(z_i|x) ‖ N(μ_i(z_{i+1}), σ_i²(z_{i+1})))`` at the sampled ``z_{i+1}``.
    """
    stats = bb.encode(params, x)
    z = tuple(m + jnp.exp(0.5 * lv) * e for (m, lv), e in zip(stats, noise))
    x_hat = bb.decode(params, z)
    recon = losses.gaussian_reconstruction_loss(x, x_hat, bb.likelihood_sigma)
    kls = []
    for i, (m, lv) in enumerate(stats):
        mean_p, std_p = bb.conditional(params, i, z[i + 1 :])
        mean_p = jnp.broadcast_to(mean_p, m.shape)
        log_var_p = jnp.broadcast_to(2.0 * jnp.log(std_p), m.shape)
        kls.append(jnp.mean(losses.gaussian_kl(m, lv, mean_p, log_var_p)))
    return {"loss": recon + sum(kls), "recon": recon, "kl": tuple(kls), "x_hat": x_hat, "z": z}


def init(bb: HVAEBackbone, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """Fresh backbone parameters ``{"backbone"}``, Adam state and run key."""
    k_bb, _, k_run = jax.random.split(key, 3)
    params = {"backbone": bb.init(k_bb)}
    return new_train_state(params, {"backbone": tx.init(params["backbone"])}, k_run)


def train_step(
    bb: HVAEBackbone, tx: optax.GradientTransformation, state: TrainState, batch: dict, axis_name=None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adam step on the negative ELBO (per-example noise keys; gradients averaged over devices)."""
    x = batch["image"]
    keys = example_keys(state.step_key(), x.shape[0], axis_name)
    noise = normal_layers(bb.latent_dims, keys, POSTERIOR_STREAM)

    def loss_fn(p):
        terms = elbo_terms(bb, p, x, noise)
        return terms["loss"], terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["backbone"])
    grads = cross_replica_mean(grads, axis_name)
    new_bb, new_opt = apply_updates(tx, grads, state.opt_state["backbone"], state.params["backbone"])
    d = math.prod(bb.image_shape)
    nll = terms["recon"] + 0.5 * d * math.log(2.0 * math.pi * bb.likelihood_sigma**2)
    metrics = {
        "loss": loss,
        "elbo": -(nll + sum(terms["kl"])),
        "mse": jnp.mean(jnp.square(x - terms["x_hat"])),
        **{f"kl_{i + 1}": k for i, k in enumerate(terms["kl"])},
        "grad_norm": optax.tree.norm(grads),
    }
    new_state = state.replace(
        step=state.step + 1, params={"backbone": new_bb}, opt_state={"backbone": new_opt}
    )
    return new_state, cross_replica_mean(metrics, axis_name)


# ----------------------------------------------------------------------------- a trained backbone alone
# Generic over the backbone interface (``backbones/base.py``): ``hvae`` and ``nvae`` (``methods/nvae.py``)
# share them; the backbone's variables are ``params["backbone"]``.


def sample_u(bb: Backbone, keys: jax.Array, u_start: Latents | None = None, free=None) -> Latents:
    """``ũ ~ N(0, I)`` exactly, one draw per key; layers with ``free[i] = False`` stay at ``u_start[i]``."""
    u = normal_layers(bb.noise_shapes(), keys, PRIOR_STREAM)
    if u_start is None:
        return u
    return tuple(n if f else s for f, n, s in zip(free, u, u_start))


def generate(bb: Backbone, params: Params, key: jax.Array, num: int) -> jax.Array:
    """``num`` images ``g(T(ũ))``, ``ũ ~ N(0, I)`` (the backbone alone)."""
    bbp = params["backbone"]
    return bb.decode(bbp, bb.to_z(bbp, sample_u(bb, jax.random.split(key, num))))


def resample_layer(bb: Backbone, params: Params, z: Latents, layer: int, key: jax.Array) -> Latents:
    """Hierarchical sampling: ``u_layer`` drawn anew from ``N(0, I)`` with the other layers' ``ũ`` fixed;
    the layers below follow through ``T``."""
    bbp = params["backbone"]
    keys = jax.random.split(key, z[0].shape[0])
    free = tuple(i == layer for i in range(len(bb.noise_shapes())))
    return bb.to_z(bbp, sample_u(bb, keys, bb.to_u(bbp, z), free))


def log_joint_at_inferred(bb: Backbone, params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
    """``log p_β(x, z̃)`` at ``z̃ ~ q_φ(z̃|x)`` (the anomaly score)."""
    bbp = params["backbone"]
    noise = normal_layers(bb.noise_shapes(), jax.random.split(key, x.shape[0]), POSTERIOR_STREAM)
    return bb.log_joint(bbp, bb.posterior_draw(bbp, x, noise), x)


def backbone_predict(bb: Backbone) -> dict[str, Any]:
    """The predict functions of a trained backbone on its own (jitted): exact prior samples, reconstructions
    and ``log p(x, z̃)`` at a posterior draw, inferred latents (posterior means), hierarchical resampling."""

    def _infer(params, batch, key):
        return bb.posterior_mean(params["backbone"], batch["image"])

    def _sample_prior(params, key, num, num_steps):
        del num_steps  # exact samples
        return bb.to_z(params["backbone"], sample_u(bb, jax.random.split(key, num)))

    return {
        "generate": jax.jit(
            lambda params, key, num: {"image": generate(bb, params, key, num)}, static_argnums=2
        ),
        "reconstruct": jax.jit(
            lambda params, batch, key: {"image": bb.decode(params["backbone"], _infer(params, batch, key))}
        ),
        "log_joint": jax.jit(
            lambda params, batch, key: log_joint_at_inferred(bb, params, batch["image"], key)
        ),
        "infer": jax.jit(_infer),
        "decode": jax.jit(lambda params, z: {"image": bb.decode(params["backbone"], z)}),
        "sample_prior": jax.jit(_sample_prior, static_argnums=(2, 3)),
        "resample_layer": jax.jit(functools.partial(resample_layer, bb), static_argnums=2),
    }


# ----------------------------------------------------------------------------- config binding

_GROUP = settings_of(HVAEOptimizer)


def _configure(config) -> None:
    """The CIFAR-10 backbone of the diffusion prior's reference setting, 150 epochs."""
    config.backbone = group_of(HVAESettings)
    config.hvae = group_of(_GROUP)
    config.hvae.update(beta1=0.9, beta2=0.999, lr_decay=1.0)
    config.data.name = "cifar10"
    config.train.num_epochs = 150
    config.eval.metrics = ("reconstruction", "probe", "hierarchy", "samples")
    config.eval.interval_metrics = ("interval_samples", "interval_reconstructions")


def _validate(config) -> None:
    if is_text(config.data.name):
        raise ConfigError(
            f"config key 'data.name' is the text corpus {config.data.name!r}; method 'hvae' models images"
        )
    check_group(config.backbone, settings_of(HVAESettings), "backbone")
    check_group(config.hvae, _GROUP, "hvae")
    check_backbone_shape(config)


def check_backbone_shape(config) -> None:
    """The HVAE's widths and image size fit its number of layers (as the joint prior's generator)."""
    from latentebm_jax.methods.joint import check_image_halves

    n = len(config.backbone.latent_dims)
    if len(config.backbone.widths) != n + 1:
        raise ConfigError(
            f"config key 'backbone.widths' has {len(config.backbone.widths)} values but "
            f"'backbone.latent_dims' "
            f"has {n} layers; give c_1..c_L and the top MLP width ({n + 1} values)"
        )
    check_image_halves(config.data.image_size, n, "backbone.latent_dims")


def make(config, splits, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (predict functions jitted)."""
    del splits
    d = config.data
    bb = hvae_backbone.build(config.backbone, (d.image_size, d.image_size, d.channels))
    opt = HVAEOptimizer(**values_of(config.hvae, HVAEOptimizer))
    tx = opt.adam(opt.lr, opt.weight_decay, steps_per_epoch)
    pure_init = functools.partial(init, bb, tx)
    return Method(
        name="hvae",
        init=pure_init,
        state_shapes=shapes_of(pure_init),
        train_step=functools.partial(train_step, bb, tx),
        predict=backbone_predict(bb),
        latents=LatentSpace(dims=bb.latent_dims, prior_steps=0),
        watch={"generator_grad": ("grad_norm",)},
    )


SPEC = MethodSpec(
    name="hvae",
    doc="the hierarchical VAE backbone by its ELBO: stage 1 of the diffusion EBM prior (ICML 2024)",
    configure=_configure,
    validate=_validate,
    make=make,
    batch_fields=("image",),
)
