"""Hierarchical generators behind one interface (:mod:`.base`), for the diffusion EBM prior.

Adding a backbone is one module implementing :class:`~latentebm_jax.backbones.base.Backbone` with a
:class:`~latentebm_jax.backbones.base.BackboneSpec` (config group, build, load) and one line in
:data:`BACKBONES`; stage 2 (``methods/diffusion_prior.py``) needs no change.
"""

from __future__ import annotations

from latentebm_jax.backbones import hvae, nvae_backbone
from latentebm_jax.backbones.base import Backbone, BackboneError, BackboneSpec, ConditionalUSpace

BACKBONES: dict[str, BackboneSpec] = {spec.kind: spec for spec in (hvae.SPEC, nvae_backbone.SPEC)}

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneError",
    "BackboneSpec",
    "ConditionalUSpace",
    "hvae",
    "nvae_backbone",
]
