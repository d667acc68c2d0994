"""A PyTorch eager BiDVL train step: the reference the JAX step is timed against.

It is written the way the authors' ``train_cifar_BiDVL.py`` (gekanFAE/BiDVL) runs one iteration (PyTorch
eager, NCHW, one backward per level, the authors' ``Q``/``P``/``ConvE`` networks and Adams), with the
update order and equations of :mod:`latentebm_jax.methods.bidvl` (Algorithm 1, offset gradients Eqs. 13-14):

* inference model ``Q``: conv 3/1/1 → ``w``, then ``n = log₂(size/4)`` convs 4/2/1 doubling the width, each
  without bias + BatchNorm + LeakyReLU 0.2; biased conv 4/1/0 heads for ``μ`` and ``log σ²``;
* generator ``P``: ConvT 4/1/0 → ``w·2ⁿ`` (4×4), ``n`` ConvT 4/2/1 (the first keeps the width, the others
  halve it), each without bias + BatchNorm + ReLU; biased ConvT 3/1/1 → ``C``; tanh;
* energy ``ConvE`` (every conv biased and spectrally normalised, LeakyReLU 0.1): conv 3/1/1 → ``w``, ``n``
  pairs [conv 4/2/1, conv 3/1/1 doubling], conv 4/1/0 → 1×1, then without activation a 1×1 conv, LeakyReLU,
  1×1 conv → 1; ``E = softplus(out)``;
* lower level (Eq. 13, Alg. 1 step 4), one backward through
  ``mean r′[‖v − P(h)‖²/(2σ²) + KL(q(h|v) ‖ N(0, I))] + mean E(P(ĥ)) + mean −log q_{Q frozen}(ĥ | P(ĥ))``
  (``h = μ + e^{ℓ/2} ε``; ``latent_loss='code'``: ``‖μ(P(ĥ)) − ĥ‖²/d`` instead), then one step of the
  authors' single ``QP`` Adam;
* upper level (Eq. 14, Alg. 1 step 7): ``mean E(v) − mean E(P(ĥ))`` with ``P(ĥ)`` detached, ``E`` on
  ``[v; P(ĥ)]`` in one call, then one step of ``E``'s Adam.

Train and eval modes as the library: ``Q`` and ``P`` stay in train mode throughout (BatchNorm normalises by
the batch and updates its running averages at every call, in the library's call order: ``Q(v)``, ``P(h)``,
``P(ĥ)``, ``Q(P(ĥ))``, then ``P(ĥ)`` again in the upper level); ``E`` is in train mode, so its spectral
norm runs one power iteration per call, and the library keeps the advanced vector only from the
upper-level call: the lower-level call restores it afterwards (:func:`kept_power_iteration`; the authors'
code keeps both, two advances per iteration). PyTorch's BatchNorm keeps the *unbiased* batch variance in
its running average, Flax the biased one (``tests/test_bench_bidvl.py`` accounts for the factor).

``order='upper_first'`` runs the authors' order (upper level first). ``offset='not_offset'`` (Sec. 4.4's
upper-level step of ``Q``) is not implemented here. The Gaussian draws come from :meth:`TorchBiDVL.draws`,
which a test may replace (fixed draws in both frameworks).

Only :mod:`benchmarks` imports torch (from the ``bench`` extra).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """The CIFAR-10 settings of the authors' code; the benchmark fills them from ``configs/cifar10.py``."""

    batch: int = 100
    image_size: int = 32
    channels: int = 3
    latent_dim: int = 100
    enc_width: int = 48
    gen_width: int = 48
    ebm_width: int = 64
    energy_output: str = "softplus"
    ebm_spectral_norm: bool = True
    likelihood_sigma: float = math.sqrt(0.5)
    basic_ratio: float = 0.05
    bias: str = "none"
    offset: str = "offset"
    latent_loss: str = "nll"
    lower_steps: int = 1
    order: str = "lower_first"
    lr_ebm: float = 1e-4
    lr_enc_gen: float = 3e-4
    beta1: float = 0.0
    beta2: float = 0.9
    weight_decay_ebm: float = 0.0
    weight_decay_enc_gen: float = 1e-4


def num_halvings(image_size: int) -> int:
    """Stride-2 stages from ``image_size`` down to 4×4."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"BiDVL networks need a power-of-two image size >= 8, got {image_size}")
    return int(math.log2(image_size // 4))


class Encoder(nn.Module):
    """``q_ω1(h|v)``, the authors' ``Q``: ``(μ, log σ²)``, each ``(B, d)``."""

    def __init__(self, s: StepSettings):
        super().__init__()
        n = num_halvings(s.image_size)
        layers: list[nn.Module] = []
        cin = s.channels
        for i in range(n + 1):
            cout = s.enc_width * 2**i
            kernel, stride = (3, 1) if i == 0 else (4, 2)
            layers += [nn.Conv2d(cin, cout, kernel, stride, 1, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        self.trunk = nn.Sequential(*layers)
        self.mean = nn.Conv2d(cin, s.latent_dim, 4, 1, 0)
        self.log_var = nn.Conv2d(cin, s.latent_dim, 4, 1, 0)

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(v)
        return self.mean(h).flatten(1), self.log_var(h).flatten(1)


class Generator(nn.Module):
    """``v = G_ω2(h)``, the authors' ``P``: ``(B, d)`` latents to images in ``[−1, 1]``."""

    def __init__(self, s: StepSettings):
        super().__init__()
        n = num_halvings(s.image_size)
        widths = [s.gen_width * 2**n] + [s.gen_width * 2 ** (n - i) for i in range(n)]
        layers: list[nn.Module] = []
        cin = s.latent_dim
        for i, cout in enumerate(widths):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.ReLU())
            cin = cout
        layers += [nn.ConvTranspose2d(cin, s.channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h[:, :, None, None])


class Energy(nn.Module):
    """``E_ψ′(v)`` (Eq. 8), the authors' ``ConvE``: the energy (not its negative), shape ``(B,)``."""

    def __init__(self, s: StepSettings):
        super().__init__()
        n = num_halvings(s.image_size)
        sn = nn.utils.spectral_norm if s.ebm_spectral_norm else (lambda m: m)
        act = lambda: nn.LeakyReLU(0.1)
        w = s.ebm_width
        layers: list[nn.Module] = [sn(nn.Conv2d(s.channels, w, 3, 1, 1)), act()]
        for _ in range(n):
            layers += [sn(nn.Conv2d(w, w, 4, 2, 1)), act(), sn(nn.Conv2d(w, 2 * w, 3, 1, 1)), act()]
            w *= 2
        layers += [sn(nn.Conv2d(w, w, 4, 1, 0)), sn(nn.Conv2d(w, w, 1)), act(), sn(nn.Conv2d(w, 1, 1))]
        self.net = nn.Sequential(*layers)
        self.output = s.energy_output

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        out = self.net(v).flatten()
        return F.softplus(out) if self.output == "softplus" else out


def authors_init(module: nn.Module) -> None:
    """The authors' ``Xavier_init``: conv kernels ``N(0, 0.02²)``, BatchNorm weight 1 and bias 0, conv biases
    PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@contextlib.contextmanager
def kept_power_iteration(module: nn.Module) -> Iterator[None]:
    """Calls inside run their power iteration but leave the spectral-norm vectors as they were (the
    library's ``update_stats=False``); gradients are unaffected (PyTorch uses clones of ``u, v``)."""
    saved = [(b, b.detach().clone()) for name, b in module.named_buffers() if name.endswith(("_u", "_v"))]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def _grad_norm(module: nn.Module) -> float:
    """Global norm of a network's gradients (before weight decay), as the library logs it."""
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()])).item()


def _frozen(module: nn.Module, frozen: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)


class TorchBiDVL:
    """Networks, the authors' two Adams and one eager train step (:meth:`step`)."""

    def __init__(self, s: StepSettings, seed: int = 0):
        if s.offset not in ("offset", "without"):
            raise ValueError(
                f"the PyTorch reference implements offset 'offset' and 'without', not {s.offset!r}"
            )
        torch.manual_seed(seed)
        self.s = s
        self.enc, self.gen, self.ebm = Encoder(s), Generator(s), Energy(s)
        for net in (self.enc, self.gen, self.ebm):
            authors_init(net)
            net.train()
        qp = list(self.enc.parameters()) + list(self.gen.parameters())
        betas = (s.beta1, s.beta2)
        self.opt_qp = torch.optim.Adam(qp, lr=s.lr_enc_gen, betas=betas, weight_decay=s.weight_decay_enc_gen)
        self.opt_ebm = torch.optim.Adam(
            self.ebm.parameters(), lr=s.lr_ebm, betas=betas, weight_decay=s.weight_decay_ebm
        )

    def draws(self, b: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(ĥ, ε)`` for each of the ``N`` lower-level steps: prior latents and the reparameterisation
        noise of ``h ~ q(h|v)``, each ``(B, d)``."""
        d = self.s.latent_dim
        return [(torch.randn(b, d), torch.randn(b, d)) for _ in range(self.s.lower_steps)]

    def importance_weights(self, v: torch.Tensor) -> torch.Tensor:
        """``r(v)`` of Eq. 15 (no gradient): ``r′`` times the bias term (``none``: 1)."""
        s = self.s
        if s.bias == "none":
            return torch.full((v.shape[0],), s.basic_ratio)
        with torch.no_grad(), kept_power_iteration(self.ebm):
            f = -self.ebm(v)
        if s.bias == "sigmoid":
            return s.basic_ratio * torch.sigmoid(f - f.mean())
        if s.bias == "self_normalized":
            return s.basic_ratio * f.shape[0] * torch.softmax(f, 0)
        raise ValueError(f"unknown importance-ratio bias {s.bias!r}")

    def latent_loss(self, h_hat: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """``−log q(ĥ | P(ĥ))`` batch mean (``nll``) or ``‖μ − ĥ‖²/d`` (``code``)."""
        if self.s.latent_loss == "nll":
            nll = 0.5 * ((h_hat - mean) ** 2 * torch.exp(-log_var) + log_var + math.log(2 * math.pi))
            return nll.sum(1).mean()
        return ((mean - h_hat) ** 2).sum(1).mean() / h_hat.shape[1]

    def lower_step(self, v: torch.Tensor, h_hat: torch.Tensor, eps: torch.Tensor) -> dict[str, float]:
        """One lower-level update of ``Q`` and ``P`` by Eq. 13 (Alg. 1, step 4)."""
        s = self.s
        weights = self.importance_weights(v)
        _frozen(self.ebm, True)
        self.opt_qp.zero_grad()
        mean, log_var = self.enc(v)
        v_rec = self.gen(mean + torch.exp(0.5 * log_var) * eps)
        sse = ((v - v_rec) ** 2).flatten(1).sum(1)
        kl = 0.5 * (mean**2 + torch.exp(log_var) - 1.0 - log_var).sum(1)
        vae = (weights * (sse / (2 * s.likelihood_sigma**2) + kl)).mean()
        v_hat = self.gen(h_hat)
        with kept_power_iteration(self.ebm):
            chase = self.ebm(v_hat).mean()
        latent = torch.zeros(())
        if s.offset == "offset":
            _frozen(self.enc, True)
            m_hat, lv_hat = self.enc(v_hat)
            _frozen(self.enc, False)
            latent = self.latent_loss(h_hat, m_hat, lv_hat)
        loss = vae + chase + latent
        loss.backward()
        norms = {"grad_norm_enc": _grad_norm(self.enc), "grad_norm_gen": _grad_norm(self.gen)}
        self.opt_qp.step()
        _frozen(self.ebm, False)
        return {
            "loss_ll": loss.item(),
            "vae": vae.item(),
            "chase": chase.item(),
            "latent_rec": latent.item(),
            "mse_rec": ((v - v_rec) ** 2).mean().item(),
            **norms,
        }

    def upper_step(self, v: torch.Tensor, h_hat: torch.Tensor) -> dict[str, float]:
        """One upper-level update of ``E`` by Eq. 14 (Alg. 1, step 7)."""
        b = v.shape[0]
        with torch.no_grad():
            v_hat = self.gen(h_hat)
        self.opt_ebm.zero_grad()
        energy = self.ebm(torch.cat([v, v_hat]))
        loss = energy[:b].mean() - energy[b:].mean()
        loss.backward()
        norm = _grad_norm(self.ebm)
        self.opt_ebm.step()
        return {
            "loss_ul": loss.item(),
            "f_data": -energy[:b].mean().item(),
            "f_gen_ul": -energy[b:].mean().item(),
            "grad_norm_ebm": norm,
        }

    def step(self, v: torch.Tensor) -> dict[str, float]:
        """One iteration of Algorithm 1 (``order='upper_first'``: the authors' order)."""
        draws = self.draws(v.shape[0])
        out: dict[str, float] = {}
        if self.s.order == "upper_first":
            out.update(self.upper_step(v, draws[0][0]))
        for h_hat, eps in draws:
            out.update(self.lower_step(v, h_hat, eps))
        if self.s.order == "lower_first":
            out.update(self.upper_step(v, draws[-1][0]))
        return out


# ----------------------------------------------------------------------------- weights from the library


def _tensor(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32))


def conv_weight(kernel) -> torch.Tensor:
    """A library convolution kernel ``(k, k, in, out)`` as ``nn.Conv2d``'s weight ``(out, in, k, k)``."""
    return _tensor(np.asarray(kernel).transpose(3, 2, 0, 1))


def conv_transpose_weight(kernel) -> torch.Tensor:
    """A library transposed-convolution kernel ``(k, k, in, out)``, applied unflipped
    (``lax.conv_transpose``), as ``nn.ConvTranspose2d``'s weight ``(in, out, k, k)`` (the adjoint of a
    correlation: taps flipped). The generator's last layer, a 3×3 convolution in the library, is the same
    transposed convolution."""
    return _tensor(np.asarray(kernel)[::-1, ::-1].transpose(2, 3, 0, 1))


def _of(net: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, kind)]


def _ebm_layers(model: TorchBiDVL) -> list[tuple[str, nn.Conv2d]]:
    """``ConvE``'s convolutions with their library names (``Conv_i``, then the 1×1 ``Dense_0, Dense_1``)."""
    convs = _of(model.ebm, nn.Conv2d)
    names = [f"Conv_{i}" for i in range(len(convs) - 2)] + ["Dense_0", "Dense_1"]
    return list(zip(names, convs, strict=True))


def _sn_vectors(ebm_stats) -> dict[str, np.ndarray]:
    """The library's spectral-norm vectors ``u`` by layer name."""
    out = {}
    for group in ebm_stats.values():
        for key, value in group.items():
            if key.endswith("/kernel/u"):
                out[key.split("/")[0]] = np.asarray(value)[0]
    return out


def load_library_state(model: TorchBiDVL, params, model_state) -> None:
    """Copy :func:`latentebm_jax.methods.bidvl.init`'s parameters, BatchNorm running averages and
    spectral-norm vectors into ``model``, so both frameworks start one step from the same state."""
    enc, gen, ebm = params["enc"], params["gen"], params["ebm"]
    with torch.no_grad():
        for i, conv in enumerate(_of(model.enc.trunk, nn.Conv2d)):
            conv.weight.copy_(conv_weight(enc[f"Conv_{i}"]["kernel"]))
        for head in ("mean", "log_var"):
            getattr(model.enc, head).weight.copy_(conv_weight(enc[head]["kernel"]))
            getattr(model.enc, head).bias.copy_(_tensor(enc[head]["bias"]))
        convts = _of(model.gen, nn.ConvTranspose2d)
        for i, conv in enumerate(convts[:-1]):
            conv.weight.copy_(conv_transpose_weight(gen[f"TorchConvTranspose_{i}"]["kernel"]))
        convts[-1].weight.copy_(conv_transpose_weight(gen["to_image"]["kernel"]))
        convts[-1].bias.copy_(_tensor(gen["to_image"]["bias"]))
        for net, name in ((model.enc, "enc"), (model.gen, "gen")):
            for i, bn in enumerate(_of(net, nn.BatchNorm2d)):
                layer, stats = params[name][f"BatchNorm_{i}"], model_state[name][f"BatchNorm_{i}"]
                bn.weight.copy_(_tensor(layer["scale"]))
                bn.bias.copy_(_tensor(layer["bias"]))
                bn.running_mean.copy_(_tensor(stats["mean"]))
                bn.running_var.copy_(_tensor(stats["var"]))
        u = _sn_vectors(model_state["ebm"])
        for name, conv in _ebm_layers(model):
            kernel = np.asarray(ebm[name]["kernel"])
            kernel = kernel[None, None] if kernel.ndim == 2 else kernel
            weight = conv.weight_orig if hasattr(conv, "weight_orig") else conv.weight
            weight.copy_(conv_weight(kernel))
            conv.bias.copy_(_tensor(ebm[name]["bias"]))
            if hasattr(conv, "weight_u"):
                conv.weight_u.copy_(_tensor(u[name]))


def library_layout(model: TorchBiDVL) -> tuple[dict, dict]:
    """``(params, model_state)`` of ``model`` in the library's layout (numpy), for comparison: the inverse
    of :func:`load_library_state`. BatchNorm ``var`` is PyTorch's running average (of unbiased variances);
    the energy's entry of ``model_state`` maps each layer name to its spectral-norm vector ``u``."""

    def kernel_of_conv(w: torch.Tensor) -> np.ndarray:
        return w.detach().numpy().transpose(2, 3, 1, 0)

    def kernel_of_convt(w: torch.Tensor) -> np.ndarray:
        return w.detach().numpy().transpose(2, 3, 0, 1)[::-1, ::-1]

    params: dict = {"enc": {}, "gen": {}, "ebm": {}}
    stats: dict = {"enc": {}, "gen": {}, "ebm": {}}
    for i, conv in enumerate(_of(model.enc.trunk, nn.Conv2d)):
        params["enc"][f"Conv_{i}"] = {"kernel": kernel_of_conv(conv.weight)}
    for head in ("mean", "log_var"):
        m = getattr(model.enc, head)
        params["enc"][head] = {"kernel": kernel_of_conv(m.weight), "bias": m.bias.detach().numpy()}
    convts = _of(model.gen, nn.ConvTranspose2d)
    for i, conv in enumerate(convts[:-1]):
        params["gen"][f"TorchConvTranspose_{i}"] = {"kernel": kernel_of_convt(conv.weight)}
    params["gen"]["to_image"] = {
        "kernel": kernel_of_convt(convts[-1].weight),
        "bias": convts[-1].bias.detach().numpy(),
    }
    for net, name in ((model.enc, "enc"), (model.gen, "gen")):
        for i, bn in enumerate(_of(net, nn.BatchNorm2d)):
            params[name][f"BatchNorm_{i}"] = {
                "scale": bn.weight.detach().numpy(),
                "bias": bn.bias.detach().numpy(),
            }
            stats[name][f"BatchNorm_{i}"] = {"mean": bn.running_mean.numpy(), "var": bn.running_var.numpy()}
    for name, conv in _ebm_layers(model):
        weight = conv.weight_orig if hasattr(conv, "weight_orig") else conv.weight
        kernel = kernel_of_conv(weight)
        kernel = kernel[0, 0] if name.startswith("Dense") else kernel
        params["ebm"][name] = {"kernel": kernel, "bias": conv.bias.detach().numpy()}
        if hasattr(conv, "weight_u"):
            stats["ebm"][name] = conv.weight_u.numpy()
    return params, stats
