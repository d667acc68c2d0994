"""One target end to end: its runs, its table (markdown and CSV), its figures, and its README block."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from experiments.reproduce import report, runner
from experiments.reproduce.protocol import Protocol, Target
from latentebm_jax.config_schema import ConfigError

BLOCK_END = "<!-- /reproduce -->"


def block_start(target: Target, scale: str) -> str:
    return f"<!-- reproduce {target.paper} {target.name} {scale} -->"


def command_line(target: Target, scale: str, seeds: list[int], extra: Mapping[str, Any]) -> str:
    """The command that reproduces the table (seeds named when they differ from the target's default)."""
    parts = ["python -m experiments.reproduce", target.paper, target.name]
    if scale != "cpu":
        parts.append(f"--scale={scale}")
    if len(seeds) != target.protocol(scale).seeds:
        parts.append(f"--seeds={len(seeds)}")
    parts += [f"--set {k}={v}" for k, v in extra.items()]
    return " ".join(parts)


def reproduce(
    target: Target,
    *,
    scale: str = "cpu",
    workdir: str = os.path.join("runs", "reproduce"),
    seeds: int | None = None,
    extra: Mapping[str, Any] = {},
    report_only: bool = False,
    readme: str | None = None,
    train: Callable | None = None,
    say: Callable[[str], None] = print,
) -> report.Results:
    """Run (or read back) ``target``'s protocol at ``scale`` for seeds ``1..seeds`` and write
    ``<workdir>/<paper>/<scale>/<target>.{md,csv}`` and ``<target>_figures/``; with ``readme``, replace the
    target's block in that file. Returns the results."""
    protocol = target.protocol(scale)
    if protocol is None:
        raise ConfigError(f"{target.key} has no {scale}-scale protocol: {target.why_not}")
    seed_list = list(range(1, (seeds or protocol.seeds) + 1))
    if readme is not None and not os.path.isfile(readme):
        raise FileNotFoundError(f"--readme file {readme} does not exist")
    say(f"{target.key} ({scale}): {target.what}")
    if protocol.needs:
        say(f"  needs: {protocol.needs}")
    results, _ = _results(
        target, protocol, scale, workdir, seed_list, extra, train=train, report_only=report_only, say=say
    )
    out = os.path.join(workdir, target.paper, scale)
    os.makedirs(out, exist_ok=True)
    command = command_line(target, scale, seed_list, extra)
    text = report.markdown(results, command)
    figures = runner.copy_figures(
        protocol,
        paper=target.paper,
        scale=scale,
        workdir=workdir,
        seeds=seed_list,
        out_dir=os.path.join(out, f"{target.name}_figures"),
    )
    if figures:
        where = f"{target.paper}/{scale}/"
        text += (
            f"\nFigures (under the workdir's `{where}`): "
            + ", ".join(f"`{os.path.relpath(f, out)}`" for f in figures)
            + "\n"
        )
    with open(os.path.join(out, f"{target.name}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, f"{target.name}.csv"), "w") as f:
        f.write(report.csv_text(results))
    if results.missing:
        say(f"  missing from summary.json: {'; '.join(results.missing)}")
    say(text)
    say(
        f"wrote {os.path.join(out, target.name)}.md, .csv"
        + (f" and {len(figures)} figures" if figures else "")
    )
    if readme is not None:
        replace_block(readme, block_start(target, scale), text)
        say(f"updated {readme}")
    return results


def _results(
    target: Target,
    protocol: Protocol,
    scale: str,
    workdir: str,
    seeds: list[int],
    extra: Mapping[str, Any],
    *,
    report_only: bool,
    say: Callable[[str], None],
    train: Callable | None = None,
) -> tuple[report.Results, Mapping[tuple[str, int], Mapping[str, Any]]]:
    """Run (or, with ``report_only``, read back) ``protocol``'s runs × ``seeds``: the results and the
    finished runs' summaries."""
    summaries = runner.run_protocol(
        protocol,
        paper=target.paper,
        scale=scale,
        workdir=workdir,
        seeds=seeds,
        extra=extra,
        train=train,
        report_only=report_only,
        say=say,
    )
    return report.Results(target, protocol, summaries), summaries


def replace_block(path: str, start: str, text: str) -> None:
    """Replace what lies between ``start`` and the next :data:`BLOCK_END` in ``path`` with ``text``; a file
    without the block gets it appended."""
    with open(path) as f:
        content = f.read()
    block = f"{start}\n{text.rstrip()}\n{BLOCK_END}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(BLOCK_END), re.DOTALL)
    if pattern.search(content):
        content = pattern.sub(lambda _: block, content, count=1)
    else:
        content = content.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(content)


def status_block_start(scale: str) -> str:
    return f"<!-- reproduce status {scale} -->"


def status(
    all_targets: list[Target],
    *,
    scale: str = "cpu",
    workdir: str = os.path.join("runs", "reproduce"),
    extra: Mapping[str, Any] = {},
    readme: str | None = None,
) -> str:
    """Where every target with a ``scale`` protocol stands, from the finished runs in ``workdir`` (nothing
    trains): how many of its runs × seeds are finished, and each of its claims (holds / does not hold / not
    measured). Returns the markdown; with ``readme`` it replaces the ``status`` block there."""
    lines = [
        f"`python -m experiments.reproduce --status --scale={scale}` · from the runs in the workdir",
        "",
        "| target | what | finished runs × seeds | claims |",
        "|---|---|---|---|",
    ]
    for target in all_targets:
        protocol = target.protocol(scale)
        if protocol is None:
            continue
        seeds = list(range(1, protocol.seeds + 1))
        results, summaries = _results(
            target, protocol, scale, workdir, seeds, extra, report_only=True, say=lambda _: None
        )
        claims = results.claims() if summaries else []
        verdicts = "; ".join(
            f"{statement}: **{'holds' if holds else 'does not hold' if holds is False else 'not measured'}**"
            for statement, holds in claims
        )
        if not verdicts:
            verdicts = "not run" if not summaries else ("figures" if not protocol.columns else "numbers only")
        done = len(summaries)
        lines.append(
            f"| {target.paper} {target.name} | {target.what} | {done} of {len(protocol.runs) * len(seeds)} "
            f"| {verdicts} |"
        )
    text = "\n".join(lines) + "\n"
    if readme is not None:
        replace_block(readme, status_block_start(scale), text)
    return text
