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


def reconstruction_errors(per_example: np.ndarray, value_range: str = "[-1, 1]") -> dict[str, float | str]:
    """Summary of per-example MSEs: per-pixel MSE (LEBM / joint-EBM tables), its root (RMSE, as BiDVL's
    Table 3), the same on the ``[0, 1]`` scale (both scale with the range), and the range itself."""
    mse = float(np.mean(per_example))
    return {
        "recon_mse": mse,
        "recon_rmse": float(np.sqrt(mse)),
        "recon_mse_01": mse / 4.0,
        "recon_rmse_01": float(np.sqrt(mse)) / 2.0,
        "recon_value_range": value_range,
    }
