"""A PyTorch eager step of the joint hierarchical EBM prior (ICCV 2023): the reference the JAX step is timed
against.

It is written the way the authors' ``train_fid.py`` (jcui1224/hierarchical-representation-ebm) runs one
iteration of Algorithm 1 (PyTorch eager, NCHW, ``autograd.grad`` inside the Langevin loop, one Adam over
generator and inference network), with the networks and equations of :mod:`latentebm_jax.methods.joint`:

* ladder inference network (Eq. 8): a bottom-up trunk of down blocks (Conv 4/2/1 → LReLU 0.01 → Conv 3/1/1
  → LReLU 0.01, no biases); per layer ``i < L`` a branch of the same shape from the trunk's current map,
  flattened (NCHW) into two Linear heads ``(μ_i, log σ²_i)``; the top layer flattens the last trunk map and
  applies ``fc → LReLU`` twice before its heads;
* hierarchical generator (Eq. 5): ``h_L = MLP(z_L)`` reshaped to ``c_L × r × r``; ``h_i = g_i([h_{i+1},
  LReLU(Linear(z_i))])`` with ``g_i`` = 3×3 → ConvT 4/2/1 → 3×3 (LReLU 0.2 after each, no biases); a last
  3×3 to the image and ``tanh``. The 3×3 layers are ``ConvTranspose2d(3, 1, 1)`` as in the authors' nets
  (``conv3x3='conv_transpose'``; the same function as the library's 3×3 convolution with the taps
  flipped), or ``Conv2d(3, 1, 1)`` (``conv3x3='conv'``);
* joint EBM (Eq. 3): ``f_α([z_1, …, z_L])``, Linear layers with LReLU 0.2, spectral norm on every layer;
* the G+I loss (Eqs. 11–12) ``‖x − g(z⁺)‖²/(2σ²) + Σ_i KL_i − f_α(z⁺)`` (batch means) at the reparameterised
  ``z⁺ = μ + e^{ℓ/2} ε`` with the EBM frozen but differentiated in ``z``; one Adam step (betas ``(0, 0.9)``,
  coupled weight decay 5e-4);
* prior Langevin (Eqs. 13–14 in the code's convention) ``z ← z + (s²/2)(∇f_α(z) − z/σ_p²) + s ε`` for ``K``
  steps on the concatenated latent from ``N(0, σ_init² I)``;
* the EBM loss (Eq. 10) ``mean f_α(z⁻) − mean f_α(z⁺)`` on one pass over both batches, one Adam step.

Spectral norm: one power iteration per forward call from the stored ``u`` (σ differentiated through ``W``
with ``u, v`` constant, as ``torch.nn.utils.spectral_norm``), and ``u`` is stored only by the EBM-loss pass,
once per step, as the library does. (The authors' EBM, left in train mode, also stores ``u`` on every
Langevin step; the cost is the same power iteration either way.)

Randomness goes through :attr:`TorchJoint.randn` (default ``torch.randn``), so a test can run the step with
zero noise; :func:`load_library_params` copies the library's Flax parameters in.
Only :mod:`benchmarks` imports torch (from the ``bench`` extra).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "lrelu": lambda x: F.leaky_relu(x, 0.2),
    "gelu": F.gelu,  # exact (erf) form, as the library's
    "silu": F.silu,
}


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """The settings of the authors' SVHN ``train_fid.py``; the benchmark fills them from
    ``configs/svhn.py:get_config("joint")``."""

    image_size: int = 32
    channels: int = 3
    latent_dims: tuple[int, ...] = (10, 10, 10, 10, 10)
    widths: tuple[int, ...] = (128, 256, 256, 512, 1024, 2048)  # c_1..c_L, top MLP width
    merge: str = "concat"
    ebm_hidden: int = 100
    ebm_layers: int = 2
    ebm_activation: str = "lrelu"
    ebm_spectral_norm: bool = True
    prior_steps: int = 100
    prior_step_size: float = 0.3
    init_sigma: float = 1.0
    sigma: float = math.sqrt(1.0 / 20.0)  # Gfactor = 1/(2σ²) = 10
    sigma_p: float = 1.0
    kl_estimator: str = "analytic"
    lr_ebm: float = 2e-6
    lr_gen_enc: float = 3e-4
    beta1: float = 0.0
    beta2: float = 0.9
    weight_decay_ebm: float = 0.0
    weight_decay_gen_enc: float = 5e-4
    conv3x3: str = "conv_transpose"  # the authors' ConvTranspose2d(3, 1, 1), or "conv"

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    def resolutions(self) -> list[int]:
        """Size at which each layer enters the generator, bottom first (the library's
        ``hierarchical_resolutions``)."""
        n = self.num_layers
        return [self.image_size // 2 ** (i + 1) for i in range(n - 1)] + [self.image_size // 2 ** (n - 1)]


# ----------------------------------------------------------------------------- networks


def _l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum() + eps)


class SNLinear(nn.Linear):
    """``nn.Linear`` with optional spectral norm: ``W / σ(W)``, ``σ = uᵀ W v`` after one power iteration
    from the stored ``u`` (``u, v`` detached). ``u`` is written back only while :attr:`store_u` is set."""

    def __init__(self, in_features: int, out_features: int, spectral_norm: bool):
        super().__init__(in_features, out_features)
        self.spectral_norm = spectral_norm
        self.store_u = False
        if spectral_norm:
            self.register_buffer("u", _l2_normalize(torch.randn(out_features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spectral_norm:
            return super().forward(x)
        w = self.weight
        with torch.no_grad():
            v = _l2_normalize(w.t() @ self.u)
            u = _l2_normalize(w @ v)
            if self.store_u:
                self.u.copy_(u)
        sigma = torch.dot(u, w @ v)
        return F.linear(x, w / sigma, self.bias)


class JointEnergy(nn.Module):
    """``f_α(z)`` on the concatenated latent ``(B, Σ d_i)``: hidden SN-Linear layers, scalar output."""

    def __init__(self, s: StepSettings):
        super().__init__()
        widths = [sum(s.latent_dims)] + [s.ebm_hidden] * s.ebm_layers + [1]
        self.layers = nn.ModuleList(
            SNLinear(a, b, s.ebm_spectral_norm) for a, b in itertools.pairwise(widths)
        )
        self.act = _ACTIVATIONS[s.ebm_activation]

    def set_store_u(self, store: bool) -> None:
        for layer in self.layers:
            layer.store_u = store

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        return self.layers[-1](h).squeeze(-1)


def down_block(cin: int, cout: int) -> nn.Sequential:
    """The authors' ``conv2d_relu`` pair: Conv 4/2/1 and Conv 3/1/1, no biases, LeakyReLU 0.01 after each."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.01),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.LeakyReLU(0.01),
    )


class LadderEncoder(nn.Module):
    """``q_φ(z|x)`` (Eq. 8): per layer ``(μ_i, log σ²_i)``, bottom first."""

    def __init__(self, s: StepSettings):
        super().__init__()
        n, c = s.num_layers, s.widths
        cins = [s.channels, *c[: n - 2]]
        self.ladder = nn.ModuleList(down_block(cins[i], c[i]) for i in range(n - 1))
        self.trunk = nn.ModuleList(down_block(cins[i], c[i]) for i in range(n - 1))
        flat = [c[i] * (s.image_size // 2 ** (i + 1)) ** 2 for i in range(n - 1)]
        top_in = c[n - 2] * (s.image_size // 2 ** (n - 1)) ** 2
        self.top = nn.ModuleList([nn.Linear(top_in, c[n - 1]), nn.Linear(c[n - 1], c[n - 1])])
        flat.append(c[n - 1])
        self.mean = nn.ModuleList(nn.Linear(f, d) for f, d in zip(flat, s.latent_dims))
        self.log_var = nn.ModuleList(nn.Linear(f, d) for f, d in zip(flat, s.latent_dims))

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out, r = [], x
        for i, (branch, trunk) in enumerate(zip(self.ladder, self.trunk)):
            h = branch(r).flatten(1)
            out.append((self.mean[i](h), self.log_var[i](h)))
            r = trunk(r)
        h = r.flatten(1)
        for layer in self.top:
            h = F.leaky_relu(layer(h), 0.01)
        out.append((self.mean[-1](h), self.log_var[-1](h)))
        return out


def _gen_act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _conv3x3(cin: int, cout: int, kind: str) -> nn.Module:
    if kind == "conv_transpose":
        return nn.ConvTranspose2d(cin, cout, 3, 1, 1, bias=False)
    if kind == "conv":
        return nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
    raise ValueError(f"unknown conv3x3 {kind!r}; allowed: 'conv_transpose', 'conv'")


class HierarchicalGenerator(nn.Module):
    """``g_β(z)`` (Eq. 5), images ``(B, C, H, W)`` in ``[−1, 1]``."""

    def __init__(self, s: StepSettings):
        super().__init__()
        if s.merge not in ("concat", "sum"):
            raise ValueError(f"unknown merge {s.merge!r}; allowed: 'concat', 'sum'")
        n, c, hidden = s.num_layers, s.widths[: s.num_layers], s.widths[s.num_layers]
        self.s, self.res, self.c = s, s.resolutions(), c
        self.top = nn.ModuleList(
            [
                nn.Linear(s.latent_dims[-1], hidden),
                nn.Linear(hidden, hidden),
                nn.Linear(hidden, c[n - 1] * self.res[n - 1] ** 2),
            ]
        )
        self.proj = nn.ModuleList(
            nn.Linear(s.latent_dims[i], c[i + 1] * self.res[i] ** 2) for i in range(n - 1)
        )
        merged = [2 * c[i + 1] if s.merge == "concat" else c[i + 1] for i in range(n - 1)]
        self.block_in = nn.ModuleList(_conv3x3(merged[i], c[i + 1], s.conv3x3) for i in range(n - 1))
        self.block_up = nn.ModuleList(
            nn.ConvTranspose2d(c[i + 1], c[i], 4, 2, 1, bias=False) for i in range(n - 1)
        )
        self.block_out = nn.ModuleList(_conv3x3(c[i], c[i], s.conv3x3) for i in range(n - 1))
        self.to_image = _conv3x3(c[0], s.channels, s.conv3x3)

    def forward(self, z: Sequence[torch.Tensor]) -> torch.Tensor:
        n, b = self.s.num_layers, z[0].shape[0]
        h = z[-1]
        for layer in self.top:
            h = _gen_act(layer(h))
        h = h.view(b, self.c[n - 1], self.res[n - 1], self.res[n - 1])
        for i in range(n - 2, -1, -1):
            r = self.res[i]
            proj = self.proj[i](z[i]).view(b, self.c[i + 1], r, r)
            h = torch.cat([h, _gen_act(proj)], 1) if self.s.merge == "concat" else h + proj
            h = _gen_act(self.block_in[i](h))
            h = _gen_act(self.block_up[i](h))
            h = _gen_act(self.block_out[i](h))
        return torch.tanh(self.to_image(h))


def _xavier_init(module: nn.Module) -> None:
    """The authors' ``weights_init``: Xavier-normal (transposed) convolution weights; Linear layers keep
    PyTorch's defaults."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.xavier_normal_(module.weight)


# ----------------------------------------------------------------------------- the step


class TorchJoint:
    """Networks, optimisers and one eager train step (:meth:`step`); the prior chain alone for timing."""

    def __init__(self, s: StepSettings, seed: int = 0, randn: Callable[..., torch.Tensor] = torch.randn):
        torch.manual_seed(seed)
        if s.kl_estimator not in ("analytic", "sample"):
            raise ValueError(f"unknown kl_estimator {s.kl_estimator!r}; allowed: 'analytic', 'sample'")
        self.s = s
        self.randn = randn
        self.enc = LadderEncoder(s)
        self.gen = HierarchicalGenerator(s)
        self.ebm = JointEnergy(s)
        self.enc.apply(_xavier_init)
        self.gen.apply(_xavier_init)
        b = (s.beta1, s.beta2)
        gen_enc = list(self.gen.parameters()) + list(self.enc.parameters())
        self.opt_gen_enc = torch.optim.Adam(
            gen_enc, lr=s.lr_gen_enc, betas=b, weight_decay=s.weight_decay_gen_enc
        )
        self.opt_ebm = torch.optim.Adam(
            self.ebm.parameters(), lr=s.lr_ebm, betas=b, weight_decay=s.weight_decay_ebm
        )

    def freeze_ebm(self, frozen: bool) -> None:
        for p in self.ebm.parameters():
            p.requires_grad_(not frozen)

    def kl(self, m: torch.Tensor, lv: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``KL(q(z_i|x) ‖ N(0, σ_p² I))`` per example: closed form, or the one-sample estimate at ``z``."""
        s = self.s
        if s.kl_estimator == "analytic":
            log_var_p = 2.0 * math.log(s.sigma_p)
            per = 0.5 * (log_var_p - lv + (lv.exp() + m * m) / s.sigma_p**2 - 1.0)
            return per.sum(1)
        log_q = -0.5 * ((z - m) ** 2 * torch.exp(-lv) + lv + math.log(2 * math.pi)).sum(1)
        d = z.shape[1]
        log_p = -0.5 * (z * z).sum(1) / s.sigma_p**2 - d * (math.log(s.sigma_p) + 0.5 * math.log(2 * math.pi))
        return log_q - log_p

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(z, list(self.s.latent_dims), dim=1))

    def sample_prior(self, n: int) -> torch.Tensor:
        """``z⁻``: ``K`` joint Langevin steps on the concatenated latent (Eqs. 13–14), EBM frozen."""
        s = self.s
        z = s.init_sigma * self.randn(n, sum(s.latent_dims))
        for _ in range(s.prior_steps):
            z = z.detach().requires_grad_(True)
            log_p = self.ebm(z).sum() - 0.5 * (z * z).sum() / s.sigma_p**2
            (grad,) = torch.autograd.grad(log_p, z)
            z = z + 0.5 * s.prior_step_size**2 * grad + s.prior_step_size * self.randn(*z.shape)
        return z.detach()

    def gen_enc_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The negative ELBO with the EBM prior (Eqs. 11–12) and the reparameterised ``z⁺`` (concatenated)."""
        s = self.s
        stats = self.enc(x)
        z = [m + torch.exp(0.5 * lv) * self.randn(*m.shape) for m, lv in stats]
        x_hat = self.gen(z)
        recon = ((x - x_hat) ** 2).flatten(1).sum(1).mean() / (2.0 * s.sigma**2)
        kl = sum(self.kl(m, lv, zi).mean() for (m, lv), zi in zip(stats, z))
        z_cat = torch.cat(z, 1)
        return recon + kl - self.ebm(z_cat).mean(), z_cat

    def step(self, x: torch.Tensor) -> dict[str, float]:
        """One iteration of Algorithm 1 in the authors' order: G+I update, prior sampling, EBM update (the
        EBM is unchanged until the last, so every gradient is at the step's starting EBM, as in the
        library)."""
        b = x.shape[0]
        self.freeze_ebm(True)
        self.opt_gen_enc.zero_grad()
        loss_ge, z_pos = self.gen_enc_loss(x)
        loss_ge.backward()
        self.opt_gen_enc.step()
        z_pos = z_pos.detach()

        z_neg = self.sample_prior(b)

        self.freeze_ebm(False)
        self.opt_ebm.zero_grad()
        self.ebm.set_store_u(True)  # one pass over both batches advances the power iteration once
        f = self.ebm(torch.cat([z_pos, z_neg]))
        self.ebm.set_store_u(False)
        loss_e = f[b:].mean() - f[:b].mean()
        loss_e.backward()
        self.opt_ebm.step()
        return {"loss_ge": loss_ge.item(), "loss_e": loss_e.item(), "f_neg": f[b:].mean().item()}


# ----------------------------------------------------------------------------- weights from the library


def _tensor(x: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32))


def conv_weight(kernel: Any) -> torch.Tensor:
    """A library convolution kernel ``(k, k, in, out)`` as ``nn.Conv2d``'s weight ``(out, in, k, k)``."""
    return _tensor(np.asarray(kernel).transpose(3, 2, 0, 1))


def conv_transpose_weight(kernel: Any) -> torch.Tensor:
    """A kernel ``(k, k, in, out)`` as ``nn.ConvTranspose2d``'s weight ``(in, out, k, k)``, taps flipped: the
    library's transposed convolutions (``lax.conv_transpose``, kernel unflipped) and its 3×3 correlations
    with padding 1 (the authors' ``ConvTranspose2d(3, 1, 1)``) alike."""
    return _tensor(np.asarray(kernel)[::-1, ::-1].transpose(2, 3, 0, 1))


def dense_to_nchw(kernel: Any, bias: Any, r: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dense layer whose output the library reshapes to ``(r, r, c)`` (NHWC), as ``nn.Linear`` whose output
    is viewed as ``(c, r, r)`` (NCHW): output units permuted."""
    k = np.asarray(kernel)
    w = k.T.reshape(r, r, c, -1).transpose(2, 0, 1, 3).reshape(c * r * r, -1)
    return _tensor(w), _tensor(np.asarray(bias).reshape(r, r, c).transpose(2, 0, 1).reshape(-1))


def dense_from_nchw(kernel: Any, bias: Any, r: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dense layer reading a flattened NHWC ``(r, r, c)`` map, as ``nn.Linear`` reading the NCHW flatten."""
    k = np.asarray(kernel)
    w = k.reshape(r, r, c, -1).transpose(2, 0, 1, 3).reshape(c * r * r, -1).T
    return _tensor(w), _tensor(bias)


def _copy_linear(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    linear.weight.copy_(weight)
    linear.bias.copy_(bias)


def _copy_dense(linear: nn.Linear, layer: Mapping[str, Any]) -> None:
    _copy_linear(linear, _tensor(layer["kernel"]).T, _tensor(layer["bias"]))


def _conv3x3_weight(kernel: Any, kind: str) -> torch.Tensor:
    return conv_transpose_weight(kernel) if kind == "conv_transpose" else conv_weight(kernel)


def load_library_params(model: TorchJoint, params: Mapping[str, Any], ebm_stats: Mapping[str, Any]) -> None:
    """Copy :func:`latentebm_jax.methods.joint.init`'s parameters (``{"ebm", "gen", "enc"}``) and
    spectral-norm state (``model_state["ebm"]``) into ``model``, so both frameworks start one step from the
    same weights. The map is linear: a tree of gradients in the library's layout loads the same way."""
    s, n = model.s, model.s.num_layers
    res, c = s.resolutions(), s.widths
    gen, enc, ebm = params["gen"], params["enc"], params["ebm"]
    with torch.no_grad():
        _copy_dense(model.gen.top[0], gen["top_0"])
        _copy_dense(model.gen.top[1], gen["top_1"])
        _copy_linear(model.gen.top[2], *dense_to_nchw(**gen["top_out"], r=res[n - 1], c=c[n - 1]))
        for i in range(n - 1):
            _copy_linear(model.gen.proj[i], *dense_to_nchw(**gen[f"proj_{i}"], r=res[i], c=c[i + 1]))
            model.gen.block_in[i].weight.copy_(_conv3x3_weight(gen[f"block_{i}_in"]["kernel"], s.conv3x3))
            model.gen.block_up[i].weight.copy_(conv_transpose_weight(gen[f"block_{i}_up"]["kernel"]))
            model.gen.block_out[i].weight.copy_(_conv3x3_weight(gen[f"block_{i}_out"]["kernel"], s.conv3x3))
        model.gen.to_image.weight.copy_(_conv3x3_weight(gen["to_image"]["kernel"], s.conv3x3))

        for i in range(n - 1):
            for name, seq in (("ladder", model.enc.ladder[i]), ("trunk", model.enc.trunk[i])):
                seq[0].weight.copy_(conv_weight(enc[f"{name}_{i}"]["Conv_0"]["kernel"]))
                seq[2].weight.copy_(conv_weight(enc[f"{name}_{i}"]["Conv_1"]["kernel"]))
            r = s.image_size // 2 ** (i + 1)
            _copy_linear(model.enc.mean[i], *dense_from_nchw(**enc[f"mean_{i}"], r=r, c=c[i]))
            _copy_linear(model.enc.log_var[i], *dense_from_nchw(**enc[f"log_var_{i}"], r=r, c=c[i]))
        r = s.image_size // 2 ** (n - 1)
        _copy_linear(model.enc.top[0], *dense_from_nchw(**enc["top_0"], r=r, c=c[n - 2]))
        _copy_dense(model.enc.top[1], enc["top_1"])
        _copy_dense(model.enc.mean[n - 1], enc[f"mean_{n - 1}"])
        _copy_dense(model.enc.log_var[n - 1], enc[f"log_var_{n - 1}"])

        for i, layer in enumerate(model.ebm.layers):
            _copy_dense(layer, ebm[f"Dense_{i}"])
            if layer.spectral_norm:
                layer.u.copy_(_tensor(ebm_stats[f"SpectralNorm_{i}"][f"Dense_{i}/kernel/u"]).reshape(-1))
