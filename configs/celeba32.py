"""CelebA 32×32 (tfds ``celeb_a``, BiDVL's ``CenterCrop(160)`` then resized to 32×32): the CelebA-32 of
BiDVL's Table 2.

``:bidvl``: the CelebA-64 setting of ``configs/celeba64.py`` at 32×32 with the 32×32 networks, the paper's
``r′ = 0.05`` for 32×32 images and the CIFAR-10 batch of 100 (the authors publish no CelebA-32 script
[uncertain]). Other methods get their SVHN defaults on the same images.
"""

from configs import celeba64, default


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "celeb_a"
    c.data.image_size = 32
    c.data.crop = "center160"
    c.data.train_split = "train"
    c.data.test_split = "test"
    if method == "bidvl":
        return celeba64._bidvl(c, image_size=32, basic_ratio=0.05, batch_size=100)
    default.add_metrics(c, "fid")  # needs --config.eval.inception_weights=FILE; skipped (and said so) without
    return c
