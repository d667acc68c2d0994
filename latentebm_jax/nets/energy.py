"""Energy networks. Every module returns the *negative* energy ``f(z)`` per example, shape ``(B,)``.

The official LEBM network outputs an energy ``E = −f``; the network family is symmetric under negating its
last layer, so we parameterise ``f`` directly and translate the losses once (see ``losses.py``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from latentebm_jax.nets import strided_conv
from latentebm_jax.nets.initializers import normal_002, torch_default_bias, torch_default_kernel

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


# ----------------------------------------------------------------------------- time-conditioned (ICML 2024)


def timestep_embedding(t: jax.Array, dim: int = 128) -> jax.Array:
    """Sinusoidal embedding of integer diffusion steps ``t`` (B,): ``[cos(t ω), sin(t ω)]`` (cosine first)
    with ``ω_k = exp(−ln(10⁴) k / (dim/2))``, as the authors' EBMs
    (jcui1224/diffusion-hierarchical-ebm)."""
    half = dim // 2
    freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class _SNDense(nn.Module):
    """Bias-free Dense (PyTorch default init), optionally spectrally normalised (as every layer of the
    authors' CIFAR-10 EBM)."""

    features: int
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = False) -> jax.Array:
        dense = nn.Dense(self.features, use_bias=False, kernel_init=torch_default_kernel())
        if self.spectral_norm:
            return nn.SpectralNorm(dense)(x, update_stats=update_stats)
        return dense(x)


class _SNConv(nn.Module):
    features: int
    kernel: int
    stride: int
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = False) -> jax.Array:
        p = (self.kernel - 1) // 2 if self.stride == 1 else 1
        conv = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            (self.stride, self.stride),
            ((p, p), (p, p)),
            use_bias=False,
            kernel_init=torch_default_kernel(),
            conv_general_dilated=strided_conv.conv_general_dilated,  # fast input gradient at 4/2/1
        )
        if self.spectral_norm:
            return nn.SpectralNorm(conv)(x, update_stats=update_stats)
        return conv(x)


class TimeConditionedEnergy(nn.Module):
    """``f_ω_i(z_i, t)`` for one latent layer (ICML 2024 Eq. 9), after the authors' CIFAR-10 EBM (§3.7):
    bias-free layers, SiLU, optional spectral norm on every layer, a sinusoidal time embedding ``e(t)``
    (128-d) through two small MLPs, ``t_in`` (added to the input) and ``t_h`` (added inside).

    * vector latents ``(B, d)``: ``z' = z + t_in``; ``h = W z' + V SiLU(t_h)``; ``num_blocks`` dense blocks
      ``a = W₁ SiLU(h) + V SiLU(t_h)``, ``h = W₂ SiLU(a) + W₃ SiLU(h)``; output ``W SiLU(h)``;
    * spatial latents ``(B, H, W, C)``: the conv stem and stride-2 residual stages of the authors' net down to
      2×2 (``n = log₂ H − 1`` stages, width ``hidden``), flattened, then the dense blocks as above (width
      ``4·hidden``, halved per block).

    Returns ``(B, out_dim)``: ``out_dim = 1`` is the scalar negative energy; ``out_dim = C`` class logits
    for label coupling (Eq. 14: ``⟨F, y⟩``, with ``log Σ_y exp`` the label-free energy, Eq. 18).
    """

    hidden: int = 128
    num_blocks: int = 2
    out_dim: int = 1
    spectral_norm: bool = False
    time_dim: int = 128

    @nn.compact
    def __call__(self, z: jax.Array, t: jax.Array, update_stats: bool = False) -> jax.Array:
        sn = self.spectral_norm
        dense = lambda f, x, name=None: _SNDense(f, sn, name=name)(x, update_stats)
        silu = jax.nn.silu
        e = timestep_embedding(t, self.time_dim)
        c = z.shape[-1]
        t_in = dense(c, silu(dense(c, e)))
        t_h = dense(self.time_dim, silu(dense(self.time_dim, e)))
        if z.ndim == 2:
            width = self.hidden
            h = dense(width, z + t_in) + dense(width, silu(t_h))
        elif z.ndim == 4:
            h = self._conv_trunk(z + t_in[:, None, None, :], silu(t_h), update_stats)
            width = h.shape[-1]
        else:
            raise ValueError(f"latent layer must be (B, d) or (B, H, W, C), got shape {z.shape}")
        for _ in range(self.num_blocks):
            if z.ndim == 4:
                width = max(width // 2, 1)
            a = dense(width, silu(h)) + dense(width, silu(t_h))
            h = dense(width, silu(a)) + dense(width, silu(h))
        return dense(self.out_dim, silu(h))

    def _conv_trunk(self, z: jax.Array, t_feat: jax.Array, update_stats: bool) -> jax.Array:
        size = z.shape[1]
        if size < 4 or size & (size - 1):
            raise ValueError(f"spatial latents need a power-of-two size >= 4, got {size}")
        sn, ch = self.spectral_norm, self.hidden
        conv = lambda f, k, s, x: _SNConv(f, k, s, sn)(x, update_stats)
        dense = lambda f, x: _SNDense(f, sn)(x, update_stats)
        silu = jax.nn.silu
        h = conv(ch, 4, 2, z) + dense(ch, t_feat)[:, None, None, :]
        x = conv(ch, 3, 1, silu(h)) + conv(ch, 4, 2, z)
        while x.shape[1] > 2:
            h = conv(ch, 4, 2, silu(x)) + dense(ch, t_feat)[:, None, None, :]
            h = conv(ch, 3, 1, silu(h))
            x = conv(ch, 4, 2, silu(x)) + h
        return x.reshape(x.shape[0], -1)


class LayerwiseEnergy(nn.Module):
    """One :class:`TimeConditionedEnergy` per latent layer; ``F_ω(z̃, t) = Σ_i f_ω_i(z_i, t)`` (Eq. 9).

    ``out_dims[i]`` is 1, or the number of classes for a label-coupled layer. Returns the tuple of per-layer
    outputs ``(B, out_dims[i])`` (bottom layer first), so callers can sum, pick layers, or read logits.
    """

    num_layers: int
    hidden: int = 128
    num_blocks: int = 2
    out_dims: tuple[int, ...] = ()
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, z: Any, t: jax.Array, update_stats: bool = False) -> tuple[jax.Array, ...]:
        z = tuple(z)
        if len(z) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} latent layers, got {len(z)}")
        outs = self.out_dims or (1,) * self.num_layers
        return tuple(
            TimeConditionedEnergy(
                hidden=self.hidden,
                num_blocks=self.num_blocks,
                out_dim=outs[i],
                spectral_norm=self.spectral_norm,
                name=f"layer_{i}",
            )(zi, t, update_stats)
            for i, zi in enumerate(z)
        )


# ----------------------------------------------------------------------------- data space (BiDVL, CVPR 2022)

ENERGY_OUTPUTS = ("softplus", "identity")


def num_halvings(image_size: int) -> int:
    """Stride-2 stages from ``image_size`` down to 4×4 (``log₂(size/4)``); sizes are powers of two ≥ 8."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"BiDVL networks need a power-of-two image size >= 8, got {image_size}")
    return int(math.log2(image_size // 4))


class ConvEnergy(nn.Module):
    """The marginal data-space energy ``E_ψ′(v)`` of the decoupled EBLVM (BiDVL Eq. 8), the authors' ConvE.

    Returns the *negative* energy ``f(v) = −E_ψ′(v)``, shape ``(B,)``, with ``E = softplus(out)`` (the
    authors' output activation, ``E ≥ 0``; ``output='identity'`` gives ``E = out``).

    Layers (``w = width``, the authors' ``Ebasec`` = 64; ``n = log₂(size/4)``; every convolution biased and
    spectrally normalised, LeakyReLU 0.1 between): conv 3/1/1 → ``w``; ``n`` stages of conv 4/2/1 (same
    width, halves the size) and conv 3/1/1 (doubles the width); at 4×4 a conv 4/1/0 → ``w·2ⁿ`` (1×1), fed
    *without* an activation to a 1×1 conv → ``w·2ⁿ``, LeakyReLU 0.1, 1×1 conv → 1. 32×32: widths
    64, 64/128, 128/256, 256/512, 512, head 512 → 512 → 1; 64×64 one more stage (up to 1024).

    Kernels ``N(0, 0.02²)``, biases PyTorch's default. Spectral norm as ``MLPEnergy`` (one power iteration
    per call, vector ``u`` in ``batch_stats``; ``update_stats=True`` stores it).
    """

    width: int = 64
    output: str = "softplus"
    spectral_norm: bool = True
    negative_slope: float = 0.1

    @nn.compact
    def __call__(self, v: jax.Array, update_stats: bool = False) -> jax.Array:
        if self.output not in ENERGY_OUTPUTS:
            raise ValueError(f"unknown energy output {self.output!r}; allowed: {ENERGY_OUTPUTS}")
        if v.ndim != 4:
            raise ValueError(f"expected NHWC images, got shape {v.shape}")
        n = num_halvings(v.shape[1])
        act = lambda h: nn.leaky_relu(h, self.negative_slope)

        def layer(module: nn.Module, h: jax.Array) -> jax.Array:
            if self.spectral_norm:
                return nn.SpectralNorm(module)(h, update_stats=update_stats)
            return module(h)

        def conv(features: int, kernel: int, stride: int, pad: int, h: jax.Array) -> jax.Array:
            fan_in = h.shape[-1] * kernel * kernel
            module = nn.Conv(
                features,
                (kernel, kernel),
                (stride, stride),
                ((pad, pad), (pad, pad)),
                kernel_init=normal_002(),
                bias_init=torch_default_bias(fan_in),
                conv_general_dilated=strided_conv.conv_general_dilated,  # fast input gradient at 4/2/1
            )
            return layer(module, h)

        def dense(features: int, h: jax.Array) -> jax.Array:  # the authors' 1×1 convolutions on 1×1 maps
            module = nn.Dense(features, kernel_init=normal_002(), bias_init=torch_default_bias(h.shape[-1]))
            return layer(module, h)

        w = self.width
        h = act(conv(w, 3, 1, 1, v))
        for _ in range(n):
            h = act(conv(w, 4, 2, 1, h))
            w *= 2
            h = act(conv(w, 3, 1, 1, h))
        h = conv(w, 4, 1, 0, h).reshape(v.shape[0], w)  # 4×4 → 1×1, no activation after it
        out = dense(1, act(dense(w, h)))[:, 0]
        energy = jax.nn.softplus(out) if self.output == "softplus" else out
        return -energy
