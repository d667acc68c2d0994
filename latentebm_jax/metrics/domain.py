"""Domain feature distance ``fd``: a Fréchet distance on the features of a classifier trained on the
dataset itself, for data (like the embedded digits) where the Inception network is out of reach.

A small CNN is trained (seeded) on the labelled training split, its accuracy on the held-out test split is
reported alongside so its features are known to be meaningful, and it is cached on disk keyed by the
dataset, image shape, seed and training settings. ``fd`` is the Fréchet distance between Gaussians fitted
to its 128-d penultimate features of generated samples and of the reference (training) images.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from latentebm_jax.data.pipeline import EpochBatcher, iterate_once
from latentebm_jax.data.sources import ImageSource
from latentebm_jax.metrics.tree_io import load_tree, save_tree

ARCH_VERSION = 2


def num_downsamplings(image_size: int) -> int:
    """Stride-2 stages of :class:`DomainCNN`: at least two, and down to 4×4 for larger images."""
    return max(2, int(np.log2(image_size)) - 2)


class DomainCNN(nn.Module):
    """A 3×3 convolution, then stride-2 3×3 convolutions (widths 64, 128, 128, …) down to 4×4 (2×2 for
    8×8 images), global average pooling, a 128-d ReLU feature layer and a linear classifier.
    Returns ``(logits, features)``."""

    num_classes: int
    width: int = 32
    feature_dim: int = 128

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nn.relu(nn.Conv(self.width, (3, 3))(x))
        for i in range(num_downsamplings(x.shape[1])):
            h = nn.relu(nn.Conv(self.width * min(2 ** (i + 1), 4), (3, 3), strides=(2, 2))(h))
        features = nn.relu(nn.Dense(self.feature_dim)(jnp.mean(h, axis=(1, 2))))
        return nn.Dense(self.num_classes)(features), features


@dataclasses.dataclass
class DomainClassifier:
    """A trained :class:`DomainCNN` with its held-out accuracy."""

    params: dict
    num_classes: int
    image_shape: tuple[int, int, int]
    test_accuracy: float

    @functools.cached_property
    def _apply(self):
        module = DomainCNN(self.num_classes)
        return jax.jit(lambda p, x: module.apply({"params": p}, x))

    def features(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Penultimate features ``(n, 128)`` of images in ``[−1, 1]``."""
        return self._run(images, batch_size)[1]

    def predict(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Predicted classes ``(n,)``."""
        return np.argmax(self._run(images, batch_size)[0], axis=1)

    def _run(self, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        if images.shape[1:] != self.image_shape:
            raise ValueError(f"classifier expects images {self.image_shape}, got {images.shape[1:]}")
        logits, feats = [], []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pad = batch_size - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            lo, fe = self._apply(self.params, chunk)
            logits.append(np.asarray(lo)[: batch_size - pad])
            feats.append(np.asarray(fe)[: batch_size - pad])
        return np.concatenate(logits), np.concatenate(feats)


def _accuracy(clf: DomainClassifier, source: ImageSource, batch_size: int = 500) -> float:
    correct, total = 0, 0
    for batch, valid in iterate_once(source, batch_size):
        pred = clf.predict(batch["image"][:valid], batch_size)
        correct += int(np.sum(pred == batch["label"][:valid]))
        total += valid
    return correct / total


def train_domain_classifier(
    train: ImageSource,
    test: ImageSource,
    *,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
) -> DomainClassifier:
    """Train a :class:`DomainCNN` on ``train`` (cross-entropy, Adam) and measure accuracy on ``test``."""
    labels = train.labels()
    if np.any(labels < 0):
        raise ValueError("the domain feature distance needs a labelled training split")
    num_classes = int(labels.max()) + 1
    module = DomainCNN(num_classes)
    batcher = EpochBatcher(train, min(batch_size, len(train)), seed)
    x0 = train.get(np.arange(1))["image"]
    params = module.init(jax.random.key(seed), x0)["params"]
    tx = optax.adam(lr)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits, _ = module.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for batch in batcher.iterate(0, epochs * batcher.steps_per_epoch):
        params, opt_state = step(params, opt_state, batch["image"], batch["label"])
    clf = DomainClassifier(jax.device_get(params), num_classes, tuple(x0.shape[1:]), 0.0)
    clf.test_accuracy = _accuracy(clf, test)
    return clf


def domain_classifier(
    cache_dir: str,
    dataset_id: str,
    train: ImageSource,
    test: ImageSource,
    *,
    seed: int = 0,
    epochs: int = 30,
) -> DomainClassifier:
    """The cached classifier for ``dataset_id`` (trained and saved on first use)."""
    settings = {
        "dataset": dataset_id,
        "shape": list(train.image_shape),
        "seed": seed,
        "epochs": epochs,
        "n_train": len(train),
        "arch": ARCH_VERSION,
    }
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir, "domain_classifier", f"{dataset_id}_{digest}.npz")
    if os.path.exists(path):
        try:
            params, meta = load_tree(path)
            return DomainClassifier(params, meta["num_classes"], tuple(meta["shape"]), meta["test_accuracy"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            logging.getLogger("latentebm_jax.metrics").warning(
                "cached domain classifier %s is unreadable (%s); training it again", path, err
            )
    clf = train_domain_classifier(train, test, seed=seed, epochs=epochs)
    save_tree(
        path, clf.params, {**settings, "num_classes": clf.num_classes, "test_accuracy": clf.test_accuracy}
    )
    return clf
