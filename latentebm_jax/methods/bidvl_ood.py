"""BiDVL's own evaluator (CVPR 2022), ``ood`` in ``eval.metrics``: out-of-distribution detection by the
negative marginal energy.

:func:`ood_detection` (Sec. 5.3, Table 4): the test split is the in-distribution set, each of
``eval.ood_sets`` an out-of-distribution set, every image scored by the negative marginal energy
``−E_ψ′(v)`` (higher = more in-distribution) and summarised by AUROC (in-distribution positive), as the
authors' code (E in eval mode, ``roc_auc_score``). The sets:

* ``uniform``: i.i.d. uniform noise in ``[−1, 1]`` of the data's shape (Table 4's "Random");
* ``holdout``: the test images of ``data.holdout_class`` (the in-distribution set then excludes it);
* a dataset name: its test split at the run's image size and channels (CelebA with BiDVL's
  ``CenterCrop(160)`` before resizing, MNIST-like 28×28 sets padded to 32×32). A dataset that is not
  prepared is skipped with its reason in ``summary.json`` (``ood_skipped_<name>``).

``ood_energy.png`` shows the score histograms per set.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from latentebm_jax import device_map, viz
from latentebm_jax.config_schema import ConfigError, Setting
from latentebm_jax.data import (
    ArraySource,
    DatasetNotFoundError,
    ImageSource,
    iterate_once,
    load_source,
    only_classes,
    without_class,
)
from latentebm_jax.data.settings import IMAGE_DATASETS
from latentebm_jax.methods.base import EvalContext, Evaluator
from latentebm_jax.metrics.detection import ood_auroc

_STREAM = 5
OOD_SETS = ("uniform", "holdout", *IMAGE_DATASETS)


def uniform_noise(shape: tuple[int, int, int], num: int, key: jax.Array) -> ArraySource:
    """``num`` images of i.i.d. ``U(−1, 1)`` pixels, shape ``(num, *shape)`` (unlabelled)."""
    images = jax.random.uniform(key, (num, *shape), minval=-1.0, maxval=1.0)
    return ArraySource(np.asarray(images, np.float32))


def other_dataset(data_config, name: str) -> ImageSource:
    """The test split of dataset ``name`` preprocessed to ``data_config``'s image size and channels."""
    other = data_config.to_dict()
    size = other["image_size"]
    other.update(
        name=name,
        crop="center160" if name == "celeb_a" else "none",
        resize_method="pad" if name in ("mnist", "fashion_mnist") and size >= 28 else "bilinear",
    )
    return load_source(ml_collections.ConfigDict(other), "test")


def _scores(fn, params, source: ImageSource, limit: int, batch_size: int) -> np.ndarray:
    params = device_map.replicate(params)
    out = [
        np.asarray(device_map.map_batch(fn, params, b, None))[:valid]
        for b, valid in iterate_once(source, batch_size, limit)
    ]
    return np.concatenate(out)


def ood_detection(ctx: EvalContext) -> dict[str, Any]:
    """AUROC of ``−E(v)`` for the test split against every set of ``eval.ood_sets`` (Table 4)."""
    cfg, params = ctx.config, ctx.params
    score, key, t0 = ctx.method.predict["ood_score"], jax.random.fold_in(ctx.key, _STREAM), time.time()
    limit, bs = cfg.eval.ood_max_examples, cfg.eval.batch_size
    test, holdout = ctx.splits.test, ctx.splits.holdout_class
    inside = without_class(test, holdout) if holdout >= 0 else test
    s_in = _scores(score, params, inside, limit, bs)
    results: dict[str, Any] = {"ood_score": "-E(v)", "ood_in_distribution_examples": len(s_in)}
    hists = {}
    for i, name in enumerate(cfg.eval.ood_sets):
        if name == "uniform":
            outside = uniform_noise(inside.image_shape, min(limit, len(inside)), jax.random.fold_in(key, i))
        elif name == "holdout":
            outside = only_classes(test, (holdout,))
        else:
            try:
                outside = other_dataset(cfg.data, name)
            except DatasetNotFoundError as err:
                results[f"ood_skipped_{name}"] = str(err).splitlines()[0]
                ctx.say(f"OOD set {name!r} skipped: {results[f'ood_skipped_{name}']}")
                continue
        s_out = _scores(score, params, outside, limit, bs)
        results[f"ood_auroc_{name}"] = ood_auroc(s_in, s_out)
        results[f"ood_examples_{name}"] = len(s_out)
        hists[name] = s_out
    if hists:
        heading = f"{ctx.config.method} on {ctx.config.data.name} · step {ctx.step:,}"
        results["ood_figure"] = _plot(s_in, hists, os.path.join(ctx.out_dir, "ood_energy.png"), heading)
    results["ood_seconds"] = round(time.time() - t0, 2)
    return results


def _plot(s_in: np.ndarray, hists: dict[str, np.ndarray], path: str, heading: str = "") -> str:
    fig, axes = viz.subplots(1, len(hists), figsize=(4.2 * len(hists), 3.4), squeeze=False)
    for ax, (name, s_out) in zip(axes[0], hists.items()):
        both = np.concatenate([s_in, s_out])
        lo, hi = np.percentile(both, 0.5), np.percentile(both, 99.5)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
        ax.hist(s_in, bins=bins, alpha=0.6, density=True, label="test (in-distribution)")
        ax.hist(s_out, bins=bins, alpha=0.6, density=True, label=name)
        ax.set_xlabel("−E(v)")
        ax.set_title(f"BiDVL OOD: {name}, AUROC {ood_auroc(s_in, s_out):.3f}", fontsize=9)
        ax.legend(fontsize=8)
    if heading:
        fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    return viz.save_figure(fig, path)


def _check(config) -> None:
    sets = tuple(config.eval.ood_sets)
    if not sets:
        raise ConfigError("config key 'eval.ood_sets' is empty; evaluator 'ood' needs at least one set")
    if "holdout" in sets and config.data.holdout_class < 0:
        raise ConfigError(
            "config key 'eval.ood_sets' names 'holdout' but 'data.holdout_class' is -1; set the class"
        )


EVALUATORS = {
    "ood": Evaluator(
        "ood",
        ood_detection,
        "AUROC of -E(v): the test split against each of eval.ood_sets (Table 4); ood_energy.png",
        needs=("ood_score",),
        reads=("image",),
        check=_check,
        main_only=True,
        settings={
            "ood_sets": Setting(
                ("uniform",),
                "OOD sets: uniform noise, the holdout class or a dataset's test split",
                check=lambda x: all(s in OOD_SETS for s in x),
                what=f"a tuple of names from {list(OOD_SETS)}",
            ),
            "ood_max_examples": Setting(
                1000, "examples per side", check=lambda x: x >= 2, what="an integer >= 2"
            ),
        },
    )
}
