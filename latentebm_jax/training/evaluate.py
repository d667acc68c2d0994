"""Evaluation and sampling of a trained model: the evaluators the config names, ``summary.json``, pictures.

:func:`evaluate` runs ``config.eval.metrics`` on the newest checkpoint (or a given state) and writes
``summary.json``; :func:`sample` runs the sampling evaluators among them into ``<workdir>/samples_final``;
:func:`evaluate_interval` runs ``config.eval.interval_metrics`` during training. Which numbers and files each
evaluator gives: ``latentebm_jax/evaluation`` and the method modules.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax

from latentebm_jax import evaluation
from latentebm_jax.checkpoint import Checkpointer
from latentebm_jax.data import DataSplits
from latentebm_jax.state import TrainState
from latentebm_jax.training.metrics_writer import MetricsWriter, write_json
from latentebm_jax.training.setup import EVAL_STREAM, SAMPLE_STREAM, RunSetup, is_main_process, log


def evaluate(
    config,
    workdir: str,
    *,
    splits: DataSplits | None = None,
    state: TrainState | None = None,
    setup: RunSetup | None = None,
) -> dict[str, Any]:
    """Evaluate the newest checkpoint in ``workdir`` (or ``state``) and write ``summary.json``."""
    t0 = time.time()
    setup = setup or RunSetup(config, splits)
    if state is None:
        ckpt = Checkpointer(workdir, config.train.keep_checkpoints)
        state = setup.restore_or_init(ckpt)
        ckpt.close()
        if int(state.step) == 0:
            log.warning("no checkpoint in %s: evaluating the untrained initial model", workdir)
    params = jax.device_put(setup.method.inference_params(state))
    step = int(state.step)
    ctx = setup.context(params, workdir, step, EVAL_STREAM)
    summary: dict[str, Any] = {"method": config.method, "dataset": config.data.name, "step": step}
    summary.update(evaluation.run(ctx, setup.evaluators))
    summary["eval_seconds"] = round(time.time() - t0, 2)
    if is_main_process():
        write_json(os.path.join(workdir, "summary.json"), summary)
        numbers = {f"eval/{k}": v for k, v in summary.items() if isinstance(v, float)}
        MetricsWriter(os.path.join(workdir, "metrics.jsonl")).write(step, numbers)
    return summary


def evaluate_interval(setup: RunSetup, params: Any, workdir: str, step: int) -> dict[str, Any]:
    """``config.eval.interval_metrics`` at training step ``step``; returns their numbers."""
    ctx = setup.context(jax.device_put(params), workdir, step, EVAL_STREAM)
    return evaluation.run(ctx, setup.interval_evaluators)


def sample(config, workdir: str, *, splits: DataSplits | None = None) -> list[str]:
    """Run the sampling evaluators of ``config.eval.metrics`` (sample grids, long-run chains) on the newest
    checkpoint, writing to ``<workdir>/samples_final``; returns the files written."""
    setup = RunSetup(config, splits)
    ckpt = Checkpointer(workdir, config.train.keep_checkpoints)
    if ckpt.latest_step() is None:
        ckpt.close()
        raise FileNotFoundError(f"no checkpoint in {ckpt.directory}: train first (--mode=train)")
    state = setup.restore_or_init(ckpt)
    ckpt.close()
    out_dir = os.path.join(workdir, "samples_final")
    os.makedirs(out_dir, exist_ok=True)
    params = jax.device_put(setup.method.inference_params(state))
    ctx = setup.context(params, out_dir, int(state.step), SAMPLE_STREAM)
    before = set(os.listdir(out_dir))
    evaluation.run(ctx, [e for e in setup.evaluators if e.sampling])
    written = sorted(set(os.listdir(out_dir)) - before) or sorted(os.listdir(out_dir))
    return [os.path.join(out_dir, name) for name in written]
