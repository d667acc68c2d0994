"""What evaluators share, the library's (``latentebm_jax.evaluation``) and the methods' own: the ``eval.*``
settings several of them read, test-split limits, batched sampling, chain lengths, reference images.

It sits beside the methods (below the evaluation package) so that a method's own evaluators can use it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from latentebm_jax import device_map
from latentebm_jax.config_schema import Setting, positive, positive_ints
from latentebm_jax.data import ImageSource, iterate_once
from latentebm_jax.progress import tqdm

# eval keys several evaluators read (each declares the ones it reads)
MAX_TEST_EXAMPLES = {
    "max_test_examples": Setting(
        -1,
        "test examples scored (-1 = the whole test split)",
        check=lambda x: x == -1 or x > 0,
        what="-1 (all) or a positive integer",
    )
}
NUM_SAMPLES = {"num_samples": Setting(100, "samples drawn for the sample grid or file", check=positive)}
LONG_RUN = {
    "long_run_steps": Setting(
        (100, 2500),
        "K' of the long-run chains (LEBM Figs. 3-4)",
        check=positive_ints,
    ),
    "long_run_chains": Setting(8, "chains per long run", check=positive),
    "long_run_frames": Setting(10, "recorded states per chain", check=positive),
}


def test_limit(config) -> int | None:
    """``eval.max_test_examples`` as a limit for :func:`~latentebm_jax.data.iterate_once` (``None``: all)."""
    m = config.eval.max_test_examples
    return None if m < 0 else m


def generate_batches(
    generate: Callable[..., dict[str, Any]],
    params: Any,
    key: jax.Array,
    num: int,
    batch_size: int,
    desc: str = "sampling",
    show: bool = True,
) -> dict[str, np.ndarray]:
    """``num`` samples as one batch of NumPy arrays, drawn ``batch_size`` at a time (one compiled shape)
    with ``generate(params, fold_in(key, i), batch_size)``, on every local device
    (:func:`~latentebm_jax.device_map.map_generate`: with ``n`` devices each draws ``ceil(batch_size / n)``
    of a batch with ``fold_in(fold_in(key, i), device)``)."""
    parts, made = [], 0
    params = device_map.replicate(params)
    with tqdm(total=num, desc=desc, unit="sample", leave=False, **({} if show else {"disable": True})) as bar:
        for i in range(-(-num // batch_size)):
            sample = device_map.map_generate(generate, params, jax.random.fold_in(key, i), batch_size)
            batch = jax.device_get(sample)
            take = min(batch_size, num - made)
            parts.append({k: np.asarray(v)[:take] for k, v in batch.items()})
            made += take
            bar.update(take)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def chain_lengths(config, steps: int) -> tuple[int, int]:
    """``(steps run, record every)`` for a requested long-run length: ``eval.long_run_frames`` frames at most,
    the length rounded down to a multiple of the recording interval."""
    frames = min(config.eval.long_run_frames, steps)
    every = max(1, steps // frames)
    return every * (steps // every), every


def reference_images(source: ImageSource, limit: int) -> np.ndarray:
    """The first ``limit`` images of ``source`` (``limit < 0``: all of them)."""
    n = len(source) if limit < 0 else min(limit, len(source))
    return np.concatenate([b["image"][:v] for b, v in iterate_once(source, 500, n)])
