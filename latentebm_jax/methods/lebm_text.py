"""LEBM for text: latent-space EBM prior on an autoregressive LSTM decoder (Pang et al. 2020, Sec. 2.1, 3.2).

Model: ``p_α(z) ∝ exp(f_α(z)) N(z; 0, σ_p² I)`` (Eq. 2) and
``p_β(x|z) = Π_t p_β(x^(t) | x^(<t), z)`` (Eq. 4), the LSTM of :mod:`latentebm_jax.nets.text`.
Learning is Algorithm 1 exactly as for images (:mod:`latentebm_jax.methods.lebm`), with the Gaussian
log-likelihood replaced by the sum of token log-probabilities:

1. prior sampling ``z⁻ ~ p̃_α(z)``: ``K₀`` Langevin steps of size ``s₀`` from ``N(0, σ_init² I)``;
2. posterior sampling ``z⁺ ~ p̃_θ(z|x)``: ``K₁`` steps of size ``s₁`` on
   ``log p_β(x|z) + f_α(z) + log N(z; 0, σ_p² I)``;
3. decoder update along Eq. 11: descend ``−mean log p_β(x|z⁺)``;
4. EBM update along Eq. 10: descend ``mean f(z⁻) − mean f(z⁺)``.

Both chains use the parameters from before the updates. Batches are ``{"ids": (B, T) int32,
"lengths": (B,) int32}`` in the layout of :mod:`latentebm_jax.data.text`.

Defaults: ``K₀ = 40`` is the paper's text setting (Sec. 3.3, Table 3). The other text settings (latent
dim, decoder widths, step sizes, ``K₁``, learning rates) are not in the paper's main text nor in
``shared/reference/official-defaults.md`` (which has no text code); the defaults below are placeholders:
the image LEBM's sampler settings and the text-VAE decoder widths. Every function here is pure.
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
from latentebm_jax.methods.common import (
    apply_updates,
    cross_replica_mean,
    example_keys,
    fold_keys,
    normal_per_example,
)
from latentebm_jax.nets import MLPEnergy
from latentebm_jax.nets import text as text_nets
from latentebm_jax.training.state import TrainState, new_train_state

Params = dict[str, Any]

# Named sub-streams of an example's key (the same numbering as methods/lebm.py).
_PRIOR_INIT, _PRIOR_NOISE, _POST_INIT, _POST_NOISE = 0, 1, 2, 3
_DECODE = 4  # token sampling in generate


@dataclasses.dataclass(frozen=True)
class TextLEBMHparams:
    """Model and sampler settings (static: hashed into compiled functions)."""

    vocab_size: int = 10_000
    max_len: int = 40  # row width of ids, <bos> and <eos> included
    latent_dim: int = 32  # unknown for the authors' text runs
    embed_dim: int = 256  # unknown
    decoder_hidden: int = 512  # unknown (text-VAE convention)
    ebm_hidden: int = 200  # unknown for text (image LEBM value)
    ebm_layers: int = 2
    ebm_activation: str = "gelu"
    sigma_p: float = 1.0  # reference prior N(0, σ_p² I)
    init_sigma: float = 1.0  # std of the N(0, σ² I) every short-run chain starts from
    prior_steps: int = 40  # K₀ = 40: paper Sec. 3.3 (text and image chains of Table 3 / Fig. 3)
    prior_step_size: float = 0.4  # unknown for text (image LEBM value)
    posterior_steps: int = 20  # unknown for text (image LEBM value)
    posterior_step_size: float = 0.1  # unknown for text (image LEBM value)

    def energy_net(self) -> MLPEnergy:
        return MLPEnergy(hidden=self.ebm_hidden, num_hidden=self.ebm_layers, activation=self.ebm_activation)

    def decoder_net(self) -> text_nets.LSTMDecoder:
        return text_nets.LSTMDecoder(
            vocab_size=self.vocab_size, embed_dim=self.embed_dim, hidden=self.decoder_hidden
        )


# ----------------------------------------------------------------------------- densities


def neg_energy(hp: TextLEBMHparams, ebm_params: Params, z: jax.Array) -> jax.Array:
    """``f_α(z)``, shape ``(B,)``."""
    return hp.energy_net().apply({"params": ebm_params}, z)


def log_prior(hp: TextLEBMHparams, ebm_params: Params, z: jax.Array) -> jax.Array:
    """``log p_α(z) = f_α(z) + log N(z; 0, σ_p² I)`` up to ``−log Z(α)`` (Eq. 2)."""
    return priors.ebm_log_prior(functools.partial(neg_energy, hp, ebm_params), z, hp.sigma_p)


def log_likelihood(
    hp: TextLEBMHparams, dec_params: Params, z: jax.Array, ids: jax.Array, lengths: jax.Array
) -> jax.Array:
    """``log p_β(x|z) = Σ_t log p_β(x^(t) | x^(<t), z)`` per sentence (Eq. 4), ``(B,)``; padding masked."""
    return text_nets.log_likelihood(hp.decoder_net(), {"params": dec_params}, z, ids, lengths)


def posterior_log_joint(
    hp: TextLEBMHparams, params: Params, z: jax.Array, ids: jax.Array, lengths: jax.Array
) -> jax.Array:
    """``log p_θ(x, z) = log p_β(x|z) + f_α(z) + log N(z; 0, σ_p² I)`` up to ``−log Z(α)``, ``(B,)``.

    As a function of ``z`` it is the unnormalised posterior ``p_θ(z|x)`` (Eqs. 1, 2, 4), the target of
    posterior Langevin.
    """
    chex.assert_rank([z, ids, lengths], [2, 2, 1])
    return log_likelihood(hp, params["decoder"], z, ids, lengths) + log_prior(hp, params["ebm"], z)


# ----------------------------------------------------------------------------- sampling


def prior_sample(
    hp: TextLEBMHparams, ebm_params: Params, keys: jax.Array, *, num_steps: int | None = None
) -> jax.Array:
    """``z⁻ ~ p̃_α(z)``: short-run prior Langevin (Eq. 9, ``s₀``, ``K₀``) from ``N(0, σ_init² I)``.

    ``keys`` holds one typed key per chain.
    """
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, _PRIOR_INIT), (hp.latent_dim,))
    return langevin(
        functools.partial(log_prior, hp, ebm_params),
        z0,
        fold_keys(keys, _PRIOR_NOISE),
        step_size=hp.prior_step_size,
        num_steps=hp.prior_steps if num_steps is None else num_steps,
    )


def posterior_sample(
    hp: TextLEBMHparams,
    params: Params,
    ids: jax.Array,
    lengths: jax.Array,
    keys: jax.Array,
    *,
    num_steps: int | None = None,
) -> jax.Array:
    """``z⁺ ~ p̃_θ(z|x)``: short-run posterior Langevin (Eq. 9, ``s₁``, ``K₁``) from ``N(0, σ_init² I)``."""
    chex.assert_rank([ids, lengths], [2, 1])
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, _POST_INIT), (hp.latent_dim,))
    return langevin(
        lambda z: posterior_log_joint(hp, params, z, ids, lengths),
        z0,
        fold_keys(keys, _POST_NOISE),
        step_size=hp.posterior_step_size,
        num_steps=hp.posterior_steps if num_steps is None else num_steps,
    )


# ----------------------------------------------------------------------------- learning


def init(hp: TextLEBMHparams, tx: dict[str, optax.GradientTransformation], key: jax.Array) -> TrainState:
    """Fresh parameters ``{"ebm", "decoder"}``, optimiser states and run key."""
    k_ebm, k_dec, k_run = jax.random.split(key, 3)
    z = jnp.zeros((1, hp.latent_dim), jnp.float32)
    params = {
        "ebm": hp.energy_net().init(k_ebm, z)["params"],
        "decoder": text_nets.init_decoder(hp.decoder_net(), k_dec, hp.latent_dim)["params"],
    }
    opt_state = {name: tx[name].init(p) for name, p in params.items()}
    return new_train_state(params, opt_state, k_run)


def train_step(
    hp: TextLEBMHparams,
    tx: dict[str, optax.GradientTransformation],
    state: TrainState,
    batch: dict[str, jax.Array],
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One iteration of Algorithm 1 on a batch ``{"ids", "lengths"}`` (per-device share under pmap).

    Gradients are per-device batch means averaged with ``lax.pmean`` over ``axis_name``; every example's
    chains draw from its own key (``example_keys``), as in :func:`latentebm_jax.methods.lebm.train_step`.
    """
    ids, lengths = batch["ids"], batch["lengths"]
    chex.assert_rank([ids, lengths], [2, 1])
    chex.assert_equal_shape_prefix([ids, lengths], 1)
    keys = example_keys(state.step_key(), ids.shape[0], axis_name)
    params = state.params

    z_neg = lax.stop_gradient(prior_sample(hp, params["ebm"], keys))
    z_pos = lax.stop_gradient(posterior_sample(hp, params, ids, lengths, keys))

    def dec_loss(dec_params):
        return -jnp.mean(log_likelihood(hp, dec_params, z_pos, ids, lengths))

    def ebm_loss(ebm_params):
        f_pos = neg_energy(hp, ebm_params, z_pos)
        f_neg = neg_energy(hp, ebm_params, z_neg)
        return losses.contrastive_ebm_loss(f_pos, f_neg), (f_pos, f_neg)

    loss_d, g_dec = jax.value_and_grad(dec_loss)(params["decoder"])
    (loss_e, (f_pos, f_neg)), g_ebm = jax.value_and_grad(ebm_loss, has_aux=True)(params["ebm"])
    grads = cross_replica_mean({"decoder": g_dec, "ebm": g_ebm}, axis_name)

    new_params, new_opt = {}, {}
    for name in ("decoder", "ebm"):
        new_params[name], new_opt[name] = apply_updates(
            tx[name], grads[name], state.opt_state[name], params[name]
        )
    num_tokens = jnp.maximum(jnp.sum(lengths - 1), 1)
    metrics = {
        "loss_g": loss_d,  # reconstruction NLL per sentence, −mean log p_β(x|z⁺)
        "nll_per_token": loss_d * ids.shape[0] / num_tokens,
        "loss_e": loss_e,
        "f_pos": jnp.mean(f_pos),
        "f_neg": jnp.mean(f_neg),
        "z_pos_norm": jnp.mean(jnp.linalg.norm(z_pos, axis=-1)),
        "z_neg_norm": jnp.mean(jnp.linalg.norm(z_neg, axis=-1)),
        "grad_norm_g": optax.tree.norm(grads["decoder"]),
        "grad_norm_e": optax.tree.norm(grads["ebm"]),
    }
    metrics = cross_replica_mean(metrics, axis_name)
    new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt)
    return new_state, metrics


# ----------------------------------------------------------------------------- using a trained model


def generate(
    hp: TextLEBMHparams, params: Params, key: jax.Array, num: int, temperature: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """``num`` sentences ``x ~ p_β(x|z⁻)`` with ``z⁻`` from short-run prior Langevin.

    Returns ``(ids (num, max_len), lengths (num,))`` in the encoder's layout; ``temperature = 0`` is greedy.
    """
    z = prior_sample(hp, params["ebm"], jax.random.split(key, num))
    return text_nets.sample(
        hp.decoder_net(),
        {"params": params["decoder"]},
        z,
        jax.random.fold_in(key, _DECODE),
        hp.max_len,
        temperature,
    )


def reconstruct(
    hp: TextLEBMHparams,
    params: Params,
    ids: jax.Array,
    lengths: jax.Array,
    key: jax.Array,
    temperature: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Decode ``z⁺`` from short-run posterior Langevin on ``x`` (greedy by default)."""
    keys = jax.random.split(key, ids.shape[0])
    z = posterior_sample(hp, params, ids, lengths, keys)
    return text_nets.sample(
        hp.decoder_net(),
        {"params": params["decoder"]},
        z,
        jax.random.fold_in(key, _DECODE),
        ids.shape[1],
        temperature,
    )
