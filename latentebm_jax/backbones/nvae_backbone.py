"""NVAE behind the backbone interface (``backbones/base.py``): the diffusion EBM prior on NVAE's latent
groups, as in Cui & Han, ICML 2024 (Sec. 4; the authors' code, jcui1224/diffusion-hierarchical-ebm, on
the frozen NVlabs/NVAE checkpoints).

* Layers are NVAE's latent groups, **bottom (finest) first** as every backbone of this library (NVAE and the
  ICML code number them top first; the interface reverses), each spatial ``(B, H, W, C)``.
* ``ũ`` is NVAE's ε (App. A.1): ``z_i = μ_i(z_{>i}) + σ_i(z_{>i}) ε_i`` along the decoder path
  (``NVAE.latent_path``); the top group's prior is NVAE's clamped N(0, 1), so its σ is 1.01, not 1.
  ``to_z``, ``to_u`` and ``log_det`` are one top-down pass each (not the generic per-layer
  :class:`~latentebm_jax.backbones.base.ConditionalUSpace`, which would rerun the decoder per layer).
* ``posterior_draw``: NVAE's top-down residual posterior with its flows (the authors' positive samples are
  posterior draws); ``posterior_mean``: the same path at ε = 0.
* ``decode``: the mean of NVAE's decoder distribution (mixture of logistics, discretised Normal or
  Bernoulli), mapped to ``[−1, 1]``. The authors' figures and FID decode a *sample* of that distribution;
  the mean is this library's choice for every backbone (a sample adds independent pixel noise).
* The network runs in evaluation mode (BatchNorm with its running statistics). NVAE's BatchNorm
  re-estimation (``backbone.readjust_bn_passes``; the authors' CIFAR-10 setting: 500 passes) runs once when
  a stage-2 run starts, and the stage-2 checkpoint keeps the re-estimated statistics.

Parameters are the Flax variables ``{"params", "batch_stats"}``. :func:`load` reads them from a directory
written by ``python -m experiments.convert_nvae`` (an NVIDIA checkpoint) or from an ``nvae`` run (the
from-scratch training of ``methods/nvae.py``), after checking that the architecture there is the one the
``backbone`` config group describes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from latentebm_jax.backbones.base import BackboneError, BackboneSpec, Latents, Params
from latentebm_jax.backbones.nvae import ARCH_CELLS, NVAE, NVAEConfig, init_variables, readjust_batchnorm
from latentebm_jax.backbones.nvae_distributions import decoder_output
from latentebm_jax.config_schema import (
    ConfigError,
    non_negative_int,
    positive,
    positive_int,
    setting,
    settings_of,
    values_of,
)


def _bits(x: int) -> bool:
    return isinstance(x, int) and 1 <= x <= 8


@dataclasses.dataclass(frozen=True)
class NVAEArchitecture:
    """NVAE's architecture arguments (config group ``backbone`` of method ``nvae``), NVlabs/NVAE's
    ``train.py`` names. Defaults: the official CIFAR-10 model (NVAE README's CIFAR-10 command: 30 groups of
    20 × 16 × 16, one flow, squeeze-and-excitation, residual posteriors)."""

    dataset: str = setting(
        "cifar10",
        "NVAE's --dataset: its image size (mnist/omniglot 32×32×1 with a Bernoulli decoder, cifar10 32, "
        "celeba_64, celeba_256, ...)",
    )
    arch_instance: str = setting("res_mbconv", "NVAE's cell types", choices=tuple(ARCH_CELLS))
    num_channels_enc: int = setting(128, "encoder channels", check=positive_int)
    num_channels_dec: int = setting(128, "decoder channels", check=positive_int)
    num_preprocess_blocks: int = setting(
        1, "pre-processing blocks (each halves the size)", check=positive_int
    )
    num_preprocess_cells: int = setting(2, "cells per pre-processing block", check=positive_int)
    num_postprocess_blocks: int = setting(1, "post-processing blocks", check=positive_int)
    num_postprocess_cells: int = setting(2, "cells per post-processing block", check=positive_int)
    num_latent_scales: int = setting(1, "scales of latent groups", check=positive_int)
    num_groups_per_scale: int = setting(30, "groups at the finest scale", check=positive_int)
    num_latent_per_group: int = setting(20, "channels of every latent group", check=positive_int)
    num_cell_per_cond_enc: int = setting(2, "encoder cells per group", check=positive_int)
    num_cell_per_cond_dec: int = setting(2, "decoder cells per group", check=positive_int)
    ada_groups: bool = setting(False, "halve the groups per coarser scale")
    min_groups_per_scale: int = setting(1, "the least groups per scale with ada_groups", check=positive_int)
    use_se: bool = setting(True, "squeeze-and-excitation in the cells")
    res_dist: bool = setting(True, "residual posterior N(μ_p + Δμ, σ_p Δσ) (NVAE Eq. 2)")
    num_nf: int = setting(1, "inverse autoregressive flow cells per group", check=non_negative_int)
    num_mixture_dec: int = setting(
        10, "logistic mixture components (1: discretised Normal)", check=positive_int
    )
    num_x_bits: int = setting(8, "bits per pixel NVAE models (celeba_256: 5)", check=_bits, what="1..8")


@dataclasses.dataclass(frozen=True)
class NVAESettings(NVAEArchitecture):
    """The ``backbone`` group of the diffusion prior with ``backbone_kind='nvae'``: the architecture and how
    stage 2 prepares the frozen network (NVAE's BatchNorm re-estimation)."""

    readjust_bn_passes: int = setting(
        0,
        "BatchNorm re-estimation when stage 2 starts: train-mode prior sampling passes (ICML CIFAR-10: 500)",
        check=non_negative_int,
    )
    readjust_bn_batch: int = setting(
        25, "samples per re-estimation pass (the authors' per-GPU batch)", check=positive_int
    )
    readjust_bn_temperature: float = setting(1.0, "temperature of the re-estimation samples", check=positive)


ARCH_KEYS = tuple(f.name for f in dataclasses.fields(NVAEConfig))


@dataclasses.dataclass(frozen=True)
class NVAEBackbone(NVAESettings):
    """The backbone interface over :class:`~latentebm_jax.backbones.nvae.NVAE` (module docstring)."""

    image_shape: tuple[int, int, int] = (32, 32, 3)

    @property
    def config(self) -> NVAEConfig:
        return NVAEConfig(**{k: getattr(self, k) for k in ARCH_KEYS})

    def net(self) -> NVAE:
        return NVAE(self.config)

    @property
    def latent_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """``(H, W, C)`` of every group, bottom first."""
        return tuple(reversed(self.config.group_shapes))

    @property
    def latent_dims(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.latent_shapes)

    def noise_shapes(self) -> tuple[tuple[int, ...], ...]:
        return self.latent_shapes

    def init(self, key: jax.Array) -> Params:
        """Fresh variables (:func:`~latentebm_jax.backbones.nvae.init_variables`)."""
        return init_variables(self.config, key)

    # ------------------------------------------------------------------ data and ordering

    def to_nvae_input(self, x: jax.Array) -> jax.Array:
        """Images in ``[−1, 1]`` → NVAE's input in ``[0, 1]`` on its ``num_x_bits`` grid (NVAE's
        ``pre_process``: ``⌊255 x / 2^(8−b)⌋ / (2^b − 1)``; 8 bits leave the 8-bit grid as it is)."""
        x01 = jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
        if self.num_x_bits == 8:
            return x01
        x255 = jnp.round(x01 * 255.0)
        return jnp.floor(x255 / 2 ** (8 - self.num_x_bits)) / (2**self.num_x_bits - 1)

    @staticmethod
    def _top_first(z: Latents) -> list[jax.Array]:
        return list(reversed(tuple(z)))

    @staticmethod
    def _bottom_first(z) -> Latents:
        return tuple(reversed(list(z)))

    def _apply(self, params: Params, *args, method: str):
        return self.net().apply(params, *args, method=method)

    # ------------------------------------------------------------------ the interface

    def posterior_draw(self, params: Params, x: jax.Array, noise: Latents) -> Latents:
        """``z̃ ~ q(z̃|x)``: NVAE's top-down residual posterior (with its flows) from ``noise``."""
        out = self.net().apply(params, self.to_nvae_input(x), self._top_first(noise), False)
        return self._bottom_first(out["z"])

    def posterior_mean(self, params: Params, x: jax.Array) -> Latents:
        """The posterior path at ε = 0 (each group at its posterior mean given the groups above; through the
        flows where the checkpoint has them)."""
        noise = tuple(jnp.zeros((x.shape[0], *s), jnp.float32) for s in self.latent_shapes)
        return self.posterior_draw(params, x, noise)

    def decoder(self, params: Params, z: Latents):
        """NVAE's image distribution ``p(x|z̃)`` (``nvae_distributions.decoder_output``)."""
        out = self._apply(params, self._top_first(z), False, method="decode_latents")
        return decoder_output(self.config, out["logits"])

    def decode(self, params: Params, z: Latents) -> jax.Array:
        """The mean of ``p(x|z̃)`` in ``[−1, 1]``, ``(B, H, W, C)``."""
        return 2.0 * self.decoder(params, z).mean() - 1.0

    def log_likelihood(self, params: Params, z: Latents, x: jax.Array) -> jax.Array:
        """``log p(x|z̃)`` per example on NVAE's bit grid."""
        dist = self.decoder(params, z)
        lp = dist.log_prob(self.to_nvae_input(x))
        return jnp.sum(lp.reshape(lp.shape[0], -1), axis=-1)

    def _priors(self, params: Params, values: Latents, from_noise: bool):
        out = self._apply(params, self._top_first(values), from_noise, False, method="latent_path")
        return self._bottom_first(out["z"]), self._bottom_first(out["p"])

    def conditional(self, params: Params, i: int, z_above: Latents):
        """``(μ_i, σ_i)`` of ``p(z_i | z_{>i})`` (bottom-first ``i``); the top group's ``(0, 1.01)``."""
        n = len(self.latent_shapes)
        if len(z_above) != n - 1 - i:
            raise ValueError(f"layer {i} is conditioned on {n - 1 - i} layers above it, got {len(z_above)}")
        b = z_above[0].shape[0] if z_above else 1
        below = tuple(jnp.zeros((b, *s), jnp.float32) for s in self.latent_shapes[: i + 1])
        _, priors = self._priors(params, below + tuple(z_above), from_noise=False)
        return priors[i].mu, priors[i].sigma

    def to_z(self, params: Params, u: Latents) -> Latents:
        """``z̃ = T(ũ)``: ``z_i = μ_i + σ_i ũ_i`` top-down."""
        return self._priors(params, u, from_noise=True)[0]

    def to_u(self, params: Params, z: Latents) -> Latents:
        """``ũ = T⁻¹(z̃)``: ``ũ_i = (z_i − μ_i)/σ_i`` along the given ``z̃``."""
        _, priors = self._priors(params, z, from_noise=False)
        return tuple((zi - p.mu) / p.sigma for zi, p in zip(z, priors))

    def log_det(self, params: Params, u: Latents) -> jax.Array:
        """``log|det ∂T/∂ũ| = Σ_i Σ log σ_i`` per example (the Jacobian is block triangular)."""
        _, priors = self._priors(params, u, from_noise=True)
        return sum(jnp.sum(jnp.log(p.sigma).reshape(p.sigma.shape[0], -1), axis=-1) for p in priors)

    def prior_log_prob(self, params: Params, z: Latents) -> jax.Array:
        """``log p(z̃) = log N(ũ; 0, I) − log|det ∂T/∂ũ|`` (Eq. 16)."""
        u = self.to_u(params, z)
        d = sum(math.prod(s) for s in self.latent_shapes)
        sq = sum(jnp.sum(jnp.square(a).reshape(a.shape[0], -1), axis=-1) for a in u)
        return -0.5 * sq - 0.5 * d * math.log(2 * math.pi) - self.log_det(params, u)

    def log_joint(self, params: Params, z: Latents, x: jax.Array) -> jax.Array:
        """``log p(x, z̃) = log p(x|z̃) + log p(z̃)``."""
        return self.log_likelihood(params, z, x) + self.prior_log_prob(params, z)


def build(group: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> NVAEBackbone:
    """The backbone a ``backbone`` config group describes (the architecture, and stage 2's settings where the
    group has them), for images of ``image_shape``."""
    values = values_of(group, NVAEArchitecture)
    stage2 = {k: group[k] for k in settings_of(NVAESettings) if k not in values and k in group}
    return NVAEBackbone(image_shape=tuple(image_shape), **values, **stage2)


def check(group: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> None:
    """The architecture is one NVAE builds and fits the data's images; raises ``ConfigError``."""
    values = {k: group[k] for k in ARCH_KEYS}
    try:
        config = NVAEConfig(**values)
        size, channels = config.image_size, config.channels
        shapes = config.group_shapes
    except ValueError as err:
        raise ConfigError(f"config key 'backbone.dataset' = {group.dataset!r}: {err}") from None
    if (size, size, channels) != tuple(image_shape):
        raise ConfigError(
            f"config key 'backbone.dataset' = {group.dataset!r} is NVAE's {size}×{size}×{channels} model, "
            f"but the data are {'×'.join(map(str, image_shape))}: set data.image_size / data.channels to "
            "match"
        )
    if config.num_latent_scales == 1 and config.num_groups_per_scale == 1:
        raise ConfigError(
            "config keys 'backbone.num_latent_scales' = 1 and 'num_groups_per_scale' = 1: NVAE "
            "needs at least two latent groups"
        )
    small = sorted({s[0] for s in shapes if s[0] < 1})
    if small or size % 2 ** (config.num_preprocess_blocks + config.num_latent_scales - 1):
        raise ConfigError(
            f"config keys 'backbone.num_preprocess_blocks' + 'num_latent_scales' halve {size}×{size} images "
            "too often; use fewer"
        )


def _arch_differences(stored: dict[str, Any], group) -> list[str]:
    out = []
    for k in ARCH_KEYS:
        theirs = stored.get(k, NVAEConfig.__dataclass_fields__[k].default)
        if theirs != group[k]:
            out.append(f"--config.backbone.{k}={theirs!r}")
    return out


def _restore(path: str, target: Any) -> Any:
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    try:
        return checkpointer.restore(path, target)
    finally:
        checkpointer.close()


def load(directory: str, group: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> Params:
    """NVAE's variables from ``directory``: a conversion of an NVIDIA checkpoint (``nvae_args.json`` and
    ``variables/``, written by ``python -m experiments.convert_nvae``) or an ``nvae`` run (``config.json`` and
    ``checkpoints/``). The architecture there must be the ``backbone`` group's; then BatchNorm is
    re-estimated if ``backbone.readjust_bn_passes`` > 0."""
    how = (
        "convert an NVIDIA checkpoint with python -m experiments.convert_nvae --ckpt=checkpoint.pt "
        "--out=DIR, "
        "or train one: python -m experiments.main --config=configs/digits_nvae.py:nvae --workdir=DIR; then "
        "pass --config.diffusion.backbone_dir=DIR"
    )
    if not directory:
        raise BackboneError(f"a new stage-2 run needs config key 'diffusion.backbone_dir': {how}")
    where = os.path.abspath(directory)
    bb = build(group, image_shape)
    expected = jax.eval_shape(bb.init, jax.random.key(0))
    args_path = os.path.join(directory, "nvae_args.json")
    if os.path.exists(args_path):
        with open(args_path) as f:
            stored = json.load(f)
        differ = _arch_differences(stored, group)
        if differ:
            raise BackboneError(
                f"the NVAE in {where} has another architecture than the config's backbone group; set "
                + " ".join(differ)
            )
        try:
            variables = _restore(os.path.abspath(os.path.join(directory, "variables")), expected)
        except Exception as err:  # orbax raises several types for missing or mismatched trees
            raise BackboneError(f"cannot read the converted NVAE in {where}/variables: {err}") from err
    elif os.path.exists(os.path.join(directory, "config.json")):
        variables = _load_run(directory, where, group, how)
    else:
        raise BackboneError(f"no NVAE in {where} (nvae_args.json + variables/, or an nvae run): {how}")
    got = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), variables)
    want = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), expected)
    if got != want:
        raise BackboneError(f"the NVAE in {where} does not have this architecture's variables")
    if bb.readjust_bn_passes:
        variables = readjust_batchnorm(
            bb.config,
            variables,
            jax.random.key(0),
            bb.readjust_bn_batch,
            bb.readjust_bn_temperature,
            bb.readjust_bn_passes,
        )
    return variables


def _load_run(directory: str, where: str, group, how: str) -> Params:
    from latentebm_jax.checkpoint import Checkpointer, CheckpointError

    with open(os.path.join(directory, "config.json")) as f:
        stored = json.load(f)
    if stored.get("method") != "nvae":
        raise BackboneError(f"{where} is a {stored.get('method')!r} run, not an nvae run: {how}")
    differ = _arch_differences(stored.get("backbone", {}), group)
    if differ:
        raise BackboneError(
            f"the nvae run in {where} trained another architecture than the config's backbone group; set "
            + " ".join(differ)
        )
    ckpt = Checkpointer(directory)
    try:
        if ckpt.latest_step() is None:
            raise BackboneError(f"no checkpoint in {os.path.join(where, 'checkpoints')}: {how}")
        stored_state = ckpt.restore_stored()
    except CheckpointError as err:
        raise BackboneError(f"the nvae run in {where} is unreadable: {err}") from err
    finally:
        ckpt.close()
    return {
        "params": stored_state["params"]["backbone"],
        "batch_stats": stored_state["model_state"]["batch_stats"],
    }


SPEC = BackboneSpec(
    kind="nvae",
    doc="NVAE (Vahdat & Kautz 2020): NVIDIA's converted checkpoints or an nvae run, latent groups as layers",
    settings=NVAESettings,
    build=build,
    load=load,
    check=check,
)
