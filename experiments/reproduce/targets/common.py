"""What the per-paper target modules share: the published tables by name, the AUPRC protocol's overrides,
and the phrases ``--list`` uses for what a scale needs."""

from __future__ import annotations

from experiments.reproduce.paper_tables import PaperFigure, PaperTable
from experiments.reproduce.published import bidvl, iccv, icml, lebm

_PUBLISHED = {"lebm": lebm, "iccv": iccv, "icml": icml, "bidvl": bidvl}

HOLDOUT_DIGITS = (1, 4, 5, 7, 9)  # LEBM Table 4, ICCV Table 3
LAST_EPOCHS = 10  # "averaged over the last 10 epochs"
TFDS = "tfds datasets in --set data.data_dir=DIR (see 'Preparing real datasets')"
FID = "FID weights: --set eval.inception_weights=FILE (see 'Evaluation')"
ACCEL = "an accelerator (days of GPU time at the paper's budgets)"


def published(paper: str, name: str) -> PaperTable | PaperFigure:
    module = _PUBLISHED[paper]
    for item in (*module.TABLES, *module.FIGURES):
        if item.name == name:
            return item
    raise KeyError(f"{paper} has no published {name}")


def _anomaly_protocol(overrides: dict) -> dict:
    """AUPRC after each of the last 10 epochs, averaged (``auprc_last_10_epochs``)."""
    return {
        **overrides,
        "train.eval_last_epochs": LAST_EPOCHS,
        "eval.interval_metrics": ("anomaly",),
    }


AUPRC = f"auprc_last_{LAST_EPOCHS}_epochs"
