"""Reconstruction error."""

from __future__ import annotations

import numpy as np


def per_example_mse(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Mean squared error per example over all pixels and channels, shape ``(B,)``, in the images' own
    value range (the models work in ``[−1, 1]``; divide by 4 for the ``[0, 1]`` scale)."""
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {x_hat.shape}")
    return np.mean(np.square(x - x_hat).reshape(x.shape[0], -1), axis=1)
