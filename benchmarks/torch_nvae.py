"""A PyTorch eager NVAE train step: the reference the library's ``nvae`` step is timed against.

It is written the way NVlabs/NVAE's ``train.py`` runs one iteration (PyTorch eager, NCHW), for the
architecture an :class:`~latentebm_jax.backbones.nvae.NVAEConfig` describes, with the equations of
:mod:`latentebm_jax.methods.nvae` (Vahdat & Kautz 2020, Sec. 3 and App. A):

* the network (Sec. 3.1, Fig. 2 and 3): weight-normalised convolutions ``w · exp(log ‖w‖-scale) / (‖w‖ +
  1e-5)``, residual cells ``skip(s) + 0.1 · SE(ops(s))`` (``res_bnswish``, ``res_bnswish5``, ``res_bnelu``,
  ``res_elu`` and the decoder's inverted residual ``mconv_e{ex}k{k}g{g}``), factorised-reduce and
  bilinear-upsampling skips, encoder/decoder combiner cells, the bottom-up encoder and the top-down decoder
  from the learned ``prior_ftr0``; PyTorch's BatchNorm (momentum 0.05) in training mode;
* the latent groups (Eq. 2): soft-clamped Normals ``μ = 5 tanh(μ/5)``, ``σ = exp(5 tanh(log σ/5)) + 0.01``,
  residual posteriors ``N(μ_p + Δμ, exp(log σ_p + Δ log σ))``, reparameterised with a noise function
  (:attr:`TorchNVAE.randn`, ``torch.randn_like`` by default; ``torch.zeros_like`` gives the zero-noise step
  of the equivalence test); the analytic KL per group;
* the objective (App. A): ``mean(−log p(x|z) + β Σ_g γ_g KL_g) + λ (Σ_conv σ_max + Σ_BN max |γ|)`` with the
  KL warm-up ``β``, the KL balancing ``γ`` while ``β < 1`` (``α`` from NVAE's ``'square'`` rule), the
  spectral regulariser by persistent power iteration (``u, v`` per matrix shape, batched) and the BatchNorm
  regulariser; the Bernoulli decoder with NVAE's 2-pixel crop for MNIST-like data;
* the update: ``torch.optim.Adamax(lr, weight_decay, eps=1e-3)``, the learning rate warmed up linearly over
  ``warmup_epochs`` and then cosine-annealed per epoch (the library's closed form; see
  :func:`learning_rate`).

Not implemented (the benchmark's architecture has none of them): the inverse autoregressive flows
(``num_nf > 0``) and the logistic-mixture / Normal image decoders; :class:`TorchNVAE` refuses such
architectures. The parameters' names are NVAE's, so ``state_dict()`` is an NVAE state dict: the library's
converter (:func:`~latentebm_jax.backbones.nvae_convert.convert_state_dict`) moves weights from here to the
Flax model and :func:`load_flax_variables` moves them back. Only :mod:`benchmarks` imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentebm_jax.backbones.nvae import NVAEConfig
from latentebm_jax.backbones.nvae_convert import convert_array, flax_path

BN_EPS = 1e-5
BN_MOMENTUM = 0.05
CHANNEL_MULT = 2
CROPPED = ("mnist", "omniglot", "stacked_mnist")  # NVAE's crop_output datasets: scored on pixels [2, 30)


# ----------------------------------------------------------------------------- layers


class WNConv2d(nn.Conv2d):
    """NVAE's ``Conv2D``: a convolution whose kernel is weight-normalised per output channel
    (``log_weight_norm`` of shape (O, 1, 1, 1)); :attr:`effective_weight` keeps the kernel of the last call
    for the spectral regulariser."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        weight_norm: bool = True,
    ):
        super().__init__(cin, cout, kernel_size, stride, padding, dilation, groups, bias)
        self.log_weight_norm = None
        if weight_norm:
            norm = self.weight.detach().flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            self.log_weight_norm = nn.Parameter(torch.log(norm + 1e-2))

    def normalized_weight(self) -> torch.Tensor:
        if self.log_weight_norm is None:
            return self.weight
        norm = torch.sqrt(torch.sum(self.weight * self.weight, dim=[1, 2, 3])).view(-1, 1, 1, 1)
        return torch.exp(self.log_weight_norm) * self.weight / (norm + 1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.normalized_weight()
        self.__dict__["effective_weight"] = w  # not a registered parameter
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BNSwish(nn.BatchNorm2d):
    """BatchNorm followed by Swish (NVAE's ``SyncBatchNormSwish``)."""

    def __init__(self, c: int):
        super().__init__(c, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(super().forward(x))


class WrappedBN(nn.Module):
    """NVAE's ``SyncBatchNorm`` wrapper: the batch norm under the name ``bn``."""

    def __init__(self, c: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


def upsample_nearest(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class UpsampleBilinear(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class BNSwishConv(nn.Module):
    """``res_bnswish`` / ``res_bnswish5``: BN-Swish → [×2 nearest] → 3×3 conv (dilation 1 or 2)."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int = 1):
        super().__init__()
        self.upsample = stride == -1
        self.bn_act = BNSwish(cin)
        self.conv_0 = WNConv2d(cin, cout, 3, abs(stride), dilation, dilation, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_act(x)
        return self.conv_0(upsample_nearest(out) if self.upsample else out)


class BNELUConv(nn.Module):
    """``res_bnelu``: BN → ELU → [×2 nearest] → 3×3 conv."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.upsample = stride == -1
        self.bn = WrappedBN(cin)
        self.conv_0 = WNConv2d(cin, cout, 3, abs(stride), 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.elu(self.bn(x))
        return self.conv_0(upsample_nearest(out) if self.upsample else out)


class ELUConv(nn.Module):
    """``res_elu``: ELU → [×2 nearest] → 3×3 conv."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.upsample = stride == -1
        self.conv_0 = WNConv2d(cin, cout, 3, abs(stride), 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.elu(x)
        return self.conv_0(upsample_nearest(out) if self.upsample else out)


class ConvBNSwish(nn.Module):
    """A plain (not weight-normalised, bias-free) conv, then BN-Swish, as the ``conv`` Sequential."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, dilation: int = 1):
        super().__init__()
        pad = dilation * (k - 1) // 2
        self.conv = nn.Sequential(
            WNConv2d(cin, cout, k, stride, pad, dilation, groups, bias=False, weight_norm=False),
            BNSwish(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class NearestUp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_nearest(x)


class InvertedResidual(nn.Module):
    """``mconv_e{ex}k{k}g{g}`` (Fig. 3b): [×2 nearest] → BN → 1×1 ConvBNSwish (×ex) → k×k grouped
    ConvBNSwish → 1×1 conv → BN."""

    def __init__(self, cin: int, cout: int, stride: int, ex: int, k: int, g: int):
        super().__init__()
        hidden = cin * ex
        groups = hidden if g == 0 else g
        layers: list[nn.Module] = [NearestUp()] if stride == -1 else []
        layers += [
            WrappedBN(cin),
            ConvBNSwish(cin, hidden, 1),
            ConvBNSwish(hidden, hidden, k, abs(stride), groups),
            WNConv2d(hidden, cout, 1, bias=False, weight_norm=False),
            WrappedBN(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def make_op(primitive: str, cin: int, cout: int, stride: int) -> nn.Module:
    """One cell operation by NVAE's primitive name."""
    if primitive == "res_bnswish":
        return BNSwishConv(cin, cout, stride)
    if primitive == "res_bnswish5":
        return BNSwishConv(cin, cout, stride, dilation=2)
    if primitive == "res_bnelu":
        return BNELUConv(cin, cout, stride)
    if primitive == "res_elu":
        return ELUConv(cin, cout, stride)
    if primitive.startswith("mconv_e"):
        ex, rest = primitive[len("mconv_e") :].split("k")
        k, g = rest.split("g")
        return InvertedResidual(cin, cout, stride, int(ex), int(k), int(g))
    raise ValueError(f"unknown NVAE cell operation {primitive!r}")


class SE(nn.Module):
    """Squeeze-and-excitation, hidden width ``max(C/16, 4)``."""

    def __init__(self, c: int):
        super().__init__()
        h = max(c // 16, 4)
        self.se = nn.Sequential(nn.Linear(c, h), nn.ReLU(), nn.Linear(h, c), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x.mean(dim=[2, 3]))[:, :, None, None]


class FactorizedReduce(nn.Module):
    """The stride-2 skip: Swish, then four 1×1 stride-2 convs of the input shifted by (0, 0), (1, 1),
    (0, 1), (1, 0), concatenated."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        q = cout // 4
        self.conv_1 = WNConv2d(cin, q, 1, 2, bias=True)
        self.conv_2 = WNConv2d(cin, q, 1, 2, bias=True)
        self.conv_3 = WNConv2d(cin, q, 1, 2, bias=True)
        self.conv_4 = WNConv2d(cin, cout - 3 * q, 1, 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.silu(x)
        parts = [
            self.conv_1(out),
            self.conv_2(out[:, :, 1:, 1:]),
            self.conv_3(out[:, :, :, 1:]),
            self.conv_4(out[:, :, 1:, :]),
        ]
        return torch.cat(parts, dim=1)


def stride_of(cell_type: str) -> int:
    return 2 if cell_type.startswith("down") else -1 if cell_type.startswith("up") else 1


class Cell(nn.Module):
    """A residual cell ``skip(s) + 0.1 · SE(ops(s))``."""

    def __init__(self, cin: int, cout: int, cell_type: str, arch: tuple[str, ...], use_se: bool):
        super().__init__()
        self.cell_type = cell_type
        stride = stride_of(cell_type)
        if stride == 1:
            self.skip: nn.Module = nn.Identity()
        elif stride == 2:
            self.skip = FactorizedReduce(cin, CHANNEL_MULT * cin)
        else:
            self.skip = nn.Sequential(UpsampleBilinear(), WNConv2d(cin, cin // CHANNEL_MULT, 1))
        self._ops = nn.ModuleList(
            make_op(p, cin if i == 0 else cout, cout, stride if i == 0 else 1) for i, p in enumerate(arch)
        )
        self.se = SE(cout) if use_se else None

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        skip = self.skip(s)
        for op in self._ops:
            s = op(s)
        if self.se is not None:
            s = self.se(s)
        return skip + 0.1 * s


class EncCombinerCell(nn.Module):
    """``x1 + conv1×1(x2)``."""

    cell_type = "combiner_enc"

    def __init__(self, cin2: int, cout: int):
        super().__init__()
        self.conv = WNConv2d(cin2, cout, 1, bias=True)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return x1 + self.conv(x2)


class DecCombinerCell(nn.Module):
    """``conv1×1([x1, x2])``."""

    cell_type = "combiner_dec"

    def __init__(self, cin1: int, cin2: int, cout: int):
        super().__init__()
        self.conv = WNConv2d(cin1 + cin2, cout, 1, bias=True)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x1, x2], dim=1))


# ----------------------------------------------------------------------------- distributions


def soft_clamp5(x: torch.Tensor) -> torch.Tensor:
    return 5.0 * torch.tanh(x / 5.0)


def clamped_normal(mu: torch.Tensor, log_sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NVAE's ``Normal``: ``(5 tanh(μ/5), exp(5 tanh(log σ/5)) + 0.01)``."""
    return soft_clamp5(mu), torch.exp(soft_clamp5(log_sigma)) + 1e-2


def normal_kl(q: tuple[torch.Tensor, torch.Tensor], p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``KL(q ‖ p)`` per element of two diagonal Normals ``(μ, σ)``."""
    t1 = (q[0] - p[0]) / p[1]
    t2 = q[1] / p[1]
    return 0.5 * (t1 * t1 + t2 * t2) - 0.5 - torch.log(t2)


# ----------------------------------------------------------------------------- the network


class TorchNVAE(nn.Module):
    """NVAE's ``AutoEncoder`` for ``config`` (no flows), parameter names as NVAE's."""

    def __init__(self, config: NVAEConfig):
        super().__init__()
        c = config
        if c.num_nf > 0:
            raise NotImplementedError("the PyTorch NVAE reference has no flows: use num_nf = 0")
        if c.dataset not in ("mnist", "omniglot"):
            raise NotImplementedError("the PyTorch NVAE reference implements the Bernoulli decoder only")
        self.config = c
        self.randn: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like  # the posterior's noise
        arch, ce, cd = c.arch, c.num_channels_enc, c.num_channels_dec
        gps, scales = c.groups_per_scale, c.num_latent_scales
        c_scaling = CHANNEL_MULT ** (c.num_preprocess_blocks + scales - 1)
        top = c.group_shapes[0]
        self.prior_ftr0 = nn.Parameter(torch.rand(int(c_scaling * cd), top[0], top[1]))
        self.stem = WNConv2d(c.channels, ce, 3, padding=1, bias=True)
        mult = 1
        pre = []
        for _ in range(c.num_preprocess_blocks):
            for i in range(c.num_preprocess_cells):
                cin = int(ce * mult)
                if i == c.num_preprocess_cells - 1:
                    pre.append(Cell(cin, CHANNEL_MULT * cin, "down_pre", arch["down_pre"], c.use_se))
                    mult *= CHANNEL_MULT
                else:
                    pre.append(Cell(cin, cin, "normal_pre", arch["normal_pre"], c.use_se))
        self.pre_process = nn.ModuleList(pre)
        enc: list[nn.Module] = []
        for s in range(scales):
            for g in range(gps[s]):
                cin = int(ce * mult)
                enc += [
                    Cell(cin, cin, "normal_enc", arch["normal_enc"], c.use_se)
                    for _ in range(c.num_cell_per_cond_enc)
                ]
                if not (s == scales - 1 and g == gps[s] - 1):
                    enc.append(EncCombinerCell(int(cd * mult), cin))
            if s < scales - 1:
                cin = int(ce * mult)
                enc.append(Cell(cin, CHANNEL_MULT * cin, "down_enc", arch["down_enc"], c.use_se))
                mult *= CHANNEL_MULT
        self.enc_tower = nn.ModuleList(enc)
        cm = int(ce * mult)
        self.enc0 = nn.Sequential(nn.ELU(), WNConv2d(cm, cm, 1, bias=True), nn.ELU())
        enc_sampler, dec_sampler = [], []
        m = mult
        for s in range(scales):
            for g in range(gps[scales - s - 1]):
                enc_sampler.append(WNConv2d(int(ce * m), 2 * c.num_latent_per_group, 3, padding=1, bias=True))
                if not (s == 0 and g == 0):
                    conv = WNConv2d(int(cd * m), 2 * c.num_latent_per_group, 1, bias=True)
                    dec_sampler.append(nn.Sequential(nn.ELU(), conv))
            m /= CHANNEL_MULT
        self.enc_sampler = nn.ModuleList(enc_sampler)
        self.dec_sampler = nn.ModuleList(dec_sampler)
        dec: list[nn.Module] = []
        for s in range(scales):
            for g in range(gps[scales - s - 1]):
                cn = int(cd * mult)
                if not (s == 0 and g == 0):
                    dec += [
                        Cell(cn, cn, "normal_dec", arch["normal_dec"], c.use_se)
                        for _ in range(c.num_cell_per_cond_dec)
                    ]
                dec.append(DecCombinerCell(cn, c.num_latent_per_group, cn))
            if s < scales - 1:
                cn = int(cd * mult)
                dec.append(Cell(cn, int(cn / CHANNEL_MULT), "up_dec", arch["up_dec"], c.use_se))
                mult /= CHANNEL_MULT
        self.dec_tower = nn.ModuleList(dec)
        post = []
        for _ in range(c.num_postprocess_blocks):
            for i in range(c.num_postprocess_cells):
                cn = int(cd * mult)
                if i == 0:
                    post.append(Cell(cn, int(cn / CHANNEL_MULT), "up_post", arch["up_post"], c.use_se))
                    mult /= CHANNEL_MULT
                else:
                    post.append(Cell(cn, cn, "normal_post", arch["normal_post"], c.use_se))
        self.post_process = nn.ModuleList(post)
        cn = int(cd * mult)
        self.image_conditional = nn.Sequential(
            nn.ELU(), WNConv2d(cn, c.output_channels, 3, padding=1, bias=True)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """NVAE's training forward pass on ``x`` in [0, 1] (NCHW): the decoder's logits and the per-example
        KL of every group (top first). The posterior draws ``z = μ + σ · self.randn(μ)``."""
        s = self.stem(2.0 * x - 1.0)
        for cell in self.pre_process:
            s = cell(s)
        combiners, feats = [], []
        for cell in self.enc_tower:
            if isinstance(cell, EncCombinerCell):
                combiners.append(cell)
                feats.append(s)
            else:
                s = cell(s)
        combiners.reverse()
        feats.reverse()
        ftr = self.enc0(s)
        q = clamped_normal(*torch.chunk(self.enc_sampler[0](ftr), 2, dim=1))
        z = q[0] + q[1] * self.randn(q[0])
        zeros = torch.zeros_like(z)
        kls = [normal_kl(q, clamped_normal(zeros, zeros))]
        s = self.prior_ftr0.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
        i = 0
        for cell in self.dec_tower:
            if not isinstance(cell, DecCombinerCell):
                s = cell(s)
                continue
            if i > 0:
                mu_p, log_sig_p = torch.chunk(self.dec_sampler[i - 1](s), 2, dim=1)
                ftr = combiners[i - 1](feats[i - 1], s)
                mu_q, log_sig_q = torch.chunk(self.enc_sampler[i](ftr), 2, dim=1)
                if self.config.res_dist:
                    q = clamped_normal(mu_p + mu_q, log_sig_p + log_sig_q)
                else:
                    q = clamped_normal(mu_q, log_sig_q)
                z = q[0] + q[1] * self.randn(q[0])
                kls.append(normal_kl(q, clamped_normal(mu_p, log_sig_p)))
            s = cell(s, z)
            i += 1
        for cell in self.post_process:
            s = cell(s)
        return self.image_conditional(s), [k.sum(dim=[1, 2, 3]) for k in kls]

    def conv_layers(self) -> list[tuple[tuple[str, ...], WNConv2d]]:
        """Every convolution with its Flax module path, sorted by that path (the library's order)."""
        found = [
            (flax_path(f"{n}.weight")[:-1], m) for n, m in self.named_modules() if isinstance(m, WNConv2d)
        ]
        return sorted(found, key=lambda item: item[0])

    def batchnorms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]


# ----------------------------------------------------------------------------- weights in and out


def _to_torch_layout(name: str, leaf: str, value: np.ndarray, shape: torch.Size) -> np.ndarray:
    """The inverse of the library converter's layout change for one array."""
    if name == "prior_ftr0":
        return np.transpose(value, (2, 0, 1))
    if leaf == "weight" and len(shape) == 4:
        return np.transpose(value, (3, 2, 0, 1))
    if leaf == "weight" and len(shape) == 2:
        return value.T
    return value.reshape(tuple(shape))


def load_flax_variables(model: TorchNVAE, variables: Mapping[str, Any]) -> None:
    """Copy the Flax ``{"params", "batch_stats"}`` of the library's NVAE into ``model`` (the inverse of
    :func:`~latentebm_jax.backbones.nvae_convert.convert_state_dict`, whose name mapping it reuses)."""
    state = model.state_dict()
    names = set(state)
    with torch.no_grad():
        for name, tensor in state.items():
            found = convert_array(name, tensor.detach().cpu().numpy(), names)
            if found is None:
                continue
            col, path, _ = found
            value = variables[col]
            for key in path:
                value = value[key]
            leaf = name.rsplit(".", 1)[-1]
            is_bn = f"{name.rsplit('.', 1)[0]}.running_mean" in names
            array = np.asarray(value, np.float32)
            new = array if is_bn else _to_torch_layout(name, leaf, array, tensor.shape)
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(new)).reshape(tensor.shape))


# ----------------------------------------------------------------------------- the objective and the step


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """NVAE's optimiser and objective arguments (``train.py`` names); the benchmark fills them from the
    config's ``nvae`` group."""

    steps_per_epoch: int
    num_epochs: int
    num_total_iter: int
    learning_rate: float = 1e-2
    learning_rate_min: float = 1e-4
    weight_decay: float = 3e-4
    warmup_epochs: int = 5
    kl_anneal_portion: float = 0.3
    kl_const_portion: float = 1e-4
    kl_const_coeff: float = 1e-4
    weight_decay_norm: float = 0.0
    weight_decay_norm_init: float = 10.0
    weight_decay_norm_anneal: bool = False
    num_power_iter: int = 4


def kl_balancer_alpha(groups_per_scale: tuple[int, ...]) -> torch.Tensor:
    """NVAE's ``α_g`` (``'square'``), top group first: ``4^i / n_i`` for scale ``i`` from the top, divided by
    its minimum."""
    n = len(groups_per_scale)
    out = []
    for i in range(n):
        groups = groups_per_scale[n - 1 - i]
        out += [4.0**i / groups] * groups
    a = torch.tensor(out, dtype=torch.float64)
    return (a / a.min()).float()


def kl_coeff(step: int, s: StepSettings) -> float:
    """The KL warm-up ``β = max(min((step − const) / anneal, 1), kl_const_coeff)`` (App. A)."""
    anneal, const = s.kl_anneal_portion * s.num_total_iter, s.kl_const_portion * s.num_total_iter
    return max(min((step - const) / anneal, 1.0), s.kl_const_coeff)


def learning_rate(step: int, s: StepSettings) -> float:
    """``lr · step / warmup_iters`` during the warm-up, then ``CosineAnnealingLR(T_max = epochs − warmup −
    1)`` stepped once per epoch after the warm-up epochs, in closed form (the library's ``adamax_schedule``).
    NVAE's ``train.py`` leaves the last warm-up value ``lr · (1 − 1/warmup_iters)`` in place, and PyTorch's
    recursive cosine continues from it: the same curve with that value in place of ``lr``."""
    warmup_iters = s.warmup_epochs * s.steps_per_epoch
    if step < warmup_iters:
        return s.learning_rate * step / warmup_iters
    t_max = max(s.num_epochs - s.warmup_epochs - 1, 1)
    n = max(step // s.steps_per_epoch - s.warmup_epochs, 0)
    return s.learning_rate_min + (s.learning_rate - s.learning_rate_min) * 0.5 * (
        1 + math.cos(math.pi * n / t_max)
    )


class TorchNVAEStep:
    """The network, Adamax, the persistent power-iteration vectors and one eager train step (:meth:`step`)."""

    def __init__(self, config: NVAEConfig, s: StepSettings, seed: int = 0):
        torch.manual_seed(seed)
        self.config, self.s = config, s
        self.net = TorchNVAE(config)
        self.opt = torch.optim.Adamax(
            self.net.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay, eps=1e-3
        )
        self.alpha = kl_balancer_alpha(config.groups_per_scale)
        self.sr_u: dict[str, torch.Tensor] = {}
        self.sr_v: dict[str, torch.Tensor] = {}
        self.global_step = 0

    # ------------------------------------------------------------------ spectral regulariser

    def _weight_groups(self) -> dict[str, torch.Tensor]:
        """The effective kernels of the last forward pass as ``(out, in/groups · kh · kw)`` matrices, stacked
        per matrix shape ``"rowsxcols"`` in the library's order."""
        groups: dict[str, list[torch.Tensor]] = {}
        for _, conv in self.net.conv_layers():
            w = conv.effective_weight
            w = w.reshape(w.shape[0], -1)
            groups.setdefault(f"{w.shape[0]}x{w.shape[1]}", []).append(w)
        return {k: torch.stack(v) for k, v in groups.items()}

    @staticmethod
    def _power_iteration(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor, n: int):
        for _ in range(n):
            v = F.normalize(torch.bmm(u.unsqueeze(1), w).squeeze(1), dim=1, eps=1e-3)
            u = F.normalize(torch.bmm(w, v.unsqueeze(2)).squeeze(2), dim=1, eps=1e-3)
        return u, v

    def spectral_loss(self) -> torch.Tensor:
        """``Σ uᵀ W v`` after ``num_power_iter`` power iterations (NVAE's ``spectral_norm_parallel``); a shape
        seen for the first time starts from normalised Gaussian vectors and 10× the iterations, as NVAE's
        first call (then, as the library's initial state, the step's own iterations follow)."""
        loss = torch.zeros(())
        for key, w in self._weight_groups().items():
            with torch.no_grad():
                wd = w.detach()
                if key not in self.sr_u:
                    n, rows, cols = wd.shape
                    u0 = F.normalize(torch.randn(n, rows), dim=1, eps=1e-3)
                    v0 = F.normalize(torch.randn(n, cols), dim=1, eps=1e-3)
                    self.sr_u[key], self.sr_v[key] = self._power_iteration(
                        wd, u0, v0, 10 * self.s.num_power_iter
                    )
                self.sr_u[key], self.sr_v[key] = self._power_iteration(
                    wd, self.sr_u[key], self.sr_v[key], self.s.num_power_iter
                )
            u, v = self.sr_u[key], self.sr_v[key]
            loss = loss + torch.bmm(u.unsqueeze(1), torch.bmm(w, v.unsqueeze(2))).sum()
        return loss

    def spectral_state(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The power-iteration vectors in the library's layout (``{"rowsxcols": (u, v)}``)."""
        return {k: (self.sr_u[k].numpy().copy(), self.sr_v[k].numpy().copy()) for k in self.sr_u}

    def load_spectral_state(self, state: Mapping[str, tuple[Any, Any]]) -> None:
        self.sr_u = {k: torch.from_numpy(np.array(u, np.float32)) for k, (u, _) in state.items()}
        self.sr_v = {k: torch.from_numpy(np.array(v, np.float32)) for k, (_, v) in state.items()}

    def init_spectral_state(self, x: torch.Tensor) -> None:
        """Start the power-iteration vectors from the current weights (a no-gradient forward pass collects the
        kernels; BatchNorm statistics are restored afterwards)."""
        stats = {k: v.clone() for k, v in self.net.state_dict().items() if "running" in k or "tracked" in k}
        with torch.no_grad():
            self.net(x)
            for key, w in self._weight_groups().items():
                n, rows, cols = w.shape
                u0 = F.normalize(torch.randn(n, rows), dim=1, eps=1e-3)
                v0 = F.normalize(torch.randn(n, cols), dim=1, eps=1e-3)
                self.sr_u[key], self.sr_v[key] = self._power_iteration(w, u0, v0, 10 * self.s.num_power_iter)
        self.net.load_state_dict(stats, strict=False)

    # ------------------------------------------------------------------ the objective

    def objective(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """NVAE's training loss at ``step`` (``train.py``'s ``train``, without autocast)."""
        s = self.s
        logits, kl_list = self.net(x)
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")  # Bernoulli(logits)
        if self.config.dataset in CROPPED:
            log_px = log_px[:, :, 2:30, 2:30]
        recon = -log_px.sum(dim=[1, 2, 3])
        kl_all = torch.stack(kl_list, dim=1)
        beta = kl_coeff(step, s)
        if beta < 1.0:  # KL balancing (App. A)
            gamma = kl_all.abs().mean(dim=0, keepdim=True) + 0.01
            gamma = gamma / self.alpha.unsqueeze(0) * gamma.sum()
            gamma = (gamma / gamma.mean(dim=1, keepdim=True)).detach()
            balanced = beta * (kl_all * gamma).sum(dim=1)
        else:
            balanced = beta * kl_all.sum(dim=1)
        spectral = self.spectral_loss()
        bn = sum(torch.max(torch.abs(m.weight)) for m in self.net.batchnorms())
        if s.weight_decay_norm_anneal:
            lam = math.exp(
                (1 - beta) * math.log(s.weight_decay_norm_init) + beta * math.log(s.weight_decay_norm)
            )
        else:
            lam = s.weight_decay_norm
        loss = torch.mean(recon + balanced) + spectral * lam + bn * lam
        kl = kl_all.sum(dim=1)
        out = {"loss": loss, "recon": recon.mean(), "kl": kl.mean(), "nelbo": (recon + kl).mean()}
        return {**out, "spectral": spectral, "bn": bn}

    def step(self, x: torch.Tensor) -> dict[str, float]:
        """One NVAE iteration on ``x`` in [0, 1] (NCHW): learning rate, forward, loss, backward, Adamax."""
        lr = learning_rate(self.global_step, self.s)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        out = self.objective(x, self.global_step)
        out["loss"].backward()
        self.opt.step()
        self.global_step += 1
        return {k: v.item() for k, v in out.items()}
