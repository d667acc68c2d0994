"""Flax linen modules only: energies, generators (no training logic)."""

from latentebm_jax.nets.energy import MLPEnergy, flatten_latents
from latentebm_jax.nets.generator import DCGANGenerator, Generator8, make_generator

__all__ = ["DCGANGenerator", "Generator8", "MLPEnergy", "flatten_latents", "make_generator"]
