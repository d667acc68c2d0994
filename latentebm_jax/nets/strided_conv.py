"""The encoders' stride-2 convolutions (PyTorch's ``Conv2d(4, 2, 1)``) with a faster input gradient.

The forward pass and the kernel gradient are XLA's. The input gradient of ``y = conv(x, K)`` with a 4×4
kernel, stride 2 and padding 1 is the transposed convolution ``ConvTranspose2d(4, 2, 1)`` of the output
cotangent with the kernel flipped in space and its channel axes swapped:
``dx = conv_transpose(dy, flip(K)ᵀ)``. XLA computes it as a convolution over ``dy`` dilated with zeros
(three multiplications in four are by an inserted zero), 2–4× slower than PyTorch's oneDNN at the
encoders' sizes (``ConvTranspose`` from 16×16×64 to 32×32×64 at batch 100: 69 ms, against 11 ms for
:func:`~latentebm_jax.nets.conv_transpose.conv_transpose_s2_phase_conv`, which computes it as one
stride-1 2×2 convolution with four output phases). BiDVL's step, whose inference network and energy take
this gradient at every layer, runs 10 % faster (``benchmarks/bidvl_step.py``).

:func:`conv_general_dilated` has the signature of ``lax.conv_general_dilated`` and is handed to Flax's
``nn.Conv(conv_general_dilated=...)``: parameters, names and outputs are those of the plain ``nn.Conv``,
only the backward pass differs (to float rounding). ``tests/test_strided_conv.py`` checks the function and
both gradients against XLA's convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from latentebm_jax.nets.conv_transpose import NHWC, conv_transpose_s2_phase_conv

_PADDING = ((1, 1), (1, 1))


def _xla_conv_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (2, 2), _PADDING, dimension_numbers=NHWC)


@jax.custom_vjp
def conv_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``Conv2d(4, 2, 1)`` without bias: NHWC input with even height and width, kernel ``(4, 4, in, out)``;
    output ``(B, H/2, W/2, out)``. The input gradient is the phase-convolution transposed convolution."""
    return _xla_conv_s2(x, kernel)


def _conv_s2_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _xla_conv_s2(x, kernel), (x, kernel)


def _conv_s2_bwd(residuals: tuple[jax.Array, jax.Array], dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    dx = conv_transpose_s2_phase_conv(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
    dk = jax.vjp(lambda k: _xla_conv_s2(x, k), kernel)[1](dy)[0]  # linear in k: XLA drops the primal
    return dx, dk


conv_s2.defvjp(_conv_s2_fwd, _conv_s2_bwd)


def takes_fast_path(
    lhs_shape: Sequence[int],
    rhs_shape: Sequence[int],
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None,
    rhs_dilation: Sequence[int] | None,
    dimension_numbers: Any,
    feature_group_count: int,
    batch_group_count: int,
) -> bool:
    """Whether a ``lax.conv_general_dilated`` call is ``Conv2d(4, 2, 1)`` on an NHWC input with even sides."""
    if len(lhs_shape) != 4 or isinstance(padding, str):
        return False
    ones = (1, 1)
    return (
        tuple(window_strides) == (2, 2)
        and tuple(map(tuple, padding)) == _PADDING
        and tuple(rhs_shape[:2]) == (4, 4)
        and tuple(lhs_dilation or ones) == ones
        and tuple(rhs_dilation or ones) == ones
        and feature_group_count == 1
        and batch_group_count == 1
        and lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
        == lax.conv_dimension_numbers(lhs_shape, rhs_shape, NHWC)
        and lhs_shape[1] % 2 == 0
        and lhs_shape[2] % 2 == 0
    )


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated``, with ``Conv2d(4, 2, 1)`` on even-sided NHWC inputs through
    :func:`conv_s2` (default precision only); pass it as ``nn.Conv(conv_general_dilated=...)``."""
    if (
        precision is None
        and preferred_element_type is None
        and takes_fast_path(
            lhs.shape,
            rhs.shape,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            batch_group_count,
        )
    ):
        return conv_s2(lhs, rhs)
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
