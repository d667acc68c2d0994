"""Every table and figure of the four papers, with the protocol that reproduces it at each scale.

CPU scale uses the embedded digits (and the shipped text corpora) with budgets that fit 2 cores; the columns
are the library's numbers for what the paper measures there (``fd``, the domain feature distance, where the
paper reports FID: FID's Inception network is not available offline). Paper scale uses the paper's configs
and datasets (``--set data.data_dir=...``, ``--set eval.inception_weights=...``) and needs an accelerator.
Targets that need something no config here provides (another paper's model, a dataset without a config)
say so in ``why_not``.
"""

from __future__ import annotations

from experiments.reproduce.protocol import PAPERS, Protocol, Run, Target
from experiments.reproduce.targets.bidvl import BIDVL_TARGETS
from experiments.reproduce.targets.common import _PUBLISHED, HOLDOUT_DIGITS, LAST_EPOCHS, published
from experiments.reproduce.targets.iccv import ICCV_TARGETS
from experiments.reproduce.targets.icml import ICML_TARGETS
from experiments.reproduce.targets.lebm import LEBM_TARGETS

__all__ = ["HOLDOUT_DIGITS", "LAST_EPOCHS", "TARGETS", "_PUBLISHED", "listing", "published"]

TARGETS: dict[str, Target] = {t.key: t for t in (*LEBM_TARGETS, *ICCV_TARGETS, *ICML_TARGETS, *BIDVL_TARGETS)}


def _check_registry() -> None:
    """Equal run names within a paper and scale mean equal runs; published names exist."""
    seen: dict[tuple[str, str, str], Run] = {}
    for t in TARGETS.values():
        for scale in ("cpu", "paper"):
            protocol = t.protocol(scale)
            for run in protocol.runs if protocol else ():
                other = seen.setdefault((t.paper, scale, run.name), run)
                if other != run:
                    raise ValueError(
                        f"{t.key}: run {run.name!r} differs from another target's run of that name"
                    )


_check_registry()


def _minutes(protocol: Protocol) -> str:
    known = [r.minutes for r in protocol.runs if r.minutes is not None]
    if len(known) < len(protocol.runs):
        return ""
    return f", ~{sum(known) * protocol.seeds:.0f} min on 2 cores"


def listing(paper: str | None = None) -> str:
    """Every target: what it measures, and at each scale the runs, seeds and what is needed."""
    lines = []
    for name, title in PAPERS.items():
        if paper is not None and name != paper:
            continue
        lines.append(f"{name}: {title}")
        for t in (t for t in TARGETS.values() if t.paper == name):
            lines.append(f"  {t.name:<8} {t.what}")
            for scale in ("cpu", "paper"):
                p = t.protocol(scale)
                if p is None:
                    continue
                runs = ", ".join(r.name for r in p.runs)
                extra = f"; needs {p.needs}" if p.needs else _minutes(p)
                lines.append(f"           {scale}: {len(p.runs)} run(s) × {p.seeds} seed(s) [{runs}]{extra}")
            if t.cpu is None:
                lines.append(f"           cpu: not here: {t.why_not}")
    return "\n".join(lines)
