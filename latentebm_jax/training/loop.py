"""The one training loop every method uses, and the evaluation and sampling entry points.

``train`` resumes from the newest checkpoint in the workdir, runs the method's ``pmap``-ed train step with a
tqdm bar, appends averaged metrics to ``metrics.jsonl``, writes sample and reconstruction grids at every eval
interval, checkpoints periodically and at the end, and finishes with :func:`evaluate` (``summary.json``).

Every step's metrics are checked for NaN/inf before anything is logged or saved; the first non-finite
quantity stops the run with :class:`NonFiniteError` naming the step and the quantity, and the newest
checkpoint on disk is the last good one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from latentebm_jax import viz
from latentebm_jax.data import DataSplits, EpochBatcher, iterate_once, load_splits
from latentebm_jax.methods import Method, get_method
from latentebm_jax.metrics import auprc, per_example_mse
from latentebm_jax.training import parallel
from latentebm_jax.training.checkpoint import Checkpointer
from latentebm_jax.training.metrics_writer import MetricsWriter, write_json
from latentebm_jax.training.state import TrainState

log = logging.getLogger(__name__)

Hook = Callable[[int], None]

# Distinct key streams derived from the seed.
_INIT_STREAM, _EVAL_STREAM, _SAMPLE_STREAM = 0, 1, 2


class NonFiniteError(FloatingPointError):
    """A loss or energy became NaN or infinite during training."""


def _stream_key(seed: int, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), stream)


def _is_main_process() -> bool:
    return jax.process_index() == 0


def _config_json(config) -> dict:
    return json.loads(config.to_json_best_effort())


def _write_config(config, workdir: str) -> None:
    path = os.path.join(workdir, "config.json")
    new = _config_json(config)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != new:
            log.warning("config differs from the one in %s; the run continues with the new one", path)
    write_json(path, new)


class _Setup:
    """What train/evaluate/sample share: data, batching, the method and its initial state."""

    def __init__(self, config, splits: DataSplits | None):
        self.config = config
        self.splits = splits if splits is not None else load_splits(config.data)
        gb = config.train.batch_size
        n_dev = jax.local_device_count() * jax.process_count()
        if gb % n_dev:
            raise ValueError(f"config key 'train.batch_size' = {gb} must be divisible by the {n_dev} devices")
        self.batcher = EpochBatcher(
            self.splits.train, gb, config.seed, jax.process_index(), jax.process_count()
        )
        self.steps_per_epoch = self.batcher.steps_per_epoch
        t = config.train
        self.total_steps = t.num_steps if t.num_steps > 0 else t.num_epochs * self.steps_per_epoch
        self.method: Method = get_method(config, self.steps_per_epoch)

    def initial_state(self) -> TrainState:
        return self.method.init(_stream_key(self.config.seed, _INIT_STREAM))


def _restore_latest(ckpt: Checkpointer, state: TrainState) -> TrainState:
    step = ckpt.latest_step()
    if step is None:
        return state
    log.info("resuming from checkpoint at step %d in %s", step, ckpt.directory)
    return ckpt.restore(state, step)


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
    main = _is_main_process()
    if main:
        _write_config(config, workdir)
    setup = _Setup(config, splits)
    tcfg = config.train
    ckpt = Checkpointer(workdir, tcfg.keep_checkpoints)
    state = _restore_latest(ckpt, setup.initial_state())
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
                if main:
                    _eval_pictures(setup, parallel.unreplicate(pstate.params), workdir, writer, done)
    train_time = time.time() - t_loop
    flush()
    final = parallel.unreplicate(pstate)
    if main and int(final.step) not in ckpt.all_steps():
        ckpt.save(int(final.step), final)
    ckpt.close()
    summary = evaluate(config, workdir, splits=setup.splits, state=final, _setup=setup)
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


def _eval_pictures(setup: _Setup, params: Any, workdir: str, writer: MetricsWriter, step: int) -> None:
    """Sample and reconstruction grids at an eval interval, and the reconstruction MSE of one test batch."""
    cfg, method = setup.config, setup.method
    key = jax.random.fold_in(_stream_key(cfg.seed, _EVAL_STREAM), step)
    params = jax.device_put(params)
    samples = np.asarray(method.generate(params, key, cfg.eval.num_samples))
    viz.save_image_grid(samples, os.path.join(workdir, "samples", f"samples_{step:07d}.png"))
    batch, valid = next(iterate_once(setup.splits.test, cfg.eval.batch_size))
    x = batch["image"]
    x_hat = np.asarray(method.reconstruct(params, x, jax.random.fold_in(key, 1)))
    viz.save_reconstructions(
        x[: min(valid, 50)],
        x_hat[: min(valid, 50)],
        os.path.join(workdir, "reconstructions", f"recon_{step:07d}.png"),
    )
    writer.write(step, {"eval/recon_mse_batch": float(np.mean(per_example_mse(x[:valid], x_hat[:valid])))})


def evaluate(
    config,
    workdir: str,
    *,
    splits: DataSplits | None = None,
    state: TrainState | None = None,
    _setup: _Setup | None = None,
) -> dict[str, Any]:
    """Evaluate the newest checkpoint (or ``state``): test reconstruction MSE, anomaly AUPRC if the config
    asks for it, sample/reconstruction grids and long-run chains; writes ``summary.json``."""
    t0 = time.time()
    setup = _setup or _Setup(config, splits)
    method = setup.method
    if state is None:
        state = _restore_latest(Checkpointer(workdir, config.train.keep_checkpoints), setup.initial_state())
        if int(state.step) == 0:
            log.warning("no checkpoint in %s: evaluating the untrained initial model", workdir)
    params = jax.device_put(state.params)
    step = int(state.step)
    ecfg = config.eval
    key = jax.random.fold_in(_stream_key(config.seed, _EVAL_STREAM), step)
    test = setup.splits.test
    limit = None if ecfg.max_test_examples < 0 else ecfg.max_test_examples
    want_anomaly = bool(ecfg.anomaly) and method.log_joint is not None
    mses, scores, labels = [], [], []
    shown = None
    n_batches = -(-min(len(test), limit or len(test)) // ecfg.batch_size)
    for i, (batch, valid) in enumerate(
        tqdm(iterate_once(test, ecfg.batch_size, limit), total=n_batches, desc="eval", leave=False)
    ):
        x = batch["image"]
        k = jax.random.fold_in(key, i)
        x_hat = np.asarray(method.reconstruct(params, x, k))
        mses.append(per_example_mse(x[:valid], x_hat[:valid]))
        if shown is None:
            shown = (x[: min(valid, 50)], x_hat[: min(valid, 50)])
        if want_anomaly:
            scores.append(-np.asarray(method.log_joint(params, x, jax.random.fold_in(k, 1)))[:valid])
            labels.append((batch["label"][:valid] == setup.splits.holdout_class).astype(np.int64))
    mse = np.concatenate(mses)
    summary: dict[str, Any] = {
        "method": config.method,
        "dataset": config.data.name,
        "step": step,
        "num_test_examples": len(mse),
        "recon_mse": float(np.mean(mse)),
        "recon_mse_value_range": "[-1, 1]",
        "recon_mse_01": float(np.mean(mse) / 4.0),
    }
    if want_anomaly:
        s, y = np.concatenate(scores), np.concatenate(labels)
        summary.update(
            {
                "auprc": auprc(s, y),
                "anomaly_class": setup.splits.holdout_class,
                "anomaly_fraction": float(np.mean(y)),
                "anomaly_score": "-log p(x, z) at posterior samples",
            }
        )
    if _is_main_process():
        viz.save_reconstructions(*shown, os.path.join(workdir, "reconstructions.png"))
        _write_samples_and_chains(setup, params, workdir, step, _EVAL_STREAM)
    summary["eval_seconds"] = round(time.time() - t0, 2)
    if _is_main_process():
        write_json(os.path.join(workdir, "summary.json"), summary)
        MetricsWriter(os.path.join(workdir, "metrics.jsonl")).write(
            step, {f"eval/{k}": v for k, v in summary.items() if isinstance(v, float)}
        )
    return summary


def _write_samples_and_chains(
    setup: _Setup, params: Any, workdir: str, step: int, stream: int, subdir: str = ""
) -> list[str]:
    """``samples.png`` and one ``chain_<K'>.png`` per long-run length; returns the paths."""
    cfg, method = setup.config, setup.method
    key = jax.random.fold_in(_stream_key(cfg.seed, stream), step)
    out = os.path.join(workdir, subdir)
    samples = np.asarray(method.generate(params, jax.random.fold_in(key, 0), cfg.eval.num_samples))
    paths = [viz.save_image_grid(samples, os.path.join(out, "samples.png"))]
    if method.long_run_chain is None:
        return paths
    for steps in cfg.eval.long_run_steps:
        frames = min(cfg.eval.long_run_frames, steps)
        record_every = max(1, steps // frames)
        steps_run = record_every * (steps // record_every)
        chain = method.long_run_chain(
            params,
            jax.random.fold_in(key, steps),
            cfg.eval.long_run_chains,
            steps_run,
            record_every,
        )
        chain = jax.device_get(chain)
        paths.append(
            viz.save_chain_figure(
                chain["images"],
                chain["steps"],
                chain["energy"],
                os.path.join(out, f"chain_{steps}.png"),
                title=f"{cfg.method}: long-run prior Langevin, K'={steps_run} (checkpoint step {step})",
            )
        )
        np.save(os.path.join(out, f"chain_{steps}_energy.npy"), np.asarray(chain["energy"]))
    return paths


def sample(config, workdir: str, *, splits: DataSplits | None = None) -> list[str]:
    """Write samples and long-run chains of the newest checkpoint to ``<workdir>/samples_final``."""
    setup = _Setup(config, splits)
    ckpt = Checkpointer(workdir, config.train.keep_checkpoints)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt.directory}: train first (--mode=train)")
    state = _restore_latest(ckpt, setup.initial_state())
    params = jax.device_put(state.params)
    return _write_samples_and_chains(
        setup, params, workdir, int(state.step), _SAMPLE_STREAM, subdir="samples_final"
    )
