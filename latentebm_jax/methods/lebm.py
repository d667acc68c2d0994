"""LEBM: latent-space EBM prior on a top-down generator (Pang et al. 2020, Algorithm 1), for images.

Model (Eqs. 1–3): ``p_α(z) ∝ exp(f_α(z)) N(z; 0, σ_p² I)``, ``x = g_β(z) + ε``, ``ε ~ N(0, σ² I)``.
Learning (Algorithm 1), one iteration on a mini-batch ``x``:

1. prior sampling ``z⁻ ~ p̃_α(z)``: ``K₀`` Langevin steps of size ``s₀`` from ``z ~ N(0, σ_init² I)``;
2. posterior sampling ``z⁺ ~ p̃_θ(z|x)``: ``K₁`` Langevin steps of size ``s₁`` from a fresh
   ``N(0, σ_init² I)``;
3. generator update along Eq. 11, ``E[∇_β log p_β(x|z⁺)]``;
4. EBM update along Eq. 10, ``E[∇_α f_α(z⁺)] − E[∇_α f_α(z⁻)]``.

Both chains run with the parameters from before the updates, as in the authors' code; their defaults
(SVHN: ``K₀ = 60, s₀ = 0.4, K₁ = 20, s₁ = 0.1, σ = 0.3``, Adam betas ``(0.5, 0.999)``, lr ``2e-5 / 1e-4``,
``γ = 0.998`` per epoch) live in ``configs/``. Every function here is pure; :func:`make` binds a config.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from jax import lax

from latentebm_jax import losses, priors
from latentebm_jax.langevin import langevin
from latentebm_jax.methods.base import LatentTools, Method
from latentebm_jax.methods.common import (
    apply_updates_per_network,
    contrastive_ebm_grad,
    cross_replica_mean,
    example_keys,
    fold_keys,
    long_run_prior_chain,
    normal_per_example,
    short_run_metrics,
    short_run_settings,
)
from latentebm_jax.nets import MLPEnergy, make_generator
from latentebm_jax.training.optim import ebm_and_model_adams
from latentebm_jax.training.state import TrainState, new_train_state

Params = dict[str, Any]

# Named sub-streams of an example's key.
_PRIOR_INIT, _PRIOR_NOISE, _POST_INIT, _POST_NOISE = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class LEBMHparams:
    """Model and sampler settings (static: hashed into compiled functions)."""

    image_shape: tuple[int, int, int] = (32, 32, 3)
    latent_dim: int = 100
    generator: str = "dcgan"
    ngf: int = 64
    ebm_hidden: int = 200
    ebm_layers: int = 2
    ebm_activation: str = "gelu"
    sigma: float = 0.3  # likelihood std of x = g(z) + ε
    sigma_p: float = 1.0  # reference prior N(0, σ_p² I)
    init_sigma: float = 1.0  # std of the N(0, σ² I) every short-run chain starts from
    prior_steps: int = 60
    prior_step_size: float = 0.4
    posterior_steps: int = 20
    posterior_step_size: float = 0.1
    generator_loss: str = "gaussian_nll"  # paper Eq. 11; "sum_squared" = the official code's loss
    prior_unroll: int = 1  # lax.scan unroll of the prior chain (speed only; 0 = fully unrolled)
    posterior_unroll: int = 0  # the same for the posterior chain (XLA:CPU runs convs faster unrolled)
    conv_impl: str = "fast"  # how the generator's transposed convolutions are computed (same function)

    def energy_net(self) -> MLPEnergy:
        return MLPEnergy(hidden=self.ebm_hidden, num_hidden=self.ebm_layers, activation=self.ebm_activation)

    def generator_net(self):
        h, _, c = self.image_shape
        return make_generator(self.generator, h, c, self.ngf, self.conv_impl)


# ----------------------------------------------------------------------------- densities


def neg_energy(hp: LEBMHparams, ebm_params: Params, z: jax.Array) -> jax.Array:
    """``f_α(z)``, shape ``(B,)``."""
    return hp.energy_net().apply({"params": ebm_params}, z)


def decode(hp: LEBMHparams, gen_params: Params, z: jax.Array) -> jax.Array:
    """``g_β(z)``, images ``(B, H, W, C)`` in ``[−1, 1]``."""
    return hp.generator_net().apply({"params": gen_params}, z)


def log_prior(hp: LEBMHparams, ebm_params: Params, z: jax.Array) -> jax.Array:
    """``log p_α(z)`` up to ``−log Z(α)`` (Eq. 2)."""
    return priors.ebm_log_prior(functools.partial(neg_energy, hp, ebm_params), z, hp.sigma_p)


def log_joint(hp: LEBMHparams, params: Params, z: jax.Array, x: jax.Array) -> jax.Array:
    """``log p_θ(x, z)`` up to ``−log Z(α)``: the unnormalised posterior of ``z`` given ``x``."""
    return priors.lebm_log_joint(
        functools.partial(neg_energy, hp, params["ebm"]),
        functools.partial(decode, hp, params["gen"]),
        z,
        x,
        sigma=hp.sigma,
        sigma_p=hp.sigma_p,
    )


# ----------------------------------------------------------------------------- sampling


def sample_prior(
    hp: LEBMHparams,
    ebm_params: Params,
    keys: jax.Array,
    *,
    num_steps: int | None = None,
    trace: bool = False,
):
    """``z⁻ ~ p̃_α(z)``: short-run prior Langevin (Eq. 9, ``s₀``, ``K₀``) from ``N(0, σ_init² I)``.

    ``keys`` holds one typed key per chain (so ``len(keys)`` chains run).
    """
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, _PRIOR_INIT), (hp.latent_dim,))
    return langevin(
        functools.partial(log_prior, hp, ebm_params),
        z0,
        fold_keys(keys, _PRIOR_NOISE),
        step_size=hp.prior_step_size,
        num_steps=hp.prior_steps if num_steps is None else num_steps,
        trace=trace,
        unroll=hp.prior_unroll,
    )


def sample_posterior(
    hp: LEBMHparams, params: Params, x: jax.Array, keys: jax.Array, *, num_steps: int | None = None
) -> jax.Array:
    """``z⁺ ~ p̃_θ(z|x)``: short-run posterior Langevin (Eq. 9, ``s₁``, ``K₁``) from ``N(0, σ_init² I)``."""
    chex.assert_rank(x, 4)
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, _POST_INIT), (hp.latent_dim,))
    return langevin(
        lambda z: log_joint(hp, params, z, x),
        z0,
        fold_keys(keys, _POST_NOISE),
        step_size=hp.posterior_step_size,
        num_steps=hp.posterior_steps if num_steps is None else num_steps,
        unroll=hp.posterior_unroll,
    )


# ----------------------------------------------------------------------------- learning


def init(hp: LEBMHparams, tx: dict[str, optax.GradientTransformation], key: jax.Array) -> TrainState:
    """Fresh parameters, optimiser states and run key."""
    k_ebm, k_gen, k_run = jax.random.split(key, 3)
    z = jnp.zeros((1, hp.latent_dim), jnp.float32)
    params = {
        "ebm": hp.energy_net().init(k_ebm, z)["params"],
        "gen": hp.generator_net().init(k_gen, z)["params"],
    }
    opt_state = {name: tx[name].init(p) for name, p in params.items()}
    return new_train_state(params, opt_state, k_run)


def train_step(
    hp: LEBMHparams,
    tx: dict[str, optax.GradientTransformation],
    state: TrainState,
    batch: dict[str, jax.Array],
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One iteration of Algorithm 1 on this device's share of the batch.

    Gradients are per-device batch means averaged with ``lax.pmean`` over ``axis_name``; every example's
    chains draw from its own key, so the result does not depend on how the batch is split.
    """
    x = batch["image"]
    chex.assert_shape(x, (None, *hp.image_shape))
    keys = example_keys(state.step_key(), x.shape[0], axis_name)
    params = state.params

    z_neg = lax.stop_gradient(sample_prior(hp, params["ebm"], keys))
    z_pos = lax.stop_gradient(sample_posterior(hp, params, x, keys))

    def gen_loss(gen_params):
        x_hat = decode(hp, gen_params, z_pos)
        return losses.gaussian_reconstruction_loss(x, x_hat, hp.sigma, hp.generator_loss), x_hat

    (loss_g, x_hat), g_gen = jax.value_and_grad(gen_loss, has_aux=True)(params["gen"])
    loss_e, f_pos, f_neg, g_ebm = contrastive_ebm_grad(
        functools.partial(neg_energy, hp), params["ebm"], z_pos, z_neg
    )
    grads = cross_replica_mean({"gen": g_gen, "ebm": g_ebm}, axis_name)
    new_params, new_opt = apply_updates_per_network(tx, grads, state.opt_state, params)
    metrics = {
        "loss_g": loss_g,
        **short_run_metrics(loss_e, f_pos, f_neg, z_pos, z_neg),
        "mse_pos": jnp.mean(jnp.square(x - x_hat)),
        "grad_norm_g": optax.tree.norm(grads["gen"]),
        "grad_norm_e": optax.tree.norm(grads["ebm"]),
    }
    metrics = cross_replica_mean(metrics, axis_name)
    new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt)
    return new_state, metrics


# ----------------------------------------------------------------------------- using a trained model


def _chain_keys(key: jax.Array, num: int) -> jax.Array:
    return jax.random.split(key, num)


def generate(hp: LEBMHparams, params: Params, key: jax.Array, num: int) -> jax.Array:
    """``num`` images ``g_β(z⁻)`` with ``z⁻`` from short-run prior Langevin (the paper's sampler)."""
    z = sample_prior(hp, params["ebm"], _chain_keys(key, num))
    return decode(hp, params["gen"], z)


def reconstruct(hp: LEBMHparams, params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
    """``g_β(z⁺)`` with ``z⁺`` from short-run posterior Langevin on ``x`` (Sec. 3.1, reconstruction)."""
    z = sample_posterior(hp, params, x, _chain_keys(key, x.shape[0]))
    return decode(hp, params["gen"], z)


def log_joint_at_posterior(hp: LEBMHparams, params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
    """``log p_θ(x, z⁺)`` at a posterior sample ``z⁺`` (Sec. 3.4); low values flag anomalies."""
    z = sample_posterior(hp, params, x, _chain_keys(key, x.shape[0]))
    return log_joint(hp, params, z, x)


def long_run_chain(
    hp: LEBMHparams, params: Params, key: jax.Array, num: int, num_steps: int, record_every: int
) -> dict[str, jax.Array]:
    """A prior chain of ``num_steps`` (K′₀; Figs. 3–4 use 100 and 2500) from ``N(0, σ_init² I)``.

    Returns ``images`` ``(S + 1, num, H, W, C)`` decoded every ``record_every`` steps (step 0 included),
    ``steps`` ``(S + 1,)``, and ``energy`` ``(num_steps + 1,)``: the mean of ``−log p̃_α(z_k)`` over chains
    at every step (the energy profile, Gaussian reference term included).
    """
    keys = _chain_keys(key, num)
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, _PRIOR_INIT), (hp.latent_dim,))
    return long_run_prior_chain(
        functools.partial(log_prior, hp, params["ebm"]),
        functools.partial(decode, hp, params["gen"]),
        z0,
        fold_keys(keys, _PRIOR_NOISE),
        step_size=hp.prior_step_size,
        num_steps=num_steps,
        record_every=record_every,
        unroll=hp.prior_unroll,
    )


# ----------------------------------------------------------------------------- config binding


def hparams_from_config(config) -> LEBMHparams:
    """Read the LEBM settings of a validated config."""
    d, m = config.data, config.model
    return LEBMHparams(
        image_shape=(d.image_size, d.image_size, d.channels),
        latent_dim=m.latent_dim,
        generator=m.generator,
        ngf=m.ngf,
        sigma=m.likelihood_sigma,
        generator_loss=m.generator_loss,
        conv_impl=m.conv_impl,
        **short_run_settings(config),
    )


def optimizers_from_config(config, steps_per_epoch: int) -> dict[str, optax.GradientTransformation]:
    """One PyTorch-style Adam per network with the per-epoch decay of the config."""
    ebm, gen = ebm_and_model_adams(config.train, steps_per_epoch)
    return {"ebm": ebm, "gen": gen}


def make(config, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (sampling functions jitted)."""
    hp = hparams_from_config(config)
    tx = optimizers_from_config(config, steps_per_epoch)
    eval_post_steps = config.eval.posterior_steps if config.eval.posterior_steps > 0 else None

    def _infer(params, x, key):
        return sample_posterior(hp, params, x, _chain_keys(key, x.shape[0]), num_steps=eval_post_steps)

    def _reconstruct(params, x, key):
        return decode(hp, params["gen"], _infer(params, x, key))

    def _log_joint(params, x, key):
        return log_joint(hp, params, _infer(params, x, key), x)

    def _reconstruct_and_log_joint(params, x, key):
        z = _infer(params, x, key)
        return decode(hp, params["gen"], z), log_joint(hp, params, z, x)

    def _sample_prior(params, key, num, num_steps):
        return (sample_prior(hp, params["ebm"], _chain_keys(key, num), num_steps=num_steps),)

    tools = LatentTools(
        latent_dims=(hp.latent_dim,),
        sample_prior=jax.jit(_sample_prior, static_argnums=(2, 3)),
        decode=jax.jit(lambda params, z: decode(hp, params["gen"], z[0])),
        infer=jax.jit(lambda params, x, key: (_infer(params, x, key),)),
    )
    return Method(
        name="lebm",
        init=functools.partial(init, hp, tx),
        train_step=functools.partial(train_step, hp, tx),
        generate=jax.jit(functools.partial(generate, hp), static_argnums=2),
        reconstruct=jax.jit(_reconstruct),
        log_joint=jax.jit(_log_joint),
        long_run_chain=jax.jit(functools.partial(long_run_chain, hp), static_argnums=(2, 3, 4)),
        infer_latents=jax.jit(_infer),
        reconstruct_and_log_joint=jax.jit(_reconstruct_and_log_joint),
        hparams=hp,
        latent_tools=tools,
    )
