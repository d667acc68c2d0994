"""What a reproduction target is: the runs of a protocol, the numbers read from them, the claims checked.

A :class:`Target` is one table or figure of a paper. At each scale (``cpu``: the embedded data and budgets
that fit 2 cores; ``paper``: the paper's datasets and settings) it has a :class:`Protocol`: the training
runs (:class:`Run`: a config file, overrides, seeds), the columns read from each run's ``summary.json``
(:class:`Column`), the figures copied out of the run directories, the qualitative claims checked on the
means (:class:`Claim`), and what the machine needs that this one may lack (``needs``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from experiments.reproduce.paper_tables import PaperFigure, PaperTable

PAPERS = {
    "lebm": "Pang et al., Learning Latent Space Energy-Based Prior Model (NeurIPS 2020)",
    "iccv": "Cui, Wu, Han, Learning Hierarchical Features with Joint Latent Space EBM Prior (ICCV 2023)",
    "icml": "Cui & Han, Learning Latent Space Hierarchical EBM Diffusion Models (ICML 2024)",
    "bidvl": "Kan et al., Bi-level Doubly Variational Learning for EBLVMs (CVPR 2022)",
}
SCALES = ("cpu", "paper")


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run (repeated for each seed).

    Attributes:
      name: the run's directory name under ``<workdir>/<paper>/<scale>/``; equal names in one paper and
        scale must mean equal runs (targets share them: one LEBM run gives Table 1's row and Fig. 3).
      label: the row label in our table.
      config: ``"configs/<file>.py[:method]"``.
      overrides: ``{"group.key": value}`` on top of the config (as ``--config.group.key=value``).
      run_dirs: ``{"group.key": run name}``: keys set to another run's directory of the same seed (stage 2
        on its backbone); that run goes first.
      minutes: measured minutes per seed on 2 CPU cores (``--list``).
    """

    name: str
    label: str
    config: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    run_dirs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    minutes: float | None = None


@dataclasses.dataclass(frozen=True)
class Column:
    """One number per run: ``summary.json[key]`` (``"probe_accuracy[2]"`` indexes a list).

    ``paper_column`` names the published table's column it sits beside (``None``: no published number).
    """

    label: str
    key: str
    paper_column: str | None = None
    lower_is_better: bool | None = None
    digits: int = 3
    scale: float = 1.0  # shown as value × scale (100: a fraction as a percentage, as the paper prints it)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A qualitative result: ``holds(means)`` on ``{(run label, column label): mean}``."""

    statement: str
    holds: Callable[[Mapping[tuple[str, str], float]], bool]


def lower(run_a: str, run_b: str, column: str) -> Claim:
    """``run_a``'s ``column`` is below ``run_b``'s."""
    return Claim(f"{run_a}: lower {column} than {run_b}", lambda m: m[run_a, column] < m[run_b, column])


def higher(run_a: str, run_b: str, column: str) -> Claim:
    """``run_a``'s ``column`` is above ``run_b``'s."""
    return Claim(f"{run_a}: higher {column} than {run_b}", lambda m: m[run_a, column] > m[run_b, column])


def increasing(run: str, columns: tuple[str, ...]) -> Claim:
    """``run``'s numbers rise along ``columns``."""
    return Claim(
        f"{run}: {' < '.join(columns)}",
        lambda m: all(m[run, a] < m[run, b] for a, b in itertools.pairwise(columns)),
    )


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A target at one scale.

    Attributes:
      runs: the training runs (each repeated for ``seeds`` seeds unless ``--seeds`` says otherwise).
      columns: the numbers read from each run's ``summary.json``.
      paper_rows: run label → the published table's row beside it (with each column's ``paper_column``).
      paper_cells: ``(run label, column label)`` → ``(published row, published column)``, for tables whose
        layout differs from ours (one run per held-out digit against one published row of digits).
      figures: ``(run name, file)`` copied out of the first seed's run directory.
      relabel: run name → its row label in this table (a run shared with another target under another
        label); ``paper_rows``, ``paper_cells`` and claims use the label shown.
      claims: qualitative results checked on the means.
      seeds: the default number of seeds.
      needs: what the machine needs beyond this repository ('' = runs on 2 CPU cores as is).
      note: printed under the table.
    """

    runs: tuple[Run, ...]
    columns: tuple[Column, ...] = ()
    paper_rows: Mapping[str, str] = dataclasses.field(default_factory=dict)
    paper_cells: Mapping[tuple[str, str], tuple[str, str]] = dataclasses.field(default_factory=dict)
    figures: tuple[tuple[str, str], ...] = ()
    relabel: Mapping[str, str] = dataclasses.field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    seeds: int = 1
    needs: str = ""
    note: str = ""

    def label_of(self, run: Run) -> str:
        return self.relabel.get(run.name, run.label)

    def run_named(self, name: str) -> Run:
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(name)


@dataclasses.dataclass(frozen=True)
class Target:
    """One table or figure of a paper and how to reproduce it at each scale.

    ``published`` is the paper's table (its numbers sit beside ours) or figure; ``cpu`` and ``paper`` are
    the protocols (``None``: not reproducible at that scale, ``why_not`` says why).
    """

    paper: str
    name: str
    what: str
    published: PaperTable | PaperFigure | None
    cpu: Protocol | None = None
    paper_scale: Protocol | None = None
    why_not: str = ""

    @property
    def key(self) -> str:
        return f"{self.paper} {self.name}"

    def protocol(self, scale: str) -> Protocol | None:
        return self.cpu if scale == "cpu" else self.paper_scale
