"""NVAE (Vahdat & Kautz, NeurIPS 2020) in Flax: the hierarchical VAE whose pretrained, frozen checkpoints are
the backbone of the diffusion EBM prior (Cui & Han, ICML 2024, Sec. 4). Built from the argument namespace
an NVlabs/NVAE checkpoint stores (:class:`NVAEConfig`), with parameter names that mirror NVIDIA's
(``backbones/nvae_convert.py`` loads their weights).

The model (NVAE Sec. 3, Fig. 2):

* a bottom-up encoder: ``stem`` (3×3 conv of ``2x − 1``), ``pre_process`` cells, then the encoder tower
  with a residual cell stack per latent group and ``EncCombinerCell`` s that remember each group's feature;
* a top-down decoder from the learned ``prior_ftr0``: per group, the prior ``p(z_l | z_{<l})`` from the
  decoder state (``dec_sampler``; the top group's prior is N(0, 1) before NVAE's clamp, so σ = 1.01), the
  posterior ``q(z_l | x, z_{<l})`` from the combined encoder feature (``enc_sampler``; residual:
  ``N(μ_p + Δμ, exp(log σ_p + Δ log σ))``, Eq. 2), optional inverse autoregressive flows on the posterior
  sample, and a ``DecCombinerCell`` that joins ``z_l`` to the state; up-sampling cells between scales;
* ``post_process`` cells and ``image_conditional`` (ELU, 3×3 conv) giving the decoder's logits:
  Bernoulli (MNIST), discretised mixture of logistics or a discretised Normal (``nvae_distributions.py``).

Groups are numbered top (coarsest) first, as in NVAE and the ICML 2024 code; every latent is NHWC
``(B, H_s, W_s, num_latent_per_group)``. Randomness enters only as the standard-normal ``eps`` a caller
passes (one array per group), so a draw is a pure function of its noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from latentebm_jax.backbones.nvae_distributions import Normal
from latentebm_jax.backbones.nvae_ops import (
    CHANNEL_MULT,
    Cell,
    Conv2D,
    DecCombinerCell,
    EncCombinerCell,
    PairedCellAR,
)

# NVlabs/NVAE utils.get_arch_cells: the operations of each kind of cell.
_RES = ("res_bnswish", "res_bnswish")
ARCH_CELLS: dict[str, dict[str, tuple[str, ...]]] = {
    "res_elu": dict.fromkeys(
        (
            "normal_enc",
            "down_enc",
            "normal_dec",
            "up_dec",
            "normal_pre",
            "down_pre",
            "normal_post",
            "up_post",
        ),
        ("res_elu", "res_elu"),
    ),
    "res_bnelu": dict.fromkeys(
        (
            "normal_enc",
            "down_enc",
            "normal_dec",
            "up_dec",
            "normal_pre",
            "down_pre",
            "normal_post",
            "up_post",
        ),
        ("res_bnelu", "res_bnelu"),
    ),
    "res_bnswish": dict.fromkeys(
        (
            "normal_enc",
            "down_enc",
            "normal_dec",
            "up_dec",
            "normal_pre",
            "down_pre",
            "normal_post",
            "up_post",
        ),
        _RES,
    ),
    "mbconv_sep": {
        **dict.fromkeys(("normal_enc", "down_enc", "normal_dec", "up_dec"), ("mconv_e6k5g0",)),
        **dict.fromkeys(("normal_pre", "down_pre", "normal_post", "up_post"), ("mconv_e3k5g0",)),
    },
    "mbconv_sep11": {
        **dict.fromkeys(("normal_enc", "down_enc", "normal_dec", "up_dec"), ("mconv_e6k11g0",)),
        **dict.fromkeys(("normal_pre", "down_pre", "normal_post", "up_post"), ("mconv_e3k5g0",)),
    },
    "res_mbconv": {
        **dict.fromkeys(("normal_enc", "down_enc", "normal_pre", "down_pre"), _RES),
        **dict.fromkeys(("normal_dec", "up_dec"), ("mconv_e6k5g0",)),
        **dict.fromkeys(("normal_post", "up_post"), ("mconv_e3k5g0",)),
    },
    "res53_mbconv": {
        **dict.fromkeys(
            ("normal_enc", "down_enc", "normal_pre", "down_pre"), ("res_bnswish5", "res_bnswish")
        ),
        **dict.fromkeys(("normal_dec", "up_dec"), ("mconv_e6k5g0",)),
        **dict.fromkeys(("normal_post", "up_post"), ("mconv_e3k5g0",)),
    },
    "res35_mbconv": {
        **dict.fromkeys(
            ("normal_enc", "down_enc", "normal_pre", "down_pre"), ("res_bnswish", "res_bnswish5")
        ),
        **dict.fromkeys(("normal_dec", "up_dec"), ("mconv_e6k5g0",)),
        **dict.fromkeys(("normal_post", "up_post"), ("mconv_e3k5g0",)),
    },
    "res55_mbconv": {
        **dict.fromkeys(
            ("normal_enc", "down_enc", "normal_pre", "down_pre"), ("res_bnswish5", "res_bnswish5")
        ),
        **dict.fromkeys(("normal_dec", "up_dec"), ("mconv_e6k5g0",)),
        **dict.fromkeys(("normal_post", "up_post"), ("mconv_e3k5g0",)),
    },
    "mbconv_res": {
        **dict.fromkeys(("normal_enc", "down_enc"), ("mconv_e6k5g0",)),
        **dict.fromkeys(("normal_pre", "down_pre"), ("mconv_e3k5g0",)),
        **dict.fromkeys(("normal_dec", "up_dec", "normal_post", "up_post"), _RES),
    },
    "mbconv_den": {
        **dict.fromkeys(("normal_enc", "down_enc", "normal_dec", "up_dec"), ("mconv_e6k5g0",)),
        **dict.fromkeys(("normal_pre", "down_pre", "normal_post", "up_post"), ("mconv_e3k5g8",)),
    },
}
GREY_DATASETS = ("mnist", "omniglot")


def input_size(dataset: str) -> int:
    """NVAE's ``get_input_size``: MNIST/Omniglot are padded to 32; ``celeba_256`` etc. carry their size."""
    if dataset in (*GREY_DATASETS, "cifar10", "stacked_mnist"):
        return 32
    if dataset.startswith(("celeba", "imagenet", "lsun")):
        return int(dataset.split("_")[-1])
    if dataset == "ffhq":
        return 256
    raise ValueError(f"NVAE has no input size for dataset {dataset!r}")


@dataclasses.dataclass(frozen=True)
class NVAEConfig:
    """The architecture arguments of an NVAE (NVlabs/NVAE ``train.py``'s argument names and defaults)."""

    dataset: str = "cifar10"
    arch_instance: str = "res_mbconv"
    num_channels_enc: int = 32
    num_channels_dec: int = 32
    num_preprocess_blocks: int = 2
    num_preprocess_cells: int = 3
    num_postprocess_blocks: int = 2
    num_postprocess_cells: int = 3
    num_latent_scales: int = 1
    num_groups_per_scale: int = 10
    num_latent_per_group: int = 20
    num_cell_per_cond_enc: int = 1
    num_cell_per_cond_dec: int = 1
    ada_groups: bool = False
    min_groups_per_scale: int = 1
    use_se: bool = False
    res_dist: bool = False
    num_nf: int = 0
    num_mixture_dec: int = 10
    num_x_bits: int = 8

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> NVAEConfig:
        """The fields of ``args`` (a checkpoint's ``vars(args)``) this architecture reads; others ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names if n not in args)
        values = {k: v for k, v in args.items() if k in names}
        if missing and "num_channels_enc" not in args:
            raise ValueError(f"not an NVAE argument namespace: missing {missing}")
        return cls(**values)

    def __post_init__(self):
        if self.arch_instance not in ARCH_CELLS:
            raise ValueError(f"unknown arch_instance {self.arch_instance!r}; known: {sorted(ARCH_CELLS)}")

    @property
    def arch(self) -> dict[str, tuple[str, ...]]:
        return ARCH_CELLS[self.arch_instance]

    @property
    def image_size(self) -> int:
        return input_size(self.dataset)

    @property
    def channels(self) -> int:
        return 1 if self.dataset in GREY_DATASETS else 3

    @property
    def groups_per_scale(self) -> tuple[int, ...]:
        """NVAE's ``groups_per_scale`` (halved per scale with ``ada_groups``), bottom (finest) scale first."""
        out, n = [], self.num_groups_per_scale
        for _ in range(self.num_latent_scales):
            out.append(n)
            if self.ada_groups:
                n = max(self.min_groups_per_scale, n // 2)
        return tuple(out)

    @property
    def group_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """``(H, W, C)`` of every latent group, top (coarsest) first."""
        base = self.image_size // 2 ** (self.num_preprocess_blocks + self.num_latent_scales - 1)
        shapes = []
        for s in range(self.num_latent_scales):
            side = base * 2**s
            groups = self.groups_per_scale[self.num_latent_scales - s - 1]
            shapes += [(side, side, self.num_latent_per_group)] * groups
        return tuple(shapes)

    @property
    def output_channels(self) -> int:
        if self.dataset in GREY_DATASETS:
            return 1
        return 2 * 3 if self.num_mixture_dec == 1 else 10 * self.num_mixture_dec


Select = Callable[[int, Normal, Normal | None, Any], jax.Array]


class NVAE(nn.Module):
    """The NVAE network; see the module docstring. Methods (call with ``nn.apply`` / ``Module.apply``):

    * ``__call__(x, eps, train)``: the training forward pass (posterior sample from ``eps``), the official
      ``AutoEncoder.forward``;
    * ``sample(eps, temperature, train)``: ancestral sampling from the prior (``AutoEncoder.sample``);
    * ``decode_latents(z, train)``: the top-down pass along given latents: the logits and every group's
      prior (what the ε ↔ z maps of the diffusion prior need).
    """

    config: NVAEConfig

    def setup(self):
        c = self.config
        arch, mult = c.arch, 1
        self.stem = Conv2D(c.num_channels_enc, 3, padding=1, use_bias=True, name="stem")
        pre = []
        for _ in range(c.num_preprocess_blocks):
            for cell in range(c.num_preprocess_cells):
                if cell == c.num_preprocess_cells - 1:
                    cout = CHANNEL_MULT * int(c.num_channels_enc * mult)
                    pre.append(("down_pre", cout))
                    mult *= CHANNEL_MULT
                else:
                    pre.append(("normal_pre", int(c.num_channels_enc * mult)))
        self.pre_process = [
            Cell(cout, kind, arch[kind], c.use_se, name=f"pre_process_{i}")
            for i, (kind, cout) in enumerate(pre)
        ]
        enc: list[tuple[str, int]] = []
        gps = c.groups_per_scale
        for s in range(c.num_latent_scales):
            for g in range(gps[s]):
                enc += [("normal_enc", int(c.num_channels_enc * mult))] * c.num_cell_per_cond_enc
                if not (s == c.num_latent_scales - 1 and g == gps[s] - 1):
                    enc.append(("combiner_enc", int(c.num_channels_enc * mult)))
            if s < c.num_latent_scales - 1:
                enc.append(("down_enc", CHANNEL_MULT * int(c.num_channels_enc * mult)))
                mult *= CHANNEL_MULT
        self.enc_kinds = tuple(kind for kind, _ in enc)
        self.enc_tower = [
            EncCombinerCell(cout, name=f"enc_tower_{i}")
            if kind == "combiner_enc"
            else Cell(cout, kind, arch[kind], c.use_se, name=f"enc_tower_{i}")
            for i, (kind, cout) in enumerate(enc)
        ]
        self.enc0_1 = Conv2D(int(c.num_channels_enc * mult), 1, use_bias=True, name="enc0_1")
        enc_sampler, nf_cells, dec_sampler = [], [], []
        m = mult
        for s in range(c.num_latent_scales):
            for g in range(gps[c.num_latent_scales - s - 1]):
                enc_sampler.append(
                    Conv2D(
                        2 * c.num_latent_per_group,
                        3,
                        padding=1,
                        use_bias=True,
                        name=f"enc_sampler_{len(enc_sampler)}",
                    )
                )
                for _ in range(c.num_nf):
                    nf_cells.append(PairedCellAR(c.num_latent_per_group, name=f"nf_cells_{len(nf_cells)}"))
                if not (s == 0 and g == 0):
                    dec_sampler.append(
                        Conv2D(
                            2 * c.num_latent_per_group,
                            1,
                            use_bias=True,
                            name=f"dec_sampler_{len(dec_sampler)}_1",
                        )
                    )
            m /= CHANNEL_MULT
        self.enc_sampler, self.nf_cells, self.dec_sampler = enc_sampler, nf_cells, dec_sampler
        dec: list[tuple[str, int]] = []
        for s in range(c.num_latent_scales):
            for g in range(gps[c.num_latent_scales - s - 1]):
                cdec = int(c.num_channels_dec * mult)
                if not (s == 0 and g == 0):
                    dec += [("normal_dec", cdec)] * c.num_cell_per_cond_dec
                dec.append(("combiner_dec", cdec))
            if s < c.num_latent_scales - 1:
                dec.append(("up_dec", int(int(c.num_channels_dec * mult) / CHANNEL_MULT)))
                mult /= CHANNEL_MULT
        self.dec_kinds = tuple(kind for kind, _ in dec)
        self.dec_tower = [
            DecCombinerCell(cout, name=f"dec_tower_{i}")
            if kind == "combiner_dec"
            else Cell(cout, kind, arch[kind], c.use_se, name=f"dec_tower_{i}")
            for i, (kind, cout) in enumerate(dec)
        ]
        post = []
        for _ in range(c.num_postprocess_blocks):
            for cell in range(c.num_postprocess_cells):
                if cell == 0:
                    post.append(("up_post", int(int(c.num_channels_dec * mult) / CHANNEL_MULT)))
                    mult /= CHANNEL_MULT
                else:
                    post.append(("normal_post", int(c.num_channels_dec * mult)))
        self.post_process = [
            Cell(cout, kind, arch[kind], c.use_se, name=f"post_process_{i}")
            for i, (kind, cout) in enumerate(post)
        ]
        self.image_conditional_1 = Conv2D(
            c.output_channels, 3, padding=1, use_bias=True, name="image_conditional_1"
        )
        top = c.group_shapes[0]
        c_scaling = CHANNEL_MULT ** (c.num_preprocess_blocks + c.num_latent_scales - 1)
        self.prior_ftr0 = self.param(
            "prior_ftr0", nn.initializers.uniform(1.0), (top[0], top[1], int(c_scaling * c.num_channels_dec))
        )
        if c.num_latent_scales == 1 and c.num_groups_per_scale == 1:
            raise ValueError("a vanilla VAE (one scale, one group) is not supported")

    # ------------------------------------------------------------------ passes

    def encode(self, x: jax.Array, train: bool) -> tuple[jax.Array, list[EncCombinerCell], list[jax.Array]]:
        """The bottom-up pass: the top feature after ``enc0`` and, top group first, the encoder combiners with
        the features they combine (``x`` in [0, 1], NHWC)."""
        s = self.stem(2.0 * x - 1.0)
        for cell in self.pre_process:
            s = cell(s, train)
        combiners, feats = [], []
        for kind, cell in zip(self.enc_kinds, self.enc_tower):
            if kind == "combiner_enc":
                combiners.append(cell)
                feats.append(s)
            else:
                s = cell(s, train)
        ftr = jax.nn.elu(self.enc0_1(jax.nn.elu(s)))
        return ftr, combiners[::-1], feats[::-1]

    def _top_down(self, batch: int, select: Select, train: bool, enc=None, image: bool = True):
        """The decoder path: ``select(i, prior_i, posterior_i or None, ftr_i)`` returns group ``i``'s latent;
        ``enc``: the encoder's ``(ftr, combiners, feats)`` for the posterior. Returns the logits (``None``
        with ``image=False``: the post-processing cells are skipped) and, per group, the prior and the
        posterior (``None`` without ``enc``)."""
        c = self.config
        top = c.group_shapes[0]
        priors, posts = [], []
        s = jnp.broadcast_to(self.prior_ftr0[None], (batch, *self.prior_ftr0.shape))
        i = 0
        for kind, cell in zip(self.dec_kinds, self.dec_tower):
            if kind != "combiner_dec":
                s = cell(s, train)
                continue
            if i == 0:
                prior = Normal(jnp.zeros((batch, *top)), jnp.zeros((batch, *top)))
                q = ftr = None
                if enc is not None:
                    ftr = enc[0]
                    mu_q, log_sig_q = jnp.split(self.enc_sampler[0](ftr), 2, axis=-1)
                    q = Normal(mu_q, log_sig_q, raw_mu=mu_q, raw_log_sigma=log_sig_q)
            else:
                mu_p, log_sig_p = jnp.split(self.dec_sampler[i - 1](jax.nn.elu(s)), 2, axis=-1)
                prior = Normal(mu_p, log_sig_p, raw_mu=mu_p, raw_log_sigma=log_sig_p)
                q = ftr = None
                if enc is not None:
                    _, combiners, feats = enc
                    ftr = combiners[i - 1](feats[i - 1], s)
                    mu_q, log_sig_q = jnp.split(self.enc_sampler[i](ftr), 2, axis=-1)
                    if c.res_dist:
                        q = Normal(mu_p + mu_q, log_sig_p + log_sig_q, raw_mu=mu_q, raw_log_sigma=log_sig_q)
                    else:
                        q = Normal(mu_q, log_sig_q, raw_mu=mu_q, raw_log_sigma=log_sig_q)
            z = select(i, prior, q, ftr)
            priors.append(prior)
            posts.append(q)
            s = cell(s, z)
            i += 1
        if not image:
            return None, priors, posts
        for cell in self.post_process:
            s = cell(s, train)
        return self.image_conditional_1(jax.nn.elu(s)), priors, posts

    def flow(self, i: int, z: jax.Array) -> jax.Array:
        """Group ``i``'s posterior flows (``num_nf`` paired cells; volume preserving)."""
        for n in range(self.config.num_nf):
            z = self.nf_cells[i * self.config.num_nf + n](z)
        return z

    def __call__(self, x: jax.Array, eps: Sequence[jax.Array], train: bool = False) -> dict[str, Any]:
        """The official forward pass with the posterior noise ``eps`` (top group first): logits, per-group
        posteriors, priors, latents, ``log_q``/``log_p`` per example and the KL terms (analytic without flows,
        ``log q − log p`` of the sample with them, as NVAE)."""
        ftr, combiners, feats = self.encode(x, train)
        zs, log_qs = [], []

        def select(i, prior, q, _ftr):
            z = q.sample_given_eps(eps[i])
            log_q = q.log_p(z)
            z = self.flow(i, z)
            zs.append(z)
            log_qs.append(log_q)
            return z

        logits, priors, posts = self._top_down(x.shape[0], select, train, enc=(ftr, combiners, feats))
        log_ps = [p.log_p(z) for p, z in zip(priors, zs)]
        with_nf = self.config.num_nf > 0
        kl = [lq - lp if with_nf else q.kl(p) for q, p, lq, lp in zip(posts, priors, log_qs, log_ps)]
        return {
            "logits": logits,
            "z": zs,
            "q": posts,
            "p": priors,
            "log_q": sum(jnp.sum(v, axis=(1, 2, 3)) for v in log_qs),
            "log_p": sum(jnp.sum(v, axis=(1, 2, 3)) for v in log_ps),
            "kl_all": [jnp.sum(k, axis=(1, 2, 3)) for k in kl],
            "kl_diag": [jnp.mean(jnp.sum(k, axis=(1, 2)), axis=0) for k in kl],
        }

    def sample(
        self, eps: Sequence[jax.Array], temperature: float = 1.0, train: bool = False
    ) -> dict[str, Any]:
        """Ancestral sampling: ``z_i = μ_i + t σ_i ε_i`` top-down (the top group's μ = 0, σ = 1.01)."""
        zs = []

        def select(i, prior, _q, _ftr):
            z = prior.with_temperature(temperature).sample_given_eps(eps[i])
            zs.append(z)
            return z

        logits, priors, _ = self._top_down(eps[0].shape[0], select, train)
        return {"logits": logits, "z": zs, "p": priors}

    def decode_latents(self, z: Sequence[jax.Array], train: bool = False) -> dict[str, Any]:
        """The top-down pass along the given latents ``z`` (top first): logits and every group's prior."""
        logits, priors, _ = self._top_down(z[0].shape[0], lambda i, *_: z[i], train)
        return {"logits": logits, "p": priors}

    def latent_path(
        self, values: Sequence[jax.Array], from_noise: bool, train: bool = False
    ) -> dict[str, Any]:
        """The top-down path without the image head. ``from_noise``: ``values`` are the standard-normal
        ``ε`` and ``z_i = μ_i + σ_i ε_i`` with ``(μ_i, σ_i)`` the prior of group ``i`` given the groups above
        (the ICML 2024 ε → z map); otherwise ``values`` are the latents ``z`` themselves. Returns the
        latents and every group's prior (top first)."""
        zs = []

        def select(i, prior, _q, _ftr):
            z = prior.sample_given_eps(values[i]) if from_noise else values[i]
            zs.append(z)
            return z

        _, priors, _ = self._top_down(values[0].shape[0], select, train, image=False)
        return {"z": zs, "p": priors}


def init_variables(config: NVAEConfig, key: jax.Array) -> dict[str, Any]:
    """Fresh ``{"params", "batch_stats"}`` with the modules' initialisers, drawn from one random vector:
    kernels ``U(±1/√fan_in)`` (PyTorch's default for convolutions and linear layers), weight-norm scales
    ``log(‖kernel‖ + 0.01)`` per output channel, biases 0, BatchNorm γ = 1, β = 0 and statistics (0, 1),
    ``prior_ftr0 ~ U[0, 1)``. ``NVAE(config).init`` draws one random array per parameter, which XLA takes
    ~30 s to compile on CPU for a small NVAE; this is one draw. (The masked autoregressive kernels' scales
    start from the unmasked kernel's norm; NVAE itself starts them by its data-dependent initialisation.)"""
    size = input_size(config.dataset)
    x = jnp.zeros((1, size, size, config.channels), jnp.float32)
    eps = [jnp.zeros((1, *s), jnp.float32) for s in config.group_shapes]
    shapes = jax.eval_shape(lambda k: NVAE(config).init(k, x, eps, False), key)
    return jax.jit(lambda k: _draw_variables(shapes, k))(key)


def _draw_variables(shapes: dict[str, Any], key: jax.Array) -> dict[str, Any]:
    flat = jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
    total = sum(math.prod(leaf.shape) for _, leaf in flat)
    draws = jax.random.uniform(key, (total,), jnp.float32)
    values: dict[tuple, jax.Array] = {}
    offset = 0
    for path, leaf in flat:
        names = tuple(p.key for p in path)
        n = math.prod(leaf.shape)
        r = draws[offset : offset + n].reshape(leaf.shape)
        offset += n
        if names[-1] == "kernel":
            fan_in = math.prod(leaf.shape[:-1])
            values[names] = (2.0 * r - 1.0) / math.sqrt(fan_in)
        elif names[-1] == "prior_ftr0":
            values[names] = r
        elif names[-1] == "scale":
            values[names] = jnp.ones(leaf.shape, leaf.dtype)
        else:  # biases; log_weight_norm is set from its kernel below
            values[names] = jnp.zeros(leaf.shape, leaf.dtype)
    for names in values:
        if names[-1] == "log_weight_norm":
            w = values[(*names[:-1], "kernel")]
            values[names] = jnp.log(jnp.sqrt(jnp.sum(w * w, axis=(0, 1, 2))) + 1e-2)
    params = jax.tree_util.tree_map_with_path(lambda p, _: values[tuple(q.key for q in p)], shapes["params"])
    stats = jax.tree_util.tree_map_with_path(
        lambda p, leaf: (jnp.ones if p[-1].key == "var" else jnp.zeros)(leaf.shape, leaf.dtype),
        shapes["batch_stats"],
    )
    return {"params": params, "batch_stats": stats}


def prior_noise(config: NVAEConfig, key: jax.Array, batch: int) -> list[jax.Array]:
    """Standard-normal noise for every latent group (top first), ``(batch, H, W, C)`` each."""
    keys = jax.random.split(key, len(config.group_shapes))
    return [jax.random.normal(k, (batch, *shape)) for k, shape in zip(keys, config.group_shapes)]


def readjust_batchnorm(
    config: NVAEConfig,
    variables: dict[str, Any],
    key: jax.Array,
    num_samples: int,
    temperature: float = 1.0,
    iters: int = 500,
) -> dict[str, Any]:
    """NVAE's BatchNorm re-estimation before sampling (NVlabs/NVAE ``evaluate.py --readjust_bn``; the ICML
    2024 CIFAR-10 setting uses it with 500 passes): ``iters`` ancestral-sampling passes in training mode,
    each updating every running statistic (momentum 0.05) with the statistics of ``num_samples`` fresh
    samples at ``temperature``. Returns the variables with the new ``batch_stats``."""
    model = NVAE(config)

    def one(i, stats):
        eps = prior_noise(config, jax.random.fold_in(key, i), num_samples)
        _, upd = model.apply(
            {**variables, "batch_stats": stats},
            eps,
            temperature,
            True,
            method="sample",
            mutable=["batch_stats"],
        )
        return upd["batch_stats"]

    stats = jax.jit(lambda s: jax.lax.fori_loop(0, iters, one, s))(variables["batch_stats"])
    return {**variables, "batch_stats": stats}


def num_groups(config: NVAEConfig) -> int:
    """The number of latent groups (all scales)."""
    return len(config.group_shapes)


__all__ = [
    "ARCH_CELLS",
    "NVAE",
    "NVAEConfig",
    "init_variables",
    "input_size",
    "num_groups",
    "prior_noise",
    "readjust_batchnorm",
]
