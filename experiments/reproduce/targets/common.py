"""What the per-paper target modules share: the published tables by name, the AUPRC protocol's overrides,
and the phrases ``--list`` uses for what a scale needs."""

from __future__ import annotations

from experiments.reproduce.paper_tables import PaperFigure, PaperTable
from experiments.reproduce.protocol import Column, Protocol, Run
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


def auprc_protocols(
    prefix: str,
    label: str,
    config: str,
    main: Run,
    minutes: float,
    paper_config: str,
    needs: str,
    note: str = "",
) -> tuple[Protocol, Protocol]:
    """The AUPRC protocol of LEBM Table 4 and ICCV Table 3 at both scales: one run per held-out digit of
    :data:`HOLDOUT_DIGITS`, AUPRC averaged over the last :data:`LAST_EPOCHS` epochs, three seeds.

    At CPU scale (``config``, embedded digits) digit 9's run is ``main`` (the method's shared run holds
    digit 9 out), shown as ``"<label>, digit 9 held out"``; at paper scale each digit is a run of
    ``paper_config``."""

    def holdout(digit: int) -> Run:
        if digit == 9:
            return main
        overrides = _anomaly_protocol({"data.holdout_class": digit})
        return Run(
            f"{prefix}_holdout{digit}", f"{label}, digit {digit} held out", config, overrides, minutes=minutes
        )

    column = (Column("AUPRC", AUPRC, None, False),)
    cpu = Protocol(
        runs=tuple(holdout(d) for d in HOLDOUT_DIGITS),
        columns=column,
        relabel={main.name: f"{label}, digit 9 held out"},
        paper_cells={
            (f"{label}, digit {d} held out", "AUPRC"): ("Ours", f"Digit {d}") for d in HOLDOUT_DIGITS
        },
        seeds=3,
        note=note,
    )
    paper = Protocol(
        runs=tuple(
            Run(
                f"mnist_holdout{d}",
                f"Ours, digit {d}",
                paper_config,
                _anomaly_protocol({"data.holdout_class": d}),
            )
            for d in HOLDOUT_DIGITS
        ),
        columns=column,
        paper_cells={(f"Ours, digit {d}", "AUPRC"): ("Ours", f"Digit {d}") for d in HOLDOUT_DIGITS},
        seeds=3,
        needs=needs,
    )
    return cpu, paper


def sweep_protocol(
    prefix: str, config: str, key: str, label: str, values: tuple, column: Column, needs: str
) -> Protocol:
    """A paper-scale ablation: one run ``<prefix><value>`` of ``config`` per value of ``key``, each labelled
    ``label.format(value)`` and shown beside the paper's row of the same label."""
    runs = tuple(Run(f"{prefix}{v}", label.format(v), config, {key: v}) for v in values)
    return Protocol(runs=runs, columns=(column,), paper_rows={r.label: r.label for r in runs}, needs=needs)
