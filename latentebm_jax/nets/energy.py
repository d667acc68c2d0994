"""Energy networks. Every module returns the *negative* energy ``f(z)`` per example, shape ``(B,)``.

The official LEBM network outputs an energy ``E = −f``; the network family is symmetric under negating its
last layer, so we parameterise ``f`` directly and translate the losses once (see ``losses.py``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from latentebm_jax.nets.initializers import torch_default_bias, torch_default_kernel

ACTIVATIONS = {
    # LEBM uses the exact (erf) GELU; jax.nn.gelu defaults to the tanh approximation.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "lrelu": lambda x: jax.nn.leaky_relu(x, 0.2),
    "silu": jax.nn.silu,
}


def flatten_latents(z: Any) -> jax.Array:
    """Concatenate every leaf of a latent pytree into ``(B, Σ d_i)`` (bottom layer first)."""
    leaves = jax.tree.leaves(z)
    return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=-1)


class TorchDense(nn.Module):
    """``nn.Dense`` with PyTorch's default ``nn.Linear`` initialisation."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(
            self.features,
            kernel_init=torch_default_kernel(),
            bias_init=torch_default_bias(x.shape[-1]),
        )(x)


class MLPEnergy(nn.Module):
    """``f_α(z)``: MLP on the (concatenated) latents, LEBM's energy network.

    ``num_hidden`` hidden layers of width ``hidden`` with ``activation``, then a scalar output. LEBM's SVHN
    setting is ``hidden=200, num_hidden=2, activation='gelu'`` (CelebA-128: ``hidden=1000``).
    """

    hidden: int = 200
    num_hidden: int = 2
    activation: str = "gelu"

    @nn.compact
    def __call__(self, z: Any) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; allowed: {sorted(ACTIVATIONS)}")
        act = ACTIVATIONS[self.activation]
        h = flatten_latents(z)
        for _ in range(self.num_hidden):
            h = act(TorchDense(self.hidden)(h))
        return TorchDense(1)(h)[:, 0]
