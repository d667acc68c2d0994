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


def torch_dense(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
    """``nn.Dense`` with PyTorch's default ``nn.Linear`` initialisation (``fan_in`` = input width)."""
    return nn.Dense(
        features, kernel_init=torch_default_kernel(), bias_init=torch_default_bias(fan_in), name=name
    )


class TorchDense(nn.Module):
    """``nn.Dense`` with PyTorch's default ``nn.Linear`` initialisation."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return torch_dense(self.features, x.shape[-1])(x)


class MLPEnergy(nn.Module):
    """``f_α(z)``: MLP on the (concatenated) latents, the energy network of LEBM and of the joint prior.

    ``num_hidden`` hidden layers of width ``hidden`` with ``activation``, then a scalar output. LEBM's SVHN
    setting is ``hidden=200, num_hidden=2, activation='gelu'`` (CelebA-128: ``hidden=1000``). The joint
    hierarchical prior (ICCV 2023 Eq. 3) feeds ``[z_1, …, z_L]`` (bottom first) to ``hidden=100,
    num_hidden=2, activation='lrelu'`` with ``spectral_norm=True``.

    ``spectral_norm`` wraps every Dense layer (output included) in Flax's ``SpectralNorm``: the kernel is
    divided by its largest singular value, estimated by one power iteration from a persistent vector ``u``
    kept in the ``batch_stats`` collection (PyTorch's ``spectral_norm`` in train mode: σ is differentiated
    through ``W`` with ``u, v`` held constant). ``update_stats=True`` stores the advanced ``u`` (call with
    ``mutable=['batch_stats']``); with ``False`` the power iteration still runs but is not stored.
    """

    hidden: int = 200
    num_hidden: int = 2
    activation: str = "gelu"
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, z: Any, update_stats: bool = False) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; allowed: {sorted(ACTIVATIONS)}")
        act = ACTIVATIONS[self.activation]
        h = flatten_latents(z)

        def dense(features: int, x: jax.Array) -> jax.Array:
            if self.spectral_norm:
                return nn.SpectralNorm(torch_dense(features, x.shape[-1]))(x, update_stats=update_stats)
            return TorchDense(features)(x)  # parameter names as before spectral norm existed

        for _ in range(self.num_hidden):
            h = act(dense(self.hidden, h))
        return dense(1, h)[:, 0]
