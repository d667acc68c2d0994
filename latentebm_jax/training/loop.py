"""The one training loop every method uses, and the evaluation and sampling entry points.

``train`` resumes from the newest checkpoint in the workdir, runs the method's ``pmap``-ed train step with a
tqdm bar, appends averaged metrics to ``metrics.jsonl``, runs ``config.eval.interval_metrics`` at every eval
interval, checkpoints periodically and at the end, and finishes with :func:`evaluate` (``summary.json``).

Every step's metrics are checked for NaN/inf before anything is logged or saved; the first non-finite
quantity stops the run with :class:`NonFiniteError` naming the step and the quantity, and the newest
checkpoint on disk is the last good one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from latentebm_jax.checkpoint import Checkpointer
from latentebm_jax.data import DataSplits
from latentebm_jax.training import parallel
from latentebm_jax.training.evaluate import evaluate, evaluate_interval, sample
from latentebm_jax.training.metrics_writer import MetricsWriter, write_json
from latentebm_jax.training.setup import RunSetup, is_main_process, log, write_config

Hook = Callable[[int], None]

__all__ = ["NonFiniteError", "evaluate", "sample", "train"]


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
    # Leave `disable` unset on the main process so tqdm's TQDM_DISABLE environment variable works.
    return {} if main else {"disable": True}


def train(
    config,
    workdir: str,
    *,
    splits: DataSplits | None = None,
    hooks: Sequence[Hook] = (),
) -> dict[str, Any]:
    """Train ``config`` in ``workdir`` (resuming if it holds checkpoints), then evaluate.

    Args:
      config: a validated config (see ``configs/default.py``).
      workdir: run directory; receives ``config.json``, ``metrics.jsonl``, PNGs, checkpoints and
        ``summary.json``.
      splits: data to use instead of ``config.data`` (tests inject small or faulty data here).
      hooks: called as ``hook(step)`` after every step (``step`` = steps completed).

    Returns:
      the summary written to ``summary.json``.
    """
    t_start = time.time()
    os.makedirs(workdir, exist_ok=True)
    main = is_main_process()
    if main:
        write_config(config, workdir)
    setup = RunSetup(config, splits)
    tcfg = config.train
    ckpt = Checkpointer(workdir, tcfg.keep_checkpoints)
    state = setup.restore_or_init(ckpt)
    start, total = int(state.step), setup.total_steps
    writer = MetricsWriter(os.path.join(workdir, "metrics.jsonl"), enabled=main)
    writer.truncate_after(start)
    if start >= total:
        log.info("nothing to train: checkpoint step %d >= %d steps", start, total)
    pstate = parallel.replicate(state)
    del state
    step_fn = parallel.pmap_train_step(setup.method.train_step)
    pending: list[tuple[int, Any]] = []
    window: list[dict[str, float]] = []
    last_good = ckpt.latest_step()

    def flush() -> None:
        """Fetch pending metrics, stop on the first non-finite one, log window averages."""
        nonlocal pending
        fetched = [(s, {k: float(v[0]) for k, v in jax.device_get(m).items()}) for s, m in pending]
        pending = []
        bad = _first_non_finite(fetched)
        if bad is not None:
            step, values = bad
            where = (
                f"the last good checkpoint is step {last_good} in {ckpt.directory}"
                if last_good is not None
                else "no checkpoint was written before it"
            )
            quantities = ", ".join(f"'{k}' = {v}" for k, v in values.items())
            raise NonFiniteError(
                f"training stopped at step {step}: non-finite {quantities}; {where}. "
                f"Lower the learning rates or Langevin step sizes, or enable train.grad_clip_norm."
            )
        window.extend(m for _, m in fetched)

    def write_window(done: int, bar) -> None:
        if not window:
            return
        means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        window.clear()
        writer.write(done, {"epoch": done / setup.steps_per_epoch, **means})
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]})

    t_loop = time.time()
    first_step_seconds = 0.0
    with tqdm(
        total=total,
        initial=start,
        desc=f"train {config.method}",
        unit="step",
        dynamic_ncols=True,
        **_progress_kwargs(main),
    ) as bar:
        batches = setup.batcher.iterate(start, total, prefetch=tcfg.prefetch)
        for step, batch in zip(range(start, total), batches):
            pstate, metrics = step_fn(pstate, parallel.shard_batch(batch))
            if step == start:
                jax.block_until_ready(metrics)
                first_step_seconds = time.time() - t_loop
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
                if main:
                    ckpt.save(done, parallel.unreplicate(pstate))
                last_good = done
            if tcfg.eval_every and done % tcfg.eval_every == 0 and not is_last:
                flush()
                if main and setup.interval_evaluators:
                    # fetch parameters and model state only, not the optimiser state
                    params = setup.method.inference_params(parallel.unreplicate(pstate.replace(opt_state={})))
                    numbers = evaluate_interval(setup, params, workdir, done)
                    if numbers:
                        writer.write(done, {f"eval/{k}": v for k, v in numbers.items()})
    train_time = time.time() - t_loop
    flush()
    final = parallel.unreplicate(pstate)
    if main and int(final.step) not in ckpt.all_steps():
        ckpt.save(int(final.step), final)
    ckpt.close()
    summary = evaluate(config, workdir, state=final, setup=setup)
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
