"""Gaussian inference networks ``q_φ(z|x)``.

:class:`LadderEncoder` is the multi-layer ladder inference model of ICCV 2023, Eq. 8:

    r_1 = h_1(x),   r_i = h_i(r_{i−1}),   z_i ~ N(μ_i(r_i), V_i(r_i)),   i = 1, …, L,

built as in the authors' code: a shared bottom-up trunk, and for every latent layer a separate branch from
the trunk's current feature map to two Dense heads (mean and log-variance).
"""

from __future__ import annotations

import jax
from flax import linen as nn

from latentebm_jax.nets.energy import torch_dense


class DownBlock(nn.Module):
    """Conv 4/2/1 then conv 3/1/1 (no biases, Xavier-normal), each followed by LeakyReLU."""

    features: int
    negative_slope: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.xavier_normal()
        pad = ((1, 1), (1, 1))
        x = nn.Conv(self.features, (4, 4), (2, 2), pad, use_bias=False, kernel_init=init)(x)
        x = nn.leaky_relu(x, self.negative_slope)
        x = nn.Conv(self.features, (3, 3), padding=pad, use_bias=False, kernel_init=init)(x)
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
