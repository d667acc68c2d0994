"""Inception Score (Salimans et al. 2016) from classifier logits.

    IS = exp( E_x KL( p(y|x) ‖ p(y) ) ),   p(y) = E_x p(y|x),

computed on ``splits`` equal parts of the samples; the mean and standard deviation over parts are reported
(10 parts, as is customary). With the FID Inception network the logits are its 1008-way ``fc`` outputs.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """``(mean, std)`` of the Inception Score over ``splits`` parts of ``logits`` ``(n, classes)``."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or logits.shape[0] < splits:
        raise ValueError(f"need logits (n >= splits={splits}, classes), got {logits.shape}")
    scores = []
    for part in np.array_split(logits, splits):
        log_p = log_softmax(part, axis=1)  # log p(y|x)
        log_marginal = np.log(np.mean(np.exp(log_p), axis=0))  # log p(y)
        kl = np.sum(np.exp(log_p) * (log_p - log_marginal[None]), axis=1)
        scores.append(np.exp(np.mean(kl)))
    return float(np.mean(scores)), float(np.std(scores))
