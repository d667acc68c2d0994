"""BiDVL: bi-level doubly variational learning of a decoupled EBLVM (Kan et al., CVPR 2022), MCMC-free.

Model (Sec. 4.2.1, Eq. 8; Sec. 4.3): the decoupled EBLVM ``p_ψ′,ω1(v, h) = p_ψ′(v) q_ω1(h|v)`` with the
marginal ``p_ψ′(v) ∝ exp(−E_ψ′(v))`` (a spectrally normalised conv energy on images,
:class:`~latentebm_jax.nets.ConvEnergy`) and the Gaussian inference model ``q_ω1(h|v)``
(:class:`~latentebm_jax.nets.ConvGaussianEncoder`); the variational joint ``p_ω2(v, h)`` is the generator
``v = G_ω2(h)``, ``h ~ N(0, I)`` (:class:`~latentebm_jax.nets.BatchNormGenerator`). The networks output the
negative energy ``f = −E`` (the library's convention); losses are written with ``f``.

Learning (Algorithm 1), one iteration on a mini-batch ``v`` with ``N = lower_steps``:

* **lower level** (Eq. 9), ``N`` steps on ω = (ω1, ω2) by the offset gradient Eq. 13 (default)::

      mean_b r(v_b) [‖v_b − G(h_b)‖²/(2σ²) + KL(q(h|v_b) ‖ N(0, I))]      h_b ~ q_ω1(h|v_b)
      + mean E_ψ′(G(ĥ)) + mean −log q_{ω1 frozen}(ĥ | G(ĥ))               ĥ ~ N(0, I)

  the importance-weighted VAE term (``r = r′`` times the bias term of Eq. 15, ``importance_weights``),
  the generator chasing the EBM, and the latent reconstruction ``D_KL(p_ω2(v, h) ‖ q_ω1(h|v))`` whose
  gradient reaches only ω2 once the opposite ω1-terms of Eqs. 11–12 are offset;
* **upper level** (Eq. 10) on ψ′ by Eq. 14: ``mean E(v) − mean E(G(ĥ))`` with ``G(ĥ)`` held fixed.

Options (``BiDVLHparams``):

* ``offset='not_offset'`` (Sec. 4.4, Table 6): the latent reconstruction also trains ω1 in the lower level
  (Eq. 11), and the upper level updates ω1 too, by ``KL(q_ω1(h|v̂) ‖ N(0, I))`` at generated ``v̂`` (Sec.
  4.4's replacement for ascending the latent KL of Eq. 12). ``offset='without'``: neither term (Table 6's
  "w/o").
* ``bias``: Eq. 15's bias term, ``none`` (the paper's choice), ``sigmoid`` (its surrogate), or
  ``self_normalized`` (the batch estimate of Eq. 15 as written). ``basic_ratio`` is ``r′`` (Table 5).
* **[paper≠code]** ``latent_loss='nll'`` (default) is the paper's ``−log q(ĥ|v̂)`` (full Gaussian NLL);
  ``'code'`` is the authors' ``‖μ(v̂) − ĥ‖²/d`` (and ``KL/d`` in the not-offset upper level).
* **[paper≠code]** ``order='lower_first'`` (default) is Algorithm 1's order (lower level, then upper);
  ``'upper_first'`` is the authors' code (energy step first, then Q and P).
* ``eval_batch_stats``: BatchNorm at evaluation uses the batch's own statistics (the authors' FID and MSE
  code leaves Q and P in train mode) instead of the running averages (default).

``N`` lower-level steps reuse the data batch and draw fresh ``ĥ`` and ``ε``; with ``N = 1`` the upper
level shares ``ĥ`` with the adjacent lower-level step (as the authors' code). Gradient unrolling (Alg. 1,
step 6) is not implemented: the paper and the authors' code both leave it out. BatchNorm runs in train mode
in every training forward pass and its running averages are updated by each call (also the calls on
generated images, as PyTorch does); under ``pmap`` its statistics are synchronised over the device axis.
The energy's spectral-norm power iteration advances once per upper-level step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from jax import lax

from latentebm_jax import losses
from latentebm_jax.methods.base import Method
from latentebm_jax.methods.common import (
    apply_updates,
    cross_replica_mean,
    example_keys,
    fold_keys,
    normal_per_example,
)
from latentebm_jax.nets import BatchNormGenerator, ConvEnergy, ConvGaussianEncoder
from latentebm_jax.nets.energy import ENERGY_OUTPUTS
from latentebm_jax.training.optim import torch_adam
from latentebm_jax.training.state import TrainState, new_train_state

Params = dict[str, Any]

OFFSETS = ("offset", "not_offset", "without")
ORDERS = ("lower_first", "upper_first")

# Named sub-streams of an example's key (per lower-level step n: fold n, then the stream).
_H_HAT, _EPS, _EPS_HAT = 0, 1, 2
_INFER = 3


@dataclasses.dataclass(frozen=True)
class BiDVLHparams:
    """Model and learning settings (static). Defaults: the authors' CIFAR-10 train_cifar_BiDVL.py, with the
    paper's forms where paper and code disagree (see the module docstring)."""

    image_shape: tuple[int, int, int] = (32, 32, 3)
    latent_dim: int = 100
    enc_width: int = 48  # Qbasec
    gen_width: int = 48  # Pbasec
    ebm_width: int = 64  # Ebasec
    energy_output: str = "softplus"
    ebm_spectral_norm: bool = True
    sigma: float = math.sqrt(0.5)  # ‖v − G(h)‖²/(2σ²): the authors' plain sum of squares
    basic_ratio: float = 0.05  # r′ (Table 5: 0.05 at 32×32, 0.1 at 64×64)
    bias: str = "none"
    offset: str = "offset"
    latent_loss: str = "nll"
    lower_steps: int = 1
    order: str = "lower_first"
    eval_batch_stats: bool = False
    conv_impl: str = "fast"

    def __post_init__(self):
        for name, allowed in (
            ("energy_output", ENERGY_OUTPUTS),
            ("bias", losses.BIAS_TERMS),
            ("offset", OFFSETS),
            ("latent_loss", losses.LATENT_LOSSES),
            ("order", ORDERS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown BiDVL {name} {getattr(self, name)!r}; allowed: {allowed}")
        if self.lower_steps < 1:
            raise ValueError(f"BiDVL lower_steps must be >= 1, got {self.lower_steps}")
        if self.basic_ratio < 0:
            raise ValueError(f"BiDVL basic_ratio must be >= 0, got {self.basic_ratio}")

    def energy_net(self) -> ConvEnergy:
        return ConvEnergy(
            width=self.ebm_width, output=self.energy_output, spectral_norm=self.ebm_spectral_norm
        )

    def encoder_net(self, axis_name: str | None = None) -> ConvGaussianEncoder:
        return ConvGaussianEncoder(latent_dim=self.latent_dim, width=self.enc_width, axis_name=axis_name)

    def generator_net(self, axis_name: str | None = None) -> BatchNormGenerator:
        h, _, c = self.image_shape
        return BatchNormGenerator(
            image_size=h, channels=c, width=self.gen_width, axis_name=axis_name, conv_impl=self.conv_impl
        )


# ----------------------------------------------------------------------------- networks


def _variables(params: Params, stats: Params) -> dict[str, Any]:
    return {"params": params, **({"batch_stats": stats} if stats else {})}


def neg_energy(hp: BiDVLHparams, ebm_params: Params, ebm_stats: Params, v: jax.Array) -> jax.Array:
    """``f(v) = −E_ψ′(v)`` (Eq. 8), shape ``(B,)``; the spectral-norm vectors are used, not advanced."""
    chex.assert_shape(v, (None, *hp.image_shape))
    return hp.energy_net().apply(_variables(ebm_params, ebm_stats), v)


def _apply_bn(net, params: Params, stats: Params, x: jax.Array, train: bool):
    """A BatchNorm network in train mode (batch statistics; returns the updated running averages) or in
    eval mode (running averages; returns ``stats`` unchanged)."""
    variables = {"params": params, "batch_stats": stats}
    if train:
        out, updated = net.apply(variables, x, train=True, mutable=["batch_stats"])
        return out, updated["batch_stats"]
    return net.apply(variables, x, train=False), stats


def encode(
    hp: BiDVLHparams,
    enc_params: Params,
    enc_stats: Params,
    x: jax.Array,
    *,
    train: bool = False,
    axis_name: str | None = None,
) -> tuple[tuple[jax.Array, jax.Array], Params]:
    """``q_ω1(h|v)``: ``((μ, log σ²), batch_stats)``, each ``(B, latent_dim)``."""
    chex.assert_shape(x, (None, *hp.image_shape))
    return _apply_bn(hp.encoder_net(axis_name), enc_params, enc_stats, x, train)


def decode(
    hp: BiDVLHparams,
    gen_params: Params,
    gen_stats: Params,
    h: jax.Array,
    *,
    train: bool = False,
    axis_name: str | None = None,
) -> tuple[jax.Array, Params]:
    """``G_ω2(h)``: ``(images (B, H, W, C) in [−1, 1], batch_stats)``."""
    chex.assert_shape(h, (None, hp.latent_dim))
    return _apply_bn(hp.generator_net(axis_name), gen_params, gen_stats, h, train)


def _reparameterize(mean: jax.Array, log_var: jax.Array, eps: jax.Array) -> jax.Array:
    return mean + jnp.exp(0.5 * log_var) * eps


# ----------------------------------------------------------------------------- learning


def init(hp: BiDVLHparams, tx: dict[str, optax.GradientTransformation], key: jax.Array) -> TrainState:
    """Fresh parameters, optimiser states, BatchNorm running averages and spectral-norm vectors."""
    k_ebm, k_enc, k_gen, k_run = jax.random.split(key, 4)
    x = jnp.zeros((1, *hp.image_shape), jnp.float32)
    h = jnp.zeros((1, hp.latent_dim), jnp.float32)
    ebm_vars = hp.energy_net().init(k_ebm, x)
    enc_vars = hp.encoder_net().init(k_enc, x, train=False)
    gen_vars = hp.generator_net().init(k_gen, h, train=False)
    params = {"ebm": ebm_vars["params"], "enc": enc_vars["params"], "gen": gen_vars["params"]}
    model_state = {
        "ebm": dict(ebm_vars.get("batch_stats", {})),
        "enc": enc_vars["batch_stats"],
        "gen": gen_vars["batch_stats"],
    }
    opt_state = {name: tx[name].init(p) for name, p in params.items()}
    return new_train_state(params, opt_state, k_run, model_state)


def inference_params(state: TrainState) -> Params:
    """What sampling and evaluation take: networks, BatchNorm running averages, spectral-norm vectors."""
    ms = state.model_state
    return {**state.params, "ebm_stats": ms["ebm"], "enc_stats": ms["enc"], "gen_stats": ms["gen"]}


def lower_level_loss(
    hp: BiDVLHparams,
    model: Params,
    stats: Params,
    ebm_params: Params,
    x: jax.Array,
    draw: tuple[jax.Array, jax.Array, jax.Array],
    weights: jax.Array,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, Any]]:
    """The lower-level loss whose gradient in ``model = {"enc": ω1, "gen": ω2}`` is Eq. 13 (``offset``),
    Eq. 11 with Sec. 4.4's latent term (``not_offset``) or Eq. 13 without its last term (``without``).

    ``draw = (ĥ, ε, ε̂)``: prior latents, the reparameterisation noise of ``h ~ q(h|v)``, and (the authors'
    not-offset form only) of a sample of ``q(h|v̂)``. ``weights`` are the importance ratios ``r(v)``.
    ``stats`` holds the running averages; the aux output carries the updated ones and the loss parts.
    """
    h_hat, eps, eps_hat = draw
    enc, gen = model["enc"], model["gen"]
    (mean, log_var), enc_stats = encode(hp, enc, stats["enc"], x, train=True, axis_name=axis_name)
    x_rec, gen_stats = decode(
        hp, gen, stats["gen"], _reparameterize(mean, log_var, eps), train=True, axis_name=axis_name
    )
    vae, parts = losses.weighted_vae_loss(x, x_rec, mean, log_var, weights, hp.sigma)
    v_hat, gen_stats = decode(hp, gen, gen_stats, h_hat, train=True, axis_name=axis_name)
    f_gen = neg_energy(hp, ebm_params, stats["ebm"], v_hat)
    chase = losses.generator_energy_loss(f_gen)
    latent = jnp.zeros(())
    if hp.offset != "without":
        enc_latent = lax.stop_gradient(enc) if hp.offset == "offset" else enc
        (m_hat, lv_hat), enc_stats = encode(hp, enc_latent, enc_stats, v_hat, train=True, axis_name=axis_name)
        if hp.latent_loss == "code" and hp.offset == "not_offset":
            m_hat = _reparameterize(m_hat, lv_hat, eps_hat)  # the authors' "complete" variant
        latent = losses.latent_reconstruction_loss(h_hat, m_hat, lv_hat, hp.latent_loss)
    aux = {
        "stats": {"enc": enc_stats, "gen": gen_stats},
        "vae": vae,
        "vae_rec": parts["rec"],
        "vae_kl": parts["kl"],
        "chase": chase,
        "latent_rec": latent,
        "f_gen": jnp.mean(f_gen),
        "mse_rec": jnp.mean(jnp.square(x - x_rec)),
    }
    return vae + chase + latent, aux


Optimizers = dict[str, optax.GradientTransformation]
StepOut = tuple[Params, Params, Params, dict[str, jax.Array]]


def _lower_step(
    hp: BiDVLHparams,
    tx: Optimizers,
    params: Params,
    stats: Params,
    opt: Params,
    x: jax.Array,
    draw: tuple[jax.Array, jax.Array, jax.Array],
    axis_name: str | None,
) -> StepOut:
    """One lower-level update of ω (Alg. 1, step 4); returns ``(params, stats, opt_state, metrics)``."""
    if hp.bias == "none":
        f_data = jnp.zeros((x.shape[0],), jnp.float32)
    else:
        f_data = neg_energy(hp, params["ebm"], stats["ebm"], x)
    weights = losses.importance_weights(f_data, hp.basic_ratio, hp.bias)
    model = {"enc": params["enc"], "gen": params["gen"]}
    loss_fn = lambda m: lower_level_loss(hp, m, stats, params["ebm"], x, draw, weights, axis_name)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(model)
    grads = cross_replica_mean(grads, axis_name)
    params, stats, opt = dict(params), {**stats, **aux.pop("stats")}, dict(opt)
    for name in ("enc", "gen"):
        params[name], opt[name] = apply_updates(tx[name], grads[name], opt[name], params[name])
    metrics = {
        "loss_ll": loss,
        **aux,
        "weight_mean": jnp.mean(weights),
        "grad_norm_enc": optax.tree.norm(grads["enc"]),
        "grad_norm_gen": optax.tree.norm(grads["gen"]),
    }
    return params, stats, opt, metrics


def _upper_step(
    hp: BiDVLHparams,
    tx: Optimizers,
    params: Params,
    stats: Params,
    opt: Params,
    x: jax.Array,
    h_hat: jax.Array,
    axis_name: str | None,
) -> StepOut:
    """One upper-level update (Alg. 1, step 7): ψ′ by Eq. 14; with ``not_offset`` also ω1 (Sec. 4.4)."""
    b = x.shape[0]
    v_hat, gen_stats = decode(hp, params["gen"], stats["gen"], h_hat, train=True, axis_name=axis_name)
    v_hat = lax.stop_gradient(v_hat)
    stats = {**stats, "gen": gen_stats}

    def ebm_loss(pe):
        both = jnp.concatenate([x, v_hat])
        if stats["ebm"]:
            f, updated = hp.energy_net().apply(
                _variables(pe, stats["ebm"]), both, update_stats=True, mutable=["batch_stats"]
            )
            new_stats = updated["batch_stats"]
        else:
            f, new_stats = hp.energy_net().apply(_variables(pe, {}), both), {}
        return losses.bidvl_upper_loss(f[:b], f[b:]), (f[:b], f[b:], new_stats)

    (loss_ul, (f_data, f_gen, ebm_stats)), g_ebm = jax.value_and_grad(ebm_loss, has_aux=True)(params["ebm"])
    grads = {"ebm": g_ebm}
    if hp.offset == "not_offset":

        def enc_loss(pq):
            (m, lv), enc_stats = encode(hp, pq, stats["enc"], v_hat, train=True, axis_name=axis_name)
            return losses.upper_encoder_loss(m, lv, hp.latent_loss), enc_stats

        (loss_enc, enc_stats), grads["enc"] = jax.value_and_grad(enc_loss, has_aux=True)(params["enc"])
        stats["enc"] = enc_stats
    grads = cross_replica_mean(grads, axis_name)
    params, opt = dict(params), dict(opt)
    for name in grads:
        params[name], opt[name] = apply_updates(tx[name], grads[name], opt[name], params[name])
    stats["ebm"] = ebm_stats
    metrics = {
        "loss_ul": loss_ul,
        "f_data": jnp.mean(f_data),
        "f_gen_ul": jnp.mean(f_gen),
        "grad_norm_ebm": optax.tree.norm(grads["ebm"]),
    }
    if hp.offset == "not_offset":
        metrics["loss_ul_enc"] = loss_enc
    return params, stats, opt, metrics


def _draws(hp: BiDVLHparams, keys: jax.Array, n: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(ĥ, ε, ε̂)`` of lower-level step ``n``, each ``(B, latent_dim)``, row ``b`` from ``keys[b]``."""
    base = fold_keys(keys, n)
    return tuple(normal_per_example(fold_keys(base, s), (hp.latent_dim,)) for s in (_H_HAT, _EPS, _EPS_HAT))


def train_step(
    hp: BiDVLHparams,
    tx: dict[str, optax.GradientTransformation],
    state: TrainState,
    batch: dict[str, jax.Array],
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One iteration of Algorithm 1 on this device's share of the batch (order by ``hp.order``).

    Gradients are per-device batch means averaged with ``lax.pmean`` over ``axis_name``; BatchNorm
    statistics are those of the global batch; every example's draws come from its own key, so the step
    does not depend on how the batch is split over devices.
    """
    x = batch["image"]
    chex.assert_shape(x, (None, *hp.image_shape))
    keys = example_keys(state.step_key(), x.shape[0], axis_name)
    params, stats, opt = dict(state.params), dict(state.model_state), dict(state.opt_state)
    draws = [_draws(hp, keys, n) for n in range(hp.lower_steps)]
    metrics: dict[str, jax.Array] = {}
    if hp.order == "upper_first":
        params, stats, opt, m = _upper_step(hp, tx, params, stats, opt, x, draws[0][0], axis_name)
        metrics.update(m)
    for draw in draws:
        params, stats, opt, m = _lower_step(hp, tx, params, stats, opt, x, draw, axis_name)
    metrics.update(m)
    if hp.order == "lower_first":
        params, stats, opt, m = _upper_step(hp, tx, params, stats, opt, x, draws[-1][0], axis_name)
        metrics.update(m)
    metrics["energy_gap"] = metrics["f_data"] - metrics["f_gen_ul"]  # mean E(v̂) − mean E(v)
    metrics = cross_replica_mean(metrics, axis_name)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt, model_state=stats)
    return new_state, metrics


# ----------------------------------------------------------------------------- using a trained model


def generate(hp: BiDVLHparams, params: Params, key: jax.Array, num: int) -> jax.Array:
    """``num`` images ``G(h)``, ``h ~ N(0, I)``: the variational joint, the paper's (and the authors')
    sampler; the EBM is not used for sampling."""
    h = jax.random.normal(key, (num, hp.latent_dim), jnp.float32)
    return decode(hp, params["gen"], params["gen_stats"], h, train=hp.eval_batch_stats)[0]


def infer(hp: BiDVLHparams, params: Params, x: jax.Array) -> jax.Array:
    """The posterior mean ``μ_ω1(v)`` of ``q_ω1(h|v)``, ``(B, latent_dim)``."""
    return encode(hp, params["enc"], params["enc_stats"], x, train=hp.eval_batch_stats)[0][0]


def reconstruct(hp: BiDVLHparams, params: Params, x: jax.Array) -> jax.Array:
    """``G(μ_ω1(v))``: test reconstruction through the posterior mean (Sec. 5.2, Table 3)."""
    return decode(hp, params["gen"], params["gen_stats"], infer(hp, params, x), train=hp.eval_batch_stats)[0]


def ood_score(hp: BiDVLHparams, params: Params, x: jax.Array) -> jax.Array:
    """The OOD critic of Sec. 5.3 / Table 4: the negative marginal energy ``−E_ψ′(v)``, ``(B,)``."""
    return neg_energy(hp, params["ebm"], params["ebm_stats"], x)


def log_joint(hp: BiDVLHparams, params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
    """``log p_ψ′,ω1(v, h) = −E_ψ′(v) + log q_ω1(h|v)`` up to ``−log Z(ψ′)`` (Eq. 8) at ``h ~ q(h|v)``."""
    (mean, log_var), _ = encode(hp, params["enc"], params["enc_stats"], x, train=hp.eval_batch_stats)
    eps = normal_per_example(fold_keys(jax.random.split(key, x.shape[0]), _INFER), (hp.latent_dim,))
    h = _reparameterize(mean, log_var, eps)
    return ood_score(hp, params, x) + losses.diag_gaussian_log_prob(h, mean, log_var)


@dataclasses.dataclass(frozen=True)
class BiDVLTools:
    """BiDVL-specific evaluation tools (``Method.extras``): ``ood_score(params, images) -> (B,)`` is
    ``−E_ψ′(v)`` (jitted)."""

    hparams: BiDVLHparams
    ood_score: Any


# ----------------------------------------------------------------------------- config binding


def hparams_from_config(config) -> BiDVLHparams:
    """Read the BiDVL settings of a validated config (``model`` and ``bidvl`` groups)."""
    d, m, b = config.data, config.model, config.bidvl
    return BiDVLHparams(
        image_shape=(d.image_size, d.image_size, d.channels),
        latent_dim=m.latent_dim,
        enc_width=b.enc_width,
        gen_width=b.gen_width,
        ebm_width=b.ebm_width,
        energy_output=b.energy_output,
        ebm_spectral_norm=m.ebm_spectral_norm,
        sigma=m.likelihood_sigma,
        basic_ratio=b.basic_ratio,
        bias=b.bias,
        offset=b.offset,
        latent_loss=b.latent_loss,
        lower_steps=b.lower_steps,
        order=b.order,
        eval_batch_stats=b.eval_batch_stats,
        conv_impl=m.conv_impl,
    )


def optimizers_from_config(config, steps_per_epoch: int) -> dict[str, optax.GradientTransformation]:
    """PyTorch-style Adams: the EBM's (``lr_ebm``, ``weight_decay_ebm``) and, for Q and P, the authors'
    one ``QP`` Adam (``lr_gen``, ``weight_decay_gen``) written as one Adam per network (the same update,
    Adam being elementwise; with ``train.grad_clip_norm`` each network is clipped on its own). Each
    schedule counts its own updates: P steps ``N`` times per iteration, Q ``N`` (+1 with ``not_offset``)."""
    t, b = config.train, config.bidvl
    common = dict(
        b1=t.beta1, b2=t.beta2, lr_decay=t.lr_decay, decay_at=t.lr_decay_at, grad_clip_norm=t.grad_clip_norm
    )
    enc_updates = b.lower_steps + (1 if b.offset == "not_offset" else 0)
    return {
        "ebm": torch_adam(
            t.lr_ebm, weight_decay=t.weight_decay_ebm, steps_per_epoch=steps_per_epoch, **common
        ),
        "enc": torch_adam(
            t.lr_gen, weight_decay=t.weight_decay_gen, steps_per_epoch=steps_per_epoch * enc_updates, **common
        ),
        "gen": torch_adam(
            t.lr_gen,
            weight_decay=t.weight_decay_gen,
            steps_per_epoch=steps_per_epoch * b.lower_steps,
            **common,
        ),
    }


def make(config, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (evaluation functions jitted)."""
    hp = hparams_from_config(config)
    tx = optimizers_from_config(config, steps_per_epoch)

    def _reconstruct_and_log_joint(params, x, key):
        return reconstruct(hp, params, x), log_joint(hp, params, x, key)

    return Method(
        name="bidvl",
        init=functools.partial(init, hp, tx),
        train_step=functools.partial(train_step, hp, tx),
        generate=jax.jit(functools.partial(generate, hp), static_argnums=2),
        reconstruct=jax.jit(lambda params, x, key: reconstruct(hp, params, x)),
        log_joint=jax.jit(functools.partial(log_joint, hp)),
        infer_latents=jax.jit(lambda params, x, key: infer(hp, params, x)),
        reconstruct_and_log_joint=jax.jit(_reconstruct_and_log_joint),
        hparams=hp,
        inference_params=inference_params,
        extras=BiDVLTools(hparams=hp, ood_score=jax.jit(functools.partial(ood_score, hp))),
    )
