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
from latentebm_jax.config_schema import (
    ConfigError,
    check_fields,
    check_group,
    group_of,
    non_negative,
    positive,
    positive_int,
    setting,
    settings_of,
    values_of,
)
from latentebm_jax.data.settings import is_text
from latentebm_jax.methods.base import Method, MethodSpec, shapes_of
from latentebm_jax.methods.bidvl_ood import EVALUATORS
from latentebm_jax.methods.common import (
    apply_updates,
    cross_replica_mean,
    example_keys,
    fold_keys,
    normal_per_example,
)
from latentebm_jax.nets import BatchNormGenerator, ConvEnergy, ConvGaussianEncoder
from latentebm_jax.nets.conv_transpose import CONV_IMPLS
from latentebm_jax.nets.energy import ENERGY_OUTPUTS
from latentebm_jax.optim import AdamSchedule
from latentebm_jax.state import TrainState, new_train_state

Params = dict[str, Any]

OFFSETS = ("offset", "not_offset", "without")
ORDERS = ("lower_first", "upper_first")

# Named sub-streams of an example's key (per lower-level step n: fold n, then the stream).
_H_HAT, _EPS, _EPS_HAT = 0, 1, 2
_INFER = 3


BIAS_TERMS = ("none", "sigmoid", "self_normalized")
LATENT_LOSSES = ("nll", "code")


@dataclasses.dataclass(frozen=True)
class BiDVLSettings:
    """Model and learning settings (config group ``bidvl``). Defaults: the authors' CIFAR-10
    train_cifar_BiDVL.py (gekanFAE/BiDVL), with the paper's forms where paper and code disagree (see the
    module docstring)."""

    latent_dim: int = setting(100, "h: units of the generator's latent", check=positive_int)
    enc_width: int = setting(48, "Qbasec: Q's first conv width (doubled per stage)", check=positive_int)
    gen_width: int = setting(48, "Pbasec: P's last hidden width is 2·Pbasec", check=positive_int)
    ebm_width: int = setting(64, "Ebasec: the energy's width", check=positive_int)
    energy_output: str = setting(
        "softplus", "E = softplus(net) >= 0 (the authors'), or identity", choices=ENERGY_OUTPUTS
    )
    ebm_spectral_norm: bool = setting(True, "spectral norm on every conv of the energy")
    likelihood_sigma: float = setting(
        math.sqrt(0.5),
        "σ of ‖v − G(h)‖²/(2σ²) (√½: the authors' plain sum of squares)",
        check=positive,
    )
    basic_ratio: float = setting(
        0.05, "r' of Eq. 15 (Table 5: 0.05 at 32x32, 0.1 at 64x64)", check=non_negative
    )
    bias: str = setting(
        "none", "Eq. 15's bias term: none (the paper's choice), sigmoid, self_normalized", choices=BIAS_TERMS
    )
    offset: str = setting(
        "offset",
        "offset: Eqs. 13-14; not_offset: Eqs. 11-12 with Sec. 4.4; without (Table 6)",
        choices=OFFSETS,
    )
    latent_loss: str = setting(
        "nll", "latent reconstruction: nll (the paper) or code (the authors')", choices=LATENT_LOSSES
    )
    lower_steps: int = setting(1, "N of Algorithm 1", check=positive_int)
    order: str = setting(
        "lower_first", "lower_first: Algorithm 1; upper_first: the authors' code", choices=ORDERS
    )
    eval_batch_stats: bool = setting(
        False, "BatchNorm uses batch statistics at evaluation (the authors' FID code)"
    )
    conv_impl: str = setting(
        "fast", "how transposed convolutions are computed (same function)", choices=CONV_IMPLS
    )


@dataclasses.dataclass(frozen=True)
class BiDVLHparams(BiDVLSettings):
    """Model and learning settings (static: hashed into compiled functions)."""

    image_shape: tuple[int, int, int] = (32, 32, 3)

    def __post_init__(self):
        check_fields(self, BiDVLSettings)

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


# ----------------------------------------------------------------------------- losses (Eqs. 11–15, Sec. 4.4)


def upper_loss(f_data: jax.Array, f_gen: jax.Array) -> jax.Array:
    """Upper level, Eq. 14: ``mean E(v) − mean E(v̂)`` over data ``v`` and generated ``v̂ = G(ĥ)``, i.e.
    ``mean f(v̂) − mean f(v)`` with ``f = −E`` (the same form as ``losses.contrastive_ebm_loss``)."""
    return jnp.mean(f_gen) - jnp.mean(f_data)


def importance_weights(f_data: jax.Array, basic_ratio: float, bias: str = "none") -> jax.Array:
    """Per-example importance ratio ``r(v)`` of the weighted VAE term (Eq. 15), without gradient.

    ``r(v) ≈ r′ · exp(−E(v)) / E_q[exp(−E(v))]`` (Eq. 15) with the basic ratio ``r′`` and a bias term:
    ``none``: 1 (the paper's final choice, Sec. 5.4, and the authors' code); ``sigmoid``: the paper's
    surrogate ``Sigmoid(E_q[E(v)] − E(v)) = σ(f(v) − mean f)``; ``self_normalized``: Eq. 15's bias term
    estimated on the batch, ``exp(f(v)) / mean exp(f)``. Shape ``(B,)``.
    """
    f = jax.lax.stop_gradient(f_data)
    if bias == "none":
        return jnp.full_like(f, basic_ratio)
    if bias == "sigmoid":
        return basic_ratio * jax.nn.sigmoid(f - jnp.mean(f))
    if bias == "self_normalized":
        return basic_ratio * f.shape[0] * jax.nn.softmax(f)
    raise ValueError(f"unknown importance-ratio bias {bias!r}; allowed: {BIAS_TERMS}")


def weighted_vae_loss(
    x: jax.Array,
    x_rec: jax.Array,
    mean: jax.Array,
    log_var: jax.Array,
    weights: jax.Array,
    sigma: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The importance-weighted VAE term of Eqs. 11/13, ``∇_ω D_r(v)(q(v) q_ω1(h|v) ‖ p_ω2(v, h))``:

        mean_b r(v_b) [ ‖v_b − G(h_b)‖² / (2σ²) + KL(q_ω1(h|v_b) ‖ N(0, I)) ],   h_b ~ q_ω1(h|v_b),

    with the Gaussian likelihood ``N(v; G(h), σ² I)`` standing in for the implicit ``p_ω2(v|h)`` (constants
    dropped) and the closed-form KL. The authors' code uses the plain sum of squares, ``σ² = 1/2``.
    Returns the loss and the unweighted batch means ``rec`` (sum of squares) and ``kl``.
    """
    sse = losses.sum_squared_error(x, x_rec)
    kl = losses.gaussian_kl_to_standard(mean, log_var)
    if weights.shape != sse.shape:
        raise ValueError(f"weights must have shape {sse.shape}, got {weights.shape}")
    loss = jnp.mean(weights * (sse / (2.0 * sigma**2) + kl))
    return loss, {"rec": jnp.mean(sse), "kl": jnp.mean(kl)}


def generator_energy_loss(f_gen: jax.Array) -> jax.Array:
    """``E_{p_ω2}[E_ψ′(v)]`` of Eqs. 11/13 (the generator chases the EBM): ``−mean f(G(ĥ))``."""
    return -jnp.mean(f_gen)


def latent_reconstruction_loss(
    h: jax.Array, mean: jax.Array, log_var: jax.Array, form: str = "nll"
) -> jax.Array:
    """The latent reconstruction ``D_KL(p_ω2(v, h) ‖ q_ω1(h|v))`` of Eqs. 11/13 up to ω-free terms: the
    negative log-likelihood of the generator's latent ``ĥ`` under the inference model at ``v̂ = G(ĥ)``.

    ``nll`` (the paper): ``mean_b −log N(ĥ_b; μ(v̂_b), diag e^{ℓ(v̂_b)})``, constants included.
    ``code`` (the authors' code): ``mean_b ‖μ(v̂_b) − ĥ_b‖² / d``, a unit-variance NLL without ``ℓ``,
    scaled by ``1/d`` (``d`` = latent dimension); their not-offset variant passes a reparameterised
    sample of ``q(h|v̂)`` as ``mean``.
    """
    if form == "nll":
        return -jnp.mean(losses.diag_gaussian_log_prob(h, mean, log_var))
    if form == "code":
        if h.shape != mean.shape:
            raise ValueError(f"shapes differ: h {h.shape}, mean {mean.shape}")
        return jnp.mean(jnp.sum(jnp.square(mean - h), axis=-1)) / h.shape[-1]
    raise ValueError(f"unknown latent reconstruction form {form!r}; allowed: {LATENT_LOSSES}")


def upper_encoder_loss(mean: jax.Array, log_var: jax.Array, form: str = "nll") -> jax.Array:
    """The inference model's upper-level loss of the *not offset* algorithm (Sec. 4.4): instead of
    ascending ``D_KL(p_ω2(v, h) ‖ q_ω1(h|v))`` (Eq. 12), ω1 descends ``KL(q_ω1(h|v̂) ‖ N(0, I))`` at
    generated ``v̂``: ``mean_b KL`` (the paper), divided by ``d`` in the authors' code (``form='code'``)."""
    kl = jnp.mean(losses.gaussian_kl_to_standard(mean, log_var))
    if form == "nll":
        return kl
    if form == "code":
        return kl / mean.shape[-1]
    raise ValueError(f"unknown latent reconstruction form {form!r}; allowed: {LATENT_LOSSES}")


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
    vae, parts = weighted_vae_loss(x, x_rec, mean, log_var, weights, hp.likelihood_sigma)
    v_hat, gen_stats = decode(hp, gen, gen_stats, h_hat, train=True, axis_name=axis_name)
    f_gen = neg_energy(hp, ebm_params, stats["ebm"], v_hat)
    chase = generator_energy_loss(f_gen)
    latent = jnp.zeros(())
    if hp.offset != "without":
        enc_latent = lax.stop_gradient(enc) if hp.offset == "offset" else enc
        (m_hat, lv_hat), enc_stats = encode(hp, enc_latent, enc_stats, v_hat, train=True, axis_name=axis_name)
        if hp.latent_loss == "code" and hp.offset == "not_offset":
            m_hat = _reparameterize(m_hat, lv_hat, eps_hat)  # the authors' "complete" variant
        latent = latent_reconstruction_loss(h_hat, m_hat, lv_hat, hp.latent_loss)
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
    weights = importance_weights(f_data, hp.basic_ratio, hp.bias)
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
        return upper_loss(f[:b], f[b:]), (f[:b], f[b:], new_stats)

    (loss_ul, (f_data, f_gen, ebm_stats)), g_ebm = jax.value_and_grad(ebm_loss, has_aux=True)(params["ebm"])
    grads = {"ebm": g_ebm}
    if hp.offset == "not_offset":

        def enc_loss(pq):
            (m, lv), enc_stats = encode(hp, pq, stats["enc"], v_hat, train=True, axis_name=axis_name)
            return upper_encoder_loss(m, lv, hp.latent_loss), enc_stats

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


# ----------------------------------------------------------------------------- config binding


@dataclasses.dataclass(frozen=True)
class BiDVLOptimizer(AdamSchedule):
    """PyTorch-style Adams: the EBM's and, for Q and P, the authors' one ``QP`` Adam written as one Adam per
    network (the same update, Adam being elementwise; with ``grad_clip_norm`` each network is clipped on its
    own). Each schedule counts its own updates: P steps ``N`` times per iteration, Q ``N`` (+1 with
    ``not_offset``). Defaults: train_cifar_BiDVL.py."""

    lr_ebm: float = setting(1e-4, "learning rate of the energy", check=non_negative)
    lr_enc_gen: float = setting(3e-4, "learning rate of Q and P (the authors' QP group)", check=non_negative)
    weight_decay_ebm: float = setting(0.0, "weight decay of the energy", check=non_negative)
    weight_decay_enc_gen: float = setting(1e-4, "weight decay of Q and P (coupled)", check=non_negative)

    def build(self, hp: BiDVLHparams, steps_per_epoch: int) -> dict[str, optax.GradientTransformation]:
        enc_updates = hp.lower_steps + (1 if hp.offset == "not_offset" else 0)
        return {
            "ebm": self.adam(self.lr_ebm, self.weight_decay_ebm, steps_per_epoch),
            "enc": self.adam(self.lr_enc_gen, self.weight_decay_enc_gen, steps_per_epoch * enc_updates),
            "gen": self.adam(self.lr_enc_gen, self.weight_decay_enc_gen, steps_per_epoch * hp.lower_steps),
        }


_GROUP = {**settings_of(BiDVLSettings), **settings_of(BiDVLOptimizer)}


def hparams_from_config(config) -> BiDVLHparams:
    """Read the BiDVL settings of a validated config (group ``bidvl``)."""
    d = config.data
    return BiDVLHparams(
        image_shape=(d.image_size, d.image_size, d.channels), **values_of(config.bidvl, BiDVLSettings)
    )


def optimizers_from_config(config, steps_per_epoch: int) -> dict[str, optax.GradientTransformation]:
    """The three Adams of a validated config (:class:`BiDVLOptimizer`)."""
    opt = BiDVLOptimizer(**values_of(config.bidvl, BiDVLOptimizer))
    return opt.build(hparams_from_config(config), steps_per_epoch)


def _configure(config) -> None:
    """BiDVL on CIFAR-10, the authors' train_cifar_BiDVL.py: h in R^100, widths Q/P/E 48/48/64, Adam betas
    (0, 0.9), lr E 1e-4 / QP 3e-4, weight decay QP 1e-4 (coupled), decay 0.998 per epoch (start), 600
    epochs of batch 100, no clipping; OOD against noise, SVHN and CelebA (Table 4)."""
    config.bidvl = group_of(_GROUP)
    config.bidvl.update(beta1=0.0, beta2=0.9, lr_decay=0.998, lr_decay_at="epoch_start")
    config.data.name = "cifar10"
    config.train.batch_size = 100
    config.train.num_epochs = 600
    config.eval.metrics = ("reconstruction", "ood", "samples")
    config.eval.interval_metrics = ("interval_samples", "interval_reconstructions")
    config.eval.ood_max_examples = 10000
    config.eval.ood_sets = ("uniform", "svhn_cropped", "celeb_a")


def _validate(config) -> None:
    if is_text(config.data.name):
        raise ConfigError(
            f"config key 'data.name' is the text corpus {config.data.name!r}; method 'bidvl' models images"
        )
    check_group(config.bidvl, _GROUP, "bidvl")


def make(config, splits, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (predict functions jitted)."""
    del splits
    hp = hparams_from_config(config)
    tx = optimizers_from_config(config, steps_per_epoch)
    pure_init = functools.partial(init, hp, tx)
    predict = {
        "generate": jax.jit(
            lambda params, key, num: {"image": generate(hp, params, key, num)}, static_argnums=2
        ),
        "reconstruct": jax.jit(lambda params, batch, key: {"image": reconstruct(hp, params, batch["image"])}),
        "log_joint": jax.jit(lambda params, batch, key: log_joint(hp, params, batch["image"], key)),
        "infer": jax.jit(lambda params, batch, key: (infer(hp, params, batch["image"]),)),
        "ood_score": jax.jit(lambda params, batch, key: ood_score(hp, params, batch["image"])),
    }
    return Method(
        name="bidvl",
        init=pure_init,
        state_shapes=shapes_of(pure_init),
        train_step=functools.partial(train_step, hp, tx),
        predict=predict,
        inference_params=inference_params,
        latents=None,
        watch={"energy": ("f_data", "f_gen"), "generator_grad": ("grad_norm_gen",)},
    )


SPEC = MethodSpec(
    name="bidvl",
    doc="BiDVL (Kan et al., CVPR 2022): MCMC-free bi-level learning of a decoupled EBLVM",
    configure=_configure,
    validate=_validate,
    make=make,
    batch_fields=("image",),
    evaluators=EVALUATORS,
)
