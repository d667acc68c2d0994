"""Evaluation metrics: reconstruction error and detection scores."""

from latentebm_jax.metrics.detection import auprc, auroc
from latentebm_jax.metrics.reconstruction import per_example_mse

__all__ = ["auprc", "auroc", "per_example_mse"]
