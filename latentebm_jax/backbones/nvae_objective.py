"""NVAE's training objective (Vahdat & Kautz, NeurIPS 2020, Sec. 3.2 and App. A; NVlabs/NVAE ``train.py``'s
``train`` loop, ``utils.py``'s KL schedule and balancing, ``model.py``'s regularisers) as pure JAX functions
for the Flax :class:`~latentebm_jax.backbones.nvae.NVAE`.

Per batch NVAE minimises

    mean_b [ −log p(x_b | z_b) + β_t Σ_g γ_g KL_g(b) ] + λ_t (Σ_conv σ_max(W_conv) + Σ_BN max |γ_BN|),

* ``β_t`` (:func:`kl_coeff`): the KL warm-up, held at ``kl_const_coeff`` for the first
  ``kl_const_portion`` of training, then linear to 1 over ``kl_anneal_portion``;
* ``γ_g`` (:func:`kl_balancer`): while ``β_t < 1`` the groups' KL terms are re-weighted in proportion to
  their batch-mean magnitude divided by ``α_g`` (:func:`kl_balancer_coeff`, larger for finer scales), with
  the weights normalised to mean 1 and held constant for the gradient, so that no group is switched off
  early (the balancing of App. A);
* the spectral regulariser (:func:`spectral_loss`): the largest singular value of every convolution's
  effective (weight-normalised, masked) kernel seen as an ``(out, in/groups · kh · kw)`` matrix, estimated
  by power iteration with ``u, v`` persisted across steps; the network exposes those kernels by sowing them
  into the ``intermediates`` collection (:func:`normalized_weights`);
* the BatchNorm regulariser (:func:`batchnorm_loss`) and their common weight ``λ_t`` (:func:`wdn_coeff`),
  optionally annealed log-linearly from ``weight_decay_norm_init`` to ``weight_decay_norm`` with ``β_t``.

:func:`nvae_loss` puts them together for one training step. Mixed precision (NVAE trains under ``autocast``)
is left to the caller; everything here is float32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict
from jax import lax

from latentebm_jax.backbones.nvae import NVAE, NVAEConfig
from latentebm_jax.backbones.nvae_distributions import decoder_output

_HIGHEST = lax.Precision.HIGHEST
# NVAE's ``crop_output``: these datasets are padded from 28 to 32 pixels and scored on the central 28×28.
CROPPED_DATASETS = ("mnist", "omniglot", "stacked_mnist")
SpectralState = dict[str, tuple[jax.Array, jax.Array]]


# ----------------------------------------------------------------------------- KL schedule and balancing


def kl_coeff(step: int | jax.Array, anneal_steps: float, const_steps: float, min_coeff: float) -> jax.Array:
    """The KL warm-up ``β = max(min((step − const_steps) / anneal_steps, 1), min_coeff)`` (NVlabs/NVAE
    ``utils.kl_coeff``); ``step`` may be traced."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.maximum(jnp.minimum((step - const_steps) / anneal_steps, 1.0), min_coeff)


def kl_balancer_coeff(groups_per_scale: Sequence[int], fun: str = "square") -> np.ndarray:
    """NVAE's ``α_g`` of every latent group, top (coarsest) group first (NVlabs/NVAE
    ``utils.kl_balancer_coeff``).

    ``groups_per_scale`` is NVAE's (and :attr:`NVAEConfig.groups_per_scale`'s) order, finest scale first.
    Numbering scales from the top, ``i = 0, 1, …``, each of the ``n_i`` groups of scale ``i`` gets 1
    (``"equal"``), ``2^i`` (``"linear"``), ``√(2^i)`` (``"sqrt"``) or ``4^i / n_i`` (``"square"``, what
    NVAE trains with); the result is divided by its minimum.
    """
    num_scales = len(groups_per_scale)
    out: list[float] = []
    for i in range(num_scales):
        n = groups_per_scale[num_scales - 1 - i]
        if fun == "equal":
            w = 1.0
        elif fun == "linear":
            w = 2.0**i
        elif fun == "sqrt":
            w = math.sqrt(2.0**i)
        elif fun == "square":
            w = 4.0**i / n
        else:
            raise ValueError(f"unknown KL balancing function {fun!r}; known: equal, linear, sqrt, square")
        out += [w] * n
    coeff = np.asarray(out, np.float64)
    return (coeff / coeff.min()).astype(np.float32)


def kl_balancer(
    kl_all: jax.Array, kl_coeff: float | jax.Array, alpha: jax.Array | np.ndarray, balance: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """NVAE's KL balancing (NVlabs/NVAE ``utils.kl_balancer`` with ``utils.kl_per_group``).

    ``kl_all``: ``(B, G)`` per-example KL of every group (top first); ``alpha``: ``(G,)`` from
    :func:`kl_balancer_coeff`. When ``balance`` and ``kl_coeff < 1`` (a traced test), group ``g`` is weighted
    by ``γ_g ∝ (mean_b |KL_g| + 0.01) / α_g``, normalised to mean 1 over the groups and under
    ``stop_gradient``; otherwise every ``γ_g = 1``. Returns ``(kl_coeff · Σ_g γ_g KL_g`` per example
    ``(B,)``, ``γ (G,)``, the batch-mean KL of every group ``(G,))``.
    """
    kl_all = jnp.asarray(kl_all)
    kl_vals = jnp.mean(kl_all, axis=0)
    ones = jnp.ones(kl_all.shape[1], kl_all.dtype)
    if balance:
        gamma = jnp.mean(jnp.abs(kl_all), axis=0) + 0.01
        gamma = gamma / jnp.asarray(alpha, kl_all.dtype) * jnp.sum(gamma)
        gamma = lax.stop_gradient(gamma / jnp.mean(gamma))
        coeffs = jnp.where(jnp.asarray(kl_coeff) < 1.0, gamma, ones)
    else:
        coeffs = ones
    return kl_coeff * jnp.sum(kl_all * coeffs, axis=1), coeffs, kl_vals


def reconstruction_loss(dist: Any, x: jax.Array, crop: bool = False) -> jax.Array:
    """``−log p(x | z)`` per example ``(B,)`` (NVlabs/NVAE ``utils.reconstruction_loss``): the decoder's
    ``log_prob`` summed over every pixel and channel (the mixture of logistics returns ``(B, H, W)``, already
    summed over RGB; the others ``(B, H, W, C)``). ``crop``: score only pixels ``[2, 30)`` of both spatial
    axes (NVAE's ``crop_output`` for the 28×28 datasets padded to 32)."""
    log_p = dist.log_prob(x)
    if crop:
        log_p = log_p[:, 2:30, 2:30]
    return -jnp.sum(log_p.reshape(log_p.shape[0], -1), axis=1)


def wdn_coeff(kl_coeff: float | jax.Array, init: float, final: float, anneal: bool) -> jax.Array:
    """The regularisers' weight ``λ`` (NVlabs/NVAE ``train.py``): ``exp((1 − β) log init + β log final)``
    with ``anneal`` (both must be positive), else ``final``."""
    if not anneal:
        return jnp.asarray(final, jnp.float32)
    if init <= 0 or final <= 0:
        raise ValueError(
            f"an annealed weight_decay_norm needs positive init and final values, got {init} and {final}"
        )
    return jnp.exp((1.0 - kl_coeff) * math.log(init) + kl_coeff * math.log(final))


# ----------------------------------------------------------------------------- regularisers


def _sown_kernels(intermediates: Mapping[str, Any]) -> list[tuple[tuple[str, ...], jax.Array]]:
    """``(module path, HWIO kernel)`` of every sown ``weight_normalized``, sorted by path."""
    tree = intermediates.get("intermediates", intermediates)
    found = [
        (path[:-1], value[-1] if isinstance(value, tuple) else value)
        for path, value in flatten_dict(tree).items()
        if path[-1] == "weight_normalized"
    ]
    if not found:
        raise ValueError(
            "no 'weight_normalized' in the intermediates: apply the model with mutable=['intermediates']"
        )
    return sorted(found, key=lambda item: item[0])


def normalized_weight_names(intermediates: Mapping[str, Any]) -> list[str]:
    """The module paths (``"a/b/c"``) of :func:`normalized_weights`, in the same order."""
    return ["/".join(path) for path, _ in _sown_kernels(intermediates)]


def normalized_weights(intermediates: Mapping[str, Any]) -> list[jax.Array]:
    """Every convolution's effective kernel (after weight normalisation and the autoregressive mask) as
    NVAE's matrix ``weight_normalized.view(out, −1)``: the Flax HWIO kernel is transposed to PyTorch's OIHW
    first, so a row is ``(in / groups, kh, kw)`` flattened. Sorted by module path.

    ``intermediates``: the ``intermediates`` collection (or the mutated variables holding it) of an
    :class:`NVAE` apply with ``mutable=["intermediates"]``; every ``nvae_ops.Conv2D``, weight-normalised or
    not, masked or not, sows its kernel there, as NVAE's ``all_conv_layers`` holds every ``Conv2D`` and
    ``ARConv2d``. A module called more than once contributes its last call.
    """
    return [jnp.transpose(k, (3, 2, 0, 1)).reshape(k.shape[-1], -1) for _, k in _sown_kernels(intermediates)]


def _shape_groups(weights: Sequence[jax.Array]) -> dict[str, list[int]]:
    """Indices of the weights of each matrix shape, keyed ``"rowsxcols"``, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, w in enumerate(weights):
        if w.ndim != 2:
            raise ValueError(f"weight {i} has shape {w.shape}; expected matrices (see normalized_weights)")
        groups.setdefault(f"{w.shape[0]}x{w.shape[1]}", []).append(i)
    return groups


def _normalize_rows(a: jax.Array) -> jax.Array:
    """``F.normalize(a, dim=1, eps=1e-3)``: every row divided by ``max(‖row‖, 1e-3)``."""
    return a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-3)


def _stacked(weights: Sequence[jax.Array], state: SpectralState) -> dict[str, jax.Array]:
    groups = _shape_groups(weights)
    if set(groups) != set(state):
        raise ValueError(
            f"the power-iteration state holds shapes {sorted(state)}, the weights {sorted(groups)}: "
            "initialise it for these weights (init_power_iteration)"
        )
    stacked = {}
    for key, idx in groups.items():
        stacked[key] = jnp.stack([weights[i] for i in idx])
        u, v = state[key]
        if u.shape != stacked[key].shape[:2] or v.shape != (len(idx), stacked[key].shape[2]):
            raise ValueError(f"power-iteration state {key}: u {u.shape}, v {v.shape} do not fit the weights")
    return stacked


def power_iteration(weights: Sequence[jax.Array], state: SpectralState, num_iter: int) -> SpectralState:
    """``num_iter`` power iterations ``v ← normalize(uᵀ W)``, ``u ← normalize(W v)`` (eps 1e-3) for every
    matrix at once, each shape group batched (NVlabs/NVAE ``model.spectral_norm_parallel``); no gradient
    flows into the result."""
    stacked = jax.tree.map(lax.stop_gradient, _stacked(weights, state))

    def body(_, uv):
        out = {}
        for key, w in stacked.items():
            u, v = uv[key]
            v = _normalize_rows(jnp.einsum("nr,nrc->nc", u, w, precision=_HIGHEST))
            u = _normalize_rows(jnp.einsum("nrc,nc->nr", w, v, precision=_HIGHEST))
            out[key] = (u, v)
        return out

    start = {key: tuple(state[key]) for key in stacked}
    return jax.tree.map(lax.stop_gradient, lax.fori_loop(0, num_iter, body, start))


def init_power_iteration(weights: Sequence[jax.Array], key: jax.Array, num_iter: int = 4) -> SpectralState:
    """The persistent ``u, v`` of the spectral regulariser: per shape group ``"rowsxcols"``, ``u (n, rows)``
    and ``v (n, cols)`` drawn standard normal and row-normalised (eps 1e-3), then ``10 · num_iter``
    iterations (NVAE's first call)."""
    groups = _shape_groups(weights)
    sizes = {name: (len(idx), *weights[idx[0]].shape) for name, idx in groups.items()}
    # one draw for every vector (many small random calls compile slowly), cut into the groups' u and v
    noise = jax.random.normal(key, (sum(n * (rows + cols) for n, rows, cols in sizes.values()),), jnp.float32)
    state, at = {}, 0
    for name, (n, rows, cols) in sizes.items():
        u = noise[at : at + n * rows].reshape(n, rows)
        v = noise[at + n * rows : at + n * (rows + cols)].reshape(n, cols)
        state[name] = (_normalize_rows(u), _normalize_rows(v))
        at += n * (rows + cols)
    return power_iteration(weights, state, 10 * num_iter)


def spectral_loss(
    weights: Sequence[jax.Array], state: SpectralState, num_iter: int = 4
) -> tuple[jax.Array, SpectralState]:
    """NVAE's spectral regulariser ``Σ_W uᵀ W v`` after ``num_iter`` power iterations from ``state`` (NVlabs/
    NVAE ``model.spectral_norm_parallel``): ``u, v`` are constants for the gradient, so ``∂σ/∂W = u vᵀ``.
    Returns the loss and the new state."""
    state = power_iteration(weights, state, num_iter)
    loss = jnp.zeros((), jnp.float32)
    for key, w in _stacked(weights, state).items():
        u, v = state[key]
        loss = loss + jnp.sum(jnp.einsum("nr,nrc,nc->n", u, w, v, precision=_HIGHEST))
    return loss, state


def batchnorm_loss(params: Mapping[str, Any]) -> jax.Array:
    """``Σ_BN max |γ|`` over every BatchNorm (NVlabs/NVAE ``model.batchnorm_loss``): the parameters named
    ``scale`` in an :class:`NVAE`'s parameter tree, which only ``nvae_ops.BatchNorm`` has."""
    loss = jnp.zeros((), jnp.float32)
    for path, value in flatten_dict(params).items():
        if path[-1] == "scale":
            loss = loss + jnp.max(jnp.abs(value))
    return loss


# ----------------------------------------------------------------------------- the training loss


@dataclasses.dataclass(frozen=True)
class NVAEObjective:
    """The objective's arguments (NVlabs/NVAE ``train.py``'s names and defaults). ``num_total_iter``: the
    length of training in steps (NVAE: batches per epoch × epochs), which the KL schedule is a portion of;
    ``kl_balance``: NVAE's training always balances (with ``α`` from ``"square"``)."""

    num_total_iter: int
    kl_anneal_portion: float = 0.3
    kl_const_portion: float = 0.0001
    kl_const_coeff: float = 0.0001
    kl_balance: bool = True
    weight_decay_norm: float = 0.0
    weight_decay_norm_init: float = 10.0
    weight_decay_norm_anneal: bool = False
    num_power_iter: int = 4

    def kl_coeff(self, step: int | jax.Array) -> jax.Array:
        """``β`` at ``step`` (:func:`kl_coeff`)."""
        return kl_coeff(
            step,
            self.kl_anneal_portion * self.num_total_iter,
            self.kl_const_portion * self.num_total_iter,
            self.kl_const_coeff,
        )

    def wdn_coeff(self, kl: jax.Array) -> jax.Array:
        """``λ`` for the KL coefficient ``kl`` (:func:`wdn_coeff`)."""
        return wdn_coeff(
            kl, self.weight_decay_norm_init, self.weight_decay_norm, self.weight_decay_norm_anneal
        )


def init_spectral_state(
    config: NVAEConfig, variables: Mapping[str, Any], key: jax.Array, num_power_iter: int = 4
) -> SpectralState:
    """The power-iteration state for ``variables``' convolutions (:func:`init_power_iteration`; one
    evaluation-mode pass on a blank image collects the kernels, which do not depend on the input)."""
    x = jnp.zeros((1, config.image_size, config.image_size, config.channels), jnp.float32)
    eps = [jnp.zeros((1, *s), jnp.float32) for s in config.group_shapes]

    @jax.jit
    def start(variables, key):
        _, upd = NVAE(config).apply(variables, x, eps, False, mutable=["intermediates"])
        return init_power_iteration(normalized_weights(upd["intermediates"]), key, num_power_iter)

    return start({k: v for k, v in variables.items() if k != "intermediates"}, key)


def nvae_loss(
    config: NVAEConfig,
    variables: Mapping[str, Any],
    x: jax.Array,
    eps: Sequence[jax.Array],
    step: int | jax.Array,
    objective: NVAEObjective,
    sr_state: SpectralState,
) -> tuple[jax.Array, dict[str, jax.Array], Any, SpectralState]:
    """One step of NVAE's training loss (NVlabs/NVAE ``train.py``'s ``train``):
    ``mean(recon + balanced KL) + λ · spectral + λ · BN``.

    ``variables``: ``params`` and ``batch_stats``; ``x``: images in [0, 1] NHWC on NVAE's bit grid; ``eps``:
    the posterior noise of every group (top first); ``sr_state``: from :func:`init_spectral_state` or the
    previous step. The forward pass runs in training mode. Returns ``(loss, aux, new batch_stats, new
    sr_state)``; ``aux`` holds ``nelbo`` (mean recon + unweighted KL), ``recon``, ``kl`` (batch means),
    ``kl_coeff``, ``wdn_coeff``, ``spectral``, ``bn``, ``kl_per_group`` ``(G,)`` and the balancing
    weights ``kl_balance_coeffs`` ``(G,)``.
    """
    variables = {k: v for k, v in variables.items() if k != "intermediates"}
    out, upd = NVAE(config).apply(variables, x, eps, True, mutable=["batch_stats", "intermediates"])
    dist = decoder_output(config, out["logits"])
    recon = reconstruction_loss(dist, x, crop=config.dataset in CROPPED_DATASETS)
    kl_all = jnp.stack(out["kl_all"], axis=1)
    beta = objective.kl_coeff(step)
    alpha = kl_balancer_coeff(config.groups_per_scale, "square")
    balanced_kl, kl_coeffs, kl_vals = kl_balancer(kl_all, beta, alpha, objective.kl_balance)
    spectral, new_sr_state = spectral_loss(
        normalized_weights(upd["intermediates"]), sr_state, objective.num_power_iter
    )
    bn = batchnorm_loss(variables["params"])
    lam = objective.wdn_coeff(beta)
    loss = jnp.mean(recon + balanced_kl) + lam * spectral + lam * bn
    kl = jnp.sum(kl_all, axis=1)
    aux = {
        "nelbo": jnp.mean(recon + kl),
        "recon": jnp.mean(recon),
        "kl": jnp.mean(kl),
        "kl_coeff": beta,
        "wdn_coeff": lam,
        "spectral": spectral,
        "bn": bn,
        "kl_per_group": kl_vals,
        "kl_balance_coeffs": kl_coeffs,
    }
    return loss, aux, upd["batch_stats"], new_sr_state


__all__ = [
    "CROPPED_DATASETS",
    "NVAEObjective",
    "batchnorm_loss",
    "init_power_iteration",
    "init_spectral_state",
    "kl_balancer",
    "kl_balancer_coeff",
    "kl_coeff",
    "normalized_weight_names",
    "normalized_weights",
    "nvae_loss",
    "power_iteration",
    "reconstruction_loss",
    "spectral_loss",
    "wdn_coeff",
]
