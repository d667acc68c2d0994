"""Test-split evaluators on images: reconstruction error (LEBM / ICCV 2023 Table 1, BiDVL Table 3) and
anomaly detection by ``−log p(x, z)`` (LEBM Sec. 3.4, Table 4; ICCV 2023 Sec. 5.4)."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from latentebm_jax import device_map, viz
from latentebm_jax.config_schema import ConfigError
from latentebm_jax.data import iterate_once
from latentebm_jax.methods.base import EvalContext, Evaluator
from latentebm_jax.methods.eval_tools import MAX_TEST_EXAMPLES, test_limit
from latentebm_jax.metrics import auprc, per_example_mse, reconstruction_errors
from latentebm_jax.progress import tqdm

_STREAM = 0  # reconstruction and anomaly share it: one posterior draw per test batch serves both
_SHOWN = 50  # pairs in reconstructions.png


def _test_batches(ctx: EvalContext, desc: str):
    """The test batches (padded, with their valid count) and each one's key; a batch is split over the
    local devices by :func:`~latentebm_jax.device_map.map_batch`, device ``d`` drawing with
    ``fold_in(key, d)``."""
    cfg, test = ctx.config, ctx.splits.test
    limit = test_limit(cfg)
    n_batches = -(-min(len(test), limit or len(test)) // cfg.eval.batch_size)
    key = jax.random.fold_in(ctx.key, _STREAM)
    batches = iterate_once(test, cfg.eval.batch_size, limit)
    for i, (batch, valid) in enumerate(tqdm(batches, total=n_batches, desc=desc, leave=False)):
        yield batch, valid, jax.random.fold_in(key, i)


def reconstruction(ctx: EvalContext) -> dict[str, Any]:
    """Per-pixel test reconstruction error (``recon_mse``, ``recon_rmse``, on ``[−1, 1]`` and ``[0, 1]``)
    of ``reconstruct``; ``reconstructions.png`` shows the first pairs."""
    reconstruct, params = ctx.method.predict["reconstruct"], device_map.replicate(ctx.params)
    mses, shown = [], None
    for batch, valid, key in _test_batches(ctx, "reconstruct"):
        x = batch["image"]
        x_hat = np.asarray(device_map.map_batch(reconstruct, params, batch, key)["image"])
        mses.append(per_example_mse(x[:valid], x_hat[:valid]))
        if shown is None:
            shown = (x[: min(valid, _SHOWN)], x_hat[: min(valid, _SHOWN)])
    mse = np.concatenate(mses)
    errors = reconstruction_errors(mse)
    if ctx.main_process:
        title = (
            f"{ctx.config.method} on {ctx.config.data.name} · step {ctx.step:,} · test recon MSE "
            f"{errors['recon_mse']:.4g} (per pixel, [−1, 1])"
        )
        viz.save_reconstructions(*shown, os.path.join(ctx.out_dir, "reconstructions.png"), title=title)
    return {"num_test_examples": len(mse), **errors}


def anomaly(ctx: EvalContext) -> dict[str, Any]:
    """AUPRC of ``−log p(x, z)`` at inferred ``z`` with class ``data.holdout_class`` (left out of training) as
    the anomalies of the test split."""
    log_joint, params = ctx.method.predict["log_joint"], device_map.replicate(ctx.params)
    holdout = ctx.splits.holdout_class
    scores, labels = [], []
    for batch, valid, key in _test_batches(ctx, "anomaly scores"):
        scores.append(-np.asarray(device_map.map_batch(log_joint, params, batch, key))[:valid])
        labels.append((batch["label"][:valid] == holdout).astype(np.int64))
    s, y = np.concatenate(scores), np.concatenate(labels)
    return {
        "auprc": auprc(s, y),
        "anomaly_class": holdout,
        "anomaly_fraction": float(np.mean(y)),
        "anomaly_score": "-log p(x, z) at inferred z",
    }


def _check_anomaly(config) -> None:
    if config.data.get("holdout_class", -1) < 0:
        raise ConfigError(
            "evaluator 'anomaly' (in eval.metrics) needs a held-out class: set data.holdout_class, or "
            "remove 'anomaly' from eval.metrics"
        )


def interval_reconstructions(ctx: EvalContext) -> dict[str, Any]:
    """At an eval interval: ``reconstructions/recon_<step>.png`` of one test batch and its MSE
    (``recon_mse_batch``)."""
    batch, valid = next(iterate_once(ctx.splits.test, ctx.config.eval.batch_size))
    x = batch["image"]
    x_hat = ctx.method.predict["reconstruct"](ctx.params, batch, jax.random.fold_in(ctx.key, 1))
    x_hat = np.asarray(x_hat["image"])
    mse = float(np.mean(per_example_mse(x[:valid], x_hat[:valid])))
    viz.save_reconstructions(
        x[: min(valid, _SHOWN)],
        x_hat[: min(valid, _SHOWN)],
        os.path.join(ctx.out_dir, "reconstructions", f"recon_{ctx.step:07d}.png"),
        title=f"{ctx.config.method} · step {ctx.step:,} · recon MSE {mse:.4g} (one test batch)",
    )
    return {"recon_mse_batch": mse}


EVALUATORS = (
    Evaluator(
        "reconstruction",
        reconstruction,
        "test reconstruction error per pixel (recon_mse, recon_rmse); reconstructions.png",
        needs=("reconstruct",),
        reads=("image",),
        settings=MAX_TEST_EXAMPLES,
    ),
    Evaluator(
        "anomaly",
        anomaly,
        "AUPRC of -log p(x, z) with data.holdout_class as the anomalies (LEBM Sec. 3.4)",
        needs=("log_joint",),
        reads=("image",),
        settings=MAX_TEST_EXAMPLES,
        check=_check_anomaly,
    ),
    Evaluator(
        "interval_reconstructions",
        interval_reconstructions,
        "reconstructions/recon_<step>.png and recon_mse_batch of one test batch",
        needs=("reconstruct",),
        reads=("image",),
        main_only=True,
    ),
)
