"""The small hierarchical VAE backbone (ICML 2024 Sec. 2.1, Eq. 1; Sec. 5.5), trained by ``methods/hvae.py``.

    p_β(x, z̃) = p_β0(x | z̃) · Π_{i<L} p_βi(z_i | z_{i+1}) · p(z_L),    p(z_L) = N(0, I),
    p_βi(z_i | z_{i+1}) = N(μ_i(z_{i+1}), σ_i²(z_{i+1})),      q_φ(z̃ | x) = Π_i N(μ_φi(x), σ_φi²(x)).

The networks are :class:`~latentebm_jax.nets.hvae.HierarchicalVAE` (the architectural hierarchical generator
as decoder, the ladder network as inference network, MLP conditionals with NVAE's soft clamps). Its trained
parameters live in an ``hvae`` run's checkpoints; :func:`load` reads them, after checking that the run's
``backbone`` config group describes the same architecture.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections

from latentebm_jax import priors
from latentebm_jax.backbones.base import BackboneError, BackboneSpec, ConditionalUSpace, Latents, Params
from latentebm_jax.config_schema import (
    latent_layers,
    positive,
    positive_int,
    positive_ints,
    setting,
    values_of,
)
from latentebm_jax.nets.conv_transpose import CONV_IMPLS
from latentebm_jax.nets.hvae import HierarchicalVAE


@dataclasses.dataclass(frozen=True)
class HVAESettings:
    """The architecture (config group ``backbone``). The paper's 3-layer backbone sizes are not published
    [uncertain]; the defaults are the library's CIFAR-10 choice."""

    latent_dims: tuple[int, ...] = setting(
        (20, 20, 20),
        "units per latent layer, bottom z_1 first",
        check=latent_layers,
    )
    widths: tuple[int, ...] = setting(
        (64, 128, 256, 512),
        "channels c_1..c_L and the top MLP width of decoder and inference network",
        check=positive_ints,
    )
    prior_hidden: int = setting(
        256, "width of the conditional-prior MLPs p(z_i | z_{i+1})", check=positive_int
    )
    likelihood_sigma: float = setting(math.sqrt(1.0 / 20.0), "σ of p(x|z̃) = N(g(z̃), σ² I)", check=positive)
    conv_impl: str = setting(
        "fast", "how transposed convolutions are computed (same function)", choices=CONV_IMPLS
    )


@dataclasses.dataclass(frozen=True)
class HVAEBackbone(HVAESettings, ConditionalUSpace):
    """The backbone interface (``backbones/base.py``) over :class:`HierarchicalVAE`."""

    image_shape: tuple[int, int, int] = (32, 32, 1)

    def net(self) -> HierarchicalVAE:
        h, _, c = self.image_shape
        return HierarchicalVAE(
            image_size=h,
            channels=c,
            latent_dims=self.latent_dims,
            widths=self.widths,
            prior_hidden=self.prior_hidden,
            conv_impl=self.conv_impl,
        )

    def init(self, key: jax.Array) -> Params:
        return self.net().init(key, jnp.zeros((1, *self.image_shape), jnp.float32))["params"]

    def noise_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple((d,) for d in self.latent_dims)

    def encode(self, params: Params, x: jax.Array):
        """``q_φ(z_i|x)`` per layer: ``((μ_1, log σ²_1), …)``."""
        return self.net().apply({"params": params}, x, method="encode")

    def posterior_draw(self, params: Params, x: jax.Array, noise: Latents) -> Latents:
        """``z̃ = μ_φ(x) + σ_φ(x) ε``."""
        return tuple(m + jnp.exp(0.5 * lv) * e for (m, lv), e in zip(self.encode(params, x), noise))

    def posterior_mean(self, params: Params, x: jax.Array) -> Latents:
        return tuple(m for m, _ in self.encode(params, x))

    def decode(self, params: Params, z: Latents) -> jax.Array:
        """``g_β0(z̃)``: images ``(B, H, W, C)`` in ``[−1, 1]``."""
        return self.net().apply({"params": params}, tuple(z), method="decode")

    def conditional(self, params: Params, i: int, z_above: Latents):
        """``(μ_i, σ_i)`` of ``p(z_i | z_{i+1})``; the top layer's ``(0, 1)``."""
        return self.net().apply({"params": params}, i, tuple(z_above), method="conditional")

    def log_joint(self, params: Params, z: Latents, x: jax.Array) -> jax.Array:
        """``log p_β(x, z̃) = log N(x; g(z̃), σ² I) + log p_β(z̃)`` (exact; Eq. 16 for ``p_β(z̃)``)."""
        return self.prior_log_prob(params, z) + priors.gaussian_log_likelihood(
            x, self.decode(params, z), self.likelihood_sigma
        )


def build(group: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> HVAEBackbone:
    """The backbone a ``backbone`` config group describes, for images of ``image_shape``."""
    return HVAEBackbone(image_shape=tuple(image_shape), **values_of(group, HVAESettings))


def load(directory: str, group: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> Params:
    """The trained parameters from the newest checkpoint of an ``hvae`` run in ``directory``; its config
    must describe the same backbone and images."""
    from latentebm_jax.checkpoint import Checkpointer, CheckpointError

    how = (
        "train the backbone first, e.g. python -m experiments.main --config=configs/digits.py:hvae "
        "--workdir=runs/digits_backbone, then pass --config.diffusion.backbone_dir=runs/digits_backbone"
    )
    if not directory:
        raise BackboneError(
            f"a new stage-2 run needs config key 'diffusion.backbone_dir' (an hvae run): {how}"
        )
    where = os.path.abspath(directory)
    cfg_path = os.path.join(directory, "config.json")
    if not os.path.isdir(os.path.join(directory, "checkpoints")) or not os.path.exists(cfg_path):
        raise BackboneError(f"no hvae run in {where} (config.json and checkpoints/): {how}")
    with open(cfg_path) as f:
        stored = json.load(f)
    if stored.get("method") != "hvae":
        raise BackboneError(f"{where} is a {stored.get('method')!r} run, not an hvae (backbone) run: {how}")
    ours = {k: list(v) if isinstance(v, tuple) else v for k, v in values_of(group, HVAESettings).items()}
    theirs = {k: stored.get("backbone", {}).get(k) for k in ours}
    shape = [
        stored["data"].get("image_size"),
        stored["data"].get("image_size"),
        stored["data"].get("channels"),
    ]
    differ = [f"backbone.{k}: {theirs[k]!r} there, {ours[k]!r} here" for k in ours if theirs[k] != ours[k]]
    if shape != list(image_shape):
        differ.append(f"image shape: {shape} there, {list(image_shape)} here")
    if differ:
        raise BackboneError(
            f"the hvae run in {where} trained another backbone than this config describes:\n  "
            + "\n  ".join(differ)
            + "\nSet the same backbone.* keys (and data.image_size / channels) as that run."
        )
    ckpt = Checkpointer(directory)
    try:
        if ckpt.latest_step() is None:
            raise BackboneError(f"no checkpoint in {os.path.join(where, 'checkpoints')}: {how}")
        params = ckpt.restore_stored()["params"]["backbone"]
    except CheckpointError as err:
        raise BackboneError(f"the backbone in {where} is unreadable: {err}") from err
    finally:
        ckpt.close()
    expected = jax.eval_shape(build(group, image_shape).init, jax.random.key(0))
    got = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), params)
    want = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), expected)
    if got != want:
        raise BackboneError(
            f"the backbone checkpoint in {where} does not have this architecture's parameters"
        )
    return params


SPEC = BackboneSpec(
    kind="hvae",
    doc="the small hierarchical VAE (ladder inference network, architectural hierarchical generator)",
    settings=HVAESettings,
    build=build,
    load=load,
)
