"""Initialisers that reproduce the PyTorch defaults the authors' code relies on.

* ``nn.Linear`` / ``nn.Conv2d`` weights: kaiming-uniform with ``a = √5``, i.e. ``U(−1/√fan_in, 1/√fan_in)``
  (:func:`torch_default_kernel`); biases ``U(−1/√fan_in, 1/√fan_in)`` (:func:`torch_default_bias`).
* ``xavier_normal`` for the LEBM generator's (transposed) convolutions, whose biases keep the PyTorch default.
  PyTorch computes a transposed convolution's ``fan_in`` from its *output* channels (``out · k · k``);
  :func:`conv_transpose_bias_fan_in` says so in one place.
* ``N(0, 0.02²)`` for every (transposed) convolution of the BiDVL nets (:func:`normal_002`; the authors call
  it ``Xavier_init``), whose biases keep the PyTorch default.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

Initializer = nn.initializers.Initializer


def torch_default_kernel() -> Initializer:
    """``U(−1/√fan_in, 1/√fan_in)`` for Dense ``(in, out)`` and Conv ``(kh, kw, in, out)`` kernels."""
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int) -> Initializer:
    """``U(−1/√fan_in, 1/√fan_in)``, PyTorch's default bias initialisation."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv_transpose_bias_fan_in(out_channels: int, kernel_size: int) -> int:
    """PyTorch's ``fan_in`` for a ``ConvTranspose2d`` bias: output channels times the kernel area."""
    return out_channels * kernel_size * kernel_size


def normal_002() -> Initializer:
    """``N(0, 0.02²)``: the BiDVL authors' ``Xavier_init`` (despite its name) of every conv kernel."""
    return nn.initializers.normal(0.02)
