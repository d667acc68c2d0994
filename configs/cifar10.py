"""CIFAR-10 32×32 (``:joint``: the joint prior with the SVHN train_fid.py networks and settings).

The authors' repository has no CIFAR-10 script; these are the paper's CIFAR-10 settings as used by its
follow-up code [uncertain]: n_z = 128, ngf = 128, EBM width 200, K₀ = 60 (s₀ = 0.4), K₁ = 40 (s₁ = 0.1),
σ = 0.3; optimiser as SVHN.

``:bidvl``: BiDVL's train_cifar_BiDVL.py (the defaults in default.py): FID every 50 epochs as the authors,
OOD AUROC of ``−E(v)`` against uniform noise, SVHN and CelebA (Table 4; sets not prepared are skipped).
"""

from configs import default


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
    return c
