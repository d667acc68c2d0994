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


def save_reconstructions(x: np.ndarray, x_hat: np.ndarray, path: str, ncol: int = 10, title: str = "") -> str:
    """Two labelled panels side by side, "data" and "reconstruction", the same images in the same places
    (``ncol`` per row), under ``title`` (e.g. the step and the reconstruction error)."""
    x, x_hat = np.asarray(x), np.asarray(x_hat)
    n = (len(x) // ncol) * ncol or len(x)
    ncol = min(ncol, n)
    rows = n // ncol
    panels = [
        ("data", x[:n].reshape(rows, ncol, *x.shape[1:])),
        ("reconstruction", x_hat[:n].reshape(rows, ncol, *x_hat.shape[1:])),
    ]
    return save_grid_panels(panels, path, suptitle=title)


def save_titled_grid(images: np.ndarray, path: str, title: str, ncol: int | None = None) -> str:
    """``(N, H, W, C)`` images in ``[−1, 1]`` as one grid under ``title`` (the sample pictures)."""
    grid = image_grid(np.asarray(images), ncol)
    side = max(4.0, min(10.0, grid.shape[1] / 40))
    fig, ax = subplots(figsize=(side, side * grid.shape[0] / grid.shape[1] + 0.5))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", interpolation="nearest")
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def save_chain_figure(
    images: np.ndarray, steps: np.ndarray, energy: np.ndarray, path: str, title: str = ""
) -> str:
    """A long-run chain (LEBM Figs. 3–4): one row per chain with frames at ``steps``, and underneath
    the energy profile ``−log p̃(z_k)`` (mean over chains) against the Langevin step ``k``."""
    images = np.asarray(images)  # (S, n, H, W, C)
    s, n = images.shape[:2]
    strip = image_grid(images.transpose(1, 0, 2, 3, 4).reshape(s * n, *images.shape[2:]), ncol=s)
    fig, (ax_img, ax_e) = subplots(
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
    return save_figure(fig, path)


def save_energy_profile(energy: np.ndarray, path: str, title: str = "") -> str:
    """The energy profile ``−log p̃(z_k)`` (mean over chains) of a long-run chain against the Langevin step
    (LEBM Fig. 3 bottom; the text chains of Table 3 have no image strip)."""
    fig, ax = subplots(figsize=(6, 2.8))
    ax.plot(np.arange(len(energy)), np.asarray(energy), lw=1)
    ax.set_xlabel("Langevin step k")
    ax.set_ylabel("energy  −log p̃(z_k)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """``pyplot.subplots`` without pyplot: a standalone ``Figure`` and its axes.

    Nothing global changes (no backend switch, so notebooks keep their inline plots) and nothing needs
    closing; ``kwargs`` go to ``Figure.subplots`` (``squeeze``, ``gridspec_kw``, ...).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: str) -> str:
    """Write a :func:`subplots` figure to ``path`` (PNG, 100 dpi), creating its folder; returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def save_grid_panels(
    panels: list[tuple[str, np.ndarray]],
    path: str,
    *,
    suptitle: str = "",
    row_labels: list[list[str]] | None = None,
    col_labels: list[str] | None = None,
    ncols: int | None = None,
) -> str:
    """Several image grids side by side, each ``(rows, cols, H, W, C)`` in ``[−1, 1]`` with a title
    (hierarchical sampling: one panel per layer; latent attack: one panel per attacked layer)."""
    n = len(panels)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    first = np.asarray(panels[0][1])
    r, c = first.shape[:2]
    fig, axes = subplots(
        nrows,
        ncols,
        figsize=(ncols * max(2.5, c * 0.45) + 1, nrows * max(2.5, r * 0.45) + 0.8),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (title, grid) in enumerate(panels):
        grid = np.asarray(grid)
        rr, cc = grid.shape[:2]
        tile = image_grid(grid.reshape(rr * cc, *grid.shape[2:]), ncol=cc)
        ax = axes.flat[i]
        ax.imshow(tile[..., 0] if tile.shape[-1] == 1 else tile, cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        if row_labels is not None or col_labels is not None:
            ax.axis("on")
            ax.set_xticks([(j + 0.5) * tile.shape[1] / cc for j in range(cc)] if col_labels else [])
            if col_labels:
                ax.set_xticklabels(col_labels, fontsize=7)
            labels = row_labels[i] if row_labels is not None else None
            ax.set_yticks([(j + 0.5) * tile.shape[0] / rr for j in range(rr)] if labels else [])
            if labels:
                ax.set_yticklabels(labels, fontsize=7)
            for side in ax.spines.values():
                side.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def save_latent_scatter(
    prior: list[list[np.ndarray]],
    posterior: list[np.ndarray],
    steps: list[int],
    layer_names: list[str],
    path: str,
    *,
    posterior_labels: np.ndarray | None = None,
    title: str = "",
) -> str:
    """Prior-vs-posterior scatter of 2-d latent layers along the prior Langevin chain (ICCV 2023 Fig. 7).

    ``prior[i][j]``: ``(N, 2)`` prior chain states of layer ``i`` after ``steps[j]`` steps (blue);
    ``posterior[i]``: ``(M, 2)`` inferred latents of data (orange, or coloured by ``posterior_labels``).
    """
    nrow, ncol = len(layer_names), len(steps)
    fig, axes = subplots(nrow, ncol, figsize=(3 * ncol, 3 * nrow), squeeze=False)
    for i, name in enumerate(layer_names):
        post = np.asarray(posterior[i])
        lim = float(np.percentile(np.abs(np.concatenate([post, *prior[i]])), 99.5)) * 1.1 + 1e-6
        for j, k in enumerate(steps):
            ax = axes[i, j]
            p = np.asarray(prior[i][j])
            ax.scatter(p[:, 0], p[:, 1], s=3, c="tab:blue", alpha=0.5, label="prior")
            if posterior_labels is None:
                ax.scatter(post[:, 0], post[:, 1], s=3, c="tab:orange", alpha=0.5, label="posterior")
            else:
                ax.scatter(
                    post[:, 0], post[:, 1], s=4, c=posterior_labels, cmap="tab10", vmin=0, vmax=9, alpha=0.7
                )
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_title(f"{name}, prior after {k} steps", fontsize=8)
            ax.tick_params(labelsize=6)
        axes[i, 0].legend(fontsize=6, loc="upper right", markerscale=3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
