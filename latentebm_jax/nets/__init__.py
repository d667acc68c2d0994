"""Flax linen modules only: energies, generators, encoders, the text decoder (no training logic)."""

from latentebm_jax.nets.encoder import ConvGaussianEncoder, LadderEncoder
from latentebm_jax.nets.energy import ConvEnergy, MLPEnergy, flatten_latents
from latentebm_jax.nets.generator import (
    BatchNormGenerator,
    DCGANGenerator,
    Generator8,
    HierarchicalGenerator,
    make_generator,
)
from latentebm_jax.nets.text import LSTMDecoder

__all__ = [
    "BatchNormGenerator",
    "ConvEnergy",
    "ConvGaussianEncoder",
    "DCGANGenerator",
    "Generator8",
    "HierarchicalGenerator",
    "LSTMDecoder",
    "LadderEncoder",
    "MLPEnergy",
    "flatten_latents",
    "make_generator",
]
