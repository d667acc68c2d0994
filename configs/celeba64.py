"""LEBM on CelebA 64×64 (tfds ``celeb_a``, the authors' ``celeba_crop``: rows 45–172, columns 25–152,
then resized to 64×64).

The authors' repository has SVHN-32 and CelebA-128 scripts only; this uses the 64×64 DCGAN generator
(``ngf·8, ·4, ·2, ·1``) with ``ngf = 128`` and the CelebA-128 sampler lengths scaled to the paper's 64×64
setting [uncertain]: n_z = 100, EBM width 200, K₀ = 60 (s₀ = 0.4), K₁ = 40 (s₁ = 0.1), σ = 0.3.
"""

from configs import default


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "celeb_a"
    c.data.image_size = 64
    c.data.crop = "celeba_lebm"
    c.data.test_split = "test"
    c.model.ngf = 128
    c.sampler.posterior_steps = 40
    c.train.num_epochs = 100
    c.train.eval_every = 10 * 1627
    c.train.ckpt_every = 1627
    c.eval.fid = True  # needs --config.eval.inception_weights=FILE; skipped (and said so) without it
    return c
