"""Top-down generators ``g_β(z)``: latents ``(B, n_z)`` to images ``(B, H, W, C)`` in ``[−1, 1]``.

The DCGAN generators follow the authors' LEBM code: a 4×4 transposed convolution from the 1×1 latent, then
stride-2 4×4 transposed convolutions (PyTorch padding 1) doubling the resolution, LeakyReLU(0.2) between and
``tanh`` at the end; all transposed convolutions have biases; weights Xavier-normal, biases PyTorch default.

Channel pattern (``ngf`` the base width): 32×32 ``ngf·8, ·4, ·2 → C`` (SVHN, ``ngf = 64``);
128×128 ``ngf·16, ·8, ·4, ·2, ·1 → C`` (CelebA-128, ``ngf = 128``); 64×64 continues the same pattern,
``ngf·8, ·4, ·2, ·1 → C`` (no 64×64 script is in the authors' repository).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from latentebm_jax.nets.conv_transpose import TorchConvTranspose
from latentebm_jax.nets.initializers import conv_transpose_bias_fan_in, torch_default_bias


def torch_conv_transpose(
    features: int, kernel: int, stride: int, padding: int, name: str | None = None
) -> nn.ConvTranspose:
    """A transposed convolution with PyTorch's ``ConvTranspose2d(k, stride, padding)`` output geometry
    (``out = (in − 1)·stride − 2·padding + k``), Xavier-normal weights and PyTorch's default bias."""
    pad = kernel - 1 - padding
    return nn.ConvTranspose(
        features,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        kernel_init=nn.initializers.xavier_normal(),
        bias_init=torch_default_bias(conv_transpose_bias_fan_in(features, kernel)),
        name=name,
    )


def dcgan_widths(image_size: int, ngf: int) -> list[int]:
    """Hidden widths of the DCGAN generator, from the 4×4 layer up to the last hidden resolution."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"DCGAN generator needs a power-of-two image size >= 8, got {image_size}")
    stages = int(math.log2(image_size // 4))
    top = 16 if image_size >= 128 else 8
    widths = [ngf * top // (2**i) for i in range(stages)]
    return widths


class DCGANGenerator(nn.Module):
    """The authors' DCGAN generator for 32×32, 64×64 and 128×128 images (see module docstring)."""

    image_size: int = 32
    channels: int = 3
    ngf: int = 64
    negative_slope: float = 0.2
    conv_impl: str = "fast"  # how the transposed convolutions are computed (same function): CONV_IMPLS

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z.reshape(z.shape[0], 1, 1, -1)
        widths = [*dcgan_widths(self.image_size, self.ngf), self.channels]
        layer = lambda i, features, stride, padding: TorchConvTranspose(
            features, 4, stride, padding, impl=self.conv_impl, name=f"ConvTranspose_{i}"
        )
        h = layer(0, widths[0], 1, 0)(h)  # 1×1 → 4×4
        for i, width in enumerate(widths[1:], start=1):
            h = nn.leaky_relu(h, self.negative_slope)
            h = layer(i, width, 2, 1)(h)
        return jnp.tanh(h)


class Generator8(nn.Module):
    """A small generator for 8×8 images (the embedded digits): 1×1 → 4×4 (``2·ngf``) → 8×8 (``ngf``)
    → 3×3 convolution to ``C`` channels, LeakyReLU(0.2) between, ``tanh`` output; same init as DCGAN."""

    channels: int = 1
    ngf: int = 64
    negative_slope: float = 0.2
    conv_impl: str = "fast"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z.reshape(z.shape[0], 1, 1, -1)
        layer = lambda i, *geometry: TorchConvTranspose(
            *geometry, impl=self.conv_impl, name=f"ConvTranspose_{i}"
        )
        h = nn.leaky_relu(layer(0, 2 * self.ngf, 4, 1, 0)(h), self.negative_slope)
        h = nn.leaky_relu(layer(1, self.ngf, 4, 2, 1)(h), self.negative_slope)
        h = layer(2, self.channels, 3, 1, 1)(h)
        return jnp.tanh(h)


def make_generator(kind: str, image_size: int, channels: int, ngf: int, conv_impl: str = "fast") -> nn.Module:
    """Build the generator named by ``model.generator`` in a config (``conv_impl``: see CONV_IMPLS)."""
    if kind == "dcgan":
        return DCGANGenerator(image_size=image_size, channels=channels, ngf=ngf, conv_impl=conv_impl)
    if kind == "small8":
        if image_size != 8:
            raise ValueError(f"generator 'small8' makes 8×8 images, but data.image_size={image_size}")
        return Generator8(channels=channels, ngf=ngf, conv_impl=conv_impl)
    raise ValueError(f"unknown generator {kind!r}; allowed: 'dcgan', 'small8'")
