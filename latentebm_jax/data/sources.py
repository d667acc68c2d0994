"""Random-access image sources: what the host-side pipeline reads batches from.

A source has a length, optional integer labels, and ``get(indices)`` returning a dict with ``image``
(float32 NHWC in ``[−1, 1]``) and ``label`` (int32; −1 where a dataset has none).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ImageSource(Protocol):
    """The interface every dataset offers to the pipeline."""

    image_shape: tuple[int, int, int]

    def __len__(self) -> int: ...

    def labels(self) -> np.ndarray:
        """All labels, shape ``(N,)`` int64 (−1 if unlabelled)."""
        ...

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]: ...


class ArraySource:
    """An in-memory source over arrays already in ``[−1, 1]``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None):
        if images.ndim != 4:
            raise ValueError(f"images must be NHWC, got shape {images.shape}")
        self.images = np.asarray(images, np.float32)
        n = len(images)
        self._labels = np.full((n,), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        if len(self._labels) != n:
            raise ValueError(f"{n} images but {len(self._labels)} labels")
        self.image_shape = tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)

    def labels(self) -> np.ndarray:
        return self._labels

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        return {"image": self.images[indices], "label": self._labels[indices].astype(np.int32)}


class SubsetSource:
    """A view of ``source`` restricted to ``indices`` (e.g. every class but a held-out one)."""

    def __init__(self, source: ImageSource, indices: np.ndarray):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.image_shape = source.image_shape

    def __len__(self) -> int:
        return len(self.indices)

    def labels(self) -> np.ndarray:
        return self.source.labels()[self.indices]

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return self.source.get(self.indices[np.asarray(indices)])


def without_class(source: ImageSource, holdout_class: int) -> ImageSource:
    """Every example whose label is not ``holdout_class`` (the MNIST anomaly protocol's training set)."""
    keep = np.flatnonzero(source.labels() != holdout_class)
    if len(keep) == len(source):
        raise ValueError(f"holdout_class={holdout_class} does not occur in the dataset's labels")
    return SubsetSource(source, keep)


def only_classes(source: ImageSource, classes: tuple[int, ...]) -> ImageSource:
    """Every example whose label is one of ``classes`` (e.g. digits 0, 1, 2 for the ICCV 2023 toy)."""
    keep = np.flatnonzero(np.isin(source.labels(), np.asarray(classes)))
    if len(keep) == 0:
        raise ValueError(f"none of the classes {tuple(classes)} occurs in the dataset's labels")
    return SubsetSource(source, keep)
