"""Reproduce a paper's table or figure: run its protocol, then write our numbers beside the paper's.

    python -m experiments.reproduce --list                         # every target, what it measures, cost
    python -m experiments.reproduce lebm table1                    # CPU scale (embedded digits), seed 1
    python -m experiments.reproduce lebm table4 --seeds=3          # 5 held-out digits x 3 seeds
    python -m experiments.reproduce lebm table1 --scale=paper --set data.data_dir=/data/tfds \\
        --set eval.inception_weights=fid_inception.npz             # the paper's datasets (accelerator)
    python -m experiments.reproduce iccv all --readme=README.md    # every ICCV target, README tables
    python -m experiments.reproduce --status                       # every target's runs and claims so far

Runs go to ``<workdir>/<paper>/<scale>/<run>/seed<k>`` (``--workdir``, default ``runs/reproduce``); a
finished run is read back, an unfinished one resumes from its newest checkpoint, so the same command
continues after an interruption. Each target writes ``<target>.md`` (our mean ± std over seeds beside the
paper's numbers, the claims checked, the paper's table as printed), ``<target>.csv`` and
``<target>_figures/`` next to the runs. ``--readme=FILE`` replaces the block between
``<!-- reproduce <paper> <target> <scale> -->`` and ``<!-- /reproduce -->`` in FILE with the table.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments.reproduce.protocol import PAPERS, SCALES, Target

EXIT_PREEMPTED = 75


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.reproduce",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paper", nargs="?", help=f"one of {', '.join(PAPERS)}")
    p.add_argument("target", nargs="?", help="a target of that paper (see --list), or 'all'")
    p.add_argument("--scale", default="cpu", choices=SCALES, help="cpu (embedded data) or paper")
    p.add_argument("--seeds", type=int, default=None, help="seeds 1..N (default: the target's)")
    p.add_argument("--workdir", default=os.path.join("runs", "reproduce"), help="where the runs go")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, e.g. data.data_dir=/data/tfds (repeatable)",
    )
    p.add_argument("--list", action="store_true", help="list every target and what it needs")
    p.add_argument(
        "--status",
        action="store_true",
        help="every target's finished runs and claims, from the workdir (trains nothing); with --readme, "
        "the README's status block",
    )
    p.add_argument("--report_only", action="store_true", help="tables from finished runs; train nothing")
    p.add_argument("--readme", default=None, help="replace this target's block in this markdown file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from experiments.reproduce import targets

    if args.list:
        print(targets.listing(args.paper))
        return 0
    if args.status:
        from experiments.reproduce.reproduce import status

        chosen = [t for t in targets.TARGETS.values() if args.paper in (None, t.paper)]
        try:
            print(
                status(
                    chosen,
                    scale=args.scale,
                    workdir=args.workdir,
                    extra=_parse_sets(args.set),
                    readme=args.readme,
                )
            )
        except Exception as err:
            return _user_error(err, args.workdir)
        return 0
    try:
        chosen = _chosen(targets.TARGETS, args.paper, args.target, args.scale)
        extra = _parse_sets(args.set)
        if args.seeds is not None and args.seeds < 1:
            raise ValueError(f"--seeds = {args.seeds} must be at least 1")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from experiments.reproduce.reproduce import reproduce

    try:
        for target in chosen:
            reproduce(
                target,
                scale=args.scale,
                workdir=args.workdir,
                seeds=args.seeds,
                extra=extra,
                report_only=args.report_only,
                readme=args.readme,
            )
    except Exception as err:
        return _user_error(err, args.workdir)
    return 0


def _chosen(all_targets: dict[str, Target], paper: str | None, name: str | None, scale: str) -> list[Target]:
    if paper is None or name is None:
        raise ValueError("name a paper and a target (or 'all'); --list shows them")
    if paper not in PAPERS:
        raise ValueError(f"paper {paper!r} is not one of {', '.join(PAPERS)}")
    of_paper = [t for t in all_targets.values() if t.paper == paper]
    if name == "all":
        runnable = [t for t in of_paper if t.protocol(scale) is not None]
        return runnable
    for t in of_paper:
        if t.name == name:
            if t.protocol(scale) is None:
                raise ValueError(f"{paper} {name} has no {scale}-scale protocol: {t.why_not}")
            return [t]
    raise ValueError(f"{paper} has no target {name!r}; it has {', '.join(t.name for t in of_paper)}")


def _parse_sets(pairs: list[str]) -> dict:
    from experiments.reproduce.runner import parse_value

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r} must be KEY=VALUE, e.g. --set data.data_dir=/data/tfds")
        out[key.strip()] = parse_value(value.strip())
    return out


def _user_error(err: Exception, workdir: str) -> int:
    from experiments.main import user_error
    from latentebm_jax.training.preemption import Preempted

    if isinstance(err, Preempted):
        print(str(err), file=sys.stderr)  # names the checkpoint; the same command resumes
        return EXIT_PREEMPTED
    status = user_error(err, workdir)
    if status is None:
        raise err
    return status


if __name__ == "__main__":
    sys.exit(main())
