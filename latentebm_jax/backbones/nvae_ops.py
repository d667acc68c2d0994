"""NVAE's building blocks in Flax (Vahdat & Kautz, NeurIPS 2020, Sec. 3.1 and Fig. 3; NVlabs/NVAE
``neural_operations.py`` and ``neural_ar_operations.py``), written so that NVIDIA's trained weights load
one to one.

Layout is NHWC. Every module keeps the name of the attribute the official module uses (a list entry ``i``
of attribute ``a`` is ``a_i``; the official ``_ops`` list is ``ops``), so a checkpoint's parameter names map
mechanically (``backbones/nvae_convert.py``). What the official modules compute and these reproduce:

* ``Conv2D``: a convolution with weight normalisation ``w · exp(log_weight_norm) / (‖w‖ + 1e-5)`` (norm
  over the kernel's input and spatial axes), optional bias, PyTorch's symmetric padding;
* ``BatchNorm``: PyTorch's batch norm (momentum 0.05, eps 1e-5): batch statistics with the biased variance
  in training, running statistics updated with the *unbiased* variance, running statistics in evaluation;
  ``BatchNormSwish`` is it followed by Swish (``SyncBatchNormSwish``);
* the residual cells of Fig. 3: ``BNSwishConv`` (``res_bnswish``, ``res_bnswish5``), ``BNELUConv``,
  ``ELUConv``, the decoder's inverted residual (``mconv_e6k5g0`` …: BN → 1×1 conv-BN-Swish → depthwise
  k×k conv-BN-Swish → 1×1 conv → BN), squeeze-and-excitation, and ``Cell`` = skip + 0.1 · ops;
* the skip paths: identity, ``FactorizedReduce`` (stride 2) and bilinear upsampling with
  ``align_corners=True`` followed by a 1×1 conv (stride −1);
* the encoder and decoder combiner cells;
* the inverse autoregressive flow cells (``PairedCellAR``): masked convolutions (``create_conv_mask``) and
  the shift ``z ← z − μ(z)`` of each of the two mirrored cells (volume preserving, log-det 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BN_EPS = 1e-5
BN_MOMENTUM = 0.05  # PyTorch's convention: new = (1 − m) · old + m · batch
CHANNEL_MULT = 2


def swish(x: jax.Array) -> jax.Array:
    """``x · σ(x)``."""
    return x * jax.nn.sigmoid(x)


def upsample_nearest(x: jax.Array) -> jax.Array:
    """``F.interpolate(x, scale_factor=2, mode='nearest')`` (NHWC)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _align_corners_matrix(n: int) -> np.ndarray:
    """``(2n, n)`` weights of bilinear ×2 upsampling with ``align_corners=True`` along one axis."""
    out = 2 * n
    src = np.arange(out) * ((n - 1) / (out - 1)) if n > 1 else np.zeros(out)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = src - lo
    m = np.zeros((out, n), np.float64)
    m[np.arange(out), lo] += 1.0 - frac
    m[np.arange(out), hi] += frac
    return m.astype(np.float32)


def upsample_bilinear_align_corners(x: jax.Array) -> jax.Array:
    """``F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)`` (NHWC)."""
    _, h, w, _ = x.shape
    mh, mw = jnp.asarray(_align_corners_matrix(h)), jnp.asarray(_align_corners_matrix(w))
    x = jnp.einsum("ih,bhwc->biwc", mh, x, precision=lax.Precision.HIGHEST)
    return jnp.einsum("jw,biwc->bijc", mw, x, precision=lax.Precision.HIGHEST)


class Conv2D(nn.Module):
    """NVAE's ``Conv2D`` (and ``ARConv2d`` with ``mask``): weight-normalised convolution.

    Parameters: ``kernel`` (kh, kw, in / groups, out), ``log_weight_norm`` (out,) when ``weight_norm``,
    ``bias`` (out,) when ``bias``.
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    use_bias: bool = False
    weight_norm: bool = True
    mask: Any = None  # numpy (kh, kw, in / groups, out) of the masked (autoregressive) convolutions

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            (k, k, cin // self.groups, self.features),
            jnp.float32,
        )
        if self.mask is not None:
            kernel = kernel * jnp.asarray(self.mask)
        if self.weight_norm:
            log_norm = self.param(
                "log_weight_norm",
                lambda _, w: jnp.log(jnp.sqrt(jnp.sum(w * w, axis=(0, 1, 2))) + 1e-2),
                kernel,
            )
            norm = jnp.sqrt(jnp.sum(kernel * kernel, axis=(0, 1, 2)))
            kernel = jnp.exp(log_norm) * kernel / (norm + 1e-5)
        self.sow("intermediates", "weight_normalized", kernel)
        y = lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(self.stride, self.stride),
            padding=((self.padding, self.padding), (self.padding, self.padding)),
            rhs_dilation=(self.dilation, self.dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.groups,
            precision=lax.Precision.HIGHEST,
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y


class BatchNorm(nn.Module):
    """PyTorch's ``BatchNorm2d`` (see the module docstring); ``swish=True`` is ``SyncBatchNormSwish``."""

    momentum: float = BN_MOMENTUM
    eps: float = BN_EPS
    swish: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        mean_var = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        var_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if train:
            mean = jnp.mean(x, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
            if not self.is_initializing():
                n = x.shape[0] * x.shape[1] * x.shape[2]
                unbiased = var * (n / max(n - 1, 1))
                mean_var.value = (1 - self.momentum) * mean_var.value + self.momentum * mean
                var_var.value = (1 - self.momentum) * var_var.value + self.momentum * unbiased
        else:
            mean, var = mean_var.value, var_var.value
        y = (x - mean) * lax.rsqrt(var + self.eps) * scale + bias
        return swish(y) if self.swish else y


class WrappedBatchNorm(nn.Module):
    """The official ``SyncBatchNorm`` wrapper: the batch norm sits under the name ``bn``."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return BatchNorm(name="bn")(x, train)


class BNSwishConv(nn.Module):
    """``res_bnswish`` (k = 3) and ``res_bnswish5`` (k = 3, dilation 2): BN-Swish → [×2 nearest] → conv."""

    features: int
    stride: int
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = BatchNorm(swish=True, name="bn_act")(x, train)
        if self.stride == -1:
            out = upsample_nearest(out)
        return Conv2D(
            self.features, 3, abs(self.stride), self.dilation, self.dilation, use_bias=True, name="conv_0"
        )(out)


class BNELUConv(nn.Module):
    """``res_bnelu``: BN → ELU → [×2 nearest] → conv 3×3."""

    features: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = jax.nn.elu(WrappedBatchNorm(name="bn")(x, train))
        if self.stride == -1:
            out = upsample_nearest(out)
        return Conv2D(self.features, 3, abs(self.stride), 1, use_bias=True, name="conv_0")(out)


class ELUConv(nn.Module):
    """``res_elu``: ELU → [×2 nearest] → conv 3×3 (its data-dependent initialisation is not reproduced: loaded
    weights already carry it)."""

    features: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = jax.nn.elu(x)
        if self.stride == -1:
            out = upsample_nearest(out)
        return Conv2D(self.features, 3, abs(self.stride), 1, use_bias=True, name="conv_0")(out)


class ConvBNSwish(nn.Module):
    """``ConvBNSwish``: conv (no bias, no weight norm) → BN-Swish; the official ``conv`` Sequential's entries
    ``conv_0`` and ``conv_1``."""

    features: int
    kernel_size: int
    stride: int = 1
    groups: int = 1
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        pad = self.dilation * (self.kernel_size - 1) // 2
        x = Conv2D(
            self.features, self.kernel_size, self.stride, pad, self.dilation, self.groups,
            use_bias=False, weight_norm=False, name="conv_0",
        )(x)  # fmt: skip
        return BatchNorm(swish=True, name="conv_1")(x, train)


class InvertedResidual(nn.Module):
    """The decoder's depthwise-separable cell ``mconv_e{ex}k{k}g{g}`` (Fig. 3b): [×2 nearest] → BN →
    1×1 ConvBNSwish (×ex) → depthwise k×k ConvBNSwish → 1×1 conv → BN. Names follow the official
    ``conv`` Sequential (indices shift by one after the upsampling layer)."""

    features: int
    stride: int
    ex: int
    kernel_size: int
    g: int = 0
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        cin = x.shape[-1]
        hidden = cin * self.ex
        groups = hidden if self.g == 0 else self.g
        i = 0
        if self.stride == -1:
            x = upsample_nearest(x)
            i = 1
        x = WrappedBatchNorm(name=f"conv_{i}")(x, train)
        x = ConvBNSwish(hidden, 1, name=f"conv_{i + 1}")(x, train)
        x = ConvBNSwish(
            hidden, self.kernel_size, abs(self.stride), groups, self.dilation, name=f"conv_{i + 2}"
        )(x, train)
        x = Conv2D(self.features, 1, use_bias=False, weight_norm=False, name=f"conv_{i + 3}")(x)
        return WrappedBatchNorm(name=f"conv_{i + 4}")(x, train)


def make_op(primitive: str, features: int, stride: int, name: str) -> nn.Module:
    """The official ``OPS[primitive](Cin, Cout, stride)``."""
    if primitive == "res_bnswish":
        return BNSwishConv(features, stride, name=name)
    if primitive == "res_bnswish5":
        return BNSwishConv(features, stride, dilation=2, name=name)
    if primitive == "res_bnelu":
        return BNELUConv(features, stride, name=name)
    if primitive == "res_elu":
        return ELUConv(features, stride, name=name)
    if primitive.startswith("mconv_"):  # mconv_e{ex}k{k}g{g}
        ex, rest = primitive[len("mconv_e") :].split("k")
        k, g = rest.split("g")
        return InvertedResidual(features, stride, int(ex), int(k), int(g), name=name)
    raise ValueError(f"unknown NVAE cell operation {primitive!r}")


class SE(nn.Module):
    """Squeeze-and-excitation: ``x · σ(W₂ ReLU(W₁ mean_hw(x)))``, hidden ``max(C/16, 4)``."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = max(self.features // 16, 4)
        se = jnp.mean(x, axis=(1, 2))
        se = jax.nn.relu(nn.Dense(hidden, name="se_0", precision=lax.Precision.HIGHEST)(se))
        se = jax.nn.sigmoid(nn.Dense(self.features, name="se_2", precision=lax.Precision.HIGHEST)(se))
        return x * se[:, None, None, :]


class FactorizedReduce(nn.Module):
    """The stride-2 skip path: Swish, then four 1×1 stride-2 convolutions on the input shifted by
    (0, 0), (1, 1), (0, 1), (1, 0) pixels, concatenated."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = swish(x)
        q = self.features // 4
        c1 = Conv2D(q, 1, 2, use_bias=True, name="conv_1")(out)
        c2 = Conv2D(q, 1, 2, use_bias=True, name="conv_2")(out[:, 1:, 1:, :])
        c3 = Conv2D(q, 1, 2, use_bias=True, name="conv_3")(out[:, :, 1:, :])
        c4 = Conv2D(self.features - 3 * q, 1, 2, use_bias=True, name="conv_4")(out[:, 1:, :, :])
        return jnp.concatenate([c1, c2, c3, c4], axis=-1)


def stride_of(cell_type: str) -> int:
    """``get_stride_for_cell_type``: normal/combiner 1, down 2, up −1."""
    if cell_type.startswith(("normal", "combiner")):
        return 1
    if cell_type.startswith("down"):
        return 2
    if cell_type.startswith("up"):
        return -1
    raise ValueError(f"unknown cell type {cell_type!r}")


class Cell(nn.Module):
    """A residual cell: ``skip(s) + 0.1 · SE(ops(s))`` (Fig. 3)."""

    features: int
    cell_type: str
    arch: Sequence[str]
    use_se: bool

    @nn.compact
    def __call__(self, s: jax.Array, train: bool) -> jax.Array:
        stride = stride_of(self.cell_type)
        cin = s.shape[-1]
        if stride == 1:
            skip = s
        elif stride == 2:
            skip = FactorizedReduce(CHANNEL_MULT * cin, name="skip")(s)
        else:
            up = upsample_bilinear_align_corners(s)
            skip = Conv2D(cin // CHANNEL_MULT, 1, name="skip_1")(up)
        for i, primitive in enumerate(self.arch):
            s = make_op(primitive, self.features, stride if i == 0 else 1, name=f"ops_{i}")(s, train)
        if self.use_se:
            s = SE(self.features, name="se")(s)
        return skip + 0.1 * s


class EncCombinerCell(nn.Module):
    """``x1 + conv1×1(x2)``: the encoder feature at a group plus the decoder state."""

    features: int

    @nn.compact
    def __call__(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return x1 + Conv2D(self.features, 1, use_bias=True, name="conv")(x2)


class DecCombinerCell(nn.Module):
    """``conv1×1([s, z])``: the decoder state with a group's latent."""

    features: int

    @nn.compact
    def __call__(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return Conv2D(self.features, 1, use_bias=True, name="conv")(jnp.concatenate([x1, x2], axis=-1))


# ----------------------------------------------------------------------------- flows


def channel_mask(c_in: int, g_in: int, c_out: int, zero_diag: bool) -> np.ndarray:
    """The official ``channel_mask`` (out, in / groups): the autoregressive order over channels."""
    if g_in == 1:
        mask = np.ones([c_out, c_in], dtype=np.float32)
        if c_out >= c_in:
            ratio = c_out // c_in
            for i in range(c_in):
                mask[i * ratio : (i + 1) * ratio, i + 1 :] = 0
                if zero_diag:
                    mask[i * ratio : (i + 1) * ratio, i : i + 1] = 0
        else:
            ratio = c_in // c_out
            for i in range(c_out):
                mask[i : i + 1, (i + 1) * ratio :] = 0
                if zero_diag:
                    mask[i : i + 1, i * ratio : (i + 1) * ratio] = 0
        return mask
    if g_in != c_in:
        raise ValueError(f"masked convolutions have 1 or {c_in} groups, not {g_in}")
    return np.zeros([c_out, 1], np.float32) if zero_diag else np.ones([c_out, 1], np.float32)


def conv_mask(
    kernel_size: int, c_in: int, g_in: int, c_out: int, zero_diag: bool, mirror: bool
) -> np.ndarray:
    """The official ``create_conv_mask`` as an HWIO array: rows above the centre, the centre row left of the
    centre, and the centre pixel's channel mask; ``mirror`` flips it spatially."""
    m = (kernel_size - 1) // 2
    mask = np.ones([c_out, c_in // g_in, kernel_size, kernel_size], dtype=np.float32)
    mask[:, :, m:, :] = 0
    mask[:, :, m, :m] = 1
    mask[:, :, m, m] = channel_mask(c_in, g_in, c_out, zero_diag)
    if mirror:
        mask = np.copy(mask[:, :, ::-1, ::-1])
    return np.transpose(mask, (2, 3, 1, 0))


class ARInvertedResidual(nn.Module):
    """The flow cell's masked network (``ARInvertedResidual``, its ``convz`` Sequential): masked 3×3 conv
    (zero diagonal, ×6 channels) → ELU → masked depthwise 5×5 conv → ELU."""

    num_z: int
    mirror: bool

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        hidden = 6 * self.num_z
        m1 = conv_mask(3, self.num_z, 1, hidden, True, self.mirror)
        m2 = conv_mask(5, hidden, hidden, hidden, False, self.mirror)
        s = jax.nn.elu(Conv2D(hidden, 3, padding=1, mask=m1, name="convz_0")(z))
        return jax.nn.elu(Conv2D(hidden, 5, padding=2, groups=hidden, mask=m2, name="convz_2")(s))


class ARELUConv(nn.Module):
    """ELU → masked 1×1 conv with bias (the flow cell's ``mu``)."""

    features: int
    mirror: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mask = conv_mask(1, x.shape[-1], 1, self.features, False, self.mirror)
        return Conv2D(self.features, 1, use_bias=True, mask=mask, name="conv_0")(jax.nn.elu(x))


class CellAR(nn.Module):
    """One autoregressive flow cell: ``z ← z − μ(z)`` (log-det 0). ELU is applied twice before the 1×1
    conv of ``mu``, as in the official cell (once in place at the end of ``conv``, once in ``mu``)."""

    num_z: int
    mirror: bool

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        s = ARInvertedResidual(self.num_z, self.mirror, name="conv")(z)
        return z - ARELUConv(self.num_z, self.mirror, name="mu")(s)


class PairedCellAR(nn.Module):
    """Two flow cells, the second with mirrored masks (``PairedCellAR``)."""

    num_z: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        z = CellAR(self.num_z, mirror=False, name="cell1")(z)
        return CellAR(self.num_z, mirror=True, name="cell2")(z)
