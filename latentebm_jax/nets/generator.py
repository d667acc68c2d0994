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

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z.reshape(z.shape[0], 1, 1, -1)
        widths = dcgan_widths(self.image_size, self.ngf)
        h = torch_conv_transpose(widths[0], 4, 1, 0)(h)  # 1×1 → 4×4
        for width in widths[1:]:
            h = nn.leaky_relu(h, self.negative_slope)
            h = torch_conv_transpose(width, 4, 2, 1)(h)
        h = nn.leaky_relu(h, self.negative_slope)
        h = torch_conv_transpose(self.channels, 4, 2, 1)(h)
        return jnp.tanh(h)


class Generator8(nn.Module):
    """A small generator for 8×8 images (the embedded digits): 1×1 → 4×4 (``2·ngf``) → 8×8 (``ngf``)
    → 3×3 convolution to ``C`` channels, LeakyReLU(0.2) between, ``tanh`` output; same init as DCGAN."""

    channels: int = 1
    ngf: int = 64
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z.reshape(z.shape[0], 1, 1, -1)
        h = nn.leaky_relu(torch_conv_transpose(2 * self.ngf, 4, 1, 0)(h), self.negative_slope)
        h = nn.leaky_relu(torch_conv_transpose(self.ngf, 4, 2, 1)(h), self.negative_slope)
        h = torch_conv_transpose(self.channels, 3, 1, 1)(h)
        return jnp.tanh(h)


def make_generator(kind: str, image_size: int, channels: int, ngf: int) -> nn.Module:
    """Build the generator named by ``model.generator`` in a config."""
    if kind == "dcgan":
        return DCGANGenerator(image_size=image_size, channels=channels, ngf=ngf)
    if kind == "small8":
        if image_size != 8:
            raise ValueError(f"generator 'small8' makes 8×8 images, but data.image_size={image_size}")
        return Generator8(channels=channels, ngf=ngf)
    raise ValueError(f"unknown generator {kind!r}; allowed: 'dcgan', 'small8'")
