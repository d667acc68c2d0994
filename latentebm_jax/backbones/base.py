"""The interface a hierarchical generator offers to the diffusion EBM prior (Cui & Han, ICML 2024).

Stage 2 (``methods/diffusion_prior.py``) learns EBMs in the ũ-space of a frozen backbone and touches the
backbone only through :class:`Backbone`:

* ``posterior_draw(params, x, noise) -> z̃``: a reparameterised draw ``z̃ ~ q(z̃|x)`` from standard-normal
  ``noise`` of ``noise_shapes`` (Algorithm 1 line 2; top-down for NVAE-like posteriors);
* ``posterior_mean(params, x) -> z̃``: the inferred latents (probes, OOD scores, reconstructions);
* ``decode(params, z̃) -> images``: the mean of ``p(x|z̃)`` in ``[−1, 1]``;
* ``conditional(params, i, z_above) -> (μ_i, σ_i)``: the per-layer conditional prior
  ``p(z_i | z_{>i}) = N(μ_i, σ_i²)`` (Eq. 1; the top layer's ``(0, 1)``);
* ``to_z(params, ũ)``, ``to_u(params, z̃)``, ``log_det(params, ũ)``: the re-parameterisation ``z̃ = T(ũ)``, its
  inverse and ``log|det ∂T/∂ũ|`` (App. A.1, Eqs. 15–17). :class:`ConditionalUSpace` derives them from
  ``conditional`` along the top-down path; a backbone whose path is another network may override them.
* ``init(key) -> params`` (shapes for restoring), ``latent_dims`` (units per layer) and ``noise_shapes()``
  (each layer's shape without the batch axis: ``(d,)`` for vector latents, ``(H, W, C)`` for NVAE's groups).

Latents are tuples of layers bottom ``z_1`` first, ``(B, *noise_shapes()[i])`` each. Backbones are frozen
dataclasses (hashable, static in
compiled functions); their parameters are a pytree the stage-2 state carries in ``model_state["backbone"]``.
A kind of backbone is registered in ``latentebm_jax/backbones/__init__.py`` with its config group and a
loader that reads trained parameters from the backbone's own files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import jax
import ml_collections

from latentebm_jax import diffusion as dif

Latents = tuple[jax.Array, ...]
Params = Any


class Backbone(Protocol):
    """See the module docstring."""

    latent_dims: tuple[int, ...]

    def init(self, key: jax.Array) -> Params: ...

    def noise_shapes(self) -> tuple[tuple[int, ...], ...]: ...

    def posterior_draw(self, params: Params, x: jax.Array, noise: Latents) -> Latents: ...

    def posterior_mean(self, params: Params, x: jax.Array) -> Latents: ...

    def decode(self, params: Params, z: Latents) -> jax.Array: ...

    def conditional(self, params: Params, i: int, z_above: Latents) -> tuple[Any, Any]: ...

    def to_z(self, params: Params, u: Latents) -> Latents: ...

    def to_u(self, params: Params, z: Latents) -> Latents: ...

    def log_det(self, params: Params, u: Latents) -> jax.Array: ...


class ConditionalUSpace:
    """``to_z``, ``to_u`` and ``log_det`` from a backbone's ``conditional`` (App. A.1, Eqs. 15–16), with the
    generic functions of :mod:`latentebm_jax.diffusion`."""

    def _conditional_fn(self, params: Params) -> dif.ConditionalFn:
        return lambda i, z_above: self.conditional(params, i, z_above)

    def to_z(self, params: Params, u: Latents) -> Latents:
        """``z̃ = T(ũ)``."""
        return dif.u_to_z(self._conditional_fn(params), u)

    def to_u(self, params: Params, z: Latents) -> Latents:
        """``ũ = T⁻¹(z̃)``."""
        return dif.z_to_u(self._conditional_fn(params), z)

    def log_det(self, params: Params, u: Latents) -> jax.Array:
        """``log|det ∂T(ũ)/∂ũ|`` per example."""
        return dif.log_det_jacobian(self._conditional_fn(params), u)

    def prior_log_prob(self, params: Params, z: Latents) -> jax.Array:
        """``log p(z̃)`` by the change of variables (Eq. 16), exact."""
        return dif.prior_log_prob_z(self._conditional_fn(params), z)


class BackboneError(RuntimeError):
    """Stage 2 cannot find or read its backbone's trained parameters."""


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """A registered kind of backbone.

    * ``settings``: the frozen dataclass whose :func:`~latentebm_jax.config_schema.setting` fields are the
      ``backbone`` config group (its architecture);
    * ``build(group, image_shape) -> Backbone``;
    * ``load(directory, group, image_shape) -> params``: the trained parameters from the backbone's own
      files (raising :class:`BackboneError` with what to do);
    * ``check(group, image_shape)``: optional checks of the group against the images, raising
      :class:`~latentebm_jax.config_schema.ConfigError` before anything compiles.
    """

    kind: str
    doc: str
    settings: type
    build: Callable[[ml_collections.ConfigDict, tuple[int, int, int]], Backbone]
    load: Callable[[str, ml_collections.ConfigDict, tuple[int, int, int]], Params]
    check: Callable[[ml_collections.ConfigDict, tuple[int, int, int]], None] | None = None
