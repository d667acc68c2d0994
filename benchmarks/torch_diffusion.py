"""PyTorch eager references of the diffusion hierarchical EBM prior (Cui & Han, ICML 2024) on the small
hierarchical VAE backbone: the two train steps the benchmarks ``hvae_step`` and ``diffusion_step`` time.

The networks are those of :mod:`latentebm_jax.nets.hvae` (the backbone) and
:class:`latentebm_jax.nets.energy.TimeConditionedEnergy` (the per-layer EBMs), written NCHW:

* inference network: the ladder network (conv 4/2/1 + conv 3/1/1 blocks, LeakyReLU 0.01, bias-free), one
  Gaussian head pair per layer, the top layer through a 2-layer MLP;
* decoder: the architectural hierarchical generator (ICCV 2023 Eq. 5: top MLP, per-layer projections
  concatenated, conv 3×3, transposed conv 4/2/1, conv 3×3, LeakyReLU 0.2, ``tanh`` image);
* conditional priors ``p(z_i | z_{i+1}) = N(μ_i, σ_i²)`` (Eq. 1): MLPs with NVAE's soft clamps
  ``μ = 5 tanh(μ/5)``, ``σ = exp(5 tanh(ℓ/5)) + 0.01``; ``z̃ = T(ũ)`` top-down and ``ũ = T⁻¹(z̃)`` (App. A.1,
  Eq. 15);
* per-layer EBMs ``g_i(z_i, t)``: bias-free, spectrally normalised Linear layers, SiLU, a 128-d sinusoidal
  time embedding (cosine first) through ``t_in`` (added to the input) and ``t_h`` (added inside), dense blocks
  ``a = W₁ SiLU(h) + V SiLU(t_h)``, ``h = W₂ SiLU(a) + W₃ SiLU(h)`` (the authors' CIFAR-10 EBM, vector form).

:class:`TorchHVAEStep` is one Adam step on the negative ELBO (``recon + Σ_i KL_i`` at the reparameterised
posterior draw, as :func:`latentebm_jax.methods.hvae.elbo_terms`). :class:`TorchDiffusionStep` is one
iteration of Algorithm 1 as the authors' Trainer runs it (jcui1224/diffusion-hierarchical-ebm): a posterior
draw mapped to ``u_0 = T⁻¹(z̃)``; ``t ~ U{0 … T−1}`` per example and the pair ``(u_t⁺, u_{t+1})`` (Eq. 7);
``K`` Langevin steps from ``u_{t+1}`` with the EBMs frozen on
``log p(u_t | u_{t+1}) = Σ_i g_i(T(u)_i, t)/s_t − ‖u‖²/2 − ‖a_{t+1}u − u_{t+1}‖²/(2σ²_{t+1})`` (Eqs. 9, 13:
``u ← u + (s_t/2)∇log p + √s_t ε`` with ``s_t = b (σ̄_t/σ̄_0) σ²_{t+1}``); the loss
``Σ_i [mean g_i(z⁻)/s_t − mean g_i(z⁺)/s_t]`` (Eq. 12) on one pass over both batches; one Adam step per
layer's EBM (coupled weight decay).

Spectral norm as the library's (Flax ``SpectralNorm``): one power iteration from the stored ``u`` at every
forward pass, ``σ`` differentiated through ``W`` with ``u, v`` held constant, and the advanced ``u`` stored
only by the loss pass. (The authors' EBMs run PyTorch's ``spectral_norm`` in train mode, which also stores
``u`` on every Langevin step; the arithmetic per pass is the same.)

Randomness goes through :attr:`randn` and :attr:`sample_t`, which a test replaces (zero noise, fixed ``t``).
:func:`load_hvae_params` / :func:`hvae_params_of` and :func:`load_ebm_params` / :func:`ebm_params_of` move
weights between the library's Flax layout and these modules. Only :mod:`benchmarks` imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import torch_joint  # the ladder encoder and hierarchical generator, shared

Layers = list[torch.Tensor]


@dataclasses.dataclass(frozen=True)
class HVAESettings:
    """The backbone and its Adam (config groups ``backbone`` and ``hvae``)."""

    image_size: int = 32
    channels: int = 3
    latent_dims: tuple[int, ...] = (20, 20, 20)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    prior_hidden: int = 256
    likelihood_sigma: float = math.sqrt(1.0 / 20.0)
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0

    @classmethod
    def from_config(cls, config) -> HVAESettings:
        """From a config's ``data`` and ``backbone`` groups (and ``hvae``, where it has one)."""
        b, d = config.backbone, config.data
        opt = {}
        if "hvae" in config:
            h = config.hvae
            opt = dict(lr=h.lr, beta1=h.beta1, beta2=h.beta2, weight_decay=h.weight_decay)
        return cls(
            image_size=d.image_size,
            channels=d.channels,
            latent_dims=tuple(b.latent_dims),
            widths=tuple(b.widths),
            prior_hidden=b.prior_hidden,
            likelihood_sigma=b.likelihood_sigma,
            **opt,
        )

    def network_settings(self) -> torch_joint.StepSettings:
        """The ICCV 2023 networks (:mod:`benchmarks.torch_joint`) at this backbone's sizes: the library's
        HVAE backbone builds the same ladder encoder and hierarchical generator (concatenating merge, 3×3
        convolutions)."""
        return torch_joint.StepSettings(
            image_size=self.image_size,
            channels=self.channels,
            latent_dims=self.latent_dims,
            widths=self.widths,
            merge="concat",
            conv3x3="conv",
        )


@dataclasses.dataclass(frozen=True)
class DiffusionSettings:
    """Stage 2 (config group ``diffusion``): ``T``, ``K``, ``b``, the EBMs' width and blocks, Adam."""

    num_diffusion_steps: int = 3
    langevin_steps: int = 50
    base_step: float = 3e-5
    keep_last_kernel: bool = True
    ebm_hidden: int = 128
    ebm_blocks: int = 2
    spectral_norm: bool = True
    lr: float = 4e-5
    beta1: float = 0.99
    beta2: float = 0.999
    weight_decay: float = 3e-5

    @classmethod
    def from_config(cls, config) -> DiffusionSettings:
        df = config.diffusion
        if (df.scheme, df.energy_scale, tuple(df.label_layers), df.backbone_kind) != (
            "diffusion",
            "step",
            (),
            "hvae",
        ):
            raise ValueError(
                "the PyTorch reference implements scheme 'diffusion', energy_scale 'step', no label "
                "coupling, on the hvae backbone"
            )
        return cls(
            num_diffusion_steps=df.num_diffusion_steps,
            langevin_steps=df.langevin_steps,
            base_step=df.base_step,
            keep_last_kernel=df.keep_last_kernel,
            ebm_hidden=df.ebm_hidden,
            ebm_blocks=df.ebm_blocks,
            spectral_norm=df.ebm_spectral_norm,
            lr=df.lr,
            beta1=df.beta1,
            beta2=df.beta2,
            weight_decay=df.weight_decay,
        )


# ----------------------------------------------------------------------------- the backbone


def soft_clamp(x: torch.Tensor, bound: float = 5.0) -> torch.Tensor:
    return bound * torch.tanh(x / bound)


class ConditionalGaussian(nn.Module):
    """``p(z_i | z_{i+1})``: MLP ``→ 2 × hidden (LeakyReLU 0.2) → (μ, σ)`` with NVAE's soft clamps."""

    def __init__(self, d_above: int, d: int, hidden: int):
        super().__init__()
        self.hidden = nn.Sequential(
            nn.Linear(d_above, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)
        )
        self.mean = nn.Linear(hidden, d)
        self.log_std = nn.Linear(hidden, d)

    def forward(self, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(z_above)
        return soft_clamp(self.mean(h)), torch.exp(soft_clamp(self.log_std(h))) + 0.01


class HVAE(nn.Module):
    """The backbone: inference network, generator, conditional priors, and ``T``/``T⁻¹`` (Eq. 15)."""

    def __init__(self, s: HVAESettings):
        super().__init__()
        self.s = s
        nets = s.network_settings()
        self.encoder = torch_joint.LadderEncoder(nets)
        self.generator = torch_joint.HierarchicalGenerator(nets)
        d = s.latent_dims
        self.priors = nn.ModuleList(
            ConditionalGaussian(d[i + 1], d[i], s.prior_hidden) for i in range(len(d) - 1)
        )

    def conditional(self, i: int, z_above: Layers) -> tuple[Any, Any]:
        """``(μ_i, σ_i)`` of ``p(z_i | z_{i+1})``; the top layer's ``(0, 1)``."""
        if i == len(self.priors):
            return 0.0, 1.0
        return self.priors[i](z_above[0])

    def to_z(self, u: Layers) -> Layers:
        """``z̃ = T(ũ)``, top-down."""
        z: list[Any] = [None] * len(u)
        for i in reversed(range(len(u))):
            mean, std = self.conditional(i, z[i + 1 :])
            z[i] = mean + std * u[i]
        return z

    def to_u(self, z: Layers) -> Layers:
        """``ũ = T⁻¹(z̃)`` along the given path."""
        out = []
        for i in range(len(z)):
            mean, std = self.conditional(i, z[i + 1 :])
            out.append((z[i] - mean) / std)
        return out


def gaussian_kl(mq, lvq, mp, lvp) -> torch.Tensor:
    """``KL(N(μ_q, e^{ℓ_q}) ‖ N(μ_p, e^{ℓ_p}))`` per example."""
    per = 0.5 * (lvp - lvq + (torch.exp(lvq) + (mq - mp) ** 2) * torch.exp(-lvp) - 1.0)
    return per.flatten(1).sum(1)


class TorchHVAEStep:
    """One Adam step on the backbone's negative ELBO (:meth:`step`)."""

    def __init__(self, s: HVAESettings, seed: int = 0):
        torch.manual_seed(seed)
        self.s = s
        self.model = HVAE(s)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=s.lr, betas=(s.beta1, s.beta2), weight_decay=s.weight_decay
        )
        self.randn: Callable[..., torch.Tensor] = torch.randn

    def elbo_terms(self, x: torch.Tensor) -> dict[str, Any]:
        """``recon = ‖x − g(z̃)‖²/(2σ²)`` and ``KL_i`` (batch means) at ``z̃ = μ + σ ε``."""
        m = self.model
        stats = m.encoder(x)
        z = [mu + torch.exp(0.5 * lv) * self.randn(*mu.shape) for mu, lv in stats]
        x_hat = m.generator(z)
        recon = ((x - x_hat) ** 2).flatten(1).sum(1).mean() / (2.0 * self.s.likelihood_sigma**2)
        kls = []
        for i, (mu, lv) in enumerate(stats):
            mean_p, std_p = m.conditional(i, z[i + 1 :])
            mean_p = torch.as_tensor(mean_p).expand_as(mu)
            log_var_p = (2.0 * torch.log(torch.as_tensor(std_p))).expand_as(mu)
            kls.append(gaussian_kl(mu, lv, mean_p, log_var_p).mean())
        return {"loss": recon + sum(kls), "recon": recon, "kl": kls}

    def step(self, x: torch.Tensor) -> dict[str, Any]:
        self.opt.zero_grad()
        terms = self.elbo_terms(x)
        terms["loss"].backward()
        grad_norm = torch.sqrt(sum((p.grad**2).sum() for p in self.model.parameters()))
        self.opt.step()
        return {
            "loss": terms["loss"].item(),
            "recon": terms["recon"].item(),
            "kl": [k.item() for k in terms["kl"]],
            "grad_norm": grad_norm.item(),
        }


# ----------------------------------------------------------------------------- the EBM prior


def _l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum() + eps)


class SNLinear(nn.Module):
    """A bias-free Linear layer, spectrally normalised by one power iteration from the stored ``u``."""

    def __init__(self, fan_in: int, features: int, spectral_norm: bool = True):
        super().__init__()
        self.linear = nn.Linear(fan_in, features, bias=False)
        self.spectral_norm = spectral_norm
        self.register_buffer("u", _l2_normalize(torch.randn(features)))
        self.store_u = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.linear.weight
        if self.spectral_norm:
            with torch.no_grad():
                v = _l2_normalize(self.u @ w)
                u = _l2_normalize(w @ v)
                if self.store_u:
                    self.u.copy_(u)
            w = w / torch.dot(u, w @ v)
        return F.linear(x, w)


def timestep_embedding(t: torch.Tensor, dim: int = 128) -> torch.Tensor:
    """``[cos(t ω), sin(t ω)]``, ``ω_k = exp(−ln(10⁴) k / (dim/2))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEnergy(nn.Module):
    """``g_i(z_i, t)`` for one vector latent layer; ``dense[j]`` is the library's ``_SNDense_j``."""

    def __init__(self, d: int, hidden: int, num_blocks: int, sn: bool, time_dim: int = 128):
        super().__init__()
        self.time_dim = time_dim
        dims = [(time_dim, d), (d, d), (time_dim, time_dim), (time_dim, time_dim)]
        dims += [(d, hidden), (time_dim, hidden)]
        dims += [(hidden, hidden), (time_dim, hidden), (hidden, hidden), (hidden, hidden)] * num_blocks
        dims += [(hidden, 1)]
        self.dense = nn.ModuleList(SNLinear(a, b, sn) for a, b in dims)
        self.num_blocks = num_blocks

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dense, silu = self.dense, F.silu
        e = timestep_embedding(t, self.time_dim)
        t_in = dense[1](silu(dense[0](e)))
        t_h = silu(dense[3](silu(dense[2](e))))
        h = dense[4](z + t_in) + dense[5](t_h)
        for k in range(self.num_blocks):
            j = 6 + 4 * k
            a = dense[j](silu(h)) + dense[j + 1](t_h)
            h = dense[j + 2](silu(a)) + dense[j + 3](silu(h))
        return dense[-1](silu(h))[:, 0]


def noise_schedule(num_steps: int) -> dict[str, torch.Tensor]:
    """The authors' ũ-space schedule (float64, then float32): ``a``, ``σ``, ``ā``, ``σ̄`` for ``t = 0 … T``."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    stride = 1000 // (2 * (num_steps - 1))
    index = [j * stride for j in range(num_steps)] + [999]
    root = np.sqrt(1.0 - betas)
    a = np.asarray(
        [root[0]] + [np.prod(root[index[j - 1] + 1 : index[j] + 1]) for j in range(1, num_steps + 1)]
    )
    a_bar = np.cumprod(a)
    f32 = lambda v: torch.from_numpy(np.asarray(v, np.float32))
    return {
        "a": f32(a),
        "sigma": f32(np.sqrt(1.0 - a**2)),
        "a_bar": f32(a_bar),
        "sigma_bar": f32(np.sqrt(1.0 - a_bar**2)),
    }


class TorchDiffusionStep:
    """The frozen backbone, one EBM (and one Adam) per latent layer, and one iteration of Algorithm 1."""

    def __init__(self, hs: HVAESettings, s: DiffusionSettings, seed: int = 0):
        torch.manual_seed(seed)
        self.s = s
        self.backbone = HVAE(hs)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.ebms = nn.ModuleList(
            TimeEnergy(d, s.ebm_hidden, s.ebm_blocks, s.spectral_norm) for d in hs.latent_dims
        )
        self.opts = [
            torch.optim.Adam(e.parameters(), lr=s.lr, betas=(s.beta1, s.beta2), weight_decay=s.weight_decay)
            for e in self.ebms
        ]
        self.sched = noise_schedule(s.num_diffusion_steps)
        sb, sg = self.sched["sigma_bar"], self.sched["sigma"]
        self.step_var = s.base_step * (sb[:-1] / sb[0]) * sg[1:] ** 2  # s_t, t = 0 … T−1
        self.randn: Callable[..., torch.Tensor] = torch.randn
        self.sample_t: Callable[[int], torch.Tensor] = lambda b: torch.randint(0, s.num_diffusion_steps, (b,))

    def _noise_like(self, u: Layers) -> Layers:
        return [self.randn(*x.shape) for x in u]

    def layer_energies(self, z: Layers, t: torch.Tensor) -> list[torch.Tensor]:
        """``g_i(z_i, t)`` per layer, ``(B,)`` each."""
        return [ebm(zi, t) for ebm, zi in zip(self.ebms, z)]

    def positive_pair(self, x: torch.Tensor) -> tuple[Layers, Layers, torch.Tensor]:
        """``u_0 = T⁻¹(z̃)`` at a posterior draw, ``t``, and ``(u_t⁺, u_{t+1})`` (Eq. 7)."""
        bb, sc = self.backbone, self.sched
        with torch.no_grad():
            stats = bb.encoder(x)
            z = [mu + torch.exp(0.5 * lv) * self.randn(*mu.shape) for mu, lv in stats]
            u0 = bb.to_u(z)
            t = self.sample_t(x.shape[0])
            ab, sb = sc["a_bar"][t][:, None], sc["sigma_bar"][t][:, None]
            u_t = [ab * u + sb * e for u, e in zip(u0, self._noise_like(u0))]
            a, s = sc["a"][t + 1][:, None], sc["sigma"][t + 1][:, None]
            u_next = [a * u + s * e for u, e in zip(u_t, self._noise_like(u_t))]
        return u_t, u_next, t

    def log_density(self, y: Layers, u_next: Layers, t: torch.Tensor) -> torch.Tensor:
        """``log p(u_t | u_{t+1})`` per example up to a constant (Eqs. 9, 13), ``F = g/s_t``."""
        s_t = self.step_var[t]
        g = sum(self.layer_energies(self.backbone.to_z(y), t))
        a, sig = self.sched["a"][t + 1][:, None], self.sched["sigma"][t + 1]
        kernel = -0.5 * sum(((a * yi - ui) ** 2).sum(1) for yi, ui in zip(y, u_next)) / sig**2
        if not self.s.keep_last_kernel:
            kernel = torch.where(t + 1 == self.s.num_diffusion_steps, 0.0, kernel)
        return g / s_t - 0.5 * sum((yi**2).sum(1) for yi in y) + kernel

    def sample_negative(self, u_next: Layers, t: torch.Tensor) -> Layers:
        """``u_t⁻``: ``K`` Langevin steps from ``u_{t+1}`` (Algorithm 1 line 6), EBMs frozen."""
        s_t = self.step_var[t][:, None]
        y = [u.clone() for u in u_next]
        for _ in range(self.s.langevin_steps):
            y = [v.detach().requires_grad_(True) for v in y]
            grads = torch.autograd.grad(self.log_density(y, u_next, t).sum(), y)
            noise = self._noise_like(y)
            y = [v + 0.5 * s_t * g + torch.sqrt(s_t) * e for v, g, e in zip(y, grads, noise)]
        return [v.detach() for v in y]

    def _sn_store(self, on: bool) -> None:
        for m in self.ebms.modules():
            if isinstance(m, SNLinear):
                m.store_u = on

    def _ebm_grad(self, on: bool) -> None:
        for p in self.ebms.parameters():
            p.requires_grad_(on)

    def step(self, x: torch.Tensor) -> dict[str, Any]:
        """One iteration of Algorithm 1: pair, negatives, Eq. 12's loss on both batches, Adam per layer."""
        b = x.shape[0]
        u_pos, u_next, t = self.positive_pair(x)
        self._ebm_grad(False)
        u_neg = self.sample_negative(u_next, t)
        self._ebm_grad(True)
        with torch.no_grad():
            z_pos, z_neg = self.backbone.to_z(u_pos), self.backbone.to_z(u_neg)
        both = [torch.cat([p, n]) for p, n in zip(z_pos, z_neg)]
        tt = torch.cat([t, t])
        self._sn_store(True)
        g = torch.stack(self.layer_energies(both, tt), dim=1) / self.step_var[tt][:, None]  # (2B, L)
        self._sn_store(False)
        per_layer = g[b:].mean(0) - g[:b].mean(0)
        loss = per_layer.sum()
        for opt in self.opts:
            opt.zero_grad()
        loss.backward()
        grad_norm = torch.sqrt(sum((p.grad**2).sum() for p in self.ebms.parameters()))
        for opt in self.opts:
            opt.step()
        return {
            "loss": loss.item(),
            "per_layer": per_layer.detach().numpy(),
            "g_pos": g[:b].mean(0).detach().numpy(),
            "g_neg": g[b:].mean(0).detach().numpy(),
            "grad_norm": grad_norm.item(),
        }


# ------------------------------------------------------------------------------ weights and the library


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32))


@dataclasses.dataclass(frozen=True)
class Transfer:
    """A torch tensor, its place in the library's parameter tree, and the two layout maps."""

    path: tuple[str, ...]
    tensor: torch.Tensor
    to_torch: Callable[[np.ndarray], np.ndarray]
    to_flax: Callable[[np.ndarray], np.ndarray]


def _dense(path, lin: nn.Linear) -> Iterator[Transfer]:
    yield Transfer((*path, "kernel"), lin.weight, lambda k: k.T, lambda w: w.T)
    if lin.bias is not None:
        yield Transfer((*path, "bias"), lin.bias, lambda b: b, lambda b: b)


def _dense_from_nhwc(path, lin: nn.Linear, h: int, w: int, c: int) -> Iterator[Transfer]:
    """A Dense layer reading an NHWC-flattened map (library) as one reading the NCHW flattening (torch)."""
    d = lin.out_features
    yield Transfer(
        (*path, "kernel"),
        lin.weight,
        lambda k: k.reshape(h, w, c, d).transpose(3, 2, 0, 1).reshape(d, -1),
        lambda m: m.reshape(d, c, h, w).transpose(2, 3, 1, 0).reshape(-1, d),
    )
    yield Transfer((*path, "bias"), lin.bias, lambda b: b, lambda b: b)


def _dense_to_nhwc(path, lin: nn.Linear, h: int, w: int, c: int) -> Iterator[Transfer]:
    """A Dense layer whose output the library reshapes to ``(h, w, c)`` and torch to ``(c, h, w)``."""
    n = lin.in_features
    yield Transfer(
        (*path, "kernel"),
        lin.weight,
        lambda k: k.reshape(n, h, w, c).transpose(3, 1, 2, 0).reshape(-1, n),
        lambda m: m.reshape(c, h, w, n).transpose(3, 1, 2, 0).reshape(n, -1),
    )
    yield Transfer(
        (*path, "bias"),
        lin.bias,
        lambda b: b.reshape(h, w, c).transpose(2, 0, 1).reshape(-1),
        lambda b: b.reshape(c, h, w).transpose(1, 2, 0).reshape(-1),
    )


def _conv(path, conv: nn.Conv2d) -> Iterator[Transfer]:
    yield Transfer(
        (*path, "kernel"), conv.weight, lambda k: k.transpose(3, 2, 0, 1), lambda w: w.transpose(2, 3, 1, 0)
    )


def _conv_transpose(path, conv: nn.ConvTranspose2d) -> Iterator[Transfer]:
    """The library's kernel ``(k, k, in, out)`` is applied unflipped (``lax.conv_transpose``); torch's weight
    ``(in, out, k, k)`` is the adjoint of a correlation, so its taps are flipped."""
    yield Transfer(
        (*path, "kernel"),
        conv.weight,
        lambda k: k[::-1, ::-1].transpose(2, 3, 0, 1),
        lambda w: w.transpose(2, 3, 0, 1)[::-1, ::-1],
    )


def hvae_transfers(m: HVAE) -> list[Transfer]:
    """Every backbone tensor with its path in :class:`latentebm_jax.nets.hvae.HierarchicalVAE`'s params."""
    s, n = m.s, len(m.s.latent_dims)
    out: list[Transfer] = []
    enc, gen = m.encoder, m.generator
    for i in range(n - 1):
        for name, block in (("ladder", enc.ladder[i]), ("trunk", enc.trunk[i])):
            out += _conv(("encoder", f"{name}_{i}", "Conv_0"), block[0])
            out += _conv(("encoder", f"{name}_{i}", "Conv_1"), block[2])
        size = s.image_size // 2 ** (i + 1)
        for head in ("mean", "log_var"):
            out += _dense_from_nhwc(
                ("encoder", f"{head}_{i}"), getattr(enc, head)[i], size, size, s.widths[i]
            )
    size = s.image_size // 2 ** (n - 1)
    out += _dense_from_nhwc(("encoder", "top_0"), enc.top[0], size, size, s.widths[n - 2])
    out += _dense(("encoder", "top_1"), enc.top[1])
    out += _dense(("encoder", f"mean_{n - 1}"), enc.mean[-1])
    out += _dense(("encoder", f"log_var_{n - 1}"), enc.log_var[-1])
    r = gen.res[-1]
    out += _dense(("generator", "top_0"), gen.top[0])
    out += _dense(("generator", "top_1"), gen.top[1])
    out += _dense_to_nhwc(("generator", "top_out"), gen.top[2], r, r, gen.c[-1])
    for i in range(n - 1):
        r = gen.res[i]
        out += _dense_to_nhwc(("generator", f"proj_{i}"), gen.proj[i], r, r, gen.c[i + 1])
        out += _conv(("generator", f"block_{i}_in"), gen.block_in[i])
        out += _conv_transpose(("generator", f"block_{i}_up"), gen.block_up[i])
        out += _conv(("generator", f"block_{i}_out"), gen.block_out[i])
    out += _conv(("generator", "to_image"), gen.to_image)
    for i, prior in enumerate(m.priors):
        out += _dense((f"prior_{i}", "hidden_0"), prior.hidden[0])
        out += _dense((f"prior_{i}", "hidden_1"), prior.hidden[2])
        out += _dense((f"prior_{i}", "mean"), prior.mean)
        out += _dense((f"prior_{i}", "log_std"), prior.log_std)
    return out


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _set(tree: dict, path, value) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _load(transfers: list[Transfer], params) -> None:
    with torch.no_grad():
        for tr in transfers:
            tr.tensor.copy_(_t(tr.to_torch(np.asarray(_get(params, tr.path)))))


def _export(transfers: list[Transfer], grads: bool = False) -> dict:
    out: dict = {}
    for tr in transfers:
        value = tr.tensor.grad if grads else tr.tensor
        _set(out, tr.path, np.ascontiguousarray(tr.to_flax(value.detach().numpy())))
    return out


def load_hvae_params(m: HVAE, params) -> None:
    """Copy the library's backbone parameters (``HVAEBackbone.init``'s tree) into ``m``."""
    _load(hvae_transfers(m), params)


def hvae_params_of(m: HVAE, grads: bool = False) -> dict:
    """``m``'s parameters (or, with ``grads``, their last gradients) in the library's layout (to compare
    with a library step's result)."""
    return _export(hvae_transfers(m), grads)


def ebm_transfers(ebms: nn.ModuleList) -> list[Transfer]:
    out: list[Transfer] = []
    for i, ebm in enumerate(ebms):
        for j, dense in enumerate(ebm.dense):
            out += _dense((f"layer_{i}", f"_SNDense_{j}", "Dense_0"), dense.linear)
    return out


def load_ebm_params(ebms: nn.ModuleList, params, stats) -> None:
    """Copy the library's EBM parameters (``state.params["ebm"]``) and spectral-norm vectors
    (``state.model_state["ebm"]``) into ``ebms``."""
    _load(ebm_transfers(ebms), params)
    with torch.no_grad():
        for i, ebm in enumerate(ebms):
            for j, dense in enumerate(ebm.dense):
                if dense.spectral_norm:
                    u = stats[f"layer_{i}"][f"_SNDense_{j}"]["SpectralNorm_0"]["Dense_0/kernel/u"]
                    dense.u.copy_(_t(np.asarray(u)[0]))


def ebm_params_of(ebms: nn.ModuleList, grads: bool = False) -> tuple[dict, dict]:
    """``(params, spectral-norm u vectors)`` in the library's layout (with ``grads``: the parameters' last
    gradients instead of the parameters)."""
    us: dict = {}
    for i, ebm in enumerate(ebms):
        for j, dense in enumerate(ebm.dense):
            us[(f"layer_{i}", f"_SNDense_{j}")] = dense.u.detach().numpy()[None]
    return _export(ebm_transfers(ebms), grads), us
