"""LEBM on SVHN 32×32 (tfds ``svhn_cropped``): the authors' train_svhn.py defaults (see default.py)."""

from configs import default


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "svhn_cropped"
    # FID every 50 epochs in the authors' code (732 steps per epoch at batch 100).
    c.train.eval_every = 50 * 732
    c.train.ckpt_every = 732
    c.eval.fid = True  # needs --config.eval.inception_weights=FILE; skipped (and said so) without it
    return c
