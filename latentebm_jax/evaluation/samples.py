"""Pictures of a model's samples: the sample grid, long-run prior chains with their energy profile
(LEBM Figs. 3–4, ICCV 2023 Fig. 8, ICML 2024 Figs. 6–7), and the grids written at every eval interval."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from latentebm_jax import viz
from latentebm_jax.methods.base import EvalContext, Evaluator
from latentebm_jax.methods.eval_tools import LONG_RUN, NUM_SAMPLES, chain_lengths


def samples(ctx: EvalContext) -> dict[str, Any]:
    """``samples.png``: ``eval.num_samples`` samples."""
    images = ctx.method.predict["generate"](
        ctx.params, jax.random.fold_in(ctx.key, 0), ctx.config.eval.num_samples
    )
    viz.save_titled_grid(
        np.asarray(images["image"]),
        os.path.join(ctx.out_dir, "samples.png"),
        f"{ctx.config.method} on {ctx.config.data.name} · samples · step {ctx.step:,}",
    )
    return {}


def chains(ctx: EvalContext) -> dict[str, Any]:
    """Per ``K'`` in ``eval.long_run_steps``: ``chain_<K'>.png`` (frames along each chain over the energy
    profile ``−log p̃(z_k)``) and ``chain_<K'>_energy.npy``."""
    cfg = ctx.config
    for steps in cfg.eval.long_run_steps:
        run, every = chain_lengths(cfg, steps)
        chain = jax.device_get(
            ctx.method.predict["long_run_chain"](
                ctx.params, jax.random.fold_in(ctx.key, steps), cfg.eval.long_run_chains, run, every
            )
        )
        viz.save_chain_figure(
            chain["frames"]["image"],
            chain["steps"],
            chain["energy"],
            os.path.join(ctx.out_dir, f"chain_{steps}.png"),
            title=f"{cfg.method}: long-run prior Langevin, K'={run} (checkpoint step {ctx.step})",
        )
        np.save(os.path.join(ctx.out_dir, f"chain_{steps}_energy.npy"), np.asarray(chain["energy"]))
    return {}


def interval_samples(ctx: EvalContext) -> dict[str, Any]:
    """At an eval interval: ``samples/samples_<step>.png``."""
    images = ctx.method.predict["generate"](ctx.params, ctx.key, ctx.config.eval.num_samples)
    viz.save_titled_grid(
        np.asarray(images["image"]),
        os.path.join(ctx.out_dir, "samples", f"samples_{ctx.step:07d}.png"),
        f"{ctx.config.method} · samples · step {ctx.step:,}",
    )
    return {}


EVALUATORS = (
    Evaluator(
        "samples",
        samples,
        "samples.png: a grid of eval.num_samples samples",
        needs=("generate",),
        reads=("image",),
        settings=NUM_SAMPLES,
        sampling=True,
        main_only=True,
    ),
    Evaluator(
        "chains",
        chains,
        "chain_<K'>.png and _energy.npy: long-run prior chains and their energy profile",
        needs=("long_run_chain",),
        reads=("image",),
        settings=LONG_RUN,
        sampling=True,
        main_only=True,
    ),
    Evaluator(
        "interval_samples",
        interval_samples,
        "samples/samples_<step>.png at every eval interval",
        needs=("generate",),
        reads=("image",),
        settings=NUM_SAMPLES,
        main_only=True,
    ),
)
