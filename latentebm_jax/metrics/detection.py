"""Detection metrics from per-example scores (scikit-learn does the computation).

Convention: ``labels`` are 1 for the positive class (anomalous / out-of-distribution) and 0 otherwise, and
a *higher* score means *more* positive. For LEBM anomaly detection (Sec. 3.4) the score is ``−log p(x, z)``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.shape[0]} scores but {labels.shape[0]} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError(f"labels must contain both 0 and 1, got values {sorted(set(labels.tolist()))}")
    return scores, labels


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision) of the positive class."""
    scores, labels = _check(scores, labels)
    return float(average_precision_score(labels, scores))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve."""
    scores, labels = _check(scores, labels)
    return float(roc_auc_score(labels, scores))


def _in_out(scores_in: np.ndarray, scores_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores_in, scores_out = np.ravel(scores_in), np.ravel(scores_out)
    labels = np.concatenate([np.ones(len(scores_in)), np.zeros(len(scores_out))])
    return np.concatenate([scores_in, scores_out]), labels


def ood_auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """OOD detection AUROC from per-example scores of an in-distribution and an out-of-distribution set,
    where a higher score means *more in-distribution* (e.g. the negative energy ``−E(v)`` of BiDVL Table 4,
    or the prior log-density of ICML 2024 Fig. 3); the in-distribution set is the positive class."""
    return auroc(*_in_out(scores_in, scores_out))


def ood_auprc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """AUPRC with the same convention as :func:`ood_auroc` (in-distribution positive)."""
    return auprc(*_in_out(scores_in, scores_out))
