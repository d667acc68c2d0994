"""SVHN 32×32 (tfds ``svhn_cropped``): the authors' defaults (default.py): LEBM's train_svhn.py, and for
``:joint`` the ICCV 2023 train_fid.py (``extra`` split, 5 latent layers of 10). ``:bidvl``: BiDVL's CIFAR-10
settings on SVHN (the paper trains on SVHN, Fig. 2, but publishes no SVHN script [uncertain]); OOD against
uniform noise and CIFAR-10."""

from configs import default


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "svhn_cropped"
    # FID every 50 epochs in the authors' code (732 steps per epoch at batch 100).
    c.train.eval_every = 50 * 732
    c.train.ckpt_every = 732
    default.add_metrics(c, "fid")  # needs --config.eval.inception_weights=FILE; skipped (and said so) without
    if method == "bidvl":
        c.eval.ood_sets = ("uniform", "cifar10")
    if method == "joint":  # train_fid.py (the method's reference): the 531,131-image extra split
        c.train.eval_every = 10 * 5311
        c.train.ckpt_every = 5311
    return c
