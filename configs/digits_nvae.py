"""The embedded digits on an NVAE backbone: the diffusion EBM prior's two stages as the ICML 2024 paper
runs them (an NVAE, then per-group EBMs in its ε-space), at a size 2 CPU cores train end to end.

* ``:nvae`` (stage 1): NVAE trained from scratch by its own objective (``methods/nvae.py``: KL warm-up and
  balancing, spectral and BatchNorm regularisation, Adamax with warm-up and cosine decay) on the digits
  resized to 32×32×1 with NVAE's MNIST decoder (Bernoulli on the grey levels); 2 scales × 2 groups of 4
  channels at 4×4 and 8×8, 8 base channels (64 at 4×4, 32 at 8×8), residual posteriors,
  squeeze-and-excitation, no flows (NVAE's MNIST setting has none). Cells ``res_bnswish`` everywhere: the
  decoder's depthwise-separable cells of NVAE's default ``res_mbconv`` make a step 10× slower on CPU (3.7 s
  against 0.37 s at batch 100, 16 channels). Its samples (ε ~ N(0, I) through the prior) are the "backbone
  alone" baseline.
* ``:diffusion`` (stage 2) with ``--config.diffusion.backbone_dir=<nvae workdir>``: one time-conditioned
  conv energy per group (the authors' CIFAR-10 EBM net, width ``diffusion.ebm_hidden``), Algorithm 1 in
  ε-space, Algorithm 2 sampling; ``--config.diffusion.scheme=marginal`` is the marginal ε-space EBM
  baseline. ``summary.json`` holds ``fd`` (the EBM prior), ``fd_backbone`` (the backbone alone) and OOD
  AUROC by layer with the held-out digit 9 as the OOD set.

The authors' stage-2 sampler (T = 3, b = 3e-5) and betas; K = 20 Langevin steps per diffusion step instead of
50, a larger learning rate and no per-epoch decay (16 steps per epoch instead of 1,000), for CPU time.
"""

from configs import default
from latentebm_jax.backbones import BACKBONES
from latentebm_jax.config_schema import group_of
from latentebm_jax.data.settings import data_group

ARCH = dict(
    dataset="mnist",
    arch_instance="res_bnswish",
    num_channels_enc=8,
    num_channels_dec=8,
    num_preprocess_blocks=2,
    num_preprocess_cells=1,
    num_postprocess_blocks=2,
    num_postprocess_cells=1,
    num_latent_scales=2,
    num_groups_per_scale=2,
    num_latent_per_group=4,
    num_cell_per_cond_enc=1,
    num_cell_per_cond_dec=1,
    num_nf=0,
    use_se=True,
    res_dist=True,
)


def get_config(method: str = "nvae"):
    if method not in ("nvae", "diffusion"):
        raise ValueError(f"configs/digits_nvae.py has methods 'nvae' and 'diffusion', not {method!r}")
    c = default.get_config(method)
    c.seed = 1
    c.data = data_group("digits", image_size=32, channels=1, holdout_class=9)
    c.train.batch_size = 100
    c.train.log_every = 20
    c.train.eval_every = 0
    c.train.ckpt_every = 200
    c.eval.num_samples = 100
    c.eval.long_run_chains = 8
    if method == "diffusion":
        c.diffusion.backbone_kind = "nvae"
        c.backbone = group_of(BACKBONES["nvae"].settings)
    c.backbone.update(**ARCH)
    return _nvae(c) if method == "nvae" else _diffusion(c)


def _nvae(c):
    # NVAE's MNIST command: lr 1e-2, λ = 1e-2, 5 warm-up epochs; 60 epochs of 16 steps here.
    c.nvae.update(weight_decay_norm=1e-2, warmup_epochs=2)
    c.train.num_epochs = 60
    c.eval.metrics = ("reconstruction", "anomaly", "fd", "probe", "samples")
    return c


def _diffusion(c):
    c.diffusion.update(ebm_hidden=32, langevin_steps=20, lr=1e-4, lr_decay=1.0)
    c.train.num_epochs = 40
    c.eval.metrics = ("reconstruction", "fd", "fd_backbone", "probe", "ood_by_layer", "samples", "chains")
    c.eval.interval_metrics = ()
    return c
