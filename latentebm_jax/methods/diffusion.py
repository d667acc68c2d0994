"""Hierarchical EBM prior learned by diffusion in ũ-space (Cui & Han, ICML 2024): a two-stage method.

**Stage 1** (``stage = 1``): the backbone hierarchical VAE (:class:`~latentebm_jax.nets.hvae.HierarchicalVAE`,
Eq. 1) by its ELBO, ``E_q[log N(x; g(z̃), σ² I)] − KL(q(z_L|x) ‖ N(0, I)) − Σ_{i<L} E_q KL(q(z_i|x) ‖
p(z_i|z_{i+1}))`` (closed-form Gaussian KLs at the sampled ``z_{i+1}``). Its samples are the "backbone
alone" baseline: ``ũ ~ N(0, I)``, ``z̃ = T(ũ)``, ``x = g(z̃)``.

**Stage 2** (``stage = 2``): per-layer time-conditioned EBMs ``f_ω_i(z_i, t)`` with the backbone frozen
(its parameters are read from the stage-1 checkpoint and carried, untrained, in the state's
``model_state['backbone']``). ``F_ω(z̃, t) = Σ_i f_ω_i(z_i, t)`` (Eq. 9). Two schemes:

* ``scheme = 'diffusion'`` (the paper), Algorithm 1 per mini-batch: ``z̃ ~ q_φ(z̃|x)`` (a posterior sample, as
  the authors), ``u_0 = T⁻¹(z̃)``; ``t ~ U{0 … T−1}`` per example; the pair ``(u_t⁺, u_{t+1})`` (Eq. 7);
  ``u_t⁻`` by ``K`` Langevin steps on ``log p_ω(u_t | u_{t+1})`` (Eq. 13) from ``u_{t+1}``, step ``√s_t``
  with the authors' ``s_t = b (σ̄_t/σ̄_0) σ²_{t+1}``; loss ``mean F(T(u⁻), t) − mean F(T(u⁺), t)``
  (Eq. 12). Sampling is Algorithm 2 (``diffusion.reverse_sample``).
* ``scheme = 'marginal'``: the marginal joint EBM on ũ-space (Eq. 8, Cui et al. 2023a), ``t = 0`` always,
  negatives by Langevin on ``F(T(ũ)) − ‖ũ‖²/2`` from ``N(0, I)``.

Energy parameterisation: with ``energy_scale = 'step'`` (the authors' code) ``F = g/s_t`` where ``g`` is
the network output, which makes their loss ``mean(−(g⁺ − g⁻)/s_t)`` exactly Eq. 12 and their sampler's
EBM drift ``½∇g`` exactly the Langevin drift of Eq. 13 at step ``√s_t``; ``'none'`` uses ``F = g``.

Label coupling (Sec. 3.3, Eq. 14, App. A.2): the energies of ``label_layers`` output one value per class,
``F_i,y = scale(t) g_i,y``; their label-free energy is ``log Σ_y exp F_i,y`` (Eq. 18), and examples with
``t = 0`` add the cross-entropy of ``softmax_y(F_i,y)`` against the label (Eqs. 19–20). Class-conditional
sampling reverses label-free to ``u_1``, then samples ``u_0`` with ``F_i,y`` as the coupled layers' energy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from jax import lax

from latentebm_jax import diffusion as dif
from latentebm_jax import losses, priors
from latentebm_jax.langevin import batch_size_of, langevin
from latentebm_jax.methods.base import LatentTools, Method
from latentebm_jax.methods.common import (
    apply_updates,
    cross_replica_mean,
    example_keys,
    fold_keys,
    normal_layers,
)
from latentebm_jax.nets.energy import LayerwiseEnergy
from latentebm_jax.nets.hvae import HierarchicalVAE
from latentebm_jax.training.optim import ebm_and_model_adams, torch_adam
from latentebm_jax.training.state import TrainState, new_train_state

Params = dict[str, Any]
Latents = tuple[jax.Array, ...]

SCHEMES = ("diffusion", "marginal")
ENERGY_SCALES = ("step", "none")

# Named sub-streams of an example's key.
_POST, _TIME, _PAIR, _CHAIN, _INIT, _LAYER, _OOD = 0, 1, 2, 3, 4, 5, 6


@dataclasses.dataclass(frozen=True)
class DiffusionHparams:
    """Backbone, EBM and sampler settings (static). Defaults: the authors' CIFAR-10 sampler (T = 3, K = 50,
    b = 3e-5) on a small 3-layer backbone."""

    stage: int = 2
    image_shape: tuple[int, int, int] = (32, 32, 1)
    latent_dims: tuple[int, ...] = (2, 2, 10)  # bottom z_1 first
    widths: tuple[int, ...] = (16, 32, 64, 256)
    prior_hidden: int = 256
    sigma: float = math.sqrt(1.0 / 20.0)  # decoder std; reconstruction weight 1/(2σ²) = 10
    conv_impl: str = "fast"
    scheme: str = "diffusion"
    num_diffusion_steps: int = 3
    langevin_steps: int = 50
    base_step: float = 3e-5  # the authors' e_l_step_size b (a variance)
    energy_scale: str = "step"
    keep_last_kernel: bool = True
    marginal_step_size: float = 0.1  # our convention (noise std)
    ebm_hidden: int = 128
    ebm_blocks: int = 2
    ebm_spectral_norm: bool = True
    label_layers: tuple[int, ...] = ()  # 0-based, bottom first
    num_classes: int = 10
    label_weight: float = 1.0
    label_steps: str = "first"  # couple y at t = 0 only (App. A.2) or at "all" t
    label_guidance: float = 1.0  # w in F_free + w·log softmax(F)_y when sampling with labels (1 = Eq. 14)
    temperature: float = 1.0
    unroll: int = 1

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    def backbone_net(self) -> HierarchicalVAE:
        h, _, c = self.image_shape
        return HierarchicalVAE(
            image_size=h,
            channels=c,
            latent_dims=self.latent_dims,
            widths=self.widths,
            prior_hidden=self.prior_hidden,
            conv_impl=self.conv_impl,
        )

    def energy_net(self) -> LayerwiseEnergy:
        outs = tuple(self.num_classes if i in self.label_layers else 1 for i in range(self.num_layers))
        return LayerwiseEnergy(
            num_layers=self.num_layers,
            hidden=self.ebm_hidden,
            num_blocks=self.ebm_blocks,
            out_dims=outs,
            spectral_norm=self.ebm_spectral_norm,
        )

    def schedule(self) -> dif.NoiseSchedule:
        return dif.noise_schedule(self.num_diffusion_steps)

    def reverse_settings(self) -> dif.ReverseSettings:
        return dif.ReverseSettings(
            step=jnp.sqrt(dif.langevin_step_sizes(self.schedule(), self.base_step)),
            num_steps=self.langevin_steps,
            keep_last_kernel=self.keep_last_kernel,
            temperature=self.temperature,
            unroll=self.unroll,
        )


# ----------------------------------------------------------------------------- the backbone


def decode(hp: DiffusionHparams, backbone: Params, z: Latents) -> jax.Array:
    """``g_β0(z̃)``: images ``(B, H, W, C)`` in ``[−1, 1]``."""
    return hp.backbone_net().apply({"params": backbone}, tuple(z), method="decode")


def encode(hp: DiffusionHparams, backbone: Params, x: jax.Array):
    """``q_φ(z_i|x)`` per layer: ``((μ_1, log σ²_1), …)``."""
    chex.assert_shape(x, (None, *hp.image_shape))
    return hp.backbone_net().apply({"params": backbone}, x, method="encode")


def conditional_fn(hp: DiffusionHparams, backbone: Params) -> dif.ConditionalFn:
    """The backbone's ``(i, z_above) -> (μ_i, σ_i)``, which defines ``T`` (App. A.1)."""

    def conditional(i: int, z_above: Latents):
        return hp.backbone_net().apply({"params": backbone}, i, tuple(z_above), method="conditional")

    return conditional


def to_z(hp: DiffusionHparams, backbone: Params, u: Latents) -> Latents:
    """``z̃ = T(ũ)``."""
    return dif.u_to_z(conditional_fn(hp, backbone), u)


def to_u(hp: DiffusionHparams, backbone: Params, z: Latents) -> Latents:
    """``ũ = T⁻¹(z̃)``."""
    return dif.z_to_u(conditional_fn(hp, backbone), z)


def _normal_layers(hp: DiffusionHparams, keys: jax.Array, stream: int) -> Latents:
    """One ``(B, d_i)`` standard normal per layer (:func:`~latentebm_jax.methods.common.normal_layers`)."""
    return normal_layers(hp.latent_dims, keys, stream)


def posterior_sample(hp: DiffusionHparams, backbone: Params, x: jax.Array, noise: Latents) -> Latents:
    """``z̃ = μ_φ(x) + σ_φ(x) ε``."""
    return tuple(m + jnp.exp(0.5 * lv) * e for (m, lv), e in zip(encode(hp, backbone, x), noise))


def elbo_terms(hp: DiffusionHparams, backbone: Params, x: jax.Array, noise: Latents) -> dict[str, Any]:
    """Stage 1's negative ELBO (module docstring) at ``z̃ = μ_φ(x) + σ_φ(x)·noise``, as batch means.

    ``loss = recon + Σ_i kl_i`` with ``recon = ‖x − g(z̃)‖²/(2σ²)``; ``kl_L`` is ``KL(q ‖ N(0, I))`` and
    ``kl_i`` (``i < L``) ``KL(q(z_i|x) ‖ N(μ_i(z_{i+1}), σ_i²(z_{i+1})))`` at the sampled ``z_{i+1}``.
    """
    stats = encode(hp, backbone, x)
    z = tuple(m + jnp.exp(0.5 * lv) * e for (m, lv), e in zip(stats, noise))
    x_hat = decode(hp, backbone, z)
    recon = losses.gaussian_reconstruction_loss(x, x_hat, hp.sigma)
    cond = conditional_fn(hp, backbone)
    kls = []
    for i, (m, lv) in enumerate(stats):
        mean_p, std_p = cond(i, z[i + 1 :])
        mean_p = jnp.broadcast_to(mean_p, m.shape)
        log_var_p = jnp.broadcast_to(2.0 * jnp.log(std_p), m.shape)
        kls.append(jnp.mean(losses.gaussian_kl(m, lv, mean_p, log_var_p)))
    return {"loss": recon + sum(kls), "recon": recon, "kl": tuple(kls), "x_hat": x_hat, "z": z}


def log_joint_backbone(hp: DiffusionHparams, backbone: Params, z: Latents, x: jax.Array) -> jax.Array:
    """``log p_β(x, z̃) = log N(x; g(z̃), σ² I) + log p_β(z̃)`` (exact; ``p_β(z̃)`` by the change of
    variables of Eq. 16)."""
    prior = dif.prior_log_prob_z(conditional_fn(hp, backbone), z)
    return prior + priors.gaussian_log_likelihood(x, decode(hp, backbone, z), hp.sigma)


# ----------------------------------------------------------------------------- the EBM prior


def _ebm_variables(ebm: Params, stats: Params) -> dict[str, Any]:
    return {"params": ebm, **({"batch_stats": stats} if stats else {})}


def layer_neg_energies(
    hp: DiffusionHparams,
    outputs: tuple[jax.Array, ...],
    t: jax.Array,
    labels: jax.Array | None = None,
) -> jax.Array:
    """Per-layer energies ``F_i = scale(t) · g_i`` ``(B, L)`` from the network outputs ``g_i``: the scalar
    output, or for a label-coupled layer with logits ``F_i,y = scale(t) · g_i,y`` (Eq. 14, ``⟨F, y⟩``) the
    label-free ``log Σ_y exp F_i,y`` (Eq. 18). Where ``labels`` are given and ``t`` is a coupled step
    (:func:`label_coupled`), the coupled layers give ``log Σ_y exp F_i,y + w · log softmax(F_i)_y``, which
    for the default guidance ``w = 1`` is ``F_i,y`` itself (Eq. 14); ``w > 1`` sharpens ``p(y|ũ)``.

    ``labels``: ``(B,)``, one label for every coupled layer (a class), or ``(B, J)``, one per entry of
    ``hp.label_layers`` (attributes at different layers, Fig. 4); ``−1`` leaves that layer label-free."""
    scale = energy_scale(hp, t)[:, None]
    cols = []
    for i, out in enumerate(outputs):
        if i in hp.label_layers:
            logits = scale * out
            f = jax.nn.logsumexp(logits, axis=-1)
            if labels is not None:
                y = layer_labels(hp, labels, i)
                picked = jnp.take_along_axis(logits, jnp.maximum(y, 0)[:, None], axis=-1)[:, 0]
                on = label_coupled(hp, t) & (y >= 0)
                f = jnp.where(on, f + hp.label_guidance * (picked - f), f)
            cols.append(f)
        else:
            cols.append(scale[:, 0] * out[:, 0])
    return jnp.stack(cols, axis=-1)


def layer_labels(hp: DiffusionHparams, labels: jax.Array, layer: int) -> jax.Array:
    """The labels ``(B,)`` coupled to ``layer`` (0-based): ``labels`` itself if it is ``(B,)``, else its
    column for the layer's position in ``hp.label_layers``."""
    if labels.ndim == 1:
        return labels
    chex.assert_shape(labels, (None, len(hp.label_layers)))
    return labels[:, hp.label_layers.index(layer)]


def label_coupled(hp: DiffusionHparams, t: jax.Array) -> jax.Array:
    """Whether ``y`` is coupled at diffusion step ``t`` (B,): ``t = 0`` only (App. A.2, ``label_steps =
    'first'``) or every step (``'all'``, an option: the class is then steered while the upper steps decide
    it, since the ``t = 0`` chain's steps ``√s_0`` are too small to change it)."""
    if hp.label_steps == "all" or hp.scheme == "marginal":
        return jnp.ones(t.shape, bool)
    return t == 0


def energy_scale(hp: DiffusionHparams, t: jax.Array) -> jax.Array:
    """``1/s_t`` (``energy_scale='step'`` with the diffusion scheme, the authors' ``F = g/s_t``) or 1."""
    if hp.scheme == "diffusion" and hp.energy_scale == "step":
        return 1.0 / dif.langevin_step_sizes(hp.schedule(), hp.base_step)[t]
    return jnp.ones(t.shape, jnp.float32)


def neg_energy_fn(
    hp: DiffusionHparams,
    ebm: Params,
    stats: Params,
    *,
    labels: jax.Array | None = None,
    layers: tuple[int, ...] | None = None,
):
    """``F_ω(z̃, t) = Σ_{i ∈ layers} F_i(z_i, t)`` (Eq. 9) as a function ``(z̃, t) -> (B,)``."""

    def f(z: Latents, t: jax.Array) -> jax.Array:
        outs = hp.energy_net().apply(_ebm_variables(ebm, stats), tuple(z), t)
        per_layer = layer_neg_energies(hp, outs, t, labels)
        if layers is not None:
            per_layer = per_layer[:, list(layers)]
        return jnp.sum(per_layer, axis=-1)

    return f


def sample_u(
    hp: DiffusionHparams,
    params: Params,
    keys: jax.Array,
    *,
    labels: jax.Array | None = None,
    num_steps: int | None = None,
    u_start: Latents | None = None,
    free: tuple[bool, ...] | None = None,
) -> Latents:
    """Prior samples in ũ-space, one chain per key. Stage 1: ``ũ ~ N(0, τ² I)`` exactly. Stage 2
    ``diffusion``: Algorithm 2 from ``u_T ~ N(0, τ² I)``; ``marginal``: Langevin on Eq. 8 from the same start.
    ``num_steps`` overrides ``K`` (per diffusion step); ``u_start``/``free``: layers with ``free[i] = False``
    stay at ``u_start[i]`` (hierarchical and compositional sampling)."""
    eps = _normal_layers(hp, keys, _INIT)
    u0 = tuple(hp.temperature * e for e in eps)
    if u_start is not None:
        free = free or (True,) * hp.num_layers
        u0 = tuple(n if f else s for f, n, s in zip(free, u0, u_start))
    if hp.stage == 1:
        return u0
    bb, ebm, stats = params["backbone"], params["ebm"], params["ebm_stats"]
    zf = functools.partial(to_z, hp, bb)
    chain_keys = fold_keys(keys, _CHAIN)
    if hp.scheme == "marginal":
        f = neg_energy_fn(hp, ebm, stats, labels=labels)
        free = free or (True,) * hp.num_layers

        def log_target(y):
            it = iter(y)
            u = tuple(next(it) if fr else v for fr, v in zip(free, u0))
            return dif.marginal_log_density(f, zf, u) / hp.temperature**2

        y = langevin(
            log_target,
            tuple(v for fr, v in zip(free, u0) if fr),
            chain_keys,
            step_size=hp.marginal_step_size * hp.temperature,
            num_steps=hp.langevin_steps if num_steps is None else num_steps,
            unroll=hp.unroll,
        )
        it = iter(y)
        return tuple(next(it) if fr else v for fr, v in zip(free, u0))
    settings = hp.reverse_settings()
    if num_steps is not None:
        settings = dataclasses.replace(settings, num_steps=num_steps)
    return dif.reverse_sample(
        neg_energy_fn(hp, ebm, stats, labels=labels),
        zf,
        hp.schedule(),
        settings,
        u0,
        chain_keys,
        free=free,
    )


# ----------------------------------------------------------------------------- learning


def _optimizer(hp: DiffusionHparams, tx: dict) -> optax.GradientTransformation:
    return tx["backbone"] if hp.stage == 1 else tx["ebm"]


def init(
    hp: DiffusionHparams,
    tx: dict[str, optax.GradientTransformation],
    key: jax.Array,
    backbone: Params | None = None,
) -> TrainState:
    """Stage 1: fresh backbone. Stage 2: fresh EBMs, the given (trained, frozen) ``backbone``."""
    k_bb, k_ebm, k_run = jax.random.split(key, 3)
    if hp.stage == 1:
        x = jnp.zeros((1, *hp.image_shape), jnp.float32)
        params = {"backbone": hp.backbone_net().init(k_bb, x)["params"]}
        return new_train_state(params, {"backbone": tx["backbone"].init(params["backbone"])}, k_run)
    if backbone is None:
        raise ValueError("stage 2 needs the trained stage-1 backbone parameters")
    z = tuple(jnp.zeros((1, d), jnp.float32) for d in hp.latent_dims)
    ebm_vars = hp.energy_net().init(k_ebm, z, jnp.zeros((1,), jnp.int32))
    params = {"ebm": dict(ebm_vars["params"])}
    model_state = {"backbone": backbone, "ebm": dict(ebm_vars.get("batch_stats", {}))}
    return new_train_state(params, {"ebm": tx["ebm"].init(params["ebm"])}, k_run, model_state)


def inference_params(state: TrainState) -> Params:
    """What the sampling and evaluation functions take: ``backbone`` (+ ``ebm`` and its ``ebm_stats``)."""
    if "backbone" in state.params:
        return {"backbone": state.params["backbone"]}
    return {
        "backbone": state.model_state["backbone"],
        "ebm": state.params["ebm"],
        "ebm_stats": state.model_state.get("ebm", {}),
    }


def train_step_backbone(
    hp: DiffusionHparams, tx: dict, state: TrainState, batch: dict, axis_name: str | None = None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Stage 1: one Adam step on the negative ELBO of the hierarchical VAE."""
    x = batch["image"]
    keys = example_keys(state.step_key(), x.shape[0], axis_name)
    noise = _normal_layers(hp, keys, _POST)

    def loss_fn(p):
        terms = elbo_terms(hp, p, x, noise)
        return terms["loss"], terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["backbone"])
    grads = cross_replica_mean(grads, axis_name)
    new_bb, new_opt = apply_updates(
        tx["backbone"], grads, state.opt_state["backbone"], state.params["backbone"]
    )
    d = math.prod(hp.image_shape)
    nll = terms["recon"] + 0.5 * d * math.log(2.0 * math.pi * hp.sigma**2)
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


def negative_samples(
    hp: DiffusionHparams,
    params: Params,
    u_pos: Latents,
    u_next: Latents,
    t: jax.Array,
    keys: jax.Array,
) -> Latents:
    """Algorithm 1 line 6: ``u_t⁻ ~ p_ω(u_t | u_{t+1})`` from ``u_{t+1}`` (diffusion), or ``ũ⁻ ~ p_ω(ũ)``
    from ``N(0, I)`` (marginal; ``u_pos``/``u_next``/``t`` unused)."""
    if hp.scheme == "marginal":
        return sample_u(dataclasses.replace(hp, temperature=1.0), params, keys)
    settings = dataclasses.replace(hp.reverse_settings(), temperature=1.0)
    f = neg_energy_fn(hp, params["ebm"], params["ebm_stats"])
    return dif.conditional_step(
        f, functools.partial(to_z, hp, params["backbone"]), hp.schedule(), settings, u_next, t, keys
    )


def train_step_ebm(
    hp: DiffusionHparams, tx: dict, state: TrainState, batch: dict, axis_name: str | None = None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Stage 2: one iteration of Algorithm 1 (module docstring) on this device's share of the batch."""
    x = batch["image"]
    chex.assert_shape(x, (None, *hp.image_shape))
    b = x.shape[0]
    keys = example_keys(state.step_key(), b, axis_name)
    params = inference_params(state)
    bb, stats = params["backbone"], params["ebm_stats"]
    z_post = posterior_sample(hp, bb, x, _normal_layers(hp, keys, _POST))
    u0 = to_u(hp, bb, z_post)
    if hp.scheme == "diffusion":
        t = jax.vmap(lambda k: jax.random.randint(k, (), 0, hp.num_diffusion_steps))(fold_keys(keys, _TIME))
        u_pos, u_next = dif.q_sample_pair(hp.schedule(), u0, t, fold_keys(keys, _PAIR))
    else:
        t = jnp.zeros((b,), jnp.int32)
        u_pos, u_next = u0, u0
    u_neg = lax.stop_gradient(negative_samples(hp, params, u_pos, u_next, t, fold_keys(keys, _CHAIN)))
    z_pos, z_neg = to_z(hp, bb, u_pos), to_z(hp, bb, u_neg)
    labels = batch.get("attributes", batch.get("label"))  # (B, J) per-layer attributes or (B,) classes
    use_labels = bool(hp.label_layers) and labels is not None

    def loss_fn(ebm):
        both = tuple(jnp.concatenate([p, n]) for p, n in zip(z_pos, z_neg))
        tt = jnp.concatenate([t, t])
        outs, updated = hp.energy_net().apply(
            _ebm_variables(ebm, stats), both, tt, update_stats=True, mutable=["batch_stats"]
        )
        g = layer_neg_energies(hp, outs, tt)  # (2B, L) per-layer F_i, label-free
        per_layer = jnp.mean(g[b:], axis=0) - jnp.mean(g[:b], axis=0)  # L_i of Eq. 12 (authors' §3.6)
        loss = jnp.sum(per_layer)
        ce = jnp.zeros(())
        if use_labels:
            scale = energy_scale(hp, t)[:, None]
            for i in hp.label_layers:  # softmax of the energies ⟨F, y⟩ (Eq. 19)
                y = layer_labels(hp, labels, i)
                on = (label_coupled(hp, t) & (y >= 0)).astype(jnp.float32)
                logp = jax.nn.log_softmax(scale * outs[i][:b], axis=-1)
                nll = -jnp.take_along_axis(logp, jnp.maximum(y, 0)[:, None], axis=-1)[:, 0]
                ce = ce + jnp.sum(on * nll) / jnp.maximum(jnp.sum(on), 1.0)
            loss = loss + hp.label_weight * ce
        aux = (per_layer, jnp.mean(g[:b], axis=0), jnp.mean(g[b:], axis=0), ce)
        return loss, (aux, updated.get("batch_stats", stats))

    (loss, (aux, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params["ebm"])
    per_layer, g_pos, g_neg, ce = aux
    grads = cross_replica_mean(grads, axis_name)
    new_ebm, new_opt = apply_updates(tx["ebm"], grads, state.opt_state["ebm"], params["ebm"])
    du = jnp.concatenate([(a - c).reshape(b, -1) for a, c in zip(u_neg, u_pos)], axis=-1)
    metrics = {
        "loss": loss,
        **{f"loss_{i + 1}": v for i, v in enumerate(per_layer)},
        **{f"g_pos_{i + 1}": v for i, v in enumerate(g_pos)},
        **{f"g_neg_{i + 1}": v for i, v in enumerate(g_neg)},
        "u_gap": jnp.mean(jnp.linalg.norm(du, axis=-1)),
        "grad_norm": optax.tree.norm(grads),
    }
    if use_labels:
        metrics["cross_entropy"] = ce
    new_state = state.replace(
        step=state.step + 1,
        params={"ebm": new_ebm},
        opt_state={"ebm": new_opt},
        model_state={"backbone": bb, "ebm": new_stats},
    )
    return new_state, cross_replica_mean(metrics, axis_name)


def train_step(hp: DiffusionHparams, tx: dict, state: TrainState, batch: dict, axis_name: str | None = None):
    """Stage 1 or stage 2 train step (by ``hp.stage``)."""
    step = train_step_backbone if hp.stage == 1 else train_step_ebm
    return step(hp, tx, state, batch, axis_name)


# ----------------------------------------------------------------------------- using a trained model


def _chain_keys(key: jax.Array, num: int) -> jax.Array:
    return jax.random.split(key, num)


def generate(
    hp: DiffusionHparams,
    params: Params,
    key: jax.Array,
    num: int,
    labels: jax.Array | None = None,
) -> jax.Array:
    """``num`` images: ``ũ`` from :func:`sample_u` (optionally class-conditional), ``x = g(T(ũ))``."""
    u = sample_u(hp, params, _chain_keys(key, num), labels=labels)
    return decode(hp, params["backbone"], to_z(hp, params["backbone"], u))


def reconstruct(hp: DiffusionHparams, params: Params, x: jax.Array) -> jax.Array:
    """``g(μ_φ(x))``."""
    bb = params["backbone"]
    return decode(hp, bb, tuple(m for m, _ in encode(hp, bb, x)))


def infer(hp: DiffusionHparams, params: Params, x: jax.Array) -> Latents:
    """The means of ``q_φ(z̃|x)``."""
    return tuple(m for m, _ in encode(hp, params["backbone"], x))


def log_joint_at_inferred(hp: DiffusionHparams, params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
    """Backbone ``log p_β(x, z̃)`` at ``z̃ ~ q_φ(z̃|x)`` (the stage-1 anomaly score)."""
    bb = params["backbone"]
    z = posterior_sample(hp, bb, x, _normal_layers(hp, _chain_keys(key, x.shape[0]), _POST))
    return log_joint_backbone(hp, bb, z, x)


def resample_layer(hp: DiffusionHparams, params: Params, z: Latents, layer: int, key: jax.Array) -> Latents:
    """Hierarchical sampling: ``u_layer`` drawn anew (Gaussian in stage 1, by the prior sampler with the
    other layers' ``ũ`` held fixed in stage 2); lower layers follow through ``T``."""
    bb = params["backbone"]
    u = to_u(hp, bb, z)
    free = tuple(i == layer for i in range(hp.num_layers))
    u_new = sample_u(hp, params, _chain_keys(key, batch_size_of(z)), u_start=u, free=free)
    return to_z(hp, bb, u_new)


def long_run_chain(
    hp: DiffusionHparams, params: Params, key: jax.Array, num: int, num_steps: int, record_every: int
) -> dict[str, jax.Array]:
    """Long-run Langevin transitions (Sec. 5.4, Figs. 6–7): Algorithm 2 with ``num_steps`` steps *per
    diffusion step* (diffusion) or one chain of ``num_steps`` (marginal), decoded every ``record_every``.

    ``energy`` is ``−log p_ω(u_t | u_{t+1})`` (or ``−log p_ω(ũ)``) at every step, averaged over chains.
    """
    if num_steps % record_every:
        raise ValueError(f"num_steps={num_steps} must be a multiple of record_every={record_every}")
    bb, ebm, stats = params["backbone"], params["ebm"], params["ebm_stats"]
    keys = _chain_keys(key, num)
    u = tuple(hp.temperature * e for e in _normal_layers(hp, keys, _INIT))
    zf = functools.partial(to_z, hp, bb)
    f = neg_energy_fn(hp, ebm, stats)
    sched, settings = hp.schedule(), hp.reverse_settings()
    frames, energies = [u], []
    stages = range(hp.num_diffusion_steps - 1, -1, -1) if hp.scheme == "diffusion" else [None]
    for t_val in stages:
        if t_val is None:
            log_p = functools.partial(dif.marginal_log_density, f, zf)
            step = hp.marginal_step_size
        else:
            tt = jnp.full((num,), t_val, jnp.int32)
            cond = u

            def log_p(y, cond=cond, tt=tt):
                return dif.conditional_log_density(
                    f, zf, sched, y, cond, tt, keep_last_kernel=settings.keep_last_kernel
                )

            step = settings.step[t_val]
        for seg in range(num_steps // record_every):
            u, tr = langevin(
                log_p,
                u,
                fold_keys(fold_keys(keys, _CHAIN), 1000 * (t_val or 0) + seg),
                step_size=step,
                num_steps=record_every,
                trace=True,
                unroll=hp.unroll,
            )
            frames.append(u)
            energies.append(-tr.log_prob)
    zs = jax.tree.map(lambda *a: jnp.stack(a), *frames)
    images = jax.vmap(lambda uu: decode(hp, bb, zf(uu)))(zs)
    return {
        "images": images,
        "steps": jnp.arange(images.shape[0]) * record_every,
        "energy": jnp.concatenate(energies),
    }


# ----------------------------------------------------------------------------- OOD and labels


def layer_scores_inference(hp: DiffusionHparams, params: Params, x: jax.Array) -> jax.Array:
    """Per-layer negative energies ``g_i(z_i, 0)`` at the inferred means (the inference scheme of
    Sec. 5.2), ``(B, L)``; a higher value means more in-distribution."""
    z = infer(hp, params, x)
    outs = hp.energy_net().apply(
        _ebm_variables(params["ebm"], params["ebm_stats"]), z, jnp.zeros((x.shape[0],), jnp.int32)
    )
    return layer_neg_energies(hp, outs, jnp.zeros((x.shape[0],), jnp.int32))


def layer_scores_diffusion(hp: DiffusionHparams, params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
    """The diffusion scheme of Sec. 5.2 for every ``k``: ``(B, L)``, column ``k`` = ``Σ_{i ≥ k} g_i`` at
    ``u_0 ~ p_ω(u_0 | [u_1^{≥k}, u_1^{<k}])``, where ``u_1^{≥k}`` perturbs the inferred ``u_0`` to ``t = 1``
    and ``u_1^{<k}`` comes from the prior's reverse process (Algorithm 2 stopped at ``t = 1``).

    Layers are numbered bottom first from 0, so ``k = 0`` uses every layer and ``k = L−1`` the top one.
    """
    if hp.scheme != "diffusion":
        raise ValueError("the diffusion OOD scheme needs scheme='diffusion'")
    bb, ebm, stats = params["backbone"], params["ebm"], params["ebm_stats"]
    b = x.shape[0]
    keys = _chain_keys(key, b)
    u0 = to_u(hp, bb, infer(hp, params, x))
    sched, settings = hp.schedule(), hp.reverse_settings()
    one = jnp.ones((b,), jnp.int32)
    u1_data = dif.q_sample(sched, u0, one, _normal_layers(hp, keys, _OOD))
    zf = functools.partial(to_z, hp, bb)
    f = neg_energy_fn(hp, ebm, stats)
    u_T = _normal_layers(hp, keys, _INIT)
    u1_prior = dif.reverse_sample(f, zf, sched, settings, u_T, fold_keys(keys, _CHAIN), stop=1)
    cols = []
    for k in range(hp.num_layers):
        u1 = tuple(d if i >= k else p for i, (d, p) in enumerate(zip(u1_data, u1_prior)))
        u_0 = dif.conditional_step(f, zf, sched, settings, u1, 0 * one, fold_keys(keys, 100 + k))
        z0 = zf(u_0)
        outs = hp.energy_net().apply(_ebm_variables(ebm, stats), z0, 0 * one)
        g = layer_neg_energies(hp, outs, 0 * one)
        cols.append(jnp.sum(g[:, k:], axis=-1))
    return jnp.stack(cols, axis=-1)


def class_logits(hp: DiffusionHparams, params: Params, z: Latents) -> jax.Array:
    """Summed logits ``F_i,y`` of the label-coupled layers at ``t = 0``, ``(B, C)`` (Eq. 19's classifier)."""
    b = batch_size_of(z)
    t = jnp.zeros((b,), jnp.int32)
    outs = hp.energy_net().apply(_ebm_variables(params["ebm"], params["ebm_stats"]), tuple(z), t)
    return energy_scale(hp, t)[:, None] * sum(outs[i] for i in hp.label_layers)


def compose(
    hp: DiffusionHparams,
    params: Params,
    key: jax.Array,
    labels: jax.Array,
    variations: int,
    fixed_layers: tuple[int, ...],
) -> jax.Array:
    """Compositional sampling (Sec. 5.3, Fig. 4): one class-conditional sample per label, then
    ``variations`` resamplings of the layers not in ``fixed_layers`` with those fixed (label-free).
    Returns images ``(len(labels), variations + 1, H, W, C)`` (column 0 the base sample)."""
    if all(i in fixed_layers for i in range(hp.num_layers)):
        raise ValueError(f"fixed_layers={fixed_layers} leaves no layer to resample")
    bb, n = params["backbone"], labels.shape[0]
    base = sample_u(hp, params, _chain_keys(key, n), labels=labels)
    free = tuple(i not in fixed_layers for i in range(hp.num_layers))
    rows = [base]
    for v in range(variations):
        k = jax.random.fold_in(key, v + 1)
        rows.append(sample_u(hp, params, _chain_keys(k, n), labels=labels, u_start=base, free=free))
    us = jax.tree.map(lambda *a: jnp.stack(a, axis=1), *rows)  # (n, V+1, d)
    flat = tuple(a.reshape(n * (variations + 1), -1) for a in us)
    images = decode(hp, bb, to_z(hp, bb, flat))
    return images.reshape(n, variations + 1, *images.shape[1:])


def compose_attributes(
    hp: DiffusionHparams,
    params: Params,
    key: jax.Array,
    values: jax.Array,
    stages: tuple[tuple[int, ...], ...],
) -> jax.Array:
    """Progressive multi-attribute sampling (Sec. 5.3, Fig. 4). ``values`` ``(n, J)``: one value per entry
    of ``hp.label_layers``; ``stages``: which of those entries each stage specifies (e.g. ``((0,), (1,),
    (2,))`` for gender at the top, then smile, then hair). Stage 0 samples every layer with its attributes;
    stage ``s`` keeps the layers above the highest layer it couples, resamples that layer and those below
    with every attribute specified so far. Returns images ``(n, len(stages), H, W, C)``."""
    n, j = values.shape
    chex.assert_equal(j, len(hp.label_layers))
    bb, specified, u, rows = params["backbone"], set(), None, []
    for s, cols in enumerate(stages):
        specified |= set(cols)
        mask = jnp.asarray([c in specified for c in range(j)])
        labels = jnp.where(mask[None, :], values, -1)
        keys = _chain_keys(jax.random.fold_in(key, s), n)
        if s == 0:
            u = sample_u(hp, params, keys, labels=labels)
        else:
            top = max(hp.label_layers[c] for c in cols)
            free = tuple(i <= top for i in range(hp.num_layers))
            u = sample_u(hp, params, keys, labels=labels, u_start=u, free=free)
        rows.append(u)
    us = jax.tree.map(lambda *a: jnp.stack(a, axis=1), *rows)
    flat = tuple(a.reshape(n * len(stages), -1) for a in us)
    images = decode(hp, bb, to_z(hp, bb, flat))
    return images.reshape(n, len(stages), *images.shape[1:])


def layer_logits(hp: DiffusionHparams, params: Params, z: Latents) -> jax.Array:
    """The logits ``F_i,y`` of each label-coupled layer at ``t = 0``, ``(B, J, C)`` in ``hp.label_layers``
    order (one classifier per attribute, Eq. 19)."""
    t = jnp.zeros((batch_size_of(z),), jnp.int32)
    outs = hp.energy_net().apply(_ebm_variables(params["ebm"], params["ebm_stats"]), tuple(z), t)
    return energy_scale(hp, t)[:, None, None] * jnp.stack([outs[i] for i in hp.label_layers], axis=1)


@dataclasses.dataclass(frozen=True)
class DiffusionTools:
    """Stage-2 functions behind the OOD-by-layer and controllable-synthesis evaluations (jitted)."""

    hparams: DiffusionHparams
    scores_inference: Any
    scores_diffusion: Any
    generate_labelled: Any
    compose: Any
    class_logits: Any
    compose_attributes: Any
    layer_logits: Any


# ----------------------------------------------------------------------------- config binding


def hparams_from_config(config) -> DiffusionHparams:
    """Read the diffusion-prior settings of a validated config."""
    d, m, df = config.data, config.model, config.diffusion
    return DiffusionHparams(
        stage=df.stage,
        image_shape=(d.image_size, d.image_size, d.channels),
        latent_dims=tuple(int(v) for v in m.latent_dims),
        widths=tuple(int(v) for v in m.hier_widths),
        prior_hidden=df.prior_hidden,
        sigma=m.likelihood_sigma,
        conv_impl=m.conv_impl,
        scheme=df.scheme,
        num_diffusion_steps=df.num_diffusion_steps,
        langevin_steps=config.sampler.prior_steps,
        base_step=df.base_step,
        energy_scale=df.energy_scale,
        keep_last_kernel=df.keep_last_kernel,
        marginal_step_size=config.sampler.prior_step_size,
        ebm_hidden=m.ebm_hidden,
        ebm_blocks=m.ebm_layers,
        ebm_spectral_norm=m.ebm_spectral_norm,
        label_layers=tuple(int(i) - 1 for i in df.label_layers),
        num_classes=df.num_classes,
        label_weight=df.label_weight,
        label_steps=df.label_steps,
        label_guidance=df.label_guidance,
        temperature=df.temperature,
        unroll=config.sampler.prior_unroll,
    )


def optimizers_from_config(config, steps_per_epoch: int) -> dict[str, optax.GradientTransformation]:
    """Stage 1: Adam on the backbone (``diffusion.backbone_*``). Stage 2: the EBMs' Adam (``train.*_ebm``,
    betas, per-epoch decay) — the authors' one Adam per layer's EBM is the same as one Adam over all."""
    t, df = config.train, config.diffusion
    return {
        "backbone": torch_adam(
            df.backbone_lr,
            b1=df.backbone_beta1,
            b2=df.backbone_beta2,
            weight_decay=df.backbone_weight_decay,
            grad_clip_norm=t.grad_clip_norm,
        ),
        "ebm": ebm_and_model_adams(t, steps_per_epoch)[0],
    }


class BackboneError(RuntimeError):
    """Stage 2 cannot find or read its stage-1 backbone."""


def load_backbone(config, hp: DiffusionHparams, tx: dict) -> Params:
    """The trained backbone parameters from the newest checkpoint of ``diffusion.backbone_dir``."""
    from latentebm_jax.training.checkpoint import Checkpointer, CheckpointError

    where = config.diffusion.backbone_dir
    how = (
        "train stage 1 first, e.g. python -m experiments.main --config=configs/digits.py:diffusion "
        "--config.diffusion.stage=1 --workdir=runs/digits_backbone, then pass "
        "--config.diffusion.backbone_dir=runs/digits_backbone"
    )
    if not where:
        raise BackboneError(f"stage 2 needs config key 'diffusion.backbone_dir' (a stage-1 run): {how}")
    if not os.path.isdir(os.path.join(where, "checkpoints")):
        raise BackboneError(f"no stage-1 checkpoint in {os.path.abspath(where)}: {how}")
    ckpt = Checkpointer(where)
    if ckpt.latest_step() is None:
        ckpt.close()
        raise BackboneError(f"no stage-1 checkpoint in {os.path.abspath(where)}: {how}")
    stage1 = dataclasses.replace(hp, stage=1)
    target = init(stage1, tx, jax.random.key(0))
    try:
        state = ckpt.restore(target)
    except CheckpointError as err:
        raise BackboneError(
            f"{err}\nThe stage-2 config must describe the same backbone (model.latent_dims, "
            f"model.hier_widths, data.image_size/channels, diffusion.prior_hidden) and the same "
            f"diffusion.backbone_* optimiser settings as the stage-1 run; compare with "
            f"{os.path.join(where, 'config.json')}"
        ) from err
    finally:
        ckpt.close()
    cfg_path = os.path.join(where, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            stage1_method = json.load(f).get("method")
        if stage1_method != "diffusion":
            raise BackboneError(f"{where} is a {stage1_method!r} run, not a diffusion stage-1 run")
    return state.params["backbone"]


def make(config, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (sampling functions jitted)."""
    hp = hparams_from_config(config)
    tx = optimizers_from_config(config, steps_per_epoch)
    backbone = load_backbone(config, hp, tx) if hp.stage == 2 else None

    def _sample_prior(params, key, num, num_steps):
        u = sample_u(hp, params, _chain_keys(key, num), num_steps=num_steps)
        return to_z(hp, params["backbone"], u)

    tools = LatentTools(
        latent_dims=hp.latent_dims,
        sample_prior=jax.jit(_sample_prior, static_argnums=(2, 3)),
        decode=jax.jit(lambda params, z: decode(hp, params["backbone"], z)),
        infer=jax.jit(lambda params, x, key: infer(hp, params, x)),
        resample_layer=jax.jit(functools.partial(resample_layer, hp), static_argnums=2),
    )
    extras = None
    if hp.stage == 2:
        extras = DiffusionTools(
            hparams=hp,
            scores_inference=jax.jit(functools.partial(layer_scores_inference, hp)),
            scores_diffusion=(
                jax.jit(functools.partial(layer_scores_diffusion, hp)) if hp.scheme == "diffusion" else None
            ),
            generate_labelled=jax.jit(
                lambda params, key, labels: generate(hp, params, key, labels.shape[0], labels)
            ),
            compose=jax.jit(functools.partial(compose, hp), static_argnums=(3, 4)),
            class_logits=jax.jit(functools.partial(class_logits, hp)) if hp.label_layers else None,
            compose_attributes=jax.jit(functools.partial(compose_attributes, hp), static_argnums=(3,)),
            layer_logits=jax.jit(functools.partial(layer_logits, hp)) if hp.label_layers else None,
        )
    return Method(
        name="diffusion",
        init=functools.partial(init, hp, tx, backbone=backbone),
        train_step=functools.partial(train_step, hp, tx),
        generate=jax.jit(functools.partial(generate, hp), static_argnums=2),
        reconstruct=jax.jit(lambda params, x, key: reconstruct(hp, params, x)),
        log_joint=jax.jit(functools.partial(log_joint_at_inferred, hp)) if hp.stage == 1 else None,
        long_run_chain=(
            jax.jit(functools.partial(long_run_chain, hp), static_argnums=(2, 3, 4))
            if hp.stage == 2
            else None
        ),
        infer_latents=tools.infer,
        hparams=hp,
        inference_params=inference_params,
        latent_tools=tools,
        num_epochs=config.diffusion.backbone_epochs if hp.stage == 1 else None,
        extras=extras,
    )
