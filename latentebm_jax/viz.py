"""Pictures: image grids, reconstruction pairs, long-run chains with their energy profile (PNG files)."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from latentebm_jax.data.preprocess import to_uint8


def image_grid(images: np.ndarray, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile ``(N, H, W, C)`` images in ``[−1, 1]`` into one uint8 ``(rows·(H+pad)+pad, …, C)`` image."""
    images = to_uint8(images)
    if images.ndim != 4:
        raise ValueError(f"expected NHWC images, got shape {images.shape}")
    n, h, w, c = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = images[i]
    return grid


def _upscale(grid: np.ndarray, min_side: int = 256) -> np.ndarray:
    factor = max(1, math.ceil(min_side / max(grid.shape[:2])))
    return np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)


def save_png(array: np.ndarray, path: str) -> str:
    """Write a uint8 HWC (C = 1 or 3) image; tiny images are enlarged by pixel repetition."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    array = _upscale(array)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
    return path


def save_image_grid(images: np.ndarray, path: str, ncol: int | None = None) -> str:
    """Save ``(N, H, W, C)`` images in ``[−1, 1]`` as one grid PNG."""
    return save_png(image_grid(np.asarray(images), ncol), path)


def save_reconstructions(x: np.ndarray, x_hat: np.ndarray, path: str, ncol: int = 10) -> str:
    """Rows alternate: data, then its reconstruction, ``ncol`` pairs per row pair."""
    x, x_hat = np.asarray(x), np.asarray(x_hat)
    n = (len(x) // ncol) * ncol or len(x)
    ncol = min(ncol, n)
    rows = []
    for start in range(0, n, ncol):
        rows.extend([x[start : start + ncol], x_hat[start : start + ncol]])
    return save_image_grid(np.concatenate(rows), path, ncol=ncol)


def save_chain_figure(
    images: np.ndarray, steps: np.ndarray, energy: np.ndarray, path: str, title: str = ""
) -> str:
    """A long-run chain (LEBM Figs. 3–4): one row per chain with frames at ``steps``, and underneath
    the energy profile ``−log p̃(z_k)`` (mean over chains) against the Langevin step ``k``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)  # (S, n, H, W, C)
    s, n = images.shape[:2]
    strip = image_grid(images.transpose(1, 0, 2, 3, 4).reshape(s * n, *images.shape[2:]), ncol=s)
    fig, (ax_img, ax_e) = plt.subplots(
        2, 1, figsize=(max(6, s * 0.8), 2 + n * 0.8 + 2.5), gridspec_kw={"height_ratios": [n, 2.5]}
    )
    ax_img.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", interpolation="nearest")
    ax_img.set_xticks([(i + 0.5) * strip.shape[1] / s for i in range(s)])
    ax_img.set_xticklabels([str(int(k)) for k in steps], fontsize=7)
    ax_img.set_yticks([])
    ax_img.set_xlabel("Langevin step")
    ax_e.plot(np.arange(len(energy)), np.asarray(energy), lw=1)
    ax_e.set_xlabel("Langevin step k")
    ax_e.set_ylabel("energy  −log p̃(z_k)")
    ax_e.grid(alpha=0.3)
    if title:
        ax_img.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
