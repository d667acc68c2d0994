"""Joint latent-space EBM prior for hierarchical generators (Cui, Wu & Han, ICCV 2023), for images.

Model:

* prior (Eq. 3): ``p_α(z) ∝ exp(f_α([z_1, …, z_L])) N(z; 0, σ_p² I)``, one MLP energy on the concatenated
  layers (spectral norm on every layer, LeakyReLU 0.2; the authors' SVHN setting: 2 hidden layers × 100);
* generation (Eqs. 4–5): the architectural hierarchical generator ``h_L = g_L(z_L)``,
  ``h_i = g_i([z_i, h_{i+1}])``, ``x ~ N(h_1, σ² I)`` (:class:`~latentebm_jax.nets.HierarchicalGenerator`);
* inference (Eqs. 7–8): the ladder network, one diagonal Gaussian ``q_φ(z_i|x)`` per layer
  (:class:`~latentebm_jax.nets.LadderEncoder`).

Learning (Algorithm 1), one iteration on a mini-batch ``x``:

1. inference sampling ``z⁺ = μ_φ(x) + σ_φ(x) ε`` (reparameterised, all layers);
2. generator and inference network together, by the negative ELBO with the EBM prior (Eqs. 11–12)

       ‖x − g_β(z⁺)‖²/(2σ²) + Σ_i KL(q_φ(z_i|x) ‖ N(0, σ_p² I)) − f_α(z⁺)      (batch means)

   where ``f_α`` is differentiated with respect to ``z⁺`` (the inference network feels the prior) but α
   is not updated. ``1/(2σ²)`` is the authors' reconstruction weight ``Gfactor`` (10 on SVHN: σ ≈ 0.224).
   The per-layer KL is the closed form by default (``kl_estimator='analytic'``); the authors' code uses the
   one-sample estimate ``log q(z⁺|x) − log N(z⁺; 0, I)`` (``kl_estimator='sample'``, same expectation);
3. prior sampling ``z⁻``: ``K`` steps of joint Langevin (Eqs. 13–14 with the authors' drift ``s²/2`` and
   noise ``s``; Eq. 13 as printed has drift ``s/2``) from
   ``N(0, σ_init² I)``;
4. the EBM along Eq. 10, ``E_q[∇_α f_α(z⁺)] − E_{p̃}[∇_α f_α(z⁻)]``, with the same (detached) ``z⁺``.

All gradients are taken at the parameters from before the step (as in the authors' code, where the EBM is
unchanged by step 2). ``ebm_hidden = 0`` (``nef = 0`` of Table 5) removes the EBM: the Gaussian-prior
hierarchical model, sampled exactly. The spectral-norm power iteration advances once per train step (the
authors' EBM, never put in eval mode, also advances it on every Langevin step; the estimate converges to
the same σ either way).
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

from latentebm_jax import losses, priors
from latentebm_jax.config_schema import (
    ConfigError,
    check_group,
    group_of,
    latent_layers,
    non_negative,
    non_negative_int,
    positive,
    positive_ints,
    setting,
    settings_of,
    values_of,
)
from latentebm_jax.data.settings import is_text
from latentebm_jax.langevin import batch_size_of, langevin, langevin_on_layer
from latentebm_jax.methods.base import LatentSpace, Method, MethodSpec, shapes_of
from latentebm_jax.methods.common import (
    PriorSampler,
    apply_updates,
    contrastive_ebm_grad,
    cross_replica_mean,
    example_keys,
    fold_keys,
    long_run_prior_chain,
    normal_layers,
    normal_per_example,
)
from latentebm_jax.nets import HierarchicalGenerator, LadderEncoder, MLPEnergy
from latentebm_jax.nets.conv_transpose import CONV_IMPLS
from latentebm_jax.nets.energy import ACTIVATIONS
from latentebm_jax.optim import AdamSchedule
from latentebm_jax.state import TrainState, new_train_state

Params = dict[str, Any]
Latents = tuple[jax.Array, ...]
GaussianStats = tuple[tuple[jax.Array, jax.Array], ...]

# Named sub-streams of an example's key.
_PRIOR_INIT, _PRIOR_NOISE, _POST_NOISE, _LAYER_INIT, _LAYER_NOISE = 0, 1, 2, 3, 4

KL_ESTIMATORS = ("analytic", "sample")


@dataclasses.dataclass(frozen=True)
class JointModel:
    """The joint prior, hierarchical generator and ladder inference network (config group ``joint``).
    Defaults: the authors' SVHN train_fid.py (jcui1224/hierarchical-representation-ebm)."""

    latent_dims: tuple[int, ...] = setting(
        (10, 10, 10, 10, 10),
        "units per latent layer, bottom z_1 first",
        check=latent_layers,
    )
    widths: tuple[int, ...] = setting(
        (128, 256, 256, 512, 1024, 2048),
        "the authors' channel list cs[1:] = (c_1..c_L, top MLP width) of generator and inference network",
        check=positive_ints,
    )
    merge: str = setting(
        "concat",
        "how z_i joins h_{i+1}: concat (Eq. 5, train_fid.py) or sum (train_hs.py)",
        choices=("concat", "sum"),
    )
    ebm_hidden: int = setting(
        100,
        "nef: width of the EBM (0 = Gaussian prior, Table 5's nef = 0)",
        check=non_negative,
        what="a non-negative integer (0 = no EBM)",
    )
    ebm_layers: int = setting(2, "hidden layers of the EBM", check=non_negative_int)
    ebm_activation: str = setting("lrelu", "the EBM's activation", choices=tuple(ACTIVATIONS))
    ebm_spectral_norm: bool = setting(True, "spectral norm on every EBM layer (the authors')")
    likelihood_sigma: float = setting(
        math.sqrt(1.0 / 20.0),
        "σ of x ~ N(g(z), σ² I); the authors' Gfactor = 1/(2σ²) = 10",
        check=positive,
    )
    prior_sigma: float = setting(1.0, "σ_p of the reference N(0, σ_p² I)", check=positive)
    kl_estimator: str = setting(
        "analytic",
        "per-layer KL(q || N(0, I)): closed form, or the authors' one-sample estimate",
        choices=KL_ESTIMATORS,
    )
    conv_impl: str = setting(
        "fast", "how transposed convolutions are computed (same function)", choices=CONV_IMPLS
    )


@dataclasses.dataclass(frozen=True)
class JointHparams(JointModel, PriorSampler):
    """Model and prior-sampler settings (static: hashed into compiled functions)."""

    image_shape: tuple[int, int, int] = (32, 32, 3)  # from the data

    @property
    def has_ebm(self) -> bool:
        return self.ebm_hidden > 0

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    def energy_net(self) -> MLPEnergy:
        return MLPEnergy(
            hidden=self.ebm_hidden,
            num_hidden=self.ebm_layers,
            activation=self.ebm_activation,
            spectral_norm=self.ebm_spectral_norm,
        )

    def generator_net(self) -> HierarchicalGenerator:
        h, _, c = self.image_shape
        return HierarchicalGenerator(
            image_size=h,
            channels=c,
            latent_dims=self.latent_dims,
            widths=self.widths,
            merge=self.merge,
            conv_impl=self.conv_impl,
        )

    def encoder_net(self) -> LadderEncoder:
        return LadderEncoder(latent_dims=self.latent_dims, widths=self.widths)


# ----------------------------------------------------------------------------- densities


def _ebm_variables(ebm_params: Params, ebm_stats: Params) -> dict[str, Any]:
    return {"params": ebm_params, **({"batch_stats": ebm_stats} if ebm_stats else {})}


def neg_energy(hp: JointHparams, ebm_params: Params, ebm_stats: Params, z: Latents) -> jax.Array:
    """``f_α([z_1, …, z_L])``, shape ``(B,)`` (zero without an EBM)."""
    if not hp.has_ebm:
        return jnp.zeros((batch_size_of(z),), jnp.float32)
    return hp.energy_net().apply(_ebm_variables(ebm_params, ebm_stats), z)


def log_prior(hp: JointHparams, ebm_params: Params, ebm_stats: Params, z: Latents) -> jax.Array:
    """``log p_α(z)`` up to ``−log Z(α)`` (Eq. 3), per example."""
    return priors.ebm_log_prior(functools.partial(neg_energy, hp, ebm_params, ebm_stats), z, hp.prior_sigma)


def decode(hp: JointHparams, gen_params: Params, z: Latents) -> jax.Array:
    """``g_β(z)`` (Eq. 5): images ``(B, H, W, C)`` in ``[−1, 1]``."""
    return hp.generator_net().apply({"params": gen_params}, tuple(z))


def encode(hp: JointHparams, enc_params: Params, x: jax.Array) -> GaussianStats:
    """``q_φ(z|x)`` (Eq. 8): ``((μ_1, log σ²_1), …, (μ_L, log σ²_L))``."""
    chex.assert_shape(x, (None, *hp.image_shape))
    return hp.encoder_net().apply({"params": enc_params}, x)


def reparameterize(stats: GaussianStats, noise: Latents) -> Latents:
    """``z_i = μ_i + exp(ℓ_i / 2) ε_i`` for every layer."""
    return tuple(m + jnp.exp(0.5 * lv) * e for (m, lv), e in zip(stats, noise))


def means(stats: GaussianStats) -> Latents:
    """The means ``μ_i`` of the per-layer Gaussians ``q(z_i|x)``, bottom first."""
    return tuple(m for m, _ in stats)


def log_joint(hp: JointHparams, params: Params, z: Latents, x: jax.Array) -> jax.Array:
    """``log p_θ(x, z) = log p_α(z) + log N(x; g_β(z), σ² I)`` up to ``−log Z(α)`` (the anomaly score of
    Sec. 5.4 at inferred ``z``). ``params`` are inference params (with ``ebm_stats``)."""
    prior = log_prior(hp, params["ebm"], params["ebm_stats"], z)
    return prior + priors.gaussian_log_likelihood(x, decode(hp, params["gen"], z), hp.likelihood_sigma)


def kl_per_layer(hp: JointHparams, stats: GaussianStats, z: Latents) -> tuple[jax.Array, ...]:
    """Per-layer ``KL(q_φ(z_i|x) ‖ N(0, I))`` per example by ``hp.kl_estimator`` (closed form, or the
    one-sample estimate at ``z``); ``σ_p ≠ 1`` shifts it by the reference prior's scale."""
    out = []
    for (m, lv), zi in zip(stats, z):
        if hp.kl_estimator == "analytic":
            if hp.prior_sigma == 1.0:
                out.append(losses.gaussian_kl_to_standard(m, lv))
            else:
                log_var_p = jnp.full_like(m, 2.0 * math.log(hp.prior_sigma))
                out.append(losses.gaussian_kl(m, lv, jnp.zeros_like(m), log_var_p))
        elif hp.kl_estimator == "sample":
            out.append(
                losses.diag_gaussian_log_prob(zi, m, lv) - priors.gaussian_log_prob(zi, hp.prior_sigma)
            )
        else:
            raise ValueError(f"unknown kl_estimator {hp.kl_estimator!r}; allowed: {KL_ESTIMATORS}")
    return tuple(out)


def _normal_layers(hp: JointHparams, keys: jax.Array, stream: int) -> Latents:
    """One ``(B, d_i)`` standard normal per layer (:func:`~latentebm_jax.methods.common.normal_layers`)."""
    return normal_layers(hp.latent_dims, keys, stream)


# ----------------------------------------------------------------------------- sampling


def sample_prior(
    hp: JointHparams,
    ebm_params: Params,
    ebm_stats: Params,
    keys: jax.Array,
    *,
    num_steps: int | None = None,
) -> Latents:
    """``z⁻ ~ p̃_α(z)``: joint prior Langevin (Eqs. 13–14, ``s``, ``K``) over all layers from
    ``N(0, σ_init² I)``; one chain per key. Without an EBM: exact samples of ``N(0, σ_p² I)``."""
    eps = _normal_layers(hp, keys, _PRIOR_INIT)
    if not hp.has_ebm:
        return tuple(hp.prior_sigma * e for e in eps)
    return langevin(
        functools.partial(log_prior, hp, ebm_params, ebm_stats),
        tuple(hp.init_sigma * e for e in eps),
        fold_keys(keys, _PRIOR_NOISE),
        step_size=hp.prior_step_size,
        num_steps=hp.prior_steps if num_steps is None else num_steps,
        unroll=hp.prior_unroll,
    )


def resample_layer(
    hp: JointHparams,
    ebm_params: Params,
    ebm_stats: Params,
    z: Latents,
    layer: int,
    keys: jax.Array,
    *,
    num_steps: int | None = None,
) -> Latents:
    """Hierarchical sampling (Sec. 5.1, Figs. 4–5): ``z_layer`` drawn anew by Langevin on the joint prior
    with every other layer held fixed (bit-identical in the output). Without an EBM the layers are
    independent and ``z_layer ~ N(0, σ_p² I)`` exactly."""
    eps = normal_per_example(fold_keys(fold_keys(keys, _LAYER_INIT), layer), (hp.latent_dims[layer],))
    if not hp.has_ebm:
        z = tuple(z)
        return (*z[:layer], hp.prior_sigma * eps, *z[layer + 1 :])
    return langevin_on_layer(
        functools.partial(log_prior, hp, ebm_params, ebm_stats),
        z,
        layer,
        hp.init_sigma * eps,
        fold_keys(keys, _LAYER_NOISE),
        step_size=hp.prior_step_size,
        num_steps=hp.prior_steps if num_steps is None else num_steps,
        unroll=hp.prior_unroll,
    )


# ----------------------------------------------------------------------------- learning


def init(hp: JointHparams, tx: dict[str, optax.GradientTransformation], key: jax.Array) -> TrainState:
    """Fresh parameters (EBM, generator, inference network), optimiser states, spectral-norm state."""
    k_ebm, k_gen, k_enc, k_run = jax.random.split(key, 4)
    z = tuple(jnp.zeros((1, d), jnp.float32) for d in hp.latent_dims)
    x = jnp.zeros((1, *hp.image_shape), jnp.float32)
    ebm_vars = hp.energy_net().init(k_ebm, z) if hp.has_ebm else {}
    params = {
        "ebm": dict(ebm_vars.get("params", {})),
        "gen": hp.generator_net().init(k_gen, z)["params"],
        "enc": hp.encoder_net().init(k_enc, x)["params"],
    }
    opt_state = {
        "ebm": tx["ebm"].init(params["ebm"]),
        "gen_enc": tx["gen_enc"].init({"gen": params["gen"], "enc": params["enc"]}),
    }
    model_state = {"ebm": dict(ebm_vars.get("batch_stats", {}))}
    return new_train_state(params, opt_state, k_run, model_state)


def inference_params(state: TrainState) -> Params:
    """The parameters the sampling and evaluation functions take: networks plus spectral-norm state."""
    return {**state.params, "ebm_stats": state.model_state.get("ebm", {})}


def negative_elbo_terms(
    hp: JointHparams,
    model_params: Params,
    ebm_params: Params,
    ebm_stats: Params,
    x: jax.Array,
    noise: Latents,
) -> dict[str, Any]:
    """The generator + inference loss of Eqs. 11–12 and its parts, at ``z = μ_φ(x) + σ_φ(x)·noise``.

    ``loss = recon + Σ_i mean KL_i − mean f_α(z)`` with ``recon = mean ‖x − g_β(z)‖²/(2σ²)`` and
    ``KL_i`` by ``hp.kl_estimator``; i.e. the negative ELBO with the EBM prior up to ``log Z(α)`` and the
    Gaussian constant. ``model_params = {"gen": …, "enc": …}``. Also returns ``z``, ``x_hat``, ``f`` (per
    example), ``kl`` (the estimator's batch means) and ``kl_closed_form`` (batch means, for logging).
    """
    stats = encode(hp, model_params["enc"], x)
    z = reparameterize(stats, noise)
    x_hat = decode(hp, model_params["gen"], z)
    recon = losses.gaussian_reconstruction_loss(x, x_hat, hp.likelihood_sigma)
    kls = tuple(jnp.mean(k) for k in kl_per_layer(hp, stats, z))
    f = neg_energy(hp, ebm_params, ebm_stats, z)
    return {
        "loss": recon + sum(kls) - jnp.mean(f),
        "recon": recon,
        "kl": kls,
        "kl_closed_form": tuple(jnp.mean(losses.gaussian_kl_to_standard(m, lv)) for m, lv in stats),
        "f": f,
        "z": z,
        "x_hat": x_hat,
    }


def train_step(
    hp: JointHparams,
    tx: dict[str, optax.GradientTransformation],
    state: TrainState,
    batch: dict[str, jax.Array],
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One iteration of Algorithm 1 on this device's share of the batch (see the module docstring)."""
    x = batch["image"]
    chex.assert_shape(x, (None, *hp.image_shape))
    b = x.shape[0]
    keys = example_keys(state.step_key(), b, axis_name)
    params = state.params
    ebm_stats = state.model_state.get("ebm", {})
    noise = _normal_layers(hp, keys, _POST_NOISE)

    def gen_enc_loss(p):
        terms = negative_elbo_terms(hp, p, params["ebm"], ebm_stats, x, noise)
        return terms["loss"], terms

    (loss_ge, terms), g_model = jax.value_and_grad(gen_enc_loss, has_aux=True)(
        {"gen": params["gen"], "enc": params["enc"]}
    )
    z_pos, x_hat, recon, f_pos = lax.stop_gradient(terms["z"]), terms["x_hat"], terms["recon"], terms["f"]
    kls = terms["kl_closed_form"]
    metrics: dict[str, jax.Array] = {"loss_ge": loss_ge}

    new_ebm, new_ebm_opt, new_stats = params["ebm"], state.opt_state["ebm"], ebm_stats
    g_ebm = None
    if hp.has_ebm:
        z_neg = lax.stop_gradient(sample_prior(hp, params["ebm"], ebm_stats, keys))

        def neg_energies(pe):
            # one pass over both batches: the spectral-norm power iteration advances once per step
            both = tuple(jnp.concatenate([p, n]) for p, n in zip(z_pos, z_neg))
            f, updated = hp.energy_net().apply(
                _ebm_variables(pe, ebm_stats), both, update_stats=True, mutable=["batch_stats"]
            )
            return f[:b], f[b:], updated.get("batch_stats", ebm_stats)

        loss_e, _, f_neg, new_stats, g_ebm = contrastive_ebm_grad(neg_energies, params["ebm"])
        metrics.update(
            {
                "loss_e": loss_e,
                "f_neg": jnp.mean(f_neg),
                "z_neg_norm": jnp.mean(jnp.linalg.norm(jnp.concatenate(z_neg, -1), axis=-1)),
            }
        )
    grads = cross_replica_mean({"gen_enc": g_model, "ebm": g_ebm}, axis_name)
    new_model, new_model_opt = apply_updates(
        tx["gen_enc"],
        grads["gen_enc"],
        state.opt_state["gen_enc"],
        {"gen": params["gen"], "enc": params["enc"]},
    )
    if hp.has_ebm:
        new_ebm, new_ebm_opt = apply_updates(tx["ebm"], grads["ebm"], new_ebm_opt, params["ebm"])
        metrics["grad_norm_e"] = optax.tree.norm(grads["ebm"])

    d = math.prod(hp.image_shape)
    nll = recon + 0.5 * d * math.log(2.0 * math.pi * hp.likelihood_sigma**2)
    metrics.update(
        {
            # ELBO per example in nats, up to log Z(α) (exact for the Gaussian prior, ebm_hidden = 0)
            "elbo": -(nll + sum(kls)) + jnp.mean(f_pos),
            "mse_pos": jnp.mean(jnp.square(x - x_hat)),
            "f_pos": jnp.mean(f_pos),
            **{f"kl_{i + 1}": k for i, k in enumerate(kls)},
            "grad_norm_ge": optax.tree.norm(grads["gen_enc"]),
        }
    )
    metrics = cross_replica_mean(metrics, axis_name)
    new_state = state.replace(
        step=state.step + 1,
        params={"ebm": new_ebm, **new_model},
        opt_state={"ebm": new_ebm_opt, "gen_enc": new_model_opt},
        model_state={"ebm": new_stats},
    )
    return new_state, metrics


# ----------------------------------------------------------------------------- using a trained model


def _chain_keys(key: jax.Array, num: int) -> jax.Array:
    return jax.random.split(key, num)


def generate(hp: JointHparams, params: Params, key: jax.Array, num: int, num_steps: int | None = None):
    """``num`` images ``g_β(z⁻)`` with ``z⁻`` from the joint prior sampler."""
    z = sample_prior(hp, params["ebm"], params["ebm_stats"], _chain_keys(key, num), num_steps=num_steps)
    return decode(hp, params["gen"], z)


def reconstruct(hp: JointHparams, params: Params, x: jax.Array) -> jax.Array:
    """``g_β(μ_φ(x))``: the decoded means of the inference distribution."""
    return decode(hp, params["gen"], means(encode(hp, params["enc"], x)))


def log_joint_at_inferred(hp: JointHparams, params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
    """``log p_θ(x, z)`` at ``z ~ q_φ(z|x)`` (Sec. 5.4, anomaly detection; low values flag anomalies)."""
    stats = encode(hp, params["enc"], x)
    z = reparameterize(stats, _normal_layers(hp, _chain_keys(key, x.shape[0]), _POST_NOISE))
    return log_joint(hp, params, z, x)


def long_run_chain(
    hp: JointHparams, params: Params, key: jax.Array, num: int, num_steps: int, record_every: int
) -> dict[str, jax.Array]:
    """A long joint prior chain from ``N(0, σ_init² I)`` with its energy profile (Sec. 5.3, Fig. 8)."""
    keys = _chain_keys(key, num)
    z0 = tuple(hp.init_sigma * e for e in _normal_layers(hp, keys, _PRIOR_INIT))
    return long_run_prior_chain(
        functools.partial(log_prior, hp, params["ebm"], params["ebm_stats"]),
        lambda z: {"image": decode(hp, params["gen"], z)},
        z0,
        fold_keys(keys, _PRIOR_NOISE),
        step_size=hp.prior_step_size,
        num_steps=num_steps,
        record_every=record_every,
        unroll=hp.prior_unroll,
    )


def latent_attack(
    hp: JointHparams,
    params: Params,
    x_orig: jax.Array,
    x_target: jax.Array,
    layer: int,
    *,
    num_steps: int = 200,
    learning_rate: float = 0.01,
    l2_weight: float = 1.0,
) -> jax.Array:
    """The latent attack (Gondim-Ribeiro et al. 2018, Eq. 5) on one layer (ICCV 2023 Sec. 5.4, Fig. 9).

    Finds ``x̃ = clip(x_o + δ, −1, 1)`` minimising ``KL(q_φ(z_layer|x̃) ‖ q_φ(z_layer|x_t)) + λ‖δ‖²`` per
    example by ``num_steps`` Adam steps on ``δ`` (from 0). Returns ``x̃``.
    """
    chex.assert_equal_shape([x_orig, x_target])
    target = encode(hp, params["enc"], x_target)[layer]
    target = (lax.stop_gradient(target[0]), lax.stop_gradient(target[1]))

    def objective(delta):
        x_adv = jnp.clip(x_orig + delta, -1.0, 1.0)
        m, lv = encode(hp, params["enc"], x_adv)[layer]
        kl = losses.gaussian_kl(m, lv, *target)
        return jnp.sum(kl + l2_weight * jnp.sum(jnp.square(delta).reshape(delta.shape[0], -1), axis=1))

    opt = optax.adam(learning_rate)
    delta = jnp.zeros_like(x_orig)

    def step(carry, _):
        delta, opt_state = carry
        grads = jax.grad(objective)(delta)
        updates, opt_state = opt.update(grads, opt_state, delta)
        return (optax.apply_updates(delta, updates), opt_state), None

    (delta, _), _ = lax.scan(step, (delta, opt.init(delta)), None, length=num_steps)
    return jnp.clip(x_orig + delta, -1.0, 1.0)


# ----------------------------------------------------------------------------- config binding


@dataclasses.dataclass(frozen=True)
class JointOptimizer(AdamSchedule):
    """The EBM's Adam and one Adam over generator and inference network (the authors' ``lrG`` group).
    Defaults: train_fid.py."""

    lr_ebm: float = setting(2e-6, "EBM learning rate", check=non_negative)
    lr_gen_enc: float = setting(
        3e-4,
        "learning rate of generator and inference network (one Adam)",
        check=non_negative,
    )
    weight_decay_ebm: float = setting(0.0, "EBM weight decay", check=non_negative)
    weight_decay_gen_enc: float = setting(
        5e-4, "weight decay of generator and inference network", check=non_negative
    )

    def build(self, steps_per_epoch: int) -> dict[str, optax.GradientTransformation]:
        return {
            "ebm": self.adam(self.lr_ebm, self.weight_decay_ebm, steps_per_epoch),
            "gen_enc": self.adam(self.lr_gen_enc, self.weight_decay_gen_enc, steps_per_epoch),
        }


_GROUP = {**settings_of(JointModel), **settings_of(JointOptimizer)}


def hparams_from_config(config) -> JointHparams:
    """Read the joint-prior settings of a validated config (groups ``joint`` and ``sampler``)."""
    d = config.data
    return JointHparams(
        image_shape=(d.image_size, d.image_size, d.channels),
        **values_of(config.joint, JointModel),
        **values_of(config.sampler, PriorSampler),
    )


def _configure(config) -> None:
    """The authors' SVHN train_fid.py: the 531,131-image extra split, 5 layers of 10, seed 1234."""
    config.joint = group_of(_GROUP)
    config.joint.update(beta1=0.0, beta2=0.9, lr_decay=0.998, lr_decay_at="epoch_start")
    config.sampler = group_of(PriorSampler)
    config.sampler.update(prior_steps=100, prior_step_size=0.3)
    config.seed = 1234
    config.data.train_split = "extra"
    config.train.num_epochs = 200
    config.eval.metrics = ("reconstruction", "probe", "hierarchy", "samples", "chains")
    config.eval.interval_metrics = ("interval_samples", "interval_reconstructions")


def _validate(config) -> None:
    if is_text(config.data.name):
        raise ConfigError(
            f"config key 'data.name' is the text corpus {config.data.name!r}; method 'joint' models images"
        )
    check_group(config.joint, _GROUP, "joint")
    check_group(config.sampler, settings_of(PriorSampler), "sampler")
    m, n = config.joint, len(config.joint.latent_dims)
    if len(m.widths) != n + 1:
        raise ConfigError(
            f"config key 'joint.widths' has {len(m.widths)} values but 'joint.latent_dims' has {n} layers; "
            f"give c_1..c_L and the top MLP width ({n + 1} values)"
        )
    check_image_halves(config.data.image_size, n, "joint.latent_dims")


def check_image_halves(size: int, num_layers: int, key: str) -> None:
    """A hierarchical generator injects layer ``i`` at ``size / 2^i``: the size must halve ``L − 1`` times."""
    if size % 2 ** (num_layers - 1):
        most = 1
        while size % 2**most == 0 and size // 2**most >= 1:
            most += 1
        raise ConfigError(
            f"config key '{key}' has {num_layers} layers, but 'data.image_size' = {size} does not halve "
            f"{num_layers - 1} times; use at most {most} layers"
        )


def make(config, splits, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (predict functions jitted)."""
    del splits
    hp = hparams_from_config(config)
    tx = JointOptimizer(**values_of(config.joint, JointOptimizer)).build(steps_per_epoch)
    pure_init = functools.partial(init, hp, tx)

    def _infer(params, batch, key):
        del key  # the means of q_φ(z|x)
        return means(encode(hp, params["enc"], batch["image"]))

    def _sample_prior(params, key, num, num_steps):
        return sample_prior(
            hp, params["ebm"], params["ebm_stats"], _chain_keys(key, num), num_steps=num_steps
        )

    def _resample_layer(params, z, layer, key):
        keys = _chain_keys(key, batch_size_of(z))
        return resample_layer(hp, params["ebm"], params["ebm_stats"], z, layer, keys)

    def _attack(params, x_orig, x_target, layer, steps, lr, l2):
        return latent_attack(
            hp, params, x_orig, x_target, layer, num_steps=steps, learning_rate=lr, l2_weight=l2
        )

    def _long_run_chain(params, key, num, num_steps, record_every):
        return long_run_chain(hp, params, key, num, num_steps, record_every)

    predict = {
        "generate": jax.jit(
            lambda params, key, num: {"image": generate(hp, params, key, num)}, static_argnums=2
        ),
        "reconstruct": jax.jit(lambda params, batch, key: {"image": reconstruct(hp, params, batch["image"])}),
        "log_joint": jax.jit(
            lambda params, batch, key: log_joint_at_inferred(hp, params, batch["image"], key)
        ),
        "infer": jax.jit(_infer),
        "decode": jax.jit(lambda params, z: {"image": decode(hp, params["gen"], z)}),
        "sample_prior": jax.jit(_sample_prior, static_argnums=(2, 3)),
        "resample_layer": jax.jit(_resample_layer, static_argnums=2),
        "attack": jax.jit(_attack, static_argnums=(3, 4)),
        "long_run_chain": jax.jit(_long_run_chain, static_argnums=(2, 3, 4)),
    }
    return Method(
        name="joint",
        init=pure_init,
        state_shapes=shapes_of(pure_init),
        train_step=functools.partial(train_step, hp, tx),
        predict=predict,
        inference_params=inference_params,
        latents=LatentSpace(dims=hp.latent_dims, prior_steps=hp.prior_steps if hp.has_ebm else 0),
        watch={"energy": ("f_pos", "f_neg"), "generator_grad": ("grad_norm_ge",)},
    )


SPEC = MethodSpec(
    name="joint",
    doc="joint hierarchical EBM prior (Cui, Wu, Han, ICCV 2023): one EBM over all layers, ladder inference",
    configure=_configure,
    validate=_validate,
    make=make,
    batch_fields=("image",),
)
