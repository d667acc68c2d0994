"""Convolutions on small feature maps as matrix products: the same function as XLA's convolution, where
XLA:CPU's convolution emitter is slow.

:class:`SmallMapConv` has the parameters of Flax's bias-free ``nn.Conv`` and computes it with
:func:`conv_taps` (one matrix product per kernel tap) on maps of at most :data:`TAPS_MAX_SIZE` pixels a
side, with XLA's convolution otherwise. ``tests/test_nets.py`` checks the function and its gradients
against ``lax.conv_general_dilated``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from latentebm_jax.nets import strided_conv
from latentebm_jax.nets.conv_transpose import NHWC

TAPS_MAX_SIZE = 4
"""Largest feature map (height or width) on which ``impl="fast"`` computes a convolution as one matrix
product per kernel tap (:func:`conv_taps`). XLA:CPU's convolution emitter is pathological on feature maps
about the kernel's size: a 3×3 convolution at ``2 × 2`` with 2048 → 1024 channels (the ICCV 2023
generator's top block) ran at 1 GFLOP/s, 13 s for a batch of 100, against 67 ms as matrix products
(``benchmarks/joint_step.py``); from ``8 × 8`` up XLA's own convolution is the faster."""


def conv_taps(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: int = 1) -> jax.Array:
    """A ``k × k`` convolution (cross-correlation, kernel ``(k, k, in, out)``, PyTorch's ``Conv2d(k,
    stride, padding)`` geometry) as the sum of ``k²`` matrix products of strided, shifted inputs with one
    tap each, ``y = Σ_ij pad(x)[i::s, j::s] K_ij``: the same function as ``lax.conv_general_dilated``,
    with every gradient a matrix product too."""
    chex.assert_rank([x, kernel], 4)
    k = kernel.shape[0]
    h, w = x.shape[1:3]
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    y = None
    for i in range(k):
        for j in range(k):
            window = xp[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :]
            term = jnp.einsum("bhwc,cd->bhwd", window, kernel[i, j])
            y = term if y is None else y + term
    return y


class SmallMapConv(nn.Module):
    """A bias-free ``k × k`` convolution with PyTorch's ``Conv2d(k, stride, padding)`` geometry whose
    parameters (``kernel (k, k, in, out)``) are those of Flax's ``nn.Conv(features, (k, k), stride,
    padding, use_bias=False)``; ``impl`` only chooses how it is computed: ``"xla"`` is XLA's convolution,
    anything else (``"fast"`` …) takes :func:`conv_taps` on input maps of at most :data:`TAPS_MAX_SIZE`.

    The hierarchical generators' 3×3 convolutions (:func:`conv3x3`) and the ladder encoder's blocks use it.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    impl: str = "fast"
    kernel_init: nn.initializers.Initializer = nn.initializers.xavier_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
        if self.impl != "xla" and max(x.shape[1:3]) <= TAPS_MAX_SIZE:
            return conv_taps(x, kernel, self.stride, self.padding)
        pad = ((self.padding, self.padding), (self.padding, self.padding))
        conv = lax.conv_general_dilated if self.impl == "xla" else strided_conv.conv_general_dilated
        return conv(x, kernel, (self.stride, self.stride), pad, dimension_numbers=NHWC)
