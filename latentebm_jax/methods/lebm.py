"""LEBM: a latent-space EBM prior on a top-down generator (Pang et al. 2020), one Algorithm 1 for any
likelihood; here with the Gaussian image decoder (Eq. 3), in :mod:`~latentebm_jax.methods.lebm_text` with the
LSTM text decoder (Eq. 4).

Model (Eqs. 1–2): ``p_α(z) ∝ exp(f_α(z)) N(z; 0, σ_p² I)`` and a generator ``p_β(x|z)`` — a
:class:`Likelihood`. Learning (Algorithm 1), one iteration on a mini-batch ``x``:

1. prior sampling ``z⁻ ~ p̃_α(z)``: ``K₀`` Langevin steps of size ``s₀`` from ``z ~ N(0, σ_init² I)``;
2. posterior sampling ``z⁺ ~ p̃_θ(z|x)``: ``K₁`` Langevin steps of size ``s₁`` on
   ``log p_β(x|z) + f_α(z) + log N(z; 0, σ_p² I)`` from a fresh ``N(0, σ_init² I)``;
3. generator update along Eq. 11, ``E[∇_β log p_β(x|z⁺)]`` (the likelihood's loss);
4. EBM update along Eq. 10, ``E[∇_α f_α(z⁺)] − E[∇_α f_α(z⁻)]``.

Both chains run with the parameters from before the updates, as in the authors' code
(bpucla/latent-space-EBM-prior); their SVHN defaults (``K₀ = 60, s₀ = 0.4, K₁ = 20, s₁ = 0.1, σ = 0.3``,
Adam betas ``(0.5, 0.999)``, lr ``2e-5 / 1e-4``, ``γ = 0.998`` per epoch) are the defaults here. Every
function is pure; :data:`SPEC` binds a config.

Config groups: ``lebm`` (:class:`EBMPrior`, :class:`GaussianImageLikelihood`, :class:`LEBMOptimizer`) and
``sampler`` (:class:`~latentebm_jax.methods.common.PriorSampler`,
:class:`~latentebm_jax.methods.common.PosteriorSampler`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol

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
    non_negative,
    non_negative_int,
    positive,
    positive_int,
    setting,
    settings_of,
    values_of,
)
from latentebm_jax.data.settings import IMAGE_DATASETS, is_text
from latentebm_jax.langevin import langevin
from latentebm_jax.methods.base import LatentSpace, Method, MethodSpec, shapes_of
from latentebm_jax.methods.common import (
    PosteriorSampler,
    PriorSampler,
    apply_updates_per_network,
    contrastive_ebm_grad,
    cross_replica_mean,
    example_keys,
    fold_keys,
    long_run_prior_chain,
    normal_per_example,
    separately,
    short_run_metrics,
)
from latentebm_jax.nets import MLPEnergy, make_generator
from latentebm_jax.nets.conv_transpose import CONV_IMPLS
from latentebm_jax.nets.energy import ACTIVATIONS
from latentebm_jax.nets.generator import GENERATORS
from latentebm_jax.optim import AdamSchedule
from latentebm_jax.state import TrainState, new_train_state

Params = dict[str, Any]
Batch = dict[str, jax.Array]

# The train-step metrics the divergence guard watches (training/divergence.py).
WATCH = {"energy": ("f_pos", "f_neg"), "generator_grad": ("grad_norm_g",)}

# Named sub-streams of an example's key.
_PRIOR_INIT, _PRIOR_NOISE, _POST_INIT, _POST_NOISE = 0, 1, 2, 3
DECODE_STREAM = 4  # the likelihood's own draws in generate / reconstruct (token sampling)
_DROPOUT = 1 << 20  # the decoder's dropout masks (folded into the step key, apart from example indices)


class Likelihood(Protocol):
    """``p_β(x|z)``: what Algorithm 1 needs of a generator. Implementations are frozen dataclasses
    (static, hashed into compiled functions).

    * ``network``: the name of its parameters in ``params`` (``"gen"``, ``"decoder"``);
    * ``uses_dropout``: whether ``loss`` takes a dropout key;
    * ``init(key, latent_dim) -> params``;
    * ``log_prob(params, z, batch) -> (B,)``: ``log p_β(x|z)``, the data term of posterior Langevin;
    * ``loss(params, z, batch, dropout_key) -> (loss, aux)``: the generator's objective (Eq. 11), a batch
      mean to descend, with ``aux`` for ``metrics``;
    * ``metrics(batch, loss, aux) -> dict``: what its train step logs besides ``loss_g``;
    * ``decode(params, z, key, greedy) -> batch``: data from latents (the mean image; sampled or greedy
      sentences);
    * ``check_batch(batch)``: shapes at the public boundary.
    """

    network: str
    uses_dropout: bool

    def init(self, key: jax.Array, latent_dim: int) -> Params: ...

    def log_prob(self, params: Params, z: jax.Array, batch: Batch) -> jax.Array: ...

    def loss(
        self, params: Params, z: jax.Array, batch: Batch, dropout_key: jax.Array | None
    ) -> tuple[jax.Array, Any]: ...

    def metrics(self, batch: Batch, loss: jax.Array, aux: Any) -> dict[str, jax.Array]: ...

    def decode(self, params: Params, z: jax.Array, key: jax.Array, greedy: bool) -> Batch: ...

    def check_batch(self, batch: Batch) -> None: ...


@dataclasses.dataclass(frozen=True)
class GaussianImageLikelihood:
    """``x = g_β(z) + ε``, ``ε ~ N(0, σ² I)`` (Eq. 3) with a DCGAN-style generator."""

    image_shape: tuple[int, int, int] = (32, 32, 3)  # from the data
    generator: str = setting("dcgan", "generator network", choices=GENERATORS)
    ngf: int = setting(64, "generator width", check=positive_int)
    likelihood_sigma: float = setting(0.3, "σ of x = g(z) + ε", check=positive)
    generator_loss: str = setting(
        "gaussian_nll",
        "‖x−g(z)‖²/(2σ²) as the paper's Eq. 11, or sum_squared: the official code's ‖x−g(z)‖²",
        choices=("gaussian_nll", "sum_squared"),
    )
    conv_impl: str = setting(
        "fast",
        "how transposed convolutions are computed (every choice is the same function)",
        choices=CONV_IMPLS,
    )

    network = "gen"
    uses_dropout = False

    def net(self):
        h, _, c = self.image_shape
        return make_generator(self.generator, h, c, self.ngf, self.conv_impl)

    def init(self, key: jax.Array, latent_dim: int) -> Params:
        return self.net().init(key, jnp.zeros((1, latent_dim), jnp.float32))["params"]

    def mean(self, params: Params, z: jax.Array) -> jax.Array:
        """``g_β(z)``, images ``(B, H, W, C)`` in ``[−1, 1]``."""
        return self.net().apply({"params": params}, z)

    def log_prob(self, params: Params, z: jax.Array, batch: Batch) -> jax.Array:
        return priors.gaussian_log_likelihood(batch["image"], self.mean(params, z), self.likelihood_sigma)

    def loss(self, params, z, batch, dropout_key=None):
        x_hat = self.mean(params, z)
        loss = losses.gaussian_reconstruction_loss(
            batch["image"], x_hat, self.likelihood_sigma, self.generator_loss
        )
        return loss, x_hat

    def metrics(self, batch, loss, aux):
        return {"mse_pos": jnp.mean(jnp.square(batch["image"] - aux))}

    def decode(self, params, z, key=None, greedy=True) -> Batch:
        return {"image": self.mean(params, z)}

    def check_batch(self, batch: Batch) -> None:
        chex.assert_shape(batch["image"], (None, *self.image_shape))


@dataclasses.dataclass(frozen=True)
class EBMPrior:
    """``p_α(z) ∝ exp(f_α(z)) N(z; 0, σ_p² I)`` on one latent vector (Eq. 2), ``f_α`` an MLP."""

    latent_dim: int = setting(100, "n_z: units of the latent vector", check=positive_int)
    ebm_hidden: int = setting(
        200,
        "width of the EBM's hidden layers (0 = no EBM: the Gaussian prior N(0, σ_p² I), short-run inference)",
        check=non_negative_int,
    )
    ebm_layers: int = setting(2, "hidden layers of the EBM", check=non_negative_int)
    ebm_activation: str = setting("gelu", "the EBM's activation", choices=tuple(ACTIVATIONS))
    prior_sigma: float = setting(1.0, "σ_p of the reference N(0, σ_p² I)", check=positive)

    @property
    def has_ebm(self) -> bool:
        """``False`` for ``ebm_hidden = 0``: ``f_α ≡ 0``, the same generator under ``N(0, σ_p² I)`` learned by
        short-run posterior Langevin (the SRI baseline of Table 1, Nijkamp et al. 2020)."""
        return self.ebm_hidden > 0

    def energy_net(self) -> MLPEnergy:
        return MLPEnergy(hidden=self.ebm_hidden, num_hidden=self.ebm_layers, activation=self.ebm_activation)


@dataclasses.dataclass(frozen=True)
class LEBMHparams(EBMPrior, PriorSampler, PosteriorSampler):
    """The prior, both short-run samplers and the likelihood (static: hashed into compiled functions)."""

    likelihood: Any = GaussianImageLikelihood()


@dataclasses.dataclass(frozen=True)
class LEBMOptimizer(AdamSchedule):
    """One PyTorch-style Adam per network (the authors'): the EBM's and the generator's."""

    lr_ebm: float = setting(2e-5, "EBM learning rate", check=non_negative)
    lr_gen: float = setting(1e-4, "generator learning rate", check=non_negative)
    weight_decay_ebm: float = setting(0.0, "EBM weight decay (coupled, PyTorch's)", check=non_negative)
    weight_decay_gen: float = setting(0.0, "generator weight decay", check=non_negative)

    def build(self, network: str, steps_per_epoch: int) -> dict[str, optax.GradientTransformation]:
        return {
            "ebm": self.adam(self.lr_ebm, self.weight_decay_ebm, steps_per_epoch),
            network: self.adam(self.lr_gen, self.weight_decay_gen, steps_per_epoch),
        }


# ----------------------------------------------------------------------------- densities


def neg_energy(hp: EBMPrior, ebm_params: Params, z: jax.Array) -> jax.Array:
    """``f_α(z)``, shape ``(B,)`` (zero without an EBM)."""
    if not hp.has_ebm:
        return jnp.zeros(z.shape[:1], z.dtype)
    return hp.energy_net().apply({"params": ebm_params}, z)


def log_prior(hp: EBMPrior, ebm_params: Params, z: jax.Array) -> jax.Array:
    """``log p_α(z) = f_α(z) + log N(z; 0, σ_p² I)`` up to ``−log Z(α)`` (Eq. 2)."""
    return priors.ebm_log_prior(functools.partial(neg_energy, hp, ebm_params), z, hp.prior_sigma)


def log_joint(hp: LEBMHparams, params: Params, z: jax.Array, batch: Batch) -> jax.Array:
    """``log p_θ(x, z) = log p_α(z) + log p_β(x|z)`` up to ``−log Z(α)`` (Eqs. 1–4): as a function of ``z``
    the unnormalised posterior, the target of posterior Langevin; at posterior samples the anomaly score of
    Sec. 3.4."""
    lik = hp.likelihood
    return log_prior(hp, params["ebm"], z) + lik.log_prob(params[lik.network], z, batch)


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

    ``keys`` holds one typed key per chain (so ``len(keys)`` chains run). Without an EBM (and without
    ``trace``) the samples are exact draws of ``N(0, σ_p² I)``.
    """
    eps = normal_per_example(fold_keys(keys, _PRIOR_INIT), (hp.latent_dim,))
    if not hp.has_ebm and not trace:
        return hp.prior_sigma * eps
    z0 = hp.init_sigma * eps
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
    hp: LEBMHparams, params: Params, batch: Batch, keys: jax.Array, *, num_steps: int | None = None
) -> jax.Array:
    """``z⁺ ~ p̃_θ(z|x)``: short-run posterior Langevin (Eq. 9, ``s₁``, ``K₁``) from ``N(0, σ_init² I)``."""
    hp.likelihood.check_batch(batch)
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, _POST_INIT), (hp.latent_dim,))
    return langevin(
        lambda z: log_joint(hp, params, z, batch),
        z0,
        fold_keys(keys, _POST_NOISE),
        step_size=hp.posterior_step_size,
        num_steps=hp.posterior_steps if num_steps is None else num_steps,
        unroll=hp.posterior_unroll,
    )


# ----------------------------------------------------------------------------- learning


def init(hp: LEBMHparams, tx: dict[str, optax.GradientTransformation], key: jax.Array) -> TrainState:
    """Fresh parameters ``{"ebm", <likelihood network>}``, optimiser states and run key."""
    k_ebm, k_gen, k_run = jax.random.split(key, 3)
    z = jnp.zeros((1, hp.latent_dim), jnp.float32)
    lik = hp.likelihood
    ebm = hp.energy_net().init(k_ebm, z)["params"] if hp.has_ebm else {}
    params = {"ebm": ebm, lik.network: lik.init(k_gen, hp.latent_dim)}
    opt_state = {name: tx[name].init(p) for name, p in params.items()}
    return new_train_state(params, opt_state, k_run)


def _batch_size(batch: Batch) -> int:
    return jax.tree.leaves(batch)[0].shape[0]


def train_step(
    hp: LEBMHparams,
    tx: dict[str, optax.GradientTransformation],
    state: TrainState,
    batch: Batch,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One iteration of Algorithm 1 on this device's share of the batch.

    Gradients are per-device batch means averaged with ``lax.pmean`` over ``axis_name``; every example's
    chains draw from its own key, so the result does not depend on how the batch is split. A likelihood
    with dropout (the text decoder) applies it in the generator update only, never inside the chains; its
    masks come from the step key folded with the device index.
    """
    lik = hp.likelihood
    lik.check_batch(batch)
    keys = example_keys(state.step_key(), _batch_size(batch), axis_name)
    params = state.params

    z_neg = lax.stop_gradient(sample_prior(hp, params["ebm"], keys))
    z_pos = lax.stop_gradient(sample_posterior(hp, params, batch, keys))

    dropout_key = None
    if lik.uses_dropout:
        dropout_key = jax.random.fold_in(state.step_key(), _DROPOUT)
        if axis_name is not None:
            dropout_key = jax.random.fold_in(dropout_key, lax.axis_index(axis_name))

    def gen_loss(gen_params):
        return lik.loss(gen_params, z_pos, batch, dropout_key)

    (loss_g, aux), g_gen = jax.value_and_grad(gen_loss, has_aux=True)(params[lik.network])
    loss_e, f_pos, f_neg, _, g_ebm = contrastive_ebm_grad(
        separately(functools.partial(neg_energy, hp), z_pos, z_neg), params["ebm"]
    )
    grads = cross_replica_mean({lik.network: g_gen, "ebm": g_ebm}, axis_name)
    new_params, new_opt = apply_updates_per_network(tx, grads, state.opt_state, params)
    metrics = {
        "loss_g": loss_g,
        **lik.metrics(batch, loss_g, aux),
        **short_run_metrics(loss_e, f_pos, f_neg, z_pos, z_neg),
        "grad_norm_g": optax.tree.norm(grads[lik.network]),
        "grad_norm_e": optax.tree.norm(grads["ebm"]),
    }
    metrics = cross_replica_mean(metrics, axis_name)
    new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt)
    return new_state, metrics


# ----------------------------------------------------------------------------- using a trained model


def chain_keys(key: jax.Array, num: int) -> jax.Array:
    """One key per chain (example) of a batch."""
    return jax.random.split(key, num)


def generate(hp: LEBMHparams, params: Params, key: jax.Array, num: int) -> Batch:
    """``num`` samples ``x ~ p_β(x|z⁻)`` with ``z⁻`` from short-run prior Langevin (the paper's sampler)."""
    z = sample_prior(hp, params["ebm"], chain_keys(key, num))
    lik = hp.likelihood
    return lik.decode(params[lik.network], z, jax.random.fold_in(key, DECODE_STREAM), False)


def infer(hp: LEBMHparams, params: Params, batch: Batch, key: jax.Array, num_steps: int | None = None):
    """``z⁺`` from short-run posterior Langevin on the batch, one chain per example."""
    return sample_posterior(hp, params, batch, chain_keys(key, _batch_size(batch)), num_steps=num_steps)


def reconstruct(
    hp: LEBMHparams, params: Params, batch: Batch, key: jax.Array, num_steps: int | None = None
) -> Batch:
    """The likelihood's decoding of ``z⁺`` (the mean image; the greedy sentence), Sec. 3.1 / Table 1."""
    lik = hp.likelihood
    z = infer(hp, params, batch, key, num_steps)
    return lik.decode(params[lik.network], z, jax.random.fold_in(key, DECODE_STREAM), True)


def log_joint_at_posterior(
    hp: LEBMHparams, params: Params, batch: Batch, key: jax.Array, num_steps: int | None = None
) -> jax.Array:
    """``log p_θ(x, z⁺)`` at a posterior sample ``z⁺`` (Sec. 3.4); low values flag anomalies."""
    return log_joint(hp, params, infer(hp, params, batch, key, num_steps), batch)


def long_run_chain(
    hp: LEBMHparams, params: Params, key: jax.Array, num: int, num_steps: int, record_every: int
) -> dict[str, Any]:
    """A prior chain of ``num_steps`` (K′₀; Figs. 3–4 use 100 and 2500; Table 3 decodes text chains) from
    ``N(0, σ_init² I)``, decoded (greedily for text) every ``record_every`` steps.

    Returns ``frames`` (a batch with a leading frame axis, ``S + 1`` frames, step 0 included), ``steps``
    ``(S + 1,)``, and ``energy`` ``(num_steps + 1,)``: the mean of ``−log p̃_α(z_k)`` over chains at every
    step (the energy profile, Gaussian reference term included).
    """
    keys = chain_keys(key, num)
    lik = hp.likelihood
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, _PRIOR_INIT), (hp.latent_dim,))
    return long_run_prior_chain(
        functools.partial(log_prior, hp, params["ebm"]),
        lambda z: lik.decode(params[lik.network], z, jax.random.key(0), True),
        z0,
        fold_keys(keys, _PRIOR_NOISE),
        step_size=hp.prior_step_size,
        num_steps=num_steps,
        record_every=record_every,
        unroll=hp.prior_unroll,
    )


def predict_functions(hp: LEBMHparams) -> dict[str, Any]:
    """The predict functions every LEBM has (jitted; posterior chains of ``eval_posterior_steps``)."""
    steps = hp.eval_steps
    return {
        "generate": jax.jit(functools.partial(generate, hp), static_argnums=2),
        "reconstruct": jax.jit(functools.partial(reconstruct, hp, num_steps=steps)),
        "infer": jax.jit(lambda params, batch, key: (infer(hp, params, batch, key, steps),)),
        "long_run_chain": jax.jit(functools.partial(long_run_chain, hp), static_argnums=(2, 3, 4)),
    }


# ----------------------------------------------------------------------------- config


def configure_lebm_groups(config, group: str, likelihood_type: type) -> None:
    """Add the method group (prior, likelihood and optimiser settings) and the ``sampler`` group."""
    config[group] = group_of(
        {**settings_of(EBMPrior), **settings_of(likelihood_type), **settings_of(LEBMOptimizer)}
    )
    config.sampler = group_of({**settings_of(PriorSampler), **settings_of(PosteriorSampler)})


def check_lebm_groups(config, group: str, likelihood_type: type) -> None:
    """Values of the method group and the ``sampler`` group."""
    check_group(
        config[group],
        {**settings_of(EBMPrior), **settings_of(likelihood_type), **settings_of(LEBMOptimizer)},
        group,
    )
    check_group(config.sampler, {**settings_of(PriorSampler), **settings_of(PosteriorSampler)}, "sampler")


def hparams_from_groups(config, group: str, likelihood: Any) -> LEBMHparams:
    """The hparams of a validated config's method group and ``sampler`` group."""
    return LEBMHparams(
        **values_of(config[group], EBMPrior),
        **values_of(config.sampler, PriorSampler),
        **values_of(config.sampler, PosteriorSampler),
        likelihood=likelihood,
    )


def hparams_from_config(config) -> LEBMHparams:
    """The image LEBM's hparams of a validated config."""
    d = config.data
    likelihood = GaussianImageLikelihood(
        image_shape=(d.image_size, d.image_size, d.channels),
        **values_of(config.lebm, GaussianImageLikelihood),
    )
    return hparams_from_groups(config, "lebm", likelihood)


def optimizer_from_config(config, group: str) -> LEBMOptimizer:
    """The optimiser settings of a validated config's method group."""
    return LEBMOptimizer(**values_of(config[group], LEBMOptimizer))


def _configure(config) -> None:
    """LEBM on SVHN 32×32 with the authors' defaults (train_svhn.py)."""
    configure_lebm_groups(config, "lebm", GaussianImageLikelihood)
    config.eval.metrics = ("reconstruction", "samples", "chains")
    config.eval.interval_metrics = ("interval_samples", "interval_reconstructions")


def _validate(config) -> None:
    if is_text(config.data.name):
        raise ConfigError(
            f"config key 'data.name' is the text corpus {config.data.name!r}; method 'lebm' models images: "
            f"use method 'lebm_text' (e.g. configs/text_toy.py), or an image dataset: {list(IMAGE_DATASETS)}"
        )
    check_lebm_groups(config, "lebm", GaussianImageLikelihood)
    if config.lebm.generator == "small8" and config.data.image_size != 8:
        raise ConfigError(
            f"config key 'lebm.generator' is 'small8' (8×8 images) but 'data.image_size' is "
            f"{config.data.image_size}; use 'dcgan' or data.image_size=8"
        )


def make(config, splits, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (predict functions jitted)."""
    del splits  # the image shape is in the config
    hp = hparams_from_config(config)
    tx = optimizer_from_config(config, "lebm").build(hp.likelihood.network, steps_per_epoch)
    steps = hp.eval_steps
    pure_init = functools.partial(init, hp, tx)

    def _sample_prior(params, key, num, num_steps):
        return (sample_prior(hp, params["ebm"], chain_keys(key, num), num_steps=num_steps),)

    predict = {
        **predict_functions(hp),
        "log_joint": jax.jit(functools.partial(log_joint_at_posterior, hp, num_steps=steps)),
        "decode": jax.jit(lambda params, z: hp.likelihood.decode(params["gen"], z[0])),
        "sample_prior": jax.jit(_sample_prior, static_argnums=(2, 3)),
    }
    return Method(
        name="lebm",
        init=pure_init,
        state_shapes=shapes_of(pure_init),
        train_step=functools.partial(train_step, hp, tx),
        predict=predict,
        latents=LatentSpace(dims=(hp.latent_dim,), prior_steps=hp.prior_steps),
        watch=WATCH,
    )


SPEC = MethodSpec(
    name="lebm",
    doc="LEBM (Pang et al., NeurIPS 2020) on images: EBM prior on one latent vector, short-run Langevin",
    configure=_configure,
    validate=_validate,
    make=make,
    batch_fields=("image",),
)
