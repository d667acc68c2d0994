"""Evaluation and sampling of a trained model: the evaluators the config names, ``summary.json``, pictures.

:func:`evaluate` runs ``config.eval.metrics`` on the newest checkpoint (or a given state) and writes
``summary.json``; :func:`sample` runs the sampling evaluators among them into ``<workdir>/samples_final``;
:func:`evaluate_interval` runs ``config.eval.interval_metrics`` during training. Which numbers and files each
evaluator gives: ``latentebm_jax/evaluation`` and the method modules.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jax

from latentebm_jax import evaluation
from latentebm_jax.checkpoint import Checkpointer, CheckpointError
from latentebm_jax.data import DataSplits
from latentebm_jax.state import TrainState
from latentebm_jax.training.metrics_writer import read_jsonl, write_json
from latentebm_jax.training.run_log import RunLog
from latentebm_jax.training.setup import EVAL_STREAM, SAMPLE_STREAM, RunSetup, is_main_process
from latentebm_jax.training.workdir import WorkdirLock, check_provenance, check_workdir


def stored_config(ckpt: Checkpointer, step: int, workdir: str) -> dict[str, Any] | None:
    """The config checkpoint ``step`` was written with: its manifest's, else the run's ``config.json`` (a
    checkpoint from before manifests), else ``None``."""
    try:
        manifest = ckpt.read_manifest(step)
    except CheckpointError:  # reported (or skipped over) when the checkpoint itself is restored
        manifest = None
    if manifest is not None and manifest.get("config") is not None:
        return manifest["config"]
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def restore_checked(
    setup: RunSetup,
    workdir: str,
    mode: str,
    allow_config_change: bool,
    config_defaults: Mapping[str, Any] | None = None,
) -> TrainState:
    """The newest (intact) checkpoint of ``workdir`` for ``--mode=eval|sample``, after checking the directory
    and that the config matches the one that wrote it (``config_defaults``: see ``loop.train``). Nothing is
    written."""
    config = setup.config
    directory = check_workdir(workdir, mode)
    ckpt = Checkpointer(directory, config.train.keep_checkpoints, primary=is_main_process())
    try:
        step = ckpt.latest_step()
        stored = stored_config(ckpt, step, workdir)
        check_provenance(stored, config, step, allow_config_change, setup.run_only_keys, config_defaults)
        state, _ = ckpt.restore_newest_intact(
            setup.method.state_shapes(setup.init_key()), config.train.bad_checkpoint == "previous"
        )
    finally:
        ckpt.close()
    return state


def evaluate(
    config,
    workdir: str,
    *,
    splits: DataSplits | None = None,
    state: TrainState | None = None,
    setup: RunSetup | None = None,
    allow_config_change: bool = False,
    config_defaults: Mapping[str, Any] | None = None,
    logs: RunLog | None = None,
) -> dict[str, Any]:
    """Evaluate the newest checkpoint in ``workdir`` (or ``state``) and write ``summary.json``.

    Without ``state`` it takes the workdir's lock and needs a checkpoint written with an equivalent config
    (evaluation settings may differ); a missing checkpoint is an error that writes nothing. The numbers go
    to ``summary.json`` and, through ``logs`` (default: a new :class:`RunLog` of ``workdir``), to
    ``metrics.jsonl``, TensorBoard and W&B as ``eval/<name>``.
    """
    if state is None:
        with WorkdirLock(check_workdir(workdir, "eval"), enabled=is_main_process()):
            setup = setup or RunSetup(config, splits)
            state = restore_checked(setup, workdir, "eval", allow_config_change, config_defaults)
            return evaluate(config, workdir, state=state, setup=setup, logs=logs)
    t0 = time.time()
    setup = setup or RunSetup(config, splits)
    params = jax.device_put(setup.method.inference_params(state))
    step = int(state.step)
    ctx = setup.context(params, workdir, step, EVAL_STREAM)
    summary: dict[str, Any] = {"method": config.method, "dataset": config.data.name, "step": step}
    summary.update(evaluation.run(ctx, setup.evaluators))
    summary.update(last_epochs_means(config, workdir, setup.steps_per_epoch, setup.total_steps, step))
    summary["eval_seconds"] = round(time.time() - t0, 2)
    if is_main_process():
        write_json(os.path.join(workdir, "summary.json"), summary)
        numbers = {f"eval/{k}": v for k, v in summary.items() if isinstance(v, float)}
        if logs is None:
            with RunLog(workdir, config) as own:
                own.write(step, numbers)
                own.images(
                    step, [os.path.join(workdir, n) for n in os.listdir(workdir) if n.endswith(".png")]
                )
        else:
            logs.write(step, numbers)
    return summary


def last_epochs_steps(num_epochs: int, steps_per_epoch: int, total_steps: int) -> list[int]:
    """The steps that end each of the last ``num_epochs`` epochs of a ``total_steps`` run (at most as many as
    the run has; the last one is ``total_steps``)."""
    if num_epochs <= 0 or steps_per_epoch <= 0:
        return []
    ends = [total_steps - i * steps_per_epoch for i in range(num_epochs)]
    return sorted(s for s in ends if s > 0)


def last_epochs_means(config, workdir: str, steps_per_epoch: int, total_steps: int, step: int) -> dict:
    """``<key>_last_<N>_epochs`` (the mean) and ``<key>_last_<N>_epochs_values`` for every number the
    interval evaluators wrote to ``metrics.jsonl`` at the end of each of the last ``N =
    train.eval_last_epochs`` epochs (the protocol of LEBM Table 4 and ICCV Table 3: AUPRC averaged over the
    last 10 epochs). Empty unless training finished (``step == total_steps``) and every one is there."""
    n = int(config.train.eval_last_epochs)
    wanted = last_epochs_steps(n, steps_per_epoch, total_steps)
    path = os.path.join(workdir, "metrics.jsonl")
    if not wanted or step != total_steps or not os.path.exists(path):
        return {}
    at: dict[int, dict] = {}
    for record in read_jsonl(path):
        if record.get("step") in wanted:
            at.setdefault(record["step"], {}).update(record)
    keys = set.intersection(*(set(at.get(s, {})) for s in wanted)) if wanted else set()
    out: dict = {}
    for key in sorted(k for k in keys if k.startswith("eval/")):
        values = [at[s][key] for s in wanted]
        if all(isinstance(v, (int, float)) for v in values):
            name = f"{key[len('eval/') :]}_last_{n}_epochs"
            out[name] = float(sum(values) / len(values))
            out[f"{name}_values"] = [float(v) for v in values]
    return out


def evaluate_interval(setup: RunSetup, params: Any, workdir: str, step: int) -> dict[str, Any]:
    """``config.eval.interval_metrics`` at training step ``step``; returns their numbers."""
    ctx = setup.context(jax.device_put(params), workdir, step, EVAL_STREAM)
    return evaluation.run(ctx, setup.interval_evaluators)


def sample(
    config,
    workdir: str,
    *,
    splits: DataSplits | None = None,
    allow_config_change: bool = False,
    config_defaults: Mapping[str, Any] | None = None,
    num_samples: int = 0,
) -> list[str]:
    """Run the sampling evaluators of ``config.eval.metrics`` (sample grids, long-run chains) on the newest
    checkpoint, writing to ``<workdir>/samples_final``; with ``num_samples``, also export that many samples
    for external FID tools (``samples_io.export_samples``). Returns the files written."""
    from latentebm_jax.training.samples_io import export_samples

    with WorkdirLock(check_workdir(workdir, "sample"), enabled=is_main_process()):
        setup = RunSetup(config, splits)
        state = restore_checked(setup, workdir, "sample", allow_config_change, config_defaults)
        written = _sample(setup, state, workdir)
        if num_samples > 0 and is_main_process():
            params = jax.device_put(setup.method.inference_params(state))
            out_dir = os.path.join(workdir, "samples_final")
            written += export_samples(setup, params, out_dir, num_samples, int(state.step))
        return written


def _sample(setup: RunSetup, state: TrainState, workdir: str) -> list[str]:
    out_dir = os.path.join(workdir, "samples_final")
    os.makedirs(out_dir, exist_ok=True)
    params = jax.device_put(setup.method.inference_params(state))
    ctx = setup.context(params, out_dir, int(state.step), SAMPLE_STREAM)
    before = set(os.listdir(out_dir))
    evaluation.run(ctx, [e for e in setup.evaluators if e.sampling])
    written = sorted(set(os.listdir(out_dir)) - before) or sorted(os.listdir(out_dir))
    return [os.path.join(out_dir, name) for name in written]
