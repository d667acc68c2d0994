"""Transposed convolutions of the DCGAN generators, with CPU-fast formulations of the same function.

The plain layer is Flax's ``nn.ConvTranspose`` with PyTorch's ``ConvTranspose2d(k, s, p)`` geometry: XLA's
``conv_transpose`` (a convolution of the input dilated by ``s``, padded by ``k − 1 − p``, with the kernel
applied unflipped, kernel layout ``(k, k, in, out)``). The generator's layers come in three kinds, and each
gets a formulation that computes the identical function (exactly, up to float rounding) faster on XLA:CPU:

* **1×1 input, ``k = 4, s = 1, p = 0``** (the first layer, latent → 4×4): every output pixel is one
  matrix product of the latent with one kernel tap, ``y[h, w] = z · K[3 − h, 3 − w]``; written as a
  single ``einsum`` instead of a 4×4 convolution over a zero-padded 7×7 input (16× fewer FLOPs).
* **``k = 4, s = 2, p = 1``** (every up-sampling layer), in sub-pixel (depth-to-space) form: output pixel
  ``2m + r`` of phase ``r ∈ {0, 1}`` sees only two kernel taps, ``y[2m] = x[m − 1] K₀ + x[m] K₂`` and
  ``y[2m + 1] = x[m] K₁ + x[m + 1] K₃`` (per spatial axis). So the layer is four 2×2 stride-1
  convolutions, one per output phase, interleaved. Two uses:

  - :func:`conv_transpose_s2_subpixel`: the four phases as one matrix product of 2×2 input patches
    (im2col) with the rearranged kernel ``(4·in, 4·out)``. Its gradient with respect to the kernel is a
    single matrix product too, which XLA:CPU runs ~10× faster than the kernel gradient of the dilated
    convolution (the dominant cost of the generator update).
  - :func:`conv_transpose_s2_phase_conv`: the four phases as one stride-1 2×2 *convolution* with
    ``4·out`` output channels, then depth to space: the same products on XLA's convolution kernel, without
    materialising patches. It computes the input gradient of the encoders' stride-2 convolutions
    (:mod:`latentebm_jax.nets.strided_conv`), which XLA otherwise runs as a convolution over an input
    dilated with zeros (3/4 of its multiplications wasted).
  - :func:`conv_transpose_s2_winograd`: each phase's 2-tap correlation computed with Winograd's minimal
    filtering algorithm ``F(2, 2)`` (3 multiplications for 2 outputs instead of 4, per axis), so the
    channel contractions cost ``9/16`` of the direct form's FLOPs: 36 matrix products
    ``(B·H·W/4, in) @ (in, out)`` on transformed 2×2 tiles. The transforms use only ``±1`` and ``0``, so
    rounding stays at the level of the direct form.

:func:`conv_transpose_s2` binds them with a custom VJP: the forward pass and the input gradient (the only
gradient Langevin needs) use the chosen formulation (``"winograd"`` or XLA's ``"direct"`` convolution); the
kernel gradient always uses the sub-pixel matrix product. ``tests/test_nets.py`` checks every formulation and
its gradients against the plain layer.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from latentebm_jax.nets.initializers import conv_transpose_bias_fan_in, torch_default_bias

NHWC = ("NHWC", "HWIO", "NHWC")
"""``dimension_numbers`` of every convolution here: NHWC images, ``(k, k, in, out)`` kernels."""
CONV_IMPLS = ("fast", "winograd", "subpixel", "direct", "xla")
"""How a generator computes its transposed convolutions (all the same function):

* ``fast``: per-layer choice (:func:`choose_s2_modes`), dense first layer, matrix-product kernel gradients;
* ``winograd`` / ``subpixel`` / ``direct``: that forward for every stride-2 layer (``winograd`` also takes
  the Winograd input gradient, the others XLA's), with the dense first layer and fast kernel gradients;
* ``xla``: Flax's plain ``ConvTranspose`` everywhere with autodiff gradients, the reference.
"""


def conv_transpose_xla(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """Flax ``ConvTranspose`` with PyTorch ``ConvTranspose2d(k, stride, padding)`` geometry (no bias)."""
    k = kernel.shape[0]
    pad = k - 1 - padding
    return lax.conv_transpose(x, kernel, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=NHWC)


def conv_transpose_from_1x1(z: jax.Array, kernel: jax.Array) -> jax.Array:
    """``ConvTranspose2d(k, 1, 0)`` on a 1×1 input ``(B, 1, 1, in)`` as one ``einsum``: ``(B, k, k, out)``."""
    chex.assert_rank(z, 4)
    if z.shape[1:3] != (1, 1):
        raise ValueError(f"expected a 1×1 input, got spatial shape {z.shape[1:3]}")
    return jnp.einsum("bi,hwio->bhwo", z[:, 0, 0, :], kernel[::-1, ::-1])


# Per-axis tap order of the four output phases' 2×2 kernels: phase 0 uses taps (0, 2) on input window
# (m − 1, m); phase 1 uses taps (1, 3) on window (m, m + 1).
_PHASE_TAPS = np.array([[0, 2], [1, 3]])


def _check_s2_input(x: jax.Array, kernel: jax.Array) -> None:
    chex.assert_rank([x, kernel], 4)
    if kernel.shape[:2] != (4, 4):
        raise ValueError(f"stride-2 fast path needs a 4×4 kernel, got {kernel.shape[:2]}")
    if x.shape[-1] != kernel.shape[2]:
        raise ValueError(f"input has {x.shape[-1]} channels, kernel expects {kernel.shape[2]}")


def _subpixel_kernel(kernel: jax.Array) -> jax.Array:
    """The four phases' 2×2 kernels side by side, ``(2, 2, in, 4·out)``: entry ``[a, d, :, (r, s, o)]``
    is ``K[t[r, a], t[s, d], :, o]``, the tap that window offset ``(a, d)`` gives output phase ``(r, s)``."""
    c, o = kernel.shape[2:]
    t = _PHASE_TAPS
    k2 = kernel[t[:, :, None, None], t[None, None, :, :]]  # (r, a, s, d, in, out)
    return k2.transpose(1, 3, 4, 0, 2, 5).reshape(2, 2, c, 4 * o)


def _interleave_phases(y: jax.Array, h: int, w: int) -> jax.Array:
    """``(B, H + 1, W + 1, 4·out)`` per-window phase outputs → the ``(B, 2H, 2W, out)`` image (depth to
    space).

    Phase ``(r, s)`` of output pixel ``(2m + r, 2n + s)`` sits at window position ``(m + r, n + s)``.
    """
    b = y.shape[0]
    y = y.reshape(b, h + 1, w + 1, 2, 2, -1)
    out = jnp.stack(
        [jnp.stack([y[:, r : r + h, s : s + w, r, s] for s in (0, 1)], 3) for r in (0, 1)], 2
    )  # (b, h, 2, w, 2, o)
    return out.reshape(b, 2 * h, 2 * w, -1)


def conv_transpose_s2_subpixel(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``ConvTranspose2d(4, 2, 1)`` as one matrix product of 2×2 patches (see the module docstring)."""
    _check_s2_input(x, kernel)
    b, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([xp[:, a : a + h + 1, d : d + w + 1] for a in (0, 1) for d in (0, 1)], -1)
    y = jnp.dot(patches.reshape(-1, 4 * c), _subpixel_kernel(kernel).reshape(4 * c, -1))
    return _interleave_phases(y.reshape(b, h + 1, w + 1, -1), h, w)


def conv_transpose_s2_phase_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``ConvTranspose2d(4, 2, 1)`` as one stride-1 2×2 convolution with ``4·out`` output channels (the four
    phases side by side), padded by 1, then depth to space (see the module docstring).

    The same products as :func:`conv_transpose_s2_subpixel` without materialising the patches, on XLA's
    convolution kernel, and none of the dilated form's multiplications by inserted zeros.
    """
    _check_s2_input(x, kernel)
    _, h, w, _ = x.shape
    pad = ((1, 1), (1, 1))
    y = lax.conv_general_dilated(x, _subpixel_kernel(kernel), (1, 1), pad, dimension_numbers=NHWC)
    return _interleave_phases(y, h, w)


# Winograd F(2, 2), per axis. A tile of two outputs t ∈ {2τ, 2τ + 1} of phase r reads the padded input
# xp[2τ + r + (0, 1, 2)] (xp = x padded by 1); the transformed inputs are d₀ − d₁, d₁, d₂ − d₁, the
# transformed taps g₀, g₀ + g₁, g₁, and the outputs m₀ + m₁, m₁ + m₂.


def _input_transform(d: list[jax.Array]) -> list[jax.Array]:
    """Four consecutive padded-input slices → the six transformed inputs (3 for phase 0, 3 for phase 1)."""
    return [d[0] - d[1], d[1], d[2] - d[1], d[1] - d[2], d[2], d[3] - d[2]]


def _kernel_transform(k: jax.Array, axis: int) -> jax.Array:
    """Four taps along ``axis`` → six transformed taps (phase 0 uses taps 0, 2; phase 1 taps 1, 3)."""
    g = [lax.index_in_dim(k, i, axis, keepdims=False) for i in range(4)]
    return jnp.stack([g[0], g[0] + g[2], g[2], g[1], g[1] + g[3], g[3]], axis)


def _output_transform(m: list[jax.Array]) -> list[jax.Array]:
    """Six products → the four outputs of a 2-tile in output order ``p = 2i + r`` (phase r, position i)."""
    return [m[0] + m[1], m[3] + m[4], m[1] + m[2], m[4] + m[5]]


def winograd_kernel(kernel: jax.Array) -> jax.Array:
    """The transformed kernel ``U`` of :func:`conv_transpose_s2_winograd`, shape ``(36, in, out)``."""
    u = _kernel_transform(_kernel_transform(kernel, 0), 1)  # (6, 6, in, out)
    return u.reshape(36, *kernel.shape[2:])


def conv_transpose_s2_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``ConvTranspose2d(4, 2, 1)`` by Winograd ``F(2×2, 2×2)`` per output phase (see module docstring).

    Needs even input height and width.
    """
    _check_s2_input(x, kernel)
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"Winograd path needs even input height and width, got {h}×{w}")
    th, tw = h // 2, w // 2
    u = winograd_kernel(kernel)
    o = u.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = _input_transform([xp[:, i : i + 2 * th : 2] for i in range(4)])  # 6 × (b, th, w + 2, c)
    v = jnp.stack(
        [jnp.stack(_input_transform([r[:, :, j : j + 2 * tw : 2] for j in range(4)])) for r in rows]
    )
    m = jnp.einsum("knc,kco->kno", v.reshape(36, b * th * tw, c), u).reshape(6, 6, b, th, tw, o)
    y_rows = _output_transform([m[a] for a in range(6)])  # 4 × (6, b, th, tw, o)
    y = jnp.stack([jnp.stack(_output_transform([yr[j] for j in range(6)])) for yr in y_rows])
    # y[p, q, b, τ, υ, o] is output pixel (4τ + p, 4υ + q).
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, 4 * th, 4 * tw, o)


# The input gradient of the stride-2 layer is a stride-2 convolution of ``dy``. Split ``dy`` into its four
# phases ``d_r[m] = dy[2m + r]``; per axis, input position i receives ``d₀[i] K₂ + d₀[i + 1] K₀`` (phase 0)
# and ``d₁[i − 1] K₃ + d₁[i] K₁`` (phase 1): again 2-tap correlations, so F(2, 2) applies per phase, and the
# four phases' products add up in the transformed domain. That makes 9 products ``(B·H·W/4, 4·out) @
# (4·out, in)`` (the four phases stacked along the contraction), the same FLOPs as 36 separate ones but
# better shaped for the CPU's matrix kernels.
_GRAD_TAPS = ((2, 0), (3, 1))  # (g₀, g₁) of phase 0 and phase 1 along each axis


def _transform_two_taps(k: jax.Array, axis: int, taps: tuple[int, int]) -> jax.Array:
    g0 = lax.index_in_dim(k, taps[0], axis, keepdims=False)
    g1 = lax.index_in_dim(k, taps[1], axis, keepdims=False)
    return jnp.stack([g0, g0 + g1, g1], axis)


def winograd_grad_kernel(kernel: jax.Array) -> jax.Array:
    """Transformed kernel of :func:`conv_transpose_s2_winograd_input_grad`, shape ``(9, 4·out, in)``."""
    per_phase = [
        _transform_two_taps(_transform_two_taps(kernel, 0, _GRAD_TAPS[r]), 1, _GRAD_TAPS[s])
        for r in (0, 1)
        for s in (0, 1)
    ]  # 4 × (3, 3, in, out)
    c, o = kernel.shape[2:]
    return jnp.stack(per_phase, 2).transpose(0, 1, 2, 4, 3).reshape(9, 4 * o, c)


def _shift(x: jax.Array, axis: int, by: int) -> jax.Array:
    """``x[τ + by]`` along ``axis`` for ``by = ±1``, zero where that runs off the end."""
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, 1) if by == 1 else (1, 0)
    start = 1 if by == 1 else 0
    return lax.slice_in_dim(jnp.pad(x, pad), start, start + n, axis=axis)


def _grad_input_transform(d: jax.Array, axis: int, phase: int) -> list[jax.Array]:
    """One phase of ``dy`` (length ``2T`` along ``axis``) → its three transformed tiles (``T`` along axis)."""
    shape = list(d.shape)
    t = shape[axis] // 2
    pairs = d.reshape([*shape[:axis], t, 2, *shape[axis + 1 :]])
    even = lax.index_in_dim(pairs, 0, axis + 1, keepdims=False)
    odd = lax.index_in_dim(pairs, 1, axis + 1, keepdims=False)
    if phase == 0:  # d₀[2τ], d₀[2τ + 1], d₀[2τ + 2]
        a, b, c = even, odd, _shift(even, axis, 1)
    else:  # d₁[2τ − 1], d₁[2τ], d₁[2τ + 1]
        a, b, c = _shift(odd, axis, -1), even, odd
    return [a - b, b, c - b]


def conv_transpose_s2_winograd_input_grad(dy: jax.Array, u: jax.Array) -> jax.Array:
    """Input cotangent of ``ConvTranspose2d(4, 2, 1)`` by Winograd ``F(2×2, 2×2)``, given the output
    cotangent ``dy (B, 2H, 2W, out)`` and ``u = winograd_grad_kernel(kernel)``; needs even ``H`` and ``W``."""
    b, h2, w2, o = dy.shape
    h, w = h2 // 2, w2 // 2
    th, tw = h // 2, w // 2
    phases = dy.reshape(b, h, 2, w, 2, o)
    v = []
    for r in (0, 1):
        for s in (0, 1):
            rows = _grad_input_transform(phases[:, :, r, :, s], 1, r)  # 3 × (b, th, w, o)
            v.append(jnp.stack([jnp.stack(_grad_input_transform(row, 2, s)) for row in rows]))
    v = jnp.stack(v, 5).reshape(9, b * th * tw, 4 * o)  # (3, 3, b, th, tw, phase, o)
    m = jnp.einsum("knq,kqc->knc", v, u).reshape(3, 3, b, th, tw, -1)
    rows = [m[0] + m[1], m[1] + m[2]]
    out = jnp.stack([jnp.stack([row[0] + row[1], row[1] + row[2]]) for row in rows])  # (2, 2, b, th, tw, c)
    return out.transpose(2, 3, 0, 4, 1, 5).reshape(b, h, w, -1)


_S2_FORWARDS = {
    "direct": lambda x, k: conv_transpose_xla(x, k, 2, 1),
    "winograd": conv_transpose_s2_winograd,
    "subpixel": conv_transpose_s2_subpixel,
    "phase_conv": conv_transpose_s2_phase_conv,
}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_transpose_s2(
    x: jax.Array, kernel: jax.Array, forward: str = "direct", input_grad: str = "direct"
) -> jax.Array:
    """``ConvTranspose2d(4, 2, 1)`` (no bias). ``forward`` (``"direct"``, ``"winograd"`` or ``"subpixel"``)
    computes the output, ``input_grad`` (``"direct"`` or ``"winograd"``) the input cotangent; the kernel
    cotangent is always the sub-pixel matrix product."""
    return _S2_FORWARDS[forward](x, kernel)


def _s2_fwd(x, kernel, forward, input_grad):
    return _S2_FORWARDS[forward](x, kernel), (x, kernel)


def _s2_bwd(forward, input_grad, residuals, dy):
    x, kernel = residuals
    if input_grad == "winograd":
        dx = conv_transpose_s2_winograd_input_grad(dy, winograd_grad_kernel(kernel))
    else:  # the adjoint of XLA's convolution (linear in x: XLA drops the unused primal computation)
        dx = jax.vjp(lambda x_: conv_transpose_xla(x_, kernel, 2, 1), x)[1](dy)[0]
    dk = jax.vjp(lambda k_: conv_transpose_s2_subpixel(x, k_), kernel)[1](dy)[0]
    return dx, dk


conv_transpose_s2.defvjp(_s2_fwd, _s2_bwd)


def choose_s2_modes(impl: str, in_features: int, out_features: int, h: int, w: int) -> tuple[str, str]:
    """``(forward, input_grad)`` of a stride-2 layer ``in → out`` on an ``h × w`` input under ``impl``.

    ``"fast"`` (measured on XLA:CPU, ``benchmarks/lebm_step.py``): the Winograd input gradient everywhere,
    the Winograd forward when both channel counts are wide (its 36 products have ``out`` columns; a
    3-channel output layer is cheaper direct). Odd input sizes fall back to the direct form.
    """
    if impl == "fast":
        if h % 2 or w % 2:
            return "direct", "direct"
        return ("winograd" if min(in_features, out_features) >= 64 else "direct"), "winograd"
    if impl == "subpixel":
        return "subpixel", "direct"
    return impl, impl


class TorchConvTranspose(nn.Module):
    """``ConvTranspose2d(k, stride, padding)`` with bias, Xavier-normal kernel and PyTorch's default bias.

    Parameters (``kernel (k, k, in, out)``, ``bias (out,)``) and outputs are those of Flax's
    ``nn.ConvTranspose`` configured by :func:`latentebm_jax.nets.generator.torch_conv_transpose`, so
    checkpoints are interchangeable; ``impl`` (one of :data:`CONV_IMPLS`) only chooses how it is computed.
    """

    features: int
    kernel_size: int
    stride: int
    padding: int
    impl: str = "fast"
    use_bias: bool = True  # the hierarchical generator's layers have none (ICCV 2023 code)
    kernel_init: nn.initializers.Initializer = nn.initializers.xavier_normal()  # BiDVL: N(0, 0.02)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.impl not in CONV_IMPLS:
            raise ValueError(f"unknown conv_impl {self.impl!r}; allowed: {', '.join(CONV_IMPLS)}")
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
        bias = (
            self.param(
                "bias", torch_default_bias(conv_transpose_bias_fan_in(self.features, k)), (self.features,)
            )
            if self.use_bias
            else jnp.zeros((self.features,), kernel.dtype)
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)  # as Flax's own layers do
        geometry = (k, self.stride, self.padding)
        if self.impl != "xla" and geometry == (4, 1, 0) and x.shape[1:3] == (1, 1):
            y = conv_transpose_from_1x1(x, kernel)
        elif self.impl != "xla" and geometry == (4, 2, 1):
            y = conv_transpose_s2(
                x, kernel, *choose_s2_modes(self.impl, x.shape[-1], self.features, *x.shape[1:3])
            )
        else:
            y = conv_transpose_xla(x, kernel, self.stride, self.padding)
        return y + bias if self.use_bias else y
