"""Evaluation metrics: Fréchet distances (FID, domain ``fd``), Inception Score, reconstruction error,
detection scores (AUPRC, AUROC), latent probes. FID's Inception network is in ``metrics.inception``."""

from latentebm_jax.metrics.detection import auprc, auroc, ood_auprc, ood_auroc
from latentebm_jax.metrics.frechet import GaussianStats, frechet_distance, gaussian_stats
from latentebm_jax.metrics.inception_score import inception_score
from latentebm_jax.metrics.probe import layer_probe_accuracies, probe_accuracy
from latentebm_jax.metrics.reconstruction import per_example_mse, reconstruction_errors

__all__ = [
    "GaussianStats",
    "auprc",
    "auroc",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "layer_probe_accuracies",
    "ood_auprc",
    "ood_auroc",
    "per_example_mse",
    "probe_accuracy",
    "reconstruction_errors",
]
