"""Top-down generators ``g_β(z)``: latents ``(B, n_z)`` to images ``(B, H, W, C)`` in ``[−1, 1]``.

The DCGAN generators follow the authors' LEBM code: a 4×4 transposed convolution from the 1×1 latent, then
stride-2 4×4 transposed convolutions (PyTorch padding 1) doubling the resolution, LeakyReLU(0.2) between and
``tanh`` at the end; all transposed convolutions have biases; weights Xavier-normal, biases PyTorch default.

Channel pattern (``ngf`` the base width): 32×32 ``ngf·8, ·4, ·2 → C`` (SVHN, ``ngf = 64``);
128×128 ``ngf·16, ·8, ·4, ·2, ·1 → C`` (CelebA-128, ``ngf = 128``); 64×64 continues the same pattern,
``ngf·8, ·4, ·2, ·1 → C`` (no 64×64 script is in the authors' repository).

:class:`BatchNormGenerator` is BiDVL's generator (CVPR 2022): bias-free transposed convolutions with
BatchNorm and ReLU.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from latentebm_jax.nets.conv_transpose import TorchConvTranspose
from latentebm_jax.nets.energy import num_halvings
from latentebm_jax.nets.initializers import conv_transpose_bias_fan_in, normal_002, torch_default_bias
from latentebm_jax.nets.small_conv import SmallMapConv


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


GENERATORS = ("dcgan", "small8")  # the kinds make_generator builds


def make_generator(kind: str, image_size: int, channels: int, ngf: int, conv_impl: str = "fast") -> nn.Module:
    """Build the generator named ``kind`` (one of :data:`GENERATORS`; ``conv_impl``: see CONV_IMPLS)."""
    if kind == "dcgan":
        return DCGANGenerator(image_size=image_size, channels=channels, ngf=ngf, conv_impl=conv_impl)
    if kind == "small8":
        if image_size != 8:
            raise ValueError(f"generator 'small8' makes 8×8 images, but data.image_size={image_size}")
        return Generator8(channels=channels, ngf=ngf, conv_impl=conv_impl)
    raise ValueError(f"unknown generator {kind!r}; allowed: {list(GENERATORS)}")


# ----------------------------------------------------------------------------- hierarchical (ICCV 2023)


def hierarchical_resolutions(image_size: int, num_layers: int) -> list[int]:
    """Spatial size at which each latent layer enters the hierarchical generator, bottom ``z_1`` first.

    The top layer's MLP output and ``z_{L−1}`` share the coarsest size ``image_size / 2^{L−1}``; every
    block below doubles it, so ``z_i`` (``i < L``) enters at ``image_size / 2^{i}`` (1-indexed ``i``).
    """
    if num_layers < 2:
        raise ValueError(f"a hierarchical generator needs at least 2 latent layers, got {num_layers}")
    coarsest = image_size // 2 ** (num_layers - 1)
    if coarsest < 1 or coarsest * 2 ** (num_layers - 1) != image_size:
        raise ValueError(
            f"image size {image_size} does not halve {num_layers - 1} times to an integer size; "
            f"use fewer latent layers"
        )
    return [image_size // 2 ** (i + 1) for i in range(num_layers - 1)] + [coarsest]


def conv3x3(features: int, name: str | None = None, impl: str = "fast") -> SmallMapConv:
    """A 3×3, stride-1, padding-1 convolution without bias, Xavier-normal weights (:class:`SmallMapConv`).

    The authors' hierarchical nets use ``ConvTranspose2d(3, 1, 1)`` here: the same function class as a
    3×3 convolution with padding 1 (the kernel is flipped), with the same Xavier fans.
    """
    return SmallMapConv(features, impl=impl, name=name)


class HierarchicalGenerator(nn.Module):
    """The architectural hierarchical generator of ICCV 2023, Eq. 5:

        h_L = g_L(z_L),    h_i = g_i([z_i, h_{i+1}]),  i = L−1, …, 1,    x ~ N(h_1, σ² I).

    ``z`` is a tuple of layers ``(B, d_i)``, bottom ``z_1`` first. ``widths = (c_1, …, c_L, w)`` are the
    authors' channel list ``cs[1:]`` (train_fid.py: ``128, 256, 256, 512, 1024, 2048``):

    * ``g_L``: MLP ``d_L → w → w → c_L·r²`` (LeakyReLU 0.2 after each), reshaped to ``r × r × c_L`` with
      ``r = image_size / 2^{L−1}``;
    * ``g_i`` (``i < L``), at the size ``r_i`` of ``h_{i+1}``: ``z_i`` → Dense → ``r_i × r_i × c_{i+1}``
      (LeakyReLU), merged with ``h_{i+1}`` by concatenation (``merge='concat'``, the paper and
      train_fid.py) or by summation of the un-activated projection (``merge='sum'``, train_hs.py); then
      conv 3×3 → ``c_{i+1}``, transposed conv 4/2/1 → ``2r_i × 2r_i × c_i``, conv 3×3 → ``c_i``, each
      followed by LeakyReLU 0.2;
    * after ``g_1``: conv 3×3 → image channels, ``tanh``.

    Convolutions have no bias and Xavier-normal weights, Dense layers PyTorch's default initialisation.
    """

    image_size: int = 32
    channels: int = 3
    latent_dims: tuple[int, ...] = (10, 10, 10, 10, 10)
    widths: tuple[int, ...] = (128, 256, 256, 512, 1024, 2048)
    merge: str = "concat"
    negative_slope: float = 0.2
    conv_impl: str = "fast"

    @nn.compact
    def __call__(self, z: tuple[jax.Array, ...]) -> jax.Array:
        from latentebm_jax.nets.energy import torch_dense

        n = len(self.latent_dims)
        if len(z) != n:
            raise ValueError(f"expected {n} latent layers (bottom first), got {len(z)}")
        for i, (layer, d) in enumerate(zip(z, self.latent_dims)):
            if layer.ndim != 2 or layer.shape[1] != d:
                raise ValueError(f"latent layer z_{i + 1} must have shape (B, {d}), got {layer.shape}")
        if len(self.widths) != n + 1:
            raise ValueError(f"widths must list c_1..c_L and the top MLP width ({n + 1} values)")
        if self.merge not in ("concat", "sum"):
            raise ValueError(f"unknown merge {self.merge!r}; allowed: 'concat', 'sum'")
        act = lambda x: nn.leaky_relu(x, self.negative_slope)
        res = hierarchical_resolutions(self.image_size, n)
        c, hidden = self.widths[:n], self.widths[n]
        b = z[0].shape[0]

        h = z[n - 1]
        for j in range(2):
            h = act(torch_dense(hidden, h.shape[-1], name=f"top_{j}")(h))
        r = res[n - 1]
        h = act(torch_dense(c[n - 1] * r * r, hidden, name="top_out")(h)).reshape(b, r, r, c[n - 1])
        for i in range(n - 2, -1, -1):  # g_i for z_{i+1} in 1-indexed terms
            r, width = res[i], c[i + 1]
            proj = torch_dense(width * r * r, self.latent_dims[i], name=f"proj_{i}")(z[i])
            proj = proj.reshape(b, r, r, width)
            h = jnp.concatenate([h, act(proj)], axis=-1) if self.merge == "concat" else h + proj
            h = act(conv3x3(width, f"block_{i}_in", self.conv_impl)(h))
            h = act(
                TorchConvTranspose(c[i], 4, 2, 1, impl=self.conv_impl, use_bias=False, name=f"block_{i}_up")(
                    h
                )
            )
            h = act(conv3x3(c[i], f"block_{i}_out", self.conv_impl)(h))
        return jnp.tanh(conv3x3(self.channels, "to_image", self.conv_impl)(h))


# ----------------------------------------------------------------------------- BiDVL (CVPR 2022)


class BatchNormGenerator(nn.Module):
    """The BiDVL generator ``v = G_ω2(h)`` (Sec. 4.3), the authors' ``P`` network: ``h (B, d)`` to images.

    ``w = width`` (the authors' ``Pbasec`` = 48), ``n = log₂(size/4)``: transposed conv 4/1/0 from the
    1×1 latent to 4×4 with ``w·2ⁿ`` channels; ``n`` transposed convs 4/2/1, the first keeping the width,
    the others halving it (32×32: 384@4, 384@8, 192@16, 96@32; 64×64: 768@4 … 96@64); each without bias and
    followed by BatchNorm and ReLU; then a biased transposed conv 3/1/1 to ``channels`` (computed as the
    equivalent 3×3 convolution) and ``tanh``. Kernels ``N(0, 0.02²)``, the last bias PyTorch's default.

    BatchNorm as :class:`~latentebm_jax.nets.encoder.ConvGaussianEncoder` (``train``, ``axis_name``).
    """

    image_size: int = 32
    channels: int = 3
    width: int = 48
    axis_name: str | None = None
    conv_impl: str = "fast"

    @nn.compact
    def __call__(self, h: jax.Array, train: bool = True) -> jax.Array:
        if h.ndim != 2:
            raise ValueError(f"expected latents of shape (B, d), got {h.shape}")
        n = num_halvings(self.image_size)
        widths = [self.width * 2**n] + [self.width * 2 ** (n - i) for i in range(n)]
        x = h.reshape(h.shape[0], 1, 1, -1)
        for i, features in enumerate(widths):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            x = TorchConvTranspose(
                features, 4, stride, pad, impl=self.conv_impl, use_bias=False, kernel_init=normal_002()
            )(x)
            x = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=self.axis_name
            )(x)
            x = nn.relu(x)
        fan_in = conv_transpose_bias_fan_in(self.channels, 3)
        x = nn.Conv(
            self.channels,
            (3, 3),
            padding=((1, 1), (1, 1)),
            kernel_init=normal_002(),
            bias_init=torch_default_bias(fan_in),
            name="to_image",
        )(x)
        return jnp.tanh(x)
