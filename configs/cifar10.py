"""CIFAR-10 32×32 (``:joint``: the joint prior with the SVHN train_fid.py networks and settings).

The authors' repository has no CIFAR-10 script; these are the paper's CIFAR-10 settings as used by its
follow-up code [uncertain]: n_z = 128, ngf = 128, EBM width 200, K₀ = 60 (s₀ = 0.4), K₁ = 40 (s₁ = 0.1),
σ = 0.3; optimiser as SVHN.

``:nvae`` and ``:diffusion``: the diffusion hierarchical EBM prior (ICML 2024) on NVAE's CIFAR-10 model.
Stage 1 is NVIDIA's released checkpoint, converted (``python -m experiments.convert_nvae``; ``:nvae``
trains the same architecture from scratch by NVAE's own objective and settings instead). Stage 2 has the
authors' CIFAR-10 settings: one time-conditioned conv EBM per latent group (30 groups of 20×16×16, width
128, spectral norm), T = 3, K = 50, b = 3e-5, Adam lr 4e-5, betas (0.99, 0.999), weight decay 3e-5,
per-epoch decay 0.9, global batch 50, 200 epochs, NVAE's BatchNorm re-estimated with 500 sampling passes
of 25 when stage 2 starts; FID (with ``eval.inception_weights``), ``fd`` beside ``fd_backbone``, and OOD
detection by layer against SVHN (Fig. 3). ``--config.diffusion.backbone_dir=DIR`` names the conversion (or
an ``:nvae`` run).

``:bidvl``: BiDVL's train_cifar_BiDVL.py (the defaults in default.py): FID every 50 epochs as the authors,
OOD AUROC of ``−E(v)`` against uniform noise, SVHN and CelebA (Table 4; sets not prepared are skipped).
"""

from configs import default
from latentebm_jax.backbones import BACKBONES
from latentebm_jax.config_schema import group_of


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "cifar10"
    c.data.train_split = "train"
    c.train.eval_every = 50 * 500  # every 50 epochs of 500 steps of 100
    c.train.ckpt_every = 500
    default.add_metrics(c, "fid")  # needs --config.eval.inception_weights=FILE; skipped (and said so) without
    if method == "lebm":
        c.lebm.update(latent_dim=128, ngf=128)
        c.sampler.posterior_steps = 40
    if method == "diffusion":
        c.diffusion.backbone_kind = "nvae"
        c.backbone = group_of(BACKBONES["nvae"].settings)  # defaults: NVAE's CIFAR-10 model
        c.backbone.update(readjust_bn_passes=500, readjust_bn_batch=25)
        c.train.eval_every = 10 * 1000
        c.train.ckpt_every = 1000
        default.add_metrics(c, "fd", "fd_backbone", "ood_by_layer")
        c.eval.ood_source = "svhn_cropped"  # Fig. 3: SVHN as the OOD set
    if method == "nvae":
        c.train.eval_every = 50 * 1562
        c.train.ckpt_every = 1562
    return c
