"""The papers' own numbers, transcribed as printed, for the tables that ``experiments.reproduce`` writes.

Each published table is a :class:`PaperTable`: its columns and its rows (one per model, in the paper's order)
with every cell exactly as the paper prints it (``"0.336 ± 0.008"``, ``"29.44"``; ``None`` where the paper
leaves the cell empty or writes a dash). :func:`mean_of` reads the number in a cell. Figures are listed as
:class:`PaperFigure` (what they show); the library reproduces them as pictures, not numbers.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class PaperTable:
    """One table of a paper, as printed.

    Attributes:
      name: ``"table1"`` … (the paper's numbering).
      caption: the paper's caption (shortened where long).
      columns: column headers, e.g. ``("SVHN MSE", "SVHN FID")``.
      rows: ``(model, cells)`` pairs in the paper's order; ``cells`` has one entry per column, each the
        printed text or ``None``.
      ours: the row label of the paper's own model (``None`` when the table is an ablation of it).
      lower_is_better: per column, whether lower is better (``None`` where it is neither).
      note: anything a reader needs (units, which split, what a row is).
    """

    name: str
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str | None, ...]], ...]
    ours: str | None = None
    lower_is_better: tuple[bool | None, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        for model, cells in self.rows:
            if len(cells) != len(self.columns):
                raise ValueError(
                    f"{self.name}: row {model!r} has {len(cells)} cells for {len(self.columns)} columns"
                )
        if self.lower_is_better and len(self.lower_is_better) != len(self.columns):
            raise ValueError(f"{self.name}: lower_is_better needs one entry per column")
        if self.ours is not None and self.ours not in self.row_labels:
            raise ValueError(f"{self.name}: ours = {self.ours!r} is not a row")

    @property
    def row_labels(self) -> tuple[str, ...]:
        return tuple(model for model, _ in self.rows)

    def cell(self, model: str, column: str) -> str | None:
        """The printed cell of ``model``'s row in ``column``."""
        if column not in self.columns:
            raise KeyError(f"{self.name} has no column {column!r}; it has {self.columns}")
        for label, cells in self.rows:
            if label == model:
                return cells[self.columns.index(column)]
        raise KeyError(f"{self.name} has no row {model!r}; it has {self.row_labels}")


@dataclasses.dataclass(frozen=True)
class PaperFigure:
    """One figure of a paper: what it shows (``caption``)."""

    name: str
    caption: str


_NUMBER = re.compile(r"[-+−]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def mean_of(cell: str | None) -> float | None:
    """The (first) number printed in a cell: ``"0.336 ± 0.008"`` → 0.336; ``None`` for an empty cell."""
    if cell is None:
        return None
    found = _NUMBER.search(cell.replace(",", ""))
    return None if found is None else float(found.group().replace("−", "-"))
