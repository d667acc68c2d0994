"""Latent probes (ICCV 2023 Table 1): per latent layer, the test accuracy of a small classifier (two linear
layers, 256 hidden, ReLU) trained on the inferred latents of the labelled training split."""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from latentebm_jax import device_map
from latentebm_jax.config_schema import Setting, positive
from latentebm_jax.data import ImageSource, iterate_once, load_source, only_classes
from latentebm_jax.methods.base import EvalContext, Evaluator
from latentebm_jax.metrics.probe import layer_probe_accuracies

_STREAM = 3


def inferred_latents(
    ctx: EvalContext, source: ImageSource, limit: int | None, key
) -> tuple[list, np.ndarray]:
    """Inferred latents of ``source`` as one ``(n, d_i)`` array per layer (bottom first), and the labels
    (every batch split over the local devices)."""
    infer, per_batch, labels = ctx.method.predict["infer"], [], []
    params = device_map.replicate(ctx.params)
    for i, (batch, valid) in enumerate(iterate_once(source, ctx.config.eval.batch_size, limit)):
        z = device_map.map_batch(infer, params, batch, jax.random.fold_in(key, i))
        per_batch.append([np.asarray(leaf)[:valid] for leaf in jax.tree.leaves(z)])
        labels.append(batch["label"][:valid])
    return [np.concatenate(parts) for parts in zip(*per_batch)], np.concatenate(labels)


def probe(ctx: EvalContext) -> dict[str, Any]:
    """``probe_accuracy``: one test accuracy per latent layer, bottom first."""
    cfg, ecfg = ctx.config, ctx.config.eval
    full_train = load_source(cfg.data, cfg.data.train_split)
    if cfg.data.classes:
        full_train = only_classes(full_train, tuple(cfg.data.classes))
    if np.any(full_train.labels() < 0):
        ctx.say(f"latent probes skipped: dataset {cfg.data.name!r} has no labels")
        return {"probe_skipped": "no labels"}
    t0 = time.time()
    key = jax.random.fold_in(ctx.key, _STREAM)
    limit = ecfg.probe_max_examples if ecfg.probe_max_examples > 0 else None
    z_train, y_train = inferred_latents(ctx, full_train, limit, jax.random.fold_in(key, 0))
    z_test, y_test = inferred_latents(ctx, ctx.splits.test, limit, jax.random.fold_in(key, 1))
    accs = layer_probe_accuracies(z_train, y_train, z_test, y_test, epochs=ecfg.probe_epochs)
    return {
        "probe_accuracy": accs,
        "probe_train_examples": len(y_train),
        "probe_seconds": round(time.time() - t0, 2),
    }


EVALUATORS = (
    Evaluator(
        "probe",
        probe,
        "per-layer test accuracy of a classifier on inferred latents (ICCV 2023 Table 1)",
        needs=("infer",),
        reads=("image",),
        settings={
            "probe_max_examples": Setting(10000, "examples per split the probes use (<= 0: all)"),
            "probe_epochs": Setting(100, "epochs of each probe", check=positive),
        },
    ),
)
