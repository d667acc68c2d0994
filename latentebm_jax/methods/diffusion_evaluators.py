"""The diffusion hierarchical EBM prior's own evaluators (ICML 2024), named in ``eval.metrics``.

* ``ood_by_layer`` (Sec. 5.2, Fig. 3): AUROC of the energy of the layers ``≥ k`` (0 = bottom, so
  ``k = 0`` is every layer, ``L−1`` the top one), for the inference scheme (energies at the inferred
  latents) and the diffusion scheme (perturb to ``t = 1``, reverse-sample jointly with prior samples for the
  lower layers); ``ood_by_layer.png`` plots AUROC against ``k`` and the score histograms.
* ``controllable_synthesis`` (Sec. 5.3, Figs. 4–5), with ``diffusion.label_layers``: class-conditional
  samples scored by the domain classifier (accuracy = fraction classified as the requested class),
  ``conditional_samples.png``, and the compositional panel ``compositional.png`` (label-coupled upper
  layers fixed, lower layers resampled).
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from latentebm_jax import device_map, viz
from latentebm_jax.config_schema import ConfigError, Setting, positive
from latentebm_jax.data import ImageSource, iterate_once, load_source, only_classes, without_class
from latentebm_jax.data.settings import IMAGE_DATASETS
from latentebm_jax.methods.base import EvalContext, Evaluator
from latentebm_jax.metrics.detection import ood_auroc
from latentebm_jax.metrics.domain import domain_classifier

_STREAM = 5  # then 0: OOD by layer, 1: controllable synthesis


def _ood_sources(ctx: EvalContext) -> tuple[ImageSource, ImageSource, str]:
    cfg = ctx.config
    test = ctx.splits.test
    if cfg.eval.ood_source == "holdout":
        h = ctx.splits.holdout_class
        inside = without_class(test, h)
        outside = only_classes(test, (h,))
        return inside, outside, f"held-out class {h}"
    other = cfg.data.to_dict()
    other["name"] = cfg.eval.ood_source
    import ml_collections

    return test, load_source(ml_collections.ConfigDict(other), "test"), cfg.eval.ood_source


def _scores(fn, params, source: ImageSource, limit: int, batch: int, key) -> np.ndarray:
    out, params = [], device_map.replicate(params)
    for i, (b, valid) in enumerate(iterate_once(source, batch, limit)):
        s = device_map.map_batch(fn, params, b, None if key is None else jax.random.fold_in(key, i))
        out.append(np.asarray(s)[:valid])
    return np.concatenate(out)


def ood_by_layer(ctx: EvalContext) -> dict[str, Any]:
    """AUROC per ``k`` for both schemes (in-distribution positive, score = negative energy)."""
    cfg, predict, params = ctx.config, ctx.method.predict, ctx.params
    key = jax.random.fold_in(jax.random.fold_in(ctx.key, _STREAM), 0)
    t0 = time.time()
    inside, outside, what = _ood_sources(ctx)
    limit, bs = cfg.eval.ood_max_examples, cfg.eval.batch_size
    n_layers = len(ctx.method.latents.dims)
    results: dict[str, Any] = {"ood_out_of_distribution": what}
    curves, hists = {}, {}
    schemes = {"inference": (predict["layer_scores"], None)}
    if "layer_scores_diffusion" in predict:
        schemes["diffusion"] = (predict["layer_scores_diffusion"], key)
    for name, (fn, k) in schemes.items():
        s_in = _scores(fn, params, inside, limit, bs, k)
        s_out = _scores(fn, params, outside, limit, bs, None if k is None else jax.random.fold_in(k, 99))
        if name == "inference":  # per-layer energies -> sums over layers >= k
            s_in = np.cumsum(s_in[:, ::-1], axis=1)[:, ::-1]
            s_out = np.cumsum(s_out[:, ::-1], axis=1)[:, ::-1]
        aurocs = [ood_auroc(s_in[:, j], s_out[:, j]) for j in range(n_layers)]
        results[f"ood_auroc_{name}"] = aurocs  # index k: layers k..L-1 (0 = bottom)
        curves[name] = aurocs
        hists[name] = (s_in, s_out)
    results["ood_examples"] = [len(hists["inference"][0]), len(hists["inference"][1])]
    path = os.path.join(ctx.out_dir, "ood_by_layer.png")
    heading = f"{ctx.config.method} on {ctx.config.data.name} · step {ctx.step:,}"
    results["ood_figure"] = _plot_ood(curves, hists, n_layers, what, path, heading)
    results["ood_seconds"] = round(time.time() - t0, 2)
    return results


def _plot_ood(curves, hists, n_layers: int, what: str, path: str, heading: str = "") -> str:
    fig, axes = viz.subplots(1, 3, figsize=(13, 3.6))
    ks = np.arange(n_layers)
    for name, aurocs in curves.items():
        axes[0].plot(ks, aurocs, marker="o", label=f"{name} scheme")
    axes[0].set_xticks(ks, [f"L>{k}" for k in ks])
    axes[0].set_xlabel("layers used (z_{k+1} .. z_L)")
    axes[0].set_ylabel("AUROC")
    axes[0].set_title(f"OOD by layer: {what}", fontsize=9)
    axes[0].legend(fontsize=8)
    name = "diffusion" if "diffusion" in hists else "inference"
    s_in, s_out = hists[name]
    for ax, k in ((axes[1], 0), (axes[2], n_layers - 1)):
        both = np.concatenate([s_in[:, k], s_out[:, k]])
        bins = np.linspace(np.percentile(both, 1), np.percentile(both, 99), 40)
        ax.hist(s_in[:, k], bins=bins, alpha=0.6, density=True, label="in-distribution")
        ax.hist(s_out[:, k], bins=bins, alpha=0.6, density=True, label="OOD")
        ax.set_title(f"{name} scheme, L>{k}: negative energy", fontsize=9)
        ax.legend(fontsize=8)
    if heading:
        fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    return viz.save_figure(fig, path)


def controllable_synthesis(ctx: EvalContext) -> dict[str, Any]:
    """Class-conditional sampling accuracy (domain classifier), the logits' own test accuracy, and the
    conditional and compositional figures; with ``data.attributes``, :func:`attribute_synthesis`."""
    cfg, predict, params = ctx.config, ctx.method.predict, ctx.params
    key = jax.random.fold_in(jax.random.fold_in(ctx.key, _STREAM), 1)
    if "class_logits" not in predict:
        ctx.say("controllable synthesis skipped: no diffusion.label_layers")
        return {}
    if tuple(cfg.data.attributes):
        return attribute_synthesis(ctx, key)
    if np.any(ctx.splits.train.labels() < 0):
        ctx.say("controllable synthesis skipped: the dataset has no labels (or data.attributes)")
        return {}
    train_labels = ctx.splits.train.labels()
    classes = sorted(int(c) for c in np.unique(train_labels) if c >= 0)
    full_train = load_source(cfg.data, cfg.data.train_split)
    clf = domain_classifier(
        ctx.cache_dir,
        ctx.dataset_id,
        full_train,
        ctx.splits.test,
        seed=0,
        epochs=cfg.eval.fd_classifier_epochs,
    )
    n = cfg.eval.label_samples_per_class
    correct, shown = [], []
    for c in classes:
        labels = jnp.full((n,), c, jnp.int32)
        images = predict["generate_labelled"](params, {"label": labels}, jax.random.fold_in(key, c))["image"]
        images = np.asarray(images)
        correct.append(float(np.mean(clf.predict(images) == c)))
        shown.append(images[: min(n, 10)])
    viz.save_grid_panels(
        [("class-conditional samples (rows: requested class)", np.stack(shown))],
        os.path.join(ctx.out_dir, "conditional_samples.png"),
        row_labels=[[str(c) for c in classes]],
        suptitle=f"{ctx.config.method} on {ctx.config.data.name} · step {ctx.step:,}",
    )
    # the coupled logits as a classifier of inferred test latents (Eq. 19)
    test = ctx.splits.test
    if ctx.splits.holdout_class >= 0:
        test = without_class(test, ctx.splits.holdout_class)
    hits, total, on_devices = 0, 0, device_map.replicate(params)
    for b, valid in iterate_once(test, cfg.eval.batch_size):
        logits = device_map.map_batch(predict["class_logits"], on_devices, b, key)
        pred = np.asarray(jnp.argmax(logits, -1))[:valid]
        hits += int(np.sum(pred == b["label"][:valid]))
        total += valid
    # the coupled layers and those above stay fixed; at least the bottom layer is resampled
    label_layers, n_layers = tuple(cfg.diffusion.label_layers), len(ctx.method.latents.dims)
    fixed = range(max(min(label_layers) - 1, 1), n_layers)
    grid = predict["compose"](params, {"label": jnp.asarray(classes, jnp.int32)}, key)
    grid = np.asarray(grid)
    top = ", ".join(f"z_{i + 1}" for i in fixed)
    viz.save_grid_panels(
        [(f"column 0: sample of class y; then {top} fixed, lower layers resampled", grid)],
        os.path.join(ctx.out_dir, "compositional.png"),
        row_labels=[[str(c) for c in classes]],
        suptitle=f"{ctx.config.method} on {ctx.config.data.name} · step {ctx.step:,}",
    )
    return {
        "label_sampling_accuracy": float(np.mean(correct)),
        "label_sampling_accuracy_per_class": correct,
        "label_sampling_chance": 1.0 / len(classes),
        "label_logits_test_accuracy": hits / max(total, 1),
        "label_classifier_test_accuracy": clf.test_accuracy,
    }


def attribute_synthesis(ctx: EvalContext, key: jax.Array) -> dict[str, Any]:
    """Multi-attribute coupling (Fig. 4): each coupled layer's logits as a classifier of its attribute on
    inferred test latents (Eq. 19), and ``compositional.png``: one row per combination of attribute values
    (at most 8), columns adding the attributes from the top coupled layer down (each stage keeps the layers
    above the one it couples and resamples the rest)."""
    cfg, predict, params = ctx.config, ctx.method.predict, ctx.params
    names, label_layers = tuple(cfg.data.attributes), tuple(cfg.diffusion.label_layers)
    hits, total, on_devices = np.zeros(len(names)), 0, device_map.replicate(params)
    for b, valid in iterate_once(ctx.splits.test, cfg.eval.batch_size):
        logits = device_map.map_batch(predict["attribute_logits"], on_devices, b, key)
        pred = np.asarray(jnp.argmax(logits, -1))[:valid]
        hits += np.sum(pred == b["attributes"][:valid], axis=0)
        total += valid
    combos = np.array(np.meshgrid(*[[1, 0]] * len(names), indexing="ij")).reshape(len(names), -1).T[:8]
    order = sorted(range(len(names)), key=lambda j: -label_layers[j])  # top coupled layer first
    grid = np.asarray(predict["compose_attributes"](params, {"label": jnp.asarray(combos, jnp.int32)}, key))
    rows = [", ".join(f"{names[j]}={v}" for j, v in enumerate(c)) for c in combos]
    cols = " → ".join(f"+{names[j]} (z_{label_layers[j]})" for j in order)
    viz.save_grid_panels(
        [(f"columns: {cols}", grid)],
        os.path.join(ctx.out_dir, "compositional.png"),
        row_labels=[rows],
        suptitle=f"{ctx.config.method} on {ctx.config.data.name} · step {ctx.step:,}",
    )
    return {
        "attribute_names": list(names),
        "attribute_logits_test_accuracy": (hits / max(total, 1)).tolist(),
    }


def _check_ood(config) -> None:
    source = config.eval.ood_source
    if source != "holdout" and source not in IMAGE_DATASETS:
        raise ConfigError(
            f"config key 'eval.ood_source' has value {source!r}; allowed: 'holdout' or one of "
            f"{list(IMAGE_DATASETS)}"
        )
    if source == "holdout" and config.data.holdout_class < 0:
        raise ConfigError(
            "evaluator 'ood_by_layer' with eval.ood_source='holdout' needs 'data.holdout_class' >= 0 (or set "
            "eval.ood_source to another dataset)"
        )


EVALUATORS = {
    e.name: e
    for e in (
        Evaluator(
            "ood_by_layer",
            ood_by_layer,
            "OOD AUROC of the energies of layers >= k, inference and diffusion schemes (Sec. 5.2, Fig. 3)",
            needs=("layer_scores",),
            reads=("image",),
            check=_check_ood,
            main_only=True,
            settings={
                "ood_source": Setting("holdout", "OOD set: 'holdout' (data.holdout_class) or a dataset name"),
                "ood_max_examples": Setting(
                    1000, "examples per side", check=lambda x: x >= 2, what="an integer >= 2"
                ),
            },
        ),
        Evaluator(
            "controllable_synthesis",
            controllable_synthesis,
            "class-conditional sampling accuracy, coupled-logit accuracy, compositional figures (Sec. 5.3)",
            reads=("image",),
            main_only=True,
            settings={
                "label_samples_per_class": Setting(50, "samples per class", check=positive),
                "compose_variations": Setting(7, "resamplings per row of compositional.png", check=positive),
                "fd_classifier_epochs": Setting(
                    30, "epochs of the domain classifier (cached)", check=positive
                ),
            },
        ),
    )
}
