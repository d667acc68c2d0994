"""A PyTorch eager LEBM train step: the reference the JAX step is timed against.

It is written the way the authors' ``train_svhn.py`` runs one iteration of LEBM Algorithm 1 (PyTorch eager,
NCHW, ``autograd.grad`` inside the Langevin loops), with the same architecture and update equations as
:mod:`latentebm_jax.methods.lebm`:

* energy network ``Linear(n_z, 200) → GELU → Linear(200, 200) → GELU → Linear(200, 1)`` returning
  ``f_α(z)`` (the negative energy);
* DCGAN generator ``ConvT 4/1/0 → ngf·8 → LReLU → ConvT 4/2/1 → ngf·4 → … → C → tanh``;
* prior Langevin ``z ← z + (s₀²/2)(∇f_α(z) − z/σ_p²) + s₀ ε`` for ``K₀`` steps, posterior Langevin
  ``z ← z + (s₁²/2)∇_z[f_α(z) − ‖z‖²/(2σ_p²) − ‖x − g_β(z)‖²/(2σ²)] + s₁ ε`` for ``K₁`` steps (LEBM Eq. 9);
* generator loss ``‖x − g_β(z⁺)‖²/(2σ²)`` per example, averaged (Eq. 11), EBM loss
  ``mean f_α(z⁻) − mean f_α(z⁺)`` (Eq. 10), Adam with betas ``(0.5, 0.999)``.

Only :mod:`benchmarks` imports torch (from the ``bench`` extra).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """The SVHN settings of the authors' code; the benchmark fills them from ``configs/svhn.py``."""

    batch: int = 16
    image_size: int = 32
    channels: int = 3
    latent_dim: int = 100
    ngf: int = 64
    ebm_hidden: int = 200
    prior_steps: int = 60
    prior_step_size: float = 0.4
    posterior_steps: int = 20
    posterior_step_size: float = 0.1
    sigma: float = 0.3
    sigma_p: float = 1.0
    init_sigma: float = 1.0
    lr_gen: float = 1e-4
    lr_ebm: float = 2e-5


def torch_generator(s: StepSettings) -> nn.Module:
    """The authors' DCGAN generator (32×32: widths ngf·8, ·4, ·2, then C)."""
    widths = {32: [8, 4, 2], 64: [8, 4, 2, 1]}[s.image_size]
    layers: list[nn.Module] = [nn.ConvTranspose2d(s.latent_dim, s.ngf * widths[0], 4, 1, 0)]
    for a, b in itertools.pairwise(widths):
        layers += [nn.LeakyReLU(0.2), nn.ConvTranspose2d(s.ngf * a, s.ngf * b, 4, 2, 1)]
    layers += [nn.LeakyReLU(0.2), nn.ConvTranspose2d(s.ngf * widths[-1], s.channels, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def torch_energy(s: StepSettings) -> nn.Module:
    """``f_α``: the authors' MLP energy network."""
    h = s.ebm_hidden
    return nn.Sequential(nn.Linear(s.latent_dim, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))


class TorchLEBM:
    """Networks, optimisers and one eager train step (:meth:`step`); also the chains alone for timing."""

    def __init__(self, s: StepSettings, seed: int = 0):
        torch.manual_seed(seed)
        self.s = s
        self.gen = torch_generator(s)
        self.ebm = torch_energy(s)
        self.opt_gen = torch.optim.Adam(self.gen.parameters(), lr=s.lr_gen, betas=(0.5, 0.999))
        self.opt_ebm = torch.optim.Adam(self.ebm.parameters(), lr=s.lr_ebm, betas=(0.5, 0.999))

    def f(self, z: torch.Tensor) -> torch.Tensor:
        return self.ebm(z).squeeze(-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.gen(z[:, :, None, None])

    def sample_prior(self, n: int) -> torch.Tensor:
        s = self.s
        z = s.init_sigma * torch.randn(n, s.latent_dim)
        for _ in range(s.prior_steps):
            z = z.detach().requires_grad_(True)
            log_p = self.f(z).sum() - 0.5 * (z * z).sum() / s.sigma_p**2
            (grad,) = torch.autograd.grad(log_p, z)
            z = z + 0.5 * s.prior_step_size**2 * grad + s.prior_step_size * torch.randn_like(z)
        return z.detach()

    def sample_posterior(self, x: torch.Tensor) -> torch.Tensor:
        s = self.s
        z = s.init_sigma * torch.randn(x.shape[0], s.latent_dim)
        for _ in range(s.posterior_steps):
            z = z.detach().requires_grad_(True)
            x_hat = self.decode(z)
            log_p = (
                self.f(z).sum()
                - 0.5 * (z * z).sum() / s.sigma_p**2
                - 0.5 * ((x - x_hat) ** 2).sum() / s.sigma**2
            )
            (grad,) = torch.autograd.grad(log_p, z)
            z = z + 0.5 * s.posterior_step_size**2 * grad + s.posterior_step_size * torch.randn_like(z)
        return z.detach()

    def step(self, x: torch.Tensor) -> dict[str, float]:
        """One iteration of LEBM Algorithm 1 (both chains with the parameters from before the updates)."""
        s = self.s
        for p in self.ebm.parameters():
            p.requires_grad_(False)
        z_neg = self.sample_prior(x.shape[0])
        z_pos = self.sample_posterior(x)
        for p in self.ebm.parameters():
            p.requires_grad_(True)
        z_neg, z_pos = z_neg.detach(), z_pos.detach()

        self.opt_gen.zero_grad()
        x_hat = self.decode(z_pos)
        loss_g = (0.5 * ((x - x_hat) ** 2).flatten(1).sum(1) / s.sigma**2).mean()
        loss_g.backward()
        self.opt_gen.step()

        self.opt_ebm.zero_grad()
        loss_e = self.f(z_neg).mean() - self.f(z_pos).mean()
        loss_e.backward()
        self.opt_ebm.step()
        return {"loss_g": loss_g.item(), "loss_e": loss_e.item()}


# ----------------------------------------------------------------------------- weights from the library


def _tensor(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32))


def conv_transpose_weight(kernel) -> torch.Tensor:
    """A library transposed-convolution kernel ``(k, k, in, out)``, applied unflipped
    (``lax.conv_transpose``), as ``nn.ConvTranspose2d``'s weight ``(in, out, k, k)`` (taps flipped)."""
    return _tensor(np.asarray(kernel)[::-1, ::-1].transpose(2, 3, 0, 1))


def load_library_params(model: TorchLEBM, params) -> None:
    """Copy :func:`latentebm_jax.methods.lebm.init`'s parameters (``{"gen": …, "ebm": …}``) into ``model``
    (DCGAN generator and MLP energy), so both frameworks start one step from the same weights."""
    convs = [m for m in model.gen if isinstance(m, nn.ConvTranspose2d)]
    dense = [m for m in model.ebm if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, conv in enumerate(convs):
            layer = params["gen"][f"ConvTranspose_{i}"]
            conv.weight.copy_(conv_transpose_weight(layer["kernel"]))
            conv.bias.copy_(_tensor(layer["bias"]))
        for i, linear in enumerate(dense):
            layer = params["ebm"][f"TorchDense_{i}"]["Dense_0"]
            linear.weight.copy_(_tensor(layer["kernel"]).T)
            linear.bias.copy_(_tensor(layer["bias"]))
