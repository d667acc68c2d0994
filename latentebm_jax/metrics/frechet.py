"""Fréchet distance between Gaussians fitted to feature sets (FID, and the domain feature distance ``fd``).

    d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})

as in Heusel et al. (2017) and pytorch-fid. The trace of the matrix square root is computed from the
symmetric form ``tr((Σ₁Σ₂)^{1/2}) = tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})`` (the two matrices are similar) with
SciPy's symmetric eigensolver: the same number as pytorch-fid's ``sqrtm`` path where that is well
conditioned, and still exact when the covariances are singular (fewer samples than feature dimensions,
dead ReLU features), where ``sqrtm`` of the non-symmetric product loses accuracy or returns NaN.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from scipy import linalg


@dataclasses.dataclass(frozen=True)
class GaussianStats:
    """Mean ``(d,)`` and covariance ``(d, d)`` of a feature set, with the number of samples behind them."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int

    def save(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, mu=self.mu, sigma=self.sigma, count=np.asarray(self.count))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> GaussianStats:
        with np.load(path, allow_pickle=False) as f:
            return cls(mu=f["mu"], sigma=f["sigma"], count=int(f["count"]))


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """Sample mean and (unbiased) covariance of ``(n, d)`` features, in float64."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need features of shape (n >= 2, d), got {x.shape}")
    return GaussianStats(mu=x.mean(0), sigma=np.cov(x, rowvar=False), count=x.shape[0])


def _clip_round_off(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with those below round-off level (relative to the largest) set to 0."""
    tol = max(float(np.max(np.abs(w))), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    w, v = linalg.eigh((a + a.T) / 2.0)
    return (v * np.sqrt(_clip_round_off(w))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((Σ₁Σ₂)^{1/2})`` for symmetric PSD ``Σ₁, Σ₂``."""
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    w = linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sum(np.sqrt(_clip_round_off(w))))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)``."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"incompatible statistics: means {mu1.shape} / {mu2.shape}, covariances {s1.shape} / {s2.shape}"
        )
    if not (np.all(np.isfinite(s1)) and np.all(np.isfinite(s2)) and np.all(np.isfinite(mu1 - mu2))):
        raise ValueError("statistics contain NaN or inf")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))


def frechet_distance_between(a: GaussianStats, b: GaussianStats) -> float:
    """:func:`frechet_distance` of two :class:`GaussianStats`."""
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
