"""The embedded default dataset: scikit-learn's bundled handwritten digits (UCI optdigits test set).

1,797 real 8×8 grey images with 17 intensity levels (0–16) and labels 0–9, shipped inside scikit-learn,
so nothing is downloaded. Split once and for all (independent of the run seed) into 1,437 training and 360
test images by a fixed permutation. ``image_size=32, channels=3`` gives the 32×32×3 version
(bilinear upsampling, grey replicated) on which the real 32×32 networks run.
"""

from __future__ import annotations

import functools

import numpy as np

from latentebm_jax.data.preprocess import match_channels, resize, to_model_range
from latentebm_jax.data.sources import ArraySource

SPLIT_SEED = 0
NUM_TEST = 360
SPLITS = ("train", "test")


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, np.float64)  # (1797, 8, 8) in 0..16
    return images, np.asarray(bunch.target, np.int64)


def split_indices(split: str) -> np.ndarray:
    """Indices of ``split`` ('train' or 'test') in scikit-learn's order."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; allowed: {SPLITS}")
    n = len(_raw()[1])
    perm = np.random.RandomState(SPLIT_SEED).permutation(n)
    return np.sort(perm[:NUM_TEST] if split == "test" else perm[NUM_TEST:])


def load_digits(split: str, image_size: int = 8, channels: int = 1) -> ArraySource:
    """The digits ``split`` as an in-memory source in ``[−1, 1]``, NHWC."""
    images, labels = _raw()
    idx = split_indices(split)
    images, labels = images[idx], labels[idx]
    if image_size == 8 and channels == 1:
        x = (images / 8.0 - 1.0).astype(np.float32)[..., None]
        return ArraySource(x, labels)
    u8 = np.round(images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    out = np.stack([match_channels(resize(im, image_size, "bilinear"), channels) for im in u8])
    return ArraySource(to_model_range(out), labels)
