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

from latentebm_jax import priors
from latentebm_jax.langevin import langevin
from latentebm_jax.methods.base import Method
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
from latentebm_jax.nets import MLPEnergy
from latentebm_jax.nets import text as text_nets
from latentebm_jax.training.optim import ebm_and_model_adams
from latentebm_jax.training.state import TrainState, new_train_state

Params = dict[str, Any]

# Named sub-streams of an example's key (the same numbering as methods/lebm.py).
_PRIOR_INIT, _PRIOR_NOISE, _POST_INIT, _POST_NOISE = 0, 1, 2, 3
_DECODE = 4  # token sampling in generate
_DROPOUT = 1 << 20  # the decoder's dropout masks (folded into the step key, apart from example indices)


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
    dropout_in: float = 0.0  # decoder dropout on word embeddings while training (text-VAE code: 0.5)
    dropout_out: float = 0.0  # decoder dropout on LSTM outputs while training (text-VAE code: 0.5)
    prior_unroll: int = 1  # lax.scan unroll of the chains (speed only; 0 = fully unrolled)
    posterior_unroll: int = 1

    def energy_net(self) -> MLPEnergy:
        return MLPEnergy(hidden=self.ebm_hidden, num_hidden=self.ebm_layers, activation=self.ebm_activation)

    def decoder_net(self) -> text_nets.LSTMDecoder:
        return text_nets.LSTMDecoder(
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            hidden=self.decoder_hidden,
            dropout_in=self.dropout_in,
            dropout_out=self.dropout_out,
        )


# ----------------------------------------------------------------------------- densities


def neg_energy(hp: TextLEBMHparams, ebm_params: Params, z: jax.Array) -> jax.Array:
    """``f_α(z)``, shape ``(B,)``."""
    return hp.energy_net().apply({"params": ebm_params}, z)


def log_prior(hp: TextLEBMHparams, ebm_params: Params, z: jax.Array) -> jax.Array:
    """``log p_α(z) = f_α(z) + log N(z; 0, σ_p² I)`` up to ``−log Z(α)`` (Eq. 2)."""
    return priors.ebm_log_prior(functools.partial(neg_energy, hp, ebm_params), z, hp.sigma_p)


def log_likelihood(
    hp: TextLEBMHparams,
    dec_params: Params,
    z: jax.Array,
    ids: jax.Array,
    lengths: jax.Array,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """``log p_β(x|z) = Σ_t log p_β(x^(t) | x^(<t), z)`` per sentence (Eq. 4), ``(B,)``; padding masked.

    ``dropout_key`` switches the decoder's dropout on (the generator update while training only).
    """
    return text_nets.log_likelihood(hp.decoder_net(), {"params": dec_params}, z, ids, lengths, dropout_key)


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
        unroll=hp.prior_unroll,
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
        unroll=hp.posterior_unroll,
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
    Decoder dropout (``hp.dropout_in/out``) applies to the decoder update only, never inside the chains;
    its masks come from the step key folded with the device index.
    """
    ids, lengths = batch["ids"], batch["lengths"]
    chex.assert_rank([ids, lengths], [2, 1])
    chex.assert_equal_shape_prefix([ids, lengths], 1)
    keys = example_keys(state.step_key(), ids.shape[0], axis_name)
    params = state.params

    z_neg = lax.stop_gradient(prior_sample(hp, params["ebm"], keys))
    z_pos = lax.stop_gradient(posterior_sample(hp, params, ids, lengths, keys))

    dropout_key = None
    if hp.dropout_in > 0 or hp.dropout_out > 0:
        dropout_key = jax.random.fold_in(state.step_key(), _DROPOUT)
        if axis_name is not None:
            dropout_key = jax.random.fold_in(dropout_key, lax.axis_index(axis_name))

    def dec_loss(dec_params):
        return -jnp.mean(log_likelihood(hp, dec_params, z_pos, ids, lengths, dropout_key))

    loss_d, g_dec = jax.value_and_grad(dec_loss)(params["decoder"])
    loss_e, f_pos, f_neg, g_ebm = contrastive_ebm_grad(
        functools.partial(neg_energy, hp), params["ebm"], z_pos, z_neg
    )
    grads = cross_replica_mean({"decoder": g_dec, "ebm": g_ebm}, axis_name)
    new_params, new_opt = apply_updates_per_network(tx, grads, state.opt_state, params)
    num_tokens = jnp.maximum(jnp.sum(lengths - 1), 1)
    metrics = {
        "loss_g": loss_d,  # reconstruction NLL per sentence, −mean log p_β(x|z⁺)
        "nll_per_token": loss_d * ids.shape[0] / num_tokens,
        **short_run_metrics(loss_e, f_pos, f_neg, z_pos, z_neg),
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
    num_steps: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Decode ``z⁺`` from short-run posterior Langevin on ``x`` (greedy by default; ``num_steps`` overrides
    ``K₁``)."""
    keys = jax.random.split(key, ids.shape[0])
    z = posterior_sample(hp, params, ids, lengths, keys, num_steps=num_steps)
    return text_nets.sample(
        hp.decoder_net(),
        {"params": params["decoder"]},
        z,
        jax.random.fold_in(key, _DECODE),
        ids.shape[1],
        temperature,
    )


def recon_log_likelihood(
    hp: TextLEBMHparams, params: Params, ids: jax.Array, lengths: jax.Array, key: jax.Array, num_steps=None
) -> jax.Array:
    """``log p_β(x|z⁺)`` at one short-run posterior sample ``z⁺`` per sentence, ``(B,)``: the
    reconstruction log-likelihood (its negative is the reconstruction NLL the evaluation reports)."""
    z = posterior_sample(hp, params, ids, lengths, jax.random.split(key, ids.shape[0]), num_steps=num_steps)
    return log_likelihood(hp, params["decoder"], z, ids, lengths)


def log_partition(hp: TextLEBMHparams, ebm_params: Params, key: jax.Array, num_samples: int) -> jax.Array:
    """Monte Carlo ``log Z(α) = log E_{z ~ N(0, σ_p² I)}[exp f_α(z)]`` (Eq. 2's normaliser), a scalar.

    ``logsumexp`` over ``num_samples`` reference draws minus ``log num_samples``: consistent, and biased
    low for finite samples (Jensen), which biases the marginal NLL below low as well.
    """
    z = hp.sigma_p * jax.random.normal(key, (num_samples, hp.latent_dim))
    f = neg_energy(hp, ebm_params, z)
    return jax.nn.logsumexp(f) - jnp.log(num_samples)


def marginal_log_likelihood(
    hp: TextLEBMHparams,
    params: Params,
    ids: jax.Array,
    lengths: jax.Array,
    key: jax.Array,
    log_z: jax.Array,
    *,
    num_chains: int = 8,
    num_samples: int = 64,
    num_steps: int | None = None,
    min_std: float = 0.05,
) -> jax.Array:
    """Importance-sampling estimate of ``log p_θ(x) = log ∫ p_β(x|z) p_α(z) dz`` per sentence, ``(B,)``.

    The proposal is the defensive mixture ``q(z|x) = ½ N(μ, diag s²) + ½ N(0, σ_p² I)``: a Gaussian fitted to
    ``num_chains`` short-run posterior chains per sentence (``s`` floored at ``min_std``), mixed with the
    reference prior, so the weights stay bounded whether the posterior is sharp or (as text decoders often
    make it) close to the prior. Draws alternate between the two components (stratified, still unbiased
    for the mixture). ``num_samples`` draws give
    ``log (1/N) Σ_n p_β(x|z_n) exp(f_α(z_n)) N(z_n; 0, σ_p² I) / (Z(α) q(z_n|x))`` with ``log Z(α) = log_z``
    from :func:`log_partition`. For an exact ``log Z`` this is a stochastic lower bound on ``log p(x)``
    (its negative an upper bound on the NLL, as the text-VAE literature reports).
    """
    chex.assert_rank([ids, lengths], [2, 1])
    batch = ids.shape[0]
    k_chain, k_draw = jax.random.split(key)
    rep_ids, rep_len = jnp.repeat(ids, num_chains, axis=0), jnp.repeat(lengths, num_chains, axis=0)
    z_post = posterior_sample(
        hp, params, rep_ids, rep_len, jax.random.split(k_chain, batch * num_chains), num_steps=num_steps
    ).reshape(batch, num_chains, hp.latent_dim)
    mu = jnp.mean(z_post, axis=1)
    std = jnp.maximum(jnp.std(z_post, axis=1), min_std)
    sigma_p = jnp.full_like(mu, hp.sigma_p)

    def log_weight(n_and_key):
        n, k = n_and_key
        eps = jax.random.normal(k, mu.shape)
        z = jnp.where(n % 2 == 0, mu + std * eps, hp.sigma_p * eps)
        log_fit = jnp.sum(jax.scipy.stats.norm.logpdf(z, mu, std), axis=-1)
        log_ref = jnp.sum(jax.scipy.stats.norm.logpdf(z, 0.0, sigma_p), axis=-1)
        log_q = jnp.logaddexp(log_fit, log_ref) - jnp.log(2.0)
        return posterior_log_joint(hp, params, z, ids, lengths) - log_z - log_q

    draws = (jnp.arange(num_samples), jax.random.split(k_draw, num_samples))
    log_w = lax.map(log_weight, draws)  # (N, B)
    return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)


def long_run_chain(
    hp: TextLEBMHparams, params: Params, key: jax.Array, num: int, num_steps: int, record_every: int
) -> dict[str, jax.Array]:
    """A prior Langevin chain of ``num_steps`` (K′₀) from ``N(0, σ_init² I)``, decoded greedily (Table 3).

    Returns ``ids`` ``(S + 1, num, max_len)`` and ``lengths`` ``(S + 1, num)`` every ``record_every`` steps
    (step 0 included), ``steps`` ``(S + 1,)``, and ``energy`` ``(num_steps + 1,)``: the mean of
    ``−log p̃_α(z_k)`` over chains at every step.
    """
    keys = jax.random.split(key, num)
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, _PRIOR_INIT), (hp.latent_dim,))
    decoder, dec_vars = hp.decoder_net(), {"params": params["decoder"]}

    def greedy(z):
        return text_nets.sample(decoder, dec_vars, z, jax.random.key(0), hp.max_len, temperature=0.0)

    chain = long_run_prior_chain(
        functools.partial(log_prior, hp, params["ebm"]),
        greedy,
        z0,
        fold_keys(keys, _PRIOR_NOISE),
        step_size=hp.prior_step_size,
        num_steps=num_steps,
        record_every=record_every,
        unroll=hp.prior_unroll,
    )
    ids, lengths = chain.pop("images")
    return {"ids": ids, "lengths": lengths, **chain}


# ----------------------------------------------------------------------------- config binding


@dataclasses.dataclass(frozen=True)
class TextTools:
    """The text model's functions the evaluation uses (settings bound, jitted), and its vocabulary.

    * ``generate(params, key, num) -> (ids, lengths)``: sentences from prior samples (``text.temperature``);
    * ``reconstruct(params, ids, lengths, key) -> (ids, lengths)``: greedy decoding of posterior samples;
    * ``recon_log_likelihood(params, ids, lengths, key) -> (B,)``: ``log p_β(x|z⁺)``;
    * ``log_partition(params, key) -> ()``: Monte Carlo ``log Z(α)``;
    * ``marginal_log_likelihood(params, ids, lengths, key, log_z) -> (B,)``: importance-sampled ``log p(x)``;
    * ``long_run_chain(params, key, num, num_steps, record_every) -> dict`` (:func:`long_run_chain`).
    """

    vocab: Any
    generate: Any
    reconstruct: Any
    recon_log_likelihood: Any
    log_partition: Any
    marginal_log_likelihood: Any
    long_run_chain: Any


def hparams_from_config(config, vocab_size: int) -> TextLEBMHparams:
    """Read the text LEBM settings of a validated config (``model``, ``sampler``, ``text``, ``data``)."""
    d, m, t = config.data, config.model, config.text
    return TextLEBMHparams(
        vocab_size=vocab_size,
        max_len=d.max_len,
        latent_dim=m.latent_dim,
        embed_dim=t.embed_dim,
        decoder_hidden=t.decoder_hidden,
        dropout_in=t.dropout_in,
        dropout_out=t.dropout_out,
        **short_run_settings(config),
    )


def optimizers_from_config(config, steps_per_epoch: int) -> dict[str, optax.GradientTransformation]:
    """One PyTorch-style Adam for the EBM and one for the decoder, with the config's per-epoch decay."""
    ebm, decoder = ebm_and_model_adams(config.train, steps_per_epoch)
    return {"ebm": ebm, "decoder": decoder}


def make(config, steps_per_epoch: int, vocab) -> Method:
    """Bind a config and the training split's vocabulary: the :class:`Method` the runner uses."""
    hp = hparams_from_config(config, len(vocab))
    tx = optimizers_from_config(config, steps_per_epoch)
    t, e = config.text, config.eval
    eval_steps = e.posterior_steps if e.posterior_steps > 0 else None

    def _generate(params, key, num):
        return generate(hp, params, key, num, t.temperature)

    def _marginal(params, ids, lengths, key, log_z):
        return marginal_log_likelihood(
            hp,
            params,
            ids,
            lengths,
            key,
            log_z,
            num_chains=t.nll_chains,
            num_samples=t.nll_samples,
            num_steps=eval_steps,
        )

    tools = TextTools(
        vocab=vocab,
        generate=jax.jit(_generate, static_argnums=2),
        reconstruct=jax.jit(functools.partial(reconstruct, hp, num_steps=eval_steps)),
        recon_log_likelihood=jax.jit(functools.partial(recon_log_likelihood, hp, num_steps=eval_steps)),
        log_partition=jax.jit(
            lambda params, key: log_partition(hp, params["ebm"], key, t.log_partition_samples)
        ),
        marginal_log_likelihood=jax.jit(_marginal),
        long_run_chain=jax.jit(functools.partial(long_run_chain, hp), static_argnums=(2, 3, 4)),
    )
    return Method(
        name="lebm_text",
        init=functools.partial(init, hp, tx),
        train_step=functools.partial(train_step, hp, tx),
        generate=tools.generate,
        reconstruct=tools.reconstruct,
        hparams=hp,
        modality="text",
        extras=tools,
    )
