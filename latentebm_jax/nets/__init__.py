"""Flax linen modules only: energies, generators, encoders (no training logic)."""

from latentebm_jax.nets.encoder import LadderEncoder
from latentebm_jax.nets.energy import MLPEnergy, flatten_latents
from latentebm_jax.nets.generator import DCGANGenerator, Generator8, HierarchicalGenerator, make_generator

__all__ = [
    "DCGANGenerator",
    "Generator8",
    "HierarchicalGenerator",
    "LadderEncoder",
    "MLPEnergy",
    "flatten_latents",
    "make_generator",
]
