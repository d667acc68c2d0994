"""Hierarchical EBM prior learned by diffusion in ũ-space (Cui & Han, ICML 2024), on a frozen backbone.

Per-layer time-conditioned EBMs ``f_ω_i(z_i, t)`` on a trained hierarchical generator (a
:class:`~latentebm_jax.backbones.base.Backbone`, reached only through that interface; ``diffusion.backbone``
names its kind, the ``backbone`` config group its architecture). The backbone's parameters are read from
``diffusion.backbone_dir`` when a run starts and then carried, untrained, in the state's
``model_state["backbone"]``: a stage-2 checkpoint holds everything its evaluation needs.
``F_ω(z̃, t) = Σ_i f_ω_i(z_i, t)`` (Eq. 9). Two schemes:

* ``scheme = 'diffusion'`` (the paper), Algorithm 1 per mini-batch: ``z̃ ~ q_φ(z̃|x)`` (a posterior sample, as
  the authors), ``u_0 = T⁻¹(z̃)``; ``t ~ U{0 … T−1}`` per example; the pair ``(u_t⁺, u_{t+1})`` (Eq. 7);
  ``u_t⁻`` by ``K`` Langevin steps on ``log p_ω(u_t | u_{t+1})`` (Eq. 13) from ``u_{t+1}``, step ``√s_t``
  with the authors' ``s_t = b (σ̄_t/σ̄_0) σ²_{t+1}``; loss ``mean F(T(u⁻), t) − mean F(T(u⁺), t)``
  (Eq. 12). Sampling is Algorithm 2 (``diffusion.reverse_sample``).
* ``scheme = 'marginal'``: the marginal joint EBM on ũ-space (Eq. 8, Cui et al. 2023a), ``t = 0`` always,
  negatives by Langevin on ``F(T(ũ)) − ‖ũ‖²/2`` from ``N(0, I)``.

Energy parameterisation: with ``energy_scale = 'step'`` (the authors' code,
jcui1224/diffusion-hierarchical-ebm) ``F = g/s_t`` where ``g`` is the network output, which makes their loss
``mean(−(g⁺ − g⁻)/s_t)`` exactly Eq. 12 and their sampler's EBM drift ``½∇g`` exactly the Langevin drift of
Eq. 13 at step ``√s_t``; ``'none'`` uses ``F = g``.

Label coupling (Sec. 3.3, Eq. 14, App. A.2): the energies of ``label_layers`` output one value per class,
``F_i,y = scale(t) g_i,y``; their label-free energy is ``log Σ_y exp F_i,y`` (Eq. 18), and examples with
``t = 0`` add the cross-entropy of ``softmax_y(F_i,y)`` against the label (Eqs. 19–20). Class-conditional
sampling reverses label-free to ``u_1``, then samples ``u_0`` with ``F_i,y`` as the coupled layers' energy.

Predict functions beyond the shared ones (for the evaluators of :mod:`.diffusion_evaluators`), all
``(params, batch, key)``: ``layer_scores`` and ``layer_scores_diffusion`` ``(B, L)`` (Sec. 5.2's two OOD
schemes), ``class_logits`` ``(B, C)`` and ``attribute_logits`` ``(B, J, C)`` at inferred latents (Eq. 19),
``generate_labelled`` (``batch["label"]``: ``(n,)`` classes or ``(n, J)`` attributes), ``compose`` and
``compose_attributes`` (Fig. 4's panels).
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

from latentebm_jax import diffusion as dif
from latentebm_jax.backbones import BACKBONES
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
from latentebm_jax.data.settings import is_text
from latentebm_jax.langevin import batch_size_of, langevin
from latentebm_jax.methods.base import LatentSpace, Method, MethodSpec
from latentebm_jax.methods.common import (
    apply_updates,
    cross_replica_mean,
    example_keys,
    fold_keys,
    long_run_prior_chain,
    normal_layers,
)
from latentebm_jax.methods.diffusion_evaluators import EVALUATORS
from latentebm_jax.nets.energy import LayerwiseEnergy
from latentebm_jax.optim import AdamSchedule
from latentebm_jax.state import TrainState, new_train_state

Params = dict[str, Any]
Latents = tuple[jax.Array, ...]

SCHEMES = ("diffusion", "marginal")
ENERGY_SCALES = ("step", "none")

# Named sub-streams of an example's key.
_POST, _TIME, _PAIR, _CHAIN, _INIT, _LAYER, _OOD = 0, 1, 2, 3, 4, 5, 6


def _layer_numbers(x) -> bool:
    return all(isinstance(i, int) and i >= 1 for i in x)


@dataclasses.dataclass(frozen=True)
class DiffusionSettings:
    """The EBMs and their samplers (config group ``diffusion``). Defaults: the authors' CIFAR-10 setting
    (T = 3, K = 50, b = 3e-5, ch = 128, spectral norm)."""

    backbone_kind: str = setting(
        "hvae", "kind of backbone (latentebm_jax/backbones)", choices=tuple(BACKBONES)
    )
    backbone_dir: str = setting("", "a new run reads the trained backbone from here (e.g. an hvae run)")
    scheme: str = setting(
        "diffusion", "diffusion: Alg. 1 (Eq. 9); marginal: the joint EBM on u-space (Eq. 8)", choices=SCHEMES
    )
    num_diffusion_steps: int = setting(
        3, "T (ablation: 6)", check=lambda x: x >= 2, what="an integer >= 2 (the authors' schedule)"
    )
    langevin_steps: int = setting(
        50,
        "K: Langevin steps per diffusion step (marginal: per chain)",
        check=non_negative_int,
    )
    base_step: float = setting(3e-5, "b: Langevin variance s_t = b (σ̄_t/σ̄_0) σ²_{t+1}", check=positive)
    energy_scale: str = setting("step", "step: F = g/s_t (the authors'); none: F = g", choices=ENERGY_SCALES)
    keep_last_kernel: bool = setting(
        True, "Eq. 13's kernel at t = T-1 (the paper); the authors' code drops it"
    )
    marginal_step_size: float = setting(
        0.1, "the marginal scheme's Langevin step (noise std)", check=positive
    )
    unroll: int = setting(
        1,
        "lax.scan unroll of the chains (speed only; 0 = fully)",
        check=non_negative_int,
    )
    ebm_hidden: int = setting(128, "ch: width of each layer's energy", check=positive_int)
    ebm_blocks: int = setting(2, "dense blocks of each layer's energy", check=non_negative_int)
    ebm_spectral_norm: bool = setting(True, "spectral norm on every EBM layer (the authors')")
    label_layers: tuple[int, ...] = setting(
        (),
        "layers z_i (1 = bottom) whose energies output class logits (Eq. 14)",
        check=_layer_numbers,
        what="a tuple of layer numbers (1 = bottom z_1)",
    )
    num_classes: int = setting(
        10, "classes of the coupled labels", check=lambda x: x >= 2, what="an integer >= 2"
    )
    label_weight: float = setting(1.0, "weight of the cross-entropy (App. A.2)", check=non_negative)
    label_steps: str = setting(
        "first", "couple y at t = 0 only (App. A.2) or at all t (an option)", choices=("first", "all")
    )
    label_guidance: float = setting(
        1.0,
        "w in F_free + w log softmax(F)_y when sampling with labels (1 = Eq. 14)",
        check=non_negative,
    )
    temperature: float = setting(1.0, "sampling temperature τ (target π^{1/τ²})", check=positive)
    fixed_layers: str = setting(
        "clean",
        "hierarchical/compositional sampling: fixed layers clean at every reverse step, or diffused to each "
        "step's noise level by the forward kernel",
        choices=dif.FIXED_LAYERS,
    )


@dataclasses.dataclass(frozen=True)
class DiffusionHparams(DiffusionSettings):
    """Backbone, EBM and sampler settings (static). ``label_layers`` here are 0-based."""

    backbone: Any = None  # a Backbone (latentebm_jax/backbones)
    shared_label: bool = True  # one class y at every coupled layer (else one attribute per layer)

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """Units per layer."""
        return tuple(self.backbone.latent_dims)

    @property
    def latent_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each layer's shape without the batch axis: ``(d,)``, or ``(H, W, C)`` for spatial groups (NVAE)."""
        return tuple(tuple(s) for s in self.backbone.noise_shapes())

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

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


@dataclasses.dataclass(frozen=True)
class DiffusionOptimizer(AdamSchedule):
    """The EBMs' Adam (the authors' one Adam per layer's EBM is the same as one over all)."""

    lr: float = setting(4e-5, "learning rate of the EBMs", check=non_negative)
    weight_decay: float = setting(3e-5, "weight decay of the EBMs (coupled)", check=non_negative)


# ----------------------------------------------------------------------------- the backbone


def decode(hp: DiffusionHparams, backbone: Params, z: Latents) -> jax.Array:
    """``g(z̃)``: images ``(B, H, W, C)`` in ``[−1, 1]``."""
    return hp.backbone.decode(backbone, tuple(z))


def to_z(hp: DiffusionHparams, backbone: Params, u: Latents) -> Latents:
    """``z̃ = T(ũ)``."""
    return hp.backbone.to_z(backbone, tuple(u))


def to_u(hp: DiffusionHparams, backbone: Params, z: Latents) -> Latents:
    """``ũ = T⁻¹(z̃)``."""
    return hp.backbone.to_u(backbone, tuple(z))


def _normal_layers(hp: DiffusionHparams, keys: jax.Array, stream: int) -> Latents:
    """One ``(B, *shape_i)`` standard normal per layer
    (:func:`~latentebm_jax.methods.common.normal_layers`)."""
    return normal_layers(hp.latent_shapes, keys, stream)


def posterior_draw(hp: DiffusionHparams, backbone: Params, x: jax.Array, noise: Latents) -> Latents:
    """``z̃ ~ q(z̃|x)`` from standard-normal ``noise`` (the backbone's reparameterised draw)."""
    return hp.backbone.posterior_draw(backbone, x, noise)


def infer(hp: DiffusionHparams, params: Params, x: jax.Array) -> Latents:
    """The backbone's inferred latents (the means of ``q_φ(z̃|x)``)."""
    return hp.backbone.posterior_mean(params["backbone"], x)


def _chain_keys(key: jax.Array, num: int) -> jax.Array:
    return jax.random.split(key, num)


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
    ``hp.label_layers`` (attributes at different layers, Fig. 4); ``−1`` leaves that layer label-free.

    One class coupled at several layers (``hp.shared_label``): Eqs. 18–19 take ``F = Σ_i f_i`` with one
    ``y``, so the coupled layers give together ``log Σ_y exp Σ_i F_i,y`` (with labels: ``Σ_i F_i,y``), put
    in the column of the top coupled layer (the others' columns are 0); the total is Eq. 18's energy, which
    a per-layer ``Σ_i log Σ_y exp F_i,y`` is not."""
    scale = energy_scale(hp, t)[:, None]
    joint = hp.shared_label and len(hp.label_layers) > 1
    if joint:
        summed = scale * sum(outputs[i] for i in hp.label_layers)
        f_joint = jax.nn.logsumexp(summed, axis=-1)
        if labels is not None:
            chex.assert_rank(labels, 1)
            picked = jnp.take_along_axis(summed, jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
            on = label_coupled(hp, t) & (labels >= 0)
            f_joint = jnp.where(on, f_joint + hp.label_guidance * (picked - f_joint), f_joint)
    cols = []
    for i, out in enumerate(outputs):
        if joint and i in hp.label_layers:
            cols.append(f_joint if i == max(hp.label_layers) else jnp.zeros_like(f_joint))
        elif i in hp.label_layers:
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


def label_cross_entropy(
    hp: DiffusionHparams, outputs: tuple[jax.Array, ...], t: jax.Array, labels: jax.Array
) -> jax.Array:
    """``−log p(y | ũ_t, ũ_{t+1})`` (Eq. 19), averaged over the examples coupled at ``t``: the softmax of the
    energies ``⟨F, y⟩``, one over the summed logits ``Σ_i F_i`` for a class ``(B,)`` coupled at every label
    layer, one per layer for per-layer attributes ``(B, J)`` (summed over layers)."""
    scale = energy_scale(hp, t)[:, None]
    groups = [hp.label_layers] if labels.ndim == 1 else [(i,) for i in hp.label_layers]
    ce = jnp.zeros(())
    for group in groups:
        y = layer_labels(hp, labels, group[0])
        on = (label_coupled(hp, t) & (y >= 0)).astype(jnp.float32)
        logp = jax.nn.log_softmax(scale * sum(outputs[i] for i in group), axis=-1)
        nll = -jnp.take_along_axis(logp, jnp.maximum(y, 0)[:, None], axis=-1)[:, 0]
        ce = ce + jnp.sum(on * nll) / jnp.maximum(jnp.sum(on), 1.0)
    return ce


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


def marginal_sample(
    hp: DiffusionHparams,
    params: Params,
    u0: Latents,
    keys: jax.Array,
    *,
    labels=None,
    num_steps=None,
    free=None,
) -> Latents:
    """``ũ ~ p_ω(ũ)`` of the marginal scheme (Eq. 8): Langevin on ``F(T(ũ)) − ‖ũ‖²/2`` (tempered by ``τ``)
    from ``u0``; layers with ``free[i] = False`` stay at ``u0[i]``."""
    bb, ebm, stats = params["backbone"], params["ebm"], params["ebm_stats"]
    zf = functools.partial(to_z, hp, bb)
    f = neg_energy_fn(hp, ebm, stats, labels=labels)
    free = free or (True,) * hp.num_layers

    def log_target(y):
        it = iter(y)
        u = tuple(next(it) if fr else v for fr, v in zip(free, u0))
        return dif.marginal_log_density(f, zf, u) / hp.temperature**2

    y = langevin(
        log_target,
        tuple(v for fr, v in zip(free, u0) if fr),
        keys,
        step_size=hp.marginal_step_size * hp.temperature,
        num_steps=hp.langevin_steps if num_steps is None else num_steps,
        unroll=hp.unroll,
    )
    it = iter(y)
    return tuple(next(it) if fr else v for fr, v in zip(free, u0))


def reverse_process_sample(
    hp: DiffusionHparams,
    params: Params,
    u_T: Latents,
    keys: jax.Array,
    *,
    labels=None,
    num_steps=None,
    free=None,
) -> Latents:
    """Algorithm 2 from ``u_T`` (``num_steps`` overrides ``K`` per diffusion step); layers with
    ``free[i] = False`` stay at ``u_T[i]``."""
    settings = hp.reverse_settings()
    if num_steps is not None:
        settings = dataclasses.replace(settings, num_steps=num_steps)
    return dif.reverse_sample(
        neg_energy_fn(hp, params["ebm"], params["ebm_stats"], labels=labels),
        functools.partial(to_z, hp, params["backbone"]),
        hp.schedule(),
        settings,
        u_T,
        keys,
        free=free,
        fixed_layers=hp.fixed_layers,
    )


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
    """Prior samples in ũ-space, one chain per key, by the scheme's sampler from ``N(0, τ² I)``;
    ``u_start``/``free``: layers with ``free[i] = False`` stay at ``u_start[i]`` (hierarchical and
    compositional sampling)."""
    u0 = tuple(hp.temperature * e for e in _normal_layers(hp, keys, _INIT))
    if u_start is not None:
        free = free or (True,) * hp.num_layers
        u0 = tuple(n if f else s for f, n, s in zip(free, u0, u_start))
    sampler = marginal_sample if hp.scheme == "marginal" else reverse_process_sample
    return sampler(hp, params, u0, fold_keys(keys, _CHAIN), labels=labels, num_steps=num_steps, free=free)


# ----------------------------------------------------------------------------- learning


def init(
    hp: DiffusionHparams, tx: optax.GradientTransformation, key: jax.Array, backbone: Params
) -> TrainState:
    """Fresh EBMs; the given (trained, frozen) ``backbone`` parameters in ``model_state``."""
    _, k_ebm, k_run = jax.random.split(key, 3)
    z = tuple(jnp.zeros((1, *s), jnp.float32) for s in hp.latent_shapes)
    ebm_vars = hp.energy_net().init(k_ebm, z, jnp.zeros((1,), jnp.int32))
    params = {"ebm": dict(ebm_vars["params"])}
    model_state = {"backbone": backbone, "ebm": dict(ebm_vars.get("batch_stats", {}))}
    return new_train_state(params, {"ebm": tx.init(params["ebm"])}, k_run, model_state)


def inference_params(state: TrainState) -> Params:
    """What the sampling and evaluation functions take: ``backbone``, ``ebm`` and its ``ebm_stats``."""
    return {
        "backbone": state.model_state["backbone"],
        "ebm": state.params["ebm"],
        "ebm_stats": state.model_state.get("ebm", {}),
    }


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


def train_step(
    hp: DiffusionHparams,
    tx: optax.GradientTransformation,
    state: TrainState,
    batch: dict,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One iteration of Algorithm 1 (module docstring) on this device's share of the batch."""
    x = batch["image"]
    chex.assert_rank(x, 4)
    b = x.shape[0]
    keys = example_keys(state.step_key(), b, axis_name)
    params = inference_params(state)
    bb, stats = params["backbone"], params["ebm_stats"]
    z_post = posterior_draw(hp, bb, x, _normal_layers(hp, keys, _POST))
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
            ce = label_cross_entropy(hp, tuple(o[:b] for o in outs), t, labels)
            loss = loss + hp.label_weight * ce
        aux = (per_layer, jnp.mean(g[:b], axis=0), jnp.mean(g[b:], axis=0), ce)
        return loss, (aux, updated.get("batch_stats", stats))

    (loss, (aux, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params["ebm"])
    per_layer, g_pos, g_neg, ce = aux
    grads = cross_replica_mean(grads, axis_name)
    new_ebm, new_opt = apply_updates(tx, grads, state.opt_state["ebm"], params["ebm"])
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


# ----------------------------------------------------------------------------- using a trained model


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


def generate_backbone(hp: DiffusionHparams, params: Params, key: jax.Array, num: int) -> jax.Array:
    """``num`` images of the backbone alone: ``ũ ~ N(0, I)``, ``x = g(T(ũ))`` (Table 1's baseline)."""
    u = _normal_layers(hp, _chain_keys(key, num), _INIT)
    return decode(hp, params["backbone"], to_z(hp, params["backbone"], u))


def reconstruct(hp: DiffusionHparams, params: Params, x: jax.Array) -> jax.Array:
    """``g(z̃)`` at the backbone's inferred latents."""
    return decode(hp, params["backbone"], infer(hp, params, x))


def resample_layer(hp: DiffusionHparams, params: Params, z: Latents, layer: int, key: jax.Array) -> Latents:
    """Hierarchical sampling: ``u_layer`` drawn anew by the prior sampler with the other layers' ``ũ``
    held fixed; lower layers follow through ``T``."""
    bb = params["backbone"]
    u = to_u(hp, bb, z)
    free = tuple(i == layer for i in range(hp.num_layers))
    u_new = sample_u(hp, params, _chain_keys(key, batch_size_of(z)), u_start=u, free=free)
    return to_z(hp, bb, u_new)


def long_run_chain(
    hp: DiffusionHparams, params: Params, key: jax.Array, num: int, num_steps: int, record_every: int
) -> dict[str, Any]:
    """Long-run Langevin transitions (Sec. 5.4, Figs. 6–7): Algorithm 2 with ``num_steps`` steps *per
    diffusion step* (diffusion) or one chain of ``num_steps`` (marginal), decoded every ``record_every``.

    Each diffusion step's chain is :func:`~latentebm_jax.methods.common.long_run_prior_chain` on
    ``log p_ω(u_t | u_{t+1})`` from the previous step's end; ``frames`` are the recorded states of all of
    them in order, ``energy`` their energies ``−log p_ω(u_t | u_{t+1})`` (or ``−log p_ω(ũ)``) averaged over
    chains, each step's chain from its start to its end.
    """
    bb, ebm, stats = params["backbone"], params["ebm"], params["ebm_stats"]
    keys = _chain_keys(key, num)
    u = tuple(hp.temperature * e for e in _normal_layers(hp, keys, _INIT))
    zf = functools.partial(to_z, hp, bb)
    f = neg_energy_fn(hp, ebm, stats)
    noise = fold_keys(keys, _CHAIN)

    def decode_u(uu):
        return {"image": decode(hp, bb, zf(uu))}

    common = dict(num_steps=num_steps, record_every=record_every, unroll=hp.unroll)
    if hp.scheme == "marginal":
        log_p = functools.partial(dif.marginal_log_density, f, zf)
        chain = long_run_prior_chain(log_p, decode_u, u, noise, step_size=hp.marginal_step_size, **common)
        del chain["final"]
        return chain
    sched, settings = hp.schedule(), hp.reverse_settings()
    frames, energies = [], []
    for t in range(hp.num_diffusion_steps - 1, -1, -1):
        tt, cond = jnp.full((num,), t, jnp.int32), u

        def log_p(y, cond=cond, tt=tt):
            return dif.conditional_log_density(
                f, zf, sched, y, cond, tt, keep_last_kernel=settings.keep_last_kernel
            )

        chain = long_run_prior_chain(
            log_p, decode_u, u, fold_keys(noise, t), step_size=settings.step[t], **common
        )
        u = chain["final"]
        first = 0 if not frames else 1  # a step's chain starts where the previous one ended
        frames.append(jax.tree.map(lambda a, first=first: a[first:], chain["frames"]))
        energies.append(chain["energy"])
    frames = jax.tree.map(lambda *a: jnp.concatenate(a), *frames)
    n_frames = jax.tree.leaves(frames)[0].shape[0]
    return {
        "frames": frames,
        "steps": jnp.arange(n_frames) * record_every,
        "energy": jnp.concatenate(energies),
    }


# ----------------------------------------------------------------------------- OOD and labels


def layer_scores(hp: DiffusionHparams, params: Params, x: jax.Array) -> jax.Array:
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
    flat = tuple(a.reshape(n * (variations + 1), *a.shape[2:]) for a in us)
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
    flat = tuple(a.reshape(n * len(stages), *a.shape[2:]) for a in us)
    images = decode(hp, bb, to_z(hp, bb, flat))
    return images.reshape(n, len(stages), *images.shape[1:])


def layer_logits(hp: DiffusionHparams, params: Params, z: Latents) -> jax.Array:
    """The logits ``F_i,y`` of each label-coupled layer at ``t = 0``, ``(B, J, C)`` in ``hp.label_layers``
    order (one classifier per attribute, Eq. 19)."""
    t = jnp.zeros((batch_size_of(z),), jnp.int32)
    outs = hp.energy_net().apply(_ebm_variables(params["ebm"], params["ebm_stats"]), tuple(z), t)
    return energy_scale(hp, t)[:, None, None] * jnp.stack([outs[i] for i in hp.label_layers], axis=1)


# ----------------------------------------------------------------------------- config binding

_GROUP = {**settings_of(DiffusionSettings), **settings_of(DiffusionOptimizer)}


def hparams_from_config(config) -> DiffusionHparams:
    """Read the diffusion-prior settings of a validated config (groups ``diffusion`` and ``backbone``)."""
    d = config.data
    values = values_of(config.diffusion, DiffusionSettings)
    values["label_layers"] = tuple(int(i) - 1 for i in values["label_layers"])
    backbone = BACKBONES[values["backbone_kind"]].build(
        config.backbone, (d.image_size, d.image_size, d.channels)
    )
    return DiffusionHparams(backbone=backbone, shared_label=not tuple(d.get("attributes", ())), **values)


def _configure(config) -> None:
    """The authors' CIFAR-10 stage-2 settings on the CIFAR-10 HVAE backbone (``methods/hvae.py``)."""
    config.diffusion = group_of(_GROUP)
    # the authors call ExponentialLR.step(epoch=ep) at the start of epoch ep: lr₀ γ^ep during it
    config.diffusion.update(beta1=0.99, beta2=0.999, lr_decay=0.9, lr_decay_at="epoch_start")
    config.backbone = group_of(BACKBONES[config.diffusion.backbone_kind].settings)
    config.data.name = "cifar10"
    config.train.batch_size = 50
    config.train.num_epochs = 200
    config.eval.metrics = ("reconstruction", "probe", "samples", "chains")
    config.eval.interval_metrics = ("interval_samples", "interval_reconstructions")


def _reference(reference, config) -> None:
    """The ``backbone`` group follows the kind the config names."""
    kind = config.get("diffusion", {}).get("backbone_kind")
    if kind in BACKBONES:
        reference.backbone = group_of(BACKBONES[kind].settings)


def _validate(config) -> None:
    if is_text(config.data.name):
        raise ConfigError(
            f"config key 'data.name' is the text corpus {config.data.name!r}; "
            "method 'diffusion' models images"
        )
    df, d = config.diffusion, config.data
    check_group(df, _GROUP, "diffusion")
    kind = BACKBONES[df.backbone_kind]
    check_group(config.backbone, settings_of(kind.settings), "backbone")
    image_shape = (d.image_size, d.image_size, d.channels)
    if kind.check is not None:
        kind.check(config.backbone, image_shape)
    n = len(kind.build(config.backbone, image_shape).latent_dims)
    bad = [i for i in df.label_layers if i > n]
    if bad:
        raise ConfigError(
            f"config key 'diffusion.label_layers' = {tuple(df.label_layers)} names layers beyond the "
            f"{n} latent layers (1 = bottom, {n} = top)"
        )
    attrs = tuple(config.data.attributes)
    if attrs and len(attrs) != len(df.label_layers):
        raise ConfigError(
            f"config key 'data.attributes' = {attrs} needs one layer each in 'diffusion.label_layers' "
            f"(in the same order), got {tuple(df.label_layers)}"
        )
    if attrs and df.num_classes != 2:
        raise ConfigError("config key 'diffusion.num_classes' must be 2 with binary 'data.attributes'")
    if df.label_layers and not attrs and config.data.name == "celeb_a":
        raise ConfigError(
            "config key 'diffusion.label_layers' needs labels, and celeb_a has no classes: name binary "
            "attributes in 'data.attributes', e.g. ('Male', 'Smiling', 'Blond_Hair') with label_layers "
            "(3, 2, 1)"
        )


def make(config, splits, steps_per_epoch: int) -> Method:
    """Bind a config: the :class:`Method` the runner uses (predict functions jitted). A fresh run's ``init``
    reads the trained backbone from ``diffusion.backbone_dir``; restoring a checkpoint reads nothing else."""
    del splits
    hp = hparams_from_config(config)
    opt = DiffusionOptimizer(**values_of(config.diffusion, DiffusionOptimizer))
    tx = opt.adam(opt.lr, opt.weight_decay, steps_per_epoch)
    kind, d = BACKBONES[hp.backbone_kind], config.data
    image_shape = (d.image_size, d.image_size, d.channels)

    def fresh(key):
        backbone = kind.load(config.diffusion.backbone_dir, config.backbone, image_shape)
        return init(hp, tx, key, jax.device_put(backbone))

    def shapes(key):
        return jax.eval_shape(lambda k: init(hp, tx, k, hp.backbone.init(k)), key)

    def _sample_prior(params, key, num, num_steps):
        u = sample_u(hp, params, _chain_keys(key, num), num_steps=num_steps)
        return to_z(hp, params["backbone"], u)

    label_layers, num_layers = hp.label_layers, hp.num_layers
    predict = {
        "generate": jax.jit(
            lambda params, key, num: {"image": generate(hp, params, key, num)}, static_argnums=2
        ),
        "reconstruct": jax.jit(lambda params, batch, key: {"image": reconstruct(hp, params, batch["image"])}),
        "infer": jax.jit(lambda params, batch, key: infer(hp, params, batch["image"])),
        "decode": jax.jit(lambda params, z: {"image": decode(hp, params["backbone"], z)}),
        "sample_prior": jax.jit(_sample_prior, static_argnums=(2, 3)),
        "resample_layer": jax.jit(functools.partial(resample_layer, hp), static_argnums=2),
        "long_run_chain": jax.jit(functools.partial(long_run_chain, hp), static_argnums=(2, 3, 4)),
        "layer_scores": jax.jit(lambda params, batch, key: layer_scores(hp, params, batch["image"])),
        "generate_backbone": jax.jit(
            lambda params, key, num: {"image": generate_backbone(hp, params, key, num)}, static_argnums=2
        ),
    }
    if hp.scheme == "diffusion":
        predict["layer_scores_diffusion"] = jax.jit(
            lambda params, batch, key: layer_scores_diffusion(hp, params, batch["image"], key)
        )
    if label_layers:
        fixed = tuple(range(max(min(label_layers), 1), num_layers))  # at least the bottom layer resampled
        variations = config.eval.compose_variations
        names = tuple(config.data.attributes)
        order = sorted(range(len(names)), key=lambda j: -label_layers[j])  # top coupled layer first
        stages = tuple((j,) for j in order)
        predict.update(
            generate_labelled=jax.jit(
                lambda params, batch, key: {
                    "image": generate(hp, params, key, batch["label"].shape[0], batch["label"])
                }
            ),
            class_logits=jax.jit(
                lambda params, batch, key: class_logits(hp, params, infer(hp, params, batch["image"]))
            ),
            attribute_logits=jax.jit(
                lambda params, batch, key: layer_logits(hp, params, infer(hp, params, batch["image"]))
            ),
            compose=jax.jit(
                lambda params, batch, key: compose(hp, params, key, batch["label"], variations, fixed)
            ),
            compose_attributes=jax.jit(
                lambda params, batch, key: compose_attributes(hp, params, key, batch["label"], stages)
            ),
        )
    return Method(
        name="diffusion",
        init=fresh,
        state_shapes=shapes,
        train_step=functools.partial(train_step, hp, tx),
        predict=predict,
        inference_params=inference_params,
        latents=LatentSpace(dims=hp.latent_dims, prior_steps=hp.langevin_steps),
        watch={"energy": tuple(f"g_{s}_{i + 1}" for s in ("pos", "neg") for i in range(hp.num_layers))},
    )


SPEC = MethodSpec(
    name="diffusion",
    doc="diffusion hierarchical EBM prior (Cui & Han, ICML 2024) in the ũ-space of a frozen backbone",
    configure=_configure,
    validate=_validate,
    make=make,
    batch_fields=("image",),
    evaluators=EVALUATORS,
    adapt_reference=_reference,
    run_only_keys=("diffusion.backbone_dir",),  # the state holds the backbone once a run has started
)
