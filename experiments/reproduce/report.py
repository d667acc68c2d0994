"""Tables of a reproduced target: mean ± std over seeds of each column, the paper's number beside it, the
claims checked, as markdown and CSV.

The standard deviation is the sample one (``ddof = 1``) over seeds, ``0`` for a single seed; ``n`` says how
many seeds. A column whose key a run's ``summary.json`` lacks is left empty (``–``) and reported.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.reproduce.paper_tables import PaperTable
from experiments.reproduce.protocol import Column, Protocol, Target

_INDEX = re.compile(r"^(?P<key>[^\[]+)\[(?P<i>-?\d+)\]$")


def value_of(summary: Mapping[str, Any], key: str) -> float | None:
    """``summary[key]`` as a number; ``"probe_accuracy[2]"`` indexes a list; ``None`` if absent."""
    match = _INDEX.match(key)
    name, index = (match["key"], int(match["i"])) if match else (key, None)
    value = summary.get(name)
    if index is not None:
        if not isinstance(value, (list, tuple)) or not -len(value) <= index < len(value):
            return None
        value = value[index]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``0`` for one value)."""
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


class Results:
    """The numbers of one target at one scale: per (run label, column label), the values over seeds."""

    def __init__(
        self, target: Target, protocol: Protocol, summaries: Mapping[tuple[str, int], Mapping[str, Any]]
    ):
        self.target, self.protocol = target, protocol
        self.seeds = sorted({seed for _, seed in summaries})
        self.values: dict[tuple[str, str], list[float]] = {}
        self.missing: list[str] = []
        # a run the others build on (a stage-2 run's backbone) with none of the columns is no row
        built_on = {name for run in protocol.runs for name in run.run_dirs.values()}
        self.rows = [
            run
            for run in protocol.runs
            if run.name not in built_on
            or any(
                value_of(s, c.key) is not None
                for (n, _), s in summaries.items()
                if n == run.name
                for c in protocol.columns
            )
        ]
        for run in self.rows:
            for col in protocol.columns:
                got = []
                for seed in self.seeds:
                    v = value_of(summaries.get((run.name, seed), {}), col.key)
                    if v is None:
                        self.missing.append(f"{run.name} seed {seed}: {col.key}")
                    else:
                        got.append(v * col.scale)
                self.values[protocol.label_of(run), col.label] = got

    def means(self) -> dict[tuple[str, str], float]:
        return {k: mean_std(v)[0] for k, v in self.values.items() if v}

    def cell(self, run_label: str, col: Column) -> str:
        values = self.values.get((run_label, col.label), [])
        if not values:
            return "–"
        mean, std = mean_std(values)
        text = _fmt(mean, col.digits)
        if len(values) == 1:
            return text
        decimals = len(text.split(".")[1]) if "." in text else 0
        return f"{text} ± {std:.{decimals}f}"

    def paper_cell(self, run_label: str, col: Column) -> str | None:
        table = self.target.published
        if not isinstance(table, PaperTable):
            return None
        if (run_label, col.label) in self.protocol.paper_cells:
            return table.cell(*self.protocol.paper_cells[run_label, col.label])
        row = self.protocol.paper_rows.get(run_label)
        if row is None or col.paper_column is None:
            return None
        return table.cell(row, col.paper_column)

    def has_paper_numbers(self, col: Column) -> bool:
        if any(c == col.label for _, c in self.protocol.paper_cells):
            return True
        return col.paper_column is not None and bool(self.protocol.paper_rows)

    def claims(self) -> list[tuple[str, bool | None]]:
        """Each claim and whether it holds (``None`` when a number it needs is missing)."""
        means = self.means()
        out = []
        for claim in self.protocol.claims:
            try:
                out.append((claim.statement, bool(claim.holds(means))))
            except KeyError:
                out.append((claim.statement, None))
        return out


def _fmt(x: float, digits: int) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{x:.{decimals}f}"


def markdown(results: Results, command: str) -> str:
    """Our table (rows = runs, each column with the paper's number beside it where there is one), the
    claims, and the paper's own table as printed."""
    t, p = results.target, results.protocol
    with_paper = [c for c in p.columns if results.has_paper_numbers(c)]
    header = ["run"]
    for c in p.columns:
        arrow = " ↓" if c.lower_is_better else (" ↑" if c.lower_is_better is False else "")
        header.append(f"{c.label}{arrow}")
        if c in with_paper:
            header.append(f"paper: {c.paper_column}" if c.paper_column else f"paper: {c.label}")
    seeds = results.seeds
    lines = [
        f"**{t.paper} {t.name}** — {t.what}",
        "",
        f"`{command}` · seeds {', '.join(map(str, seeds))} (mean ± std over {len(seeds)})"
        if len(seeds) > 1
        else f"`{command}` · seed {seeds[0] if seeds else '–'}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for run in results.rows:
        label = p.label_of(run)
        row = [label]
        for c in p.columns:
            row.append(results.cell(label, c))
            if c in with_paper:
                row.append(results.paper_cell(label, c) or "")
        lines.append("| " + " | ".join(row) + " |")
    claims = results.claims()
    if claims:
        lines.append("")
        for statement, holds in claims:
            verdict = "**holds**" if holds else ("**does not hold**" if holds is False else "not measured")
            lines.append(f"- {statement}: {verdict}")
    if p.note:
        lines += ["", p.note]
    if isinstance(t.published, PaperTable):
        lines += ["", published_markdown(t.published)]
    return "\n".join(lines) + "\n"


def published_markdown(table: PaperTable) -> str:
    """The paper's table as printed (its own model's row in bold)."""
    lines = [
        f"<details><summary>The paper's {table.name}: {table.caption}</summary>",
        "",
        "| model | " + " | ".join(table.columns) + " |",
        "|" + "---|" * (len(table.columns) + 1),
    ]
    for model, cells in table.rows:
        label = f"**{model}**" if model == table.ours else model
        lines.append(f"| {label} | " + " | ".join(c if c is not None else "–" for c in cells) + " |")
    if table.note:
        lines += ["", table.note]
    lines += ["", "</details>"]
    return "\n".join(lines)


def csv_text(results: Results) -> str:
    """One line per (run, column): n, mean, std, the values over seeds, the paper's row and number."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["paper", "target", "run", "column", "key", "n", "mean", "std", "values", "paper_row", "paper_value"]
    )
    t, p = results.target, results.protocol
    for run in results.rows:
        label = p.label_of(run)
        for c in p.columns:
            values = results.values.get((label, c.label), [])
            mean, std = mean_std(values) if values else (math.nan, math.nan)
            writer.writerow(
                [
                    t.paper,
                    t.name,
                    label,
                    c.label,
                    c.key,
                    len(values),
                    f"{mean:.6g}",
                    f"{std:.6g}",
                    " ".join(f"{v:.6g}" for v in values),
                    p.paper_rows.get(label, ""),
                    results.paper_cell(label, c) or "",
                ]
            )
    return buf.getvalue()
