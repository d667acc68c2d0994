"""The one training loop every method uses, and the evaluation and sampling entry points.

``train`` checks the run directory and takes its lock, refuses to continue a checkpoint with a config that
changes what it computes (unless asked to), resumes from the newest checkpoint, runs the method's
``pmap``-ed train step with a tqdm bar, appends averaged metrics to ``metrics.jsonl``, runs
``config.eval.interval_metrics`` at every eval interval, checkpoints periodically (each checkpoint with its
config and checksums) and at the end, and finishes with :func:`evaluate` (``summary.json``).

It stops cleanly:

* on SIGTERM / SIGINT: after the step in flight, checkpointed, with :class:`Preempted` (the command line
  exits with status 75; the same command resumes);
* on the first NaN / inf metric: :class:`NonFiniteError` naming the step and the quantity; the newest
  checkpoint on disk is the last good one;
* on divergence beyond NaN (energies out of bounds, generator gradients gone; ``training/divergence.py``):
  :class:`DivergenceError` naming the last checkpoint written before the first warning.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from latentebm_jax.checkpoint import Checkpointer
from latentebm_jax.data import DataSplits
from latentebm_jax.progress import interactive, tqdm
from latentebm_jax.training import parallel, run_log
from latentebm_jax.training.divergence import DivergenceError, DivergenceGuard
from latentebm_jax.training.evaluate import (
    evaluate,
    evaluate_interval,
    last_epochs_steps,
    sample,
    stored_config,
)
from latentebm_jax.training.metrics_writer import write_json
from latentebm_jax.training.preemption import Preempted, PreemptionWatch
from latentebm_jax.training.run_log import RunLog
from latentebm_jax.training.setup import RunSetup, is_main_process, log
from latentebm_jax.training.workdir import (
    WorkdirLock,
    check_provenance,
    check_workdir,
    config_json,
    record_config,
)

Hook = Callable[[int], None]

__all__ = ["DivergenceError", "NonFiniteError", "Preempted", "evaluate", "sample", "train"]


class NonFiniteError(FloatingPointError):
    """A loss or energy became NaN or infinite during training."""


def _first_non_finite(pending: list[tuple[int, dict]]) -> tuple[int, dict[str, float]] | None:
    """The first step with a non-finite metric, and every non-finite metric of that step."""
    for step, metrics in pending:
        bad = {name: float(value) for name, value in metrics.items() if not np.isfinite(value)}
        if bad:
            return step, bad
    return None


def _progress_kwargs(main: bool) -> dict:
    # Leave `disable` unset on a terminal so tqdm's TQDM_DISABLE environment variable works; a log file or
    # pipe gets plain lines (run_log.progress_line) instead of a bar. smoothing=0: the rate is the mean
    # since the bar's start, which is reset after the first (compiling) step.
    if not main or not interactive():
        return {"disable": True}
    return {"smoothing": 0}


def _restart_rate(bar, n: int) -> None:
    """Start the bar's clock after the first step, so its rate and ETA leave compilation out."""
    if getattr(bar, "disable", False):
        return
    bar.initial = bar.last_print_n = n
    bar.start_t = bar.last_print_t = time.time()


def train(
    config,
    workdir: str,
    *,
    splits: DataSplits | None = None,
    hooks: Sequence[Hook] = (),
    allow_config_change: bool = False,
    config_defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``config`` in ``workdir`` (resuming if it holds checkpoints), then evaluate.

    Args:
      config: a validated config (see ``configs/default.py``).
      workdir: run directory; receives ``config.json``, ``metrics.jsonl``, PNGs, checkpoints and
        ``summary.json``.
      splits: data to use instead of ``config.data`` (tests inject small or faulty data here).
      hooks: called as ``hook(step)`` after every step (``step`` = steps completed).
      allow_config_change: continue from a checkpoint written with a config that differs in keys that
        change the model, the data or the optimisation (recorded in ``config_history.jsonl``).
      config_defaults: the library's default config for ``config``'s method and dataset
        (``configs.default.reference_config``, as JSON): keys the checkpoint's config lacks that ``config``
        holds at these defaults were added by a later version of the library and are no change.

    Returns:
      the summary written to ``summary.json``.

    Raises:
      WorkdirError, CheckpointError, ConfigError before anything compiles; Preempted, NonFiniteError,
      DivergenceError while training.
    """
    t_start = time.time()
    main = is_main_process()
    workdir = check_workdir(workdir, "train")
    with WorkdirLock(workdir, enabled=main):
        setup = RunSetup(config, splits)
        tcfg = config.train
        ckpt = Checkpointer(workdir, tcfg.keep_checkpoints, primary=main)
        try:
            newest = ckpt.latest_step()
            changes = []
            if newest is not None:
                stored = stored_config(ckpt, newest, workdir)
                changes = check_provenance(
                    stored, config, newest, allow_config_change, setup.run_only_keys, config_defaults
                )
            # a method's own refusal (stage 2 without its backbone) comes before anything is written
            state = setup.restore_or_init(ckpt)
            if main:
                record_config(config, workdir, changes)
            summary = _train_loop(setup, ckpt, state, workdir, hooks, t_start)
        finally:
            ckpt.close()
    return summary


def _train_loop(setup: RunSetup, ckpt: Checkpointer, state, workdir: str, hooks, t_start: float) -> dict:
    start = int(state.step)
    logs = RunLog(workdir, setup.config, enabled=is_main_process(), start_step=start)
    logs.metrics.truncate_after(start)
    try:
        return _train_steps(setup, ckpt, state, workdir, hooks, t_start, logs)
    finally:
        logs.close()


def _train_steps(
    setup: RunSetup, ckpt: Checkpointer, state, workdir: str, hooks, t_start: float, logs: RunLog
) -> dict:
    config, main = setup.config, is_main_process()
    tcfg = config.train
    cfg_json = config_json(config)
    start, total = int(state.step), setup.total_steps
    title = f"{config.method} on {config.data.name}"
    curves_path = os.path.join(workdir, run_log.LOSS_CURVES)
    if start >= total:
        log.info("nothing to train: checkpoint step %d >= %d steps", start, total)
    pstate = parallel.replicate(state)
    del state
    step_fn = parallel.pmap_train_step(setup.method.train_step)
    pending: list[tuple[int, Any]] = []
    window: list[dict[str, float]] = []
    saved = ckpt.all_steps()
    guard = DivergenceGuard(tcfg, setup.method.watch)

    def last_good(before: int | None = None) -> str:
        good = [s for s in saved if before is None or s < before]
        if not good:
            return "no checkpoint was written before it"
        return f"the last good checkpoint is step {good[-1]} in {ckpt.directory}"

    def save(step: int) -> None:
        if step not in saved:
            ckpt.save(step, parallel.unreplicate(pstate), cfg_json)
            saved.append(step)

    def flush() -> None:
        """Fetch pending metrics, stop on the first non-finite one, log window averages."""
        nonlocal pending
        fetched = [(s, {k: float(v[0]) for k, v in jax.device_get(m).items()}) for s, m in pending]
        pending = []
        bad = _first_non_finite(fetched)
        if bad is not None:
            step, values = bad
            quantities = ", ".join(f"'{k}' = {v}" for k, v in values.items())
            raise NonFiniteError(
                f"training stopped at step {step}: non-finite {quantities}; {last_good()}. "
                f"Lower the learning rates or Langevin step sizes, or set a gradient clip norm."
            )
        window.extend(m for _, m in fetched)

    def write_window(done: int, bar) -> None:
        if not window:
            return
        means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        window.clear()
        logs.write(done, {"epoch": done / setup.steps_per_epoch, **means})
        bar.set_postfix({k: f"{means[k]:.3g}" for k in run_log.ordered_quantities(means)[:4]})
        if main and not interactive():
            timed = done - start - 1  # steps after the first, compiling one
            rate = timed / (time.time() - t_compiled) if timed > 0 and t_compiled else None
            log.info("%s", run_log.progress_line(done, total, rate, means))
        problems = guard.check(done, means)
        if problems:
            later = [s for s in saved if s >= guard.first_warning]
            suspect = f" (checkpoints {later} were written after the first warning)" if later else ""
            raise DivergenceError(
                f"training stopped at step {done}: {'; '.join(problems)} for {guard.streak} log windows in a "
                f"row since step {guard.first_warning}; {last_good(before=guard.first_warning)}{suspect}. "
                f"Lower the learning rates or step sizes, or raise train.max_abs_energy / lower "
                f"train.min_grad_norm if these values are expected."
            )

    last_epoch_ends = set(last_epochs_steps(tcfg.eval_last_epochs, setup.steps_per_epoch, total))
    t_loop = time.time()
    first_step_seconds = 0.0
    t_compiled = 0.0
    with (
        PreemptionWatch() as watch,
        tqdm(
            total=total,
            initial=start,
            desc=f"train {config.method}",
            unit="step",
            dynamic_ncols=True,
            **_progress_kwargs(main),
        ) as bar,
    ):
        batches = setup.batcher.iterate(start, total, prefetch=tcfg.prefetch)
        for step, batch in zip(range(start, total), batches):
            pstate, metrics = step_fn(pstate, parallel.shard_batch(batch))
            if step == start:
                jax.block_until_ready(metrics)
                t_compiled = time.time()
                first_step_seconds = t_compiled - t_loop
                _restart_rate(bar, step + 1)
            done = step + 1
            pending.append((done, metrics))
            bar.update(1)
            for hook in hooks:
                hook(done)
            is_last = done == total
            if done % tcfg.log_every == 0 or is_last:
                flush()
                write_window(done, bar)
            if done % tcfg.ckpt_every == 0 or is_last:
                flush()
                save(done)
            if not is_last and watch.should_stop(done):
                flush()
                write_window(done, bar)
                save(done)
                raise Preempted(watch.signal_name, done, ckpt.directory)
            periodic = tcfg.eval_every and done % tcfg.eval_every == 0 and not is_last
            if periodic or done in last_epoch_ends:
                flush()
                if main and setup.interval_evaluators:
                    # fetch parameters and model state only, not the optimiser state
                    params = setup.method.inference_params(parallel.unreplicate(pstate.replace(opt_state={})))
                    before = run_log.png_times(workdir)
                    numbers = evaluate_interval(setup, params, workdir, done)
                    if numbers:
                        logs.write(done, {f"eval/{k}": v for k, v in numbers.items()})
                    run_log.save_loss_curves(
                        logs.metrics.path, os.path.join(workdir, run_log.LOSS_CURVES), title
                    )
                    logs.images(done, run_log.new_pngs(workdir, before))
    train_time = time.time() - t_loop
    flush()
    final = parallel.unreplicate(pstate)
    save(int(final.step))
    before = run_log.png_times(workdir)
    summary = evaluate(config, workdir, state=final, setup=setup, logs=logs)
    if main:
        run_log.save_loss_curves(logs.metrics.path, curves_path, title)
        logs.images(int(final.step), run_log.new_pngs(workdir, before))
    summary.update(
        {
            "train_steps": int(final.step),
            "steps_per_epoch": setup.steps_per_epoch,
            "train_loop_seconds": round(train_time, 2),
            "first_step_seconds": round(first_step_seconds, 2),  # includes compilation
            "wall_seconds": round(time.time() - t_start, 2),
        }
    )
    if main:
        write_json(os.path.join(workdir, "summary.json"), summary)
    return summary
