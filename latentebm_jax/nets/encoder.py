"""Gaussian inference networks ``q_φ(z|x)``.

:class:`LadderEncoder` is the multi-layer ladder inference model of ICCV 2023, Eq. 8:

    r_1 = h_1(x),   r_i = h_i(r_{i−1}),   z_i ~ N(μ_i(r_i), V_i(r_i)),   i = 1, …, L,

built as in the authors' code: a shared bottom-up trunk, and for every latent layer a separate branch from
the trunk's current feature map to two Dense heads (mean and log-variance).

:class:`ConvGaussianEncoder` is BiDVL's single-layer ``q_ω1(h|v)`` (CVPR 2022), with BatchNorm.
"""

from __future__ import annotations

import jax
from flax import linen as nn

from latentebm_jax.nets import strided_conv
from latentebm_jax.nets.energy import num_halvings, torch_dense
from latentebm_jax.nets.initializers import normal_002, torch_default_bias
from latentebm_jax.nets.small_conv import SmallMapConv


class DownBlock(nn.Module):
    """Conv 4/2/1 then conv 3/1/1 (no biases, Xavier-normal), each followed by LeakyReLU."""

    features: int
    negative_slope: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # nn.Conv's parameters and names; small maps as matrix products (SmallMapConv)
        x = SmallMapConv(self.features, 4, 2, 1, name="Conv_0")(x)
        x = nn.leaky_relu(x, self.negative_slope)
        x = SmallMapConv(self.features, 3, 1, 1, name="Conv_1")(x)
        return nn.leaky_relu(x, self.negative_slope)


class LadderEncoder(nn.Module):
    """``q_φ(z_1, …, z_L | x)``: one diagonal Gaussian per latent layer, bottom ``z_1`` first.

    ``widths = (e_1, …, e_L, …)`` (the authors' ``cs[1:]``; entries after the ``L``-th are ignored). With
    ``r_0 = x``: for ``i < L`` the branch ``ladder_i`` = down block → ``e_i`` channels at half the size of
    ``r_{i−1}``, flattened, gives ``(μ_i, log σ²_i)``; the trunk ``trunk_i`` (same shape, own weights)
    gives ``r_i``. The top layer flattens ``r_{L−1}`` and applies Dense → ``e_L`` twice before its heads.
    LeakyReLU slope 0.01 (the functional default the authors' helpers use [uncertain]).

    Returns a tuple of ``(mean, log_variance)`` pairs, each ``(B, d_i)``.
    """

    latent_dims: tuple[int, ...] = (10, 10, 10, 10, 10)
    widths: tuple[int, ...] = (128, 256, 256, 512, 1024, 2048)
    negative_slope: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], ...]:
        n = len(self.latent_dims)
        if len(self.widths) < n:
            raise ValueError(f"widths must list at least {n} channel counts, got {self.widths}")
        if x.ndim != 4:
            raise ValueError(f"expected NHWC images, got shape {x.shape}")
        if x.shape[1] % 2 ** (n - 1) or x.shape[2] % 2 ** (n - 1):
            raise ValueError(f"image size {x.shape[1:3]} does not halve {n - 1} times for {n} latent layers")
        b = x.shape[0]
        out = []

        def heads(h: jax.Array, i: int) -> tuple[jax.Array, jax.Array]:
            d = self.latent_dims[i]
            mean = torch_dense(d, h.shape[-1], name=f"mean_{i}")(h)
            log_var = torch_dense(d, h.shape[-1], name=f"log_var_{i}")(h)
            return mean, log_var

        r = x
        for i in range(n - 1):
            branch = DownBlock(self.widths[i], self.negative_slope, name=f"ladder_{i}")(r)
            out.append(heads(branch.reshape(b, -1), i))
            r = DownBlock(self.widths[i], self.negative_slope, name=f"trunk_{i}")(r)
        h = r.reshape(b, -1)
        for j in range(2):
            h = nn.leaky_relu(
                torch_dense(self.widths[n - 1], h.shape[-1], name=f"top_{j}")(h), self.negative_slope
            )
        out.append(heads(h, n - 1))
        return tuple(out)


class ConvGaussianEncoder(nn.Module):
    """The Gaussian inference model ``q_ω1(h|v) = N(μ(v), diag e^{ℓ(v)})`` of BiDVL (Sec. 4.3), the authors'
    ``Q`` network.

    ``w = width`` (the authors' ``Qbasec`` = 48), ``n = log₂(size/4)``: conv 3/1/1 → ``w``, then ``n``
    convs 4/2/1 doubling the width down to 4×4 (32×32: 48, 96, 192, 384; 64×64 up to 768); every conv
    without bias, followed by BatchNorm and LeakyReLU 0.2. Two biased conv 4/1/0 heads give ``μ`` and the
    log-variance ``ℓ``, ``(B, latent_dim)`` each. Kernels ``N(0, 0.02²)``.

    BatchNorm (PyTorch's ``momentum=0.1, eps=1e-5``): ``train=True`` normalises by the batch statistics and
    updates the running averages (call with ``mutable=['batch_stats']``); under ``pmap`` with
    ``axis_name`` set the statistics are those of the *global* batch (synchronised BatchNorm).
    ``train=False`` uses the running averages. (Flax keeps the biased batch variance in the running
    average, PyTorch the unbiased one: a factor ``m/(m−1)`` with ``m`` ≥ batch × 16 values per channel.)
    """

    latent_dim: int = 100
    width: int = 48
    axis_name: str | None = None
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> tuple[jax.Array, jax.Array]:
        if x.ndim != 4:
            raise ValueError(f"expected NHWC images, got shape {x.shape}")
        n = num_halvings(x.shape[1])

        def block(features: int, kernel: int, stride: int, h: jax.Array) -> jax.Array:
            pad = ((1, 1), (1, 1))
            h = nn.Conv(
                features,
                (kernel, kernel),
                (stride, stride),
                pad,
                use_bias=False,
                kernel_init=normal_002(),
                conv_general_dilated=strided_conv.conv_general_dilated,  # fast input gradient at 4/2/1
            )(h)
            h = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=self.axis_name
            )(h)
            return nn.leaky_relu(h, self.negative_slope)

        h = block(self.width, 3, 1, x)
        for i in range(n):
            h = block(self.width * 2 ** (i + 1), 4, 2, h)
        fan_in = h.shape[-1] * 16
        head = lambda name: nn.Conv(
            self.latent_dim,
            (4, 4),
            padding="VALID",
            kernel_init=normal_002(),
            bias_init=torch_default_bias(fan_in),
            name=name,
        )(h).reshape(x.shape[0], self.latent_dim)
        return head("mean"), head("log_var")
