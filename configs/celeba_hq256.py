"""CelebA-HQ 256×256: the diffusion hierarchical EBM prior (ICML 2024, Table 2) on NVAE's CelebA-HQ-256 model.

Stage 1 is NVIDIA's released CelebA-HQ-256 checkpoint, converted (``python -m experiments.convert_nvae``;
``:nvae`` trains the same architecture from scratch with the NVAE README's CelebA-HQ-256 command instead:
5 bits per pixel, 36 groups of 20 channels at 8×8 … 128×128, two flows per group, spectral regularisation
annealed from 1 to 1e-2). Stage 2 (``:diffusion``) has the authors' CelebA-HQ-256 settings: T = 3, K = 30,
b = 2e-5, EBM width 64, Adam lr 4e-5, betas (0.99, 0.999), weight decay 3e-5, per-epoch decay 0.98, global
batch 4, 200 epochs, no BatchNorm re-estimation; FID on 30,000 samples against the training split.

The data are tfds ``celeb_a_hq/256``, which only exists as files you obtain yourself: prepare them once
with ``python -m experiments.prepare_data celeb_a_hq/256 --manual_dir=DIR --data_dir=DATA`` and pass
``--config.data.data_dir=DATA``. The authors train their EBMs on the LMDB train split; tfds has one split,
``train``, of which the config holds out the last 3,000 images as the test split [uncertain: the paper does
not say which images it evaluates on].

**[paper≠code]** The authors' CelebA-HQ training script imports an EBM class that is not in their repository;
this uses the CIFAR-10 EBM net (``nets/energy.py``, one per group) at width 64, with spectral norm.
"""

from configs import default
from latentebm_jax.backbones import BACKBONES
from latentebm_jax.config_schema import group_of

NVAE_CELEBA_HQ_256 = dict(
    dataset="celeba_256",
    num_channels_enc=30,
    num_channels_dec=30,
    num_preprocess_blocks=1,
    num_preprocess_cells=2,
    num_postprocess_blocks=1,
    num_postprocess_cells=2,
    num_latent_scales=5,
    num_groups_per_scale=16,
    ada_groups=True,
    min_groups_per_scale=4,
    num_latent_per_group=20,
    num_cell_per_cond_enc=2,
    num_cell_per_cond_dec=2,
    num_nf=2,
    use_se=True,
    res_dist=True,
    num_x_bits=5,
)


def get_config(method: str = "diffusion"):
    if method not in ("nvae", "diffusion"):
        raise ValueError(f"configs/celeba_hq256.py has methods 'nvae' and 'diffusion', not {method!r}")
    c = default.get_config(method)
    c.data.name = "celeb_a_hq/256"
    c.data.image_size = 256
    c.data.channels = 3
    c.data.train_split = "train[:-3000]"
    c.data.test_split = "train[-3000:]"
    c.train.batch_size = 4
    c.train.num_epochs = 200
    c.train.eval_every = 10 * 6750
    c.train.ckpt_every = 1000
    c.eval.batch_size = 16
    c.eval.fid_num_samples = 30000
    default.add_metrics(c, "fid")  # needs --config.eval.inception_weights=FILE; skipped (and said so) without
    if method == "diffusion":
        c.diffusion.backbone_kind = "nvae"
        c.backbone = group_of(BACKBONES["nvae"].settings)
        c.diffusion.update(
            langevin_steps=30, base_step=2e-5, ebm_hidden=64, lr=4e-5, lr_decay=0.98, weight_decay=3e-5
        )
    else:
        c.nvae.update(weight_decay_norm=1e-2, weight_decay_norm_init=1.0, weight_decay_norm_anneal=True)
        c.train.num_epochs = 300
    c.backbone.update(**NVAE_CELEBA_HQ_256)
    return c
