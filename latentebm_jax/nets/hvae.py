"""The hierarchical VAE backbone of the diffusion EBM prior (ICML 2024 Sec. 2.1, Eq. 1; Sec. 5.5).

    p_β(x, z̃) = p_β0(x | z̃) · Π_{i<L} p_βi(z_i | z_{i+1}) · p(z_L),    p(z_L) = N(0, I),
    p_βi(z_i | z_{i+1}) = N(μ_i(z_{i+1}), σ_i²(z_{i+1})),      q_φ(z̃ | x) = Π_i N(μ_φi(x), σ_φi²(x)).

The paper's "simple backbone hierarchical VAE with 3-layer latent variables" gives no architecture; ours
reuses the library's networks so that the backbone is as strong as the joint prior's: the decoder is the
architectural hierarchical generator (every layer reaches the image, ICCV 2023 Eq. 5) and the inference
network the ladder network (one Gaussian per layer). The conditional priors are MLPs
``z_{i+1} → 2 × hidden (LeakyReLU 0.2) → (μ, ℓ)`` with NVAE's soft clamps ``μ ← 5 tanh(μ/5)``,
``σ = exp(5 tanh(ℓ/5)) + 0.01`` (NVlabs/NVAE, as used by the ICML 2024 code).

The backbone interface over it (posterior draw, decode, conditional prior, ``T`` and ``T⁻¹``) is
``latentebm_jax/backbones/hvae.py``; the method that trains it ``latentebm_jax/methods/hvae.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from latentebm_jax.nets.encoder import LadderEncoder
from latentebm_jax.nets.energy import torch_dense
from latentebm_jax.nets.generator import HierarchicalGenerator


def soft_clamp(x: jax.Array, bound: float = 5.0) -> jax.Array:
    """``bound · tanh(x / bound)`` (NVAE's clamp of means and log-scales)."""
    return bound * jnp.tanh(x / bound)


class ConditionalGaussian(nn.Module):
    """``p_βi(z_i | z_{i+1})``: an MLP from the layer above to ``(mean, std)`` of ``d`` units."""

    features: int
    hidden: int = 256
    min_std: float = 0.01

    @nn.compact
    def __call__(self, z_above: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = z_above
        for j in range(2):
            h = nn.leaky_relu(torch_dense(self.hidden, h.shape[-1], name=f"hidden_{j}")(h), 0.2)
        mean = soft_clamp(torch_dense(self.features, self.hidden, name="mean")(h))
        log_std = soft_clamp(torch_dense(self.features, self.hidden, name="log_std")(h))
        return mean, jnp.exp(log_std) + self.min_std


class HierarchicalVAE(nn.Module):
    """Generator, conditional Gaussian prior and inference network of the backbone (module docstring).

    Call with ``method=`` one of :meth:`decode`, :meth:`encode`, :meth:`conditional`; ``__call__`` touches
    every part (for ``init``).
    """

    image_size: int = 32
    channels: int = 1
    latent_dims: tuple[int, ...] = (2, 2, 10)
    widths: tuple[int, ...] = (16, 32, 64, 256)
    prior_hidden: int = 256
    conv_impl: str = "fast"

    def setup(self):
        self.generator = HierarchicalGenerator(
            image_size=self.image_size,
            channels=self.channels,
            latent_dims=self.latent_dims,
            widths=self.widths,
            conv_impl=self.conv_impl,
        )
        self.encoder = LadderEncoder(latent_dims=self.latent_dims, widths=self.widths)
        self.priors = [
            ConditionalGaussian(d, self.prior_hidden, name=f"prior_{i}")
            for i, d in enumerate(self.latent_dims[:-1])
        ]

    def decode(self, z: tuple[jax.Array, ...]) -> jax.Array:
        """``g_β0(z̃)``: the mean image ``(B, H, W, C)`` in ``[−1, 1]``."""
        return self.generator(tuple(z))

    def encode(self, x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], ...]:
        """``q_φ(z_i | x)`` for every layer: ``((μ_1, log σ²_1), …)``."""
        return self.encoder(x)

    def conditional(self, i: int, z_above: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        """``(μ_i, σ_i)`` of ``p(z_i | z_{i+1})``; the top layer's ``(0, 1)``."""
        if i == len(self.latent_dims) - 1:
            return jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32)
        return self.priors[i](z_above[0])

    def __call__(self, x: jax.Array) -> jax.Array:
        stats = self.encode(x)
        z = tuple(m for m, _ in stats)
        for i in range(len(z) - 1):
            self.conditional(i, z[i + 1 :])
        return self.decode(z)
