"""Evaluations of the diffusion hierarchical EBM prior (ICML 2024), stage 2.

* :func:`ood_by_layer` (Sec. 5.2, Fig. 3): AUROC of the energy of the layers ``≥ k`` (0 = bottom, so
  ``k = 0`` is every layer, ``L−1`` the top one), for the inference scheme (energies at the inferred
  latents) and the diffusion scheme (perturb to ``t = 1``, reverse-sample jointly with prior samples for the
  lower layers); ``ood_by_layer.png`` plots AUROC against ``k`` and the score histograms.
* :func:`controllable_synthesis` (Sec. 5.3, Figs. 4–5): class-conditional samples scored by the domain
  classifier (accuracy = fraction classified as the requested class), ``conditional_samples.png``, and the
  compositional panel ``compositional.png`` (label-coupled upper layers fixed, lower layers resampled).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from latentebm_jax import viz
from latentebm_jax.data import ImageSource, iterate_once, load_source, only_classes, without_class
from latentebm_jax.metrics.detection import ood_auroc
from latentebm_jax.metrics.domain import domain_classifier


def _ood_sources(setup) -> tuple[ImageSource, ImageSource, str]:
    cfg = setup.config
    test = setup.splits.test
    if cfg.eval.ood_source == "holdout":
        h = setup.splits.holdout_class
        inside = without_class(test, h)
        outside = only_classes(test, (h,))
        return inside, outside, f"held-out class {h}"
    other = cfg.data.to_dict()
    other["name"] = cfg.eval.ood_source
    import ml_collections

    return test, load_source(ml_collections.ConfigDict(other), "test"), cfg.eval.ood_source


def _scores(fn, params, source: ImageSource, limit: int, batch: int, key) -> np.ndarray:
    out = []
    for i, (b, valid) in enumerate(iterate_once(source, batch, limit)):
        s = fn(params, b["image"]) if key is None else fn(params, b["image"], jax.random.fold_in(key, i))
        out.append(np.asarray(s)[:valid])
    return np.concatenate(out)


def ood_by_layer(setup, params: Any, workdir: str, key: jax.Array) -> dict[str, Any]:
    """AUROC per ``k`` for both schemes (in-distribution positive, score = negative energy)."""
    cfg, tools = setup.config, setup.method.extras
    inside, outside, what = _ood_sources(setup)
    limit, bs = cfg.eval.ood_max_examples, cfg.eval.batch_size
    n_layers = tools.hparams.num_layers
    results: dict[str, Any] = {"ood_out_of_distribution": what}
    curves, hists = {}, {}
    schemes = {"inference": (tools.scores_inference, None)}
    if tools.scores_diffusion is not None:
        schemes["diffusion"] = (tools.scores_diffusion, key)
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
    path = os.path.join(workdir, "ood_by_layer.png")
    results["ood_figure"] = _plot_ood(curves, hists, n_layers, what, path)
    return results


def _plot_ood(curves, hists, n_layers: int, what: str, path: str) -> str:
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
    fig.tight_layout()
    return viz._save_figure(fig, path)


def controllable_synthesis(setup, params: Any, workdir: str, key: jax.Array) -> dict[str, Any]:
    """Class-conditional sampling accuracy (domain classifier), the logits' own test accuracy, and the
    conditional and compositional figures; with ``data.attributes``, :func:`attribute_synthesis`."""
    from latentebm_jax.training.evaluation import cache_root, dataset_id

    cfg, tools = setup.config, setup.method.extras
    if tuple(cfg.data.attributes):
        return attribute_synthesis(setup, params, workdir, key)
    hp = tools.hparams
    train_labels = setup.splits.train.labels()
    classes = sorted(int(c) for c in np.unique(train_labels) if c >= 0)
    full_train = load_source(cfg.data, cfg.data.train_split)
    clf = domain_classifier(
        cache_root(cfg), dataset_id(cfg), full_train, setup.splits.test, seed=0,
        epochs=cfg.eval.fd_classifier_epochs,
    )  # fmt: skip
    n = cfg.eval.label_samples_per_class
    correct, shown = [], []
    for c in classes:
        labels = jnp.full((n,), c, jnp.int32)
        images = np.asarray(tools.generate_labelled(params, jax.random.fold_in(key, c), labels))
        correct.append(float(np.mean(clf.predict(images) == c)))
        shown.append(images[: min(n, 10)])
    viz.save_grid_panels(
        [("class-conditional samples (rows: requested class)", np.stack(shown))],
        os.path.join(workdir, "conditional_samples.png"),
        row_labels=[[str(c) for c in classes]],
    )
    # the coupled logits as a classifier of inferred test latents (Eq. 19)
    test = setup.splits.test
    if setup.splits.holdout_class >= 0:
        test = without_class(test, setup.splits.holdout_class)
    hits, total = 0, 0
    for b, valid in iterate_once(test, cfg.eval.batch_size):
        z = setup.method.infer_latents(params, b["image"], key)
        pred = np.asarray(jnp.argmax(tools.class_logits(params, z), -1))[:valid]
        hits += int(np.sum(pred == b["label"][:valid]))
        total += valid
    # the coupled layers and those above stay fixed; at least the bottom layer is resampled
    fixed = tuple(range(max(min(hp.label_layers), 1), hp.num_layers))
    v = cfg.eval.compose_variations
    grid = np.asarray(tools.compose(params, key, jnp.asarray(classes, jnp.int32), v, fixed))
    top = ", ".join(f"z_{i + 1}" for i in fixed)
    viz.save_grid_panels(
        [(f"column 0: sample of class y; then {top} fixed, lower layers resampled", grid)],
        os.path.join(workdir, "compositional.png"),
        row_labels=[[str(c) for c in classes]],
    )
    return {
        "label_sampling_accuracy": float(np.mean(correct)),
        "label_sampling_accuracy_per_class": correct,
        "label_sampling_chance": 1.0 / len(classes),
        "label_logits_test_accuracy": hits / max(total, 1),
        "label_classifier_test_accuracy": clf.test_accuracy,
    }


def attribute_synthesis(setup, params: Any, workdir: str, key: jax.Array) -> dict[str, Any]:
    """Multi-attribute coupling (Fig. 4): each coupled layer's logits as a classifier of its attribute on
    inferred test latents (Eq. 19), and ``compositional.png``: one row per combination of attribute values
    (at most 8), columns adding the attributes from the top coupled layer down (each stage keeps the layers
    above the one it couples and resamples the rest)."""
    cfg, tools = setup.config, setup.method.extras
    hp, names = tools.hparams, tuple(cfg.data.attributes)
    hits, total = np.zeros(len(names)), 0
    for b, valid in iterate_once(setup.splits.test, cfg.eval.batch_size):
        z = setup.method.infer_latents(params, b["image"], key)
        pred = np.asarray(jnp.argmax(tools.layer_logits(params, z), -1))[:valid]
        hits += np.sum(pred == b["attributes"][:valid], axis=0)
        total += valid
    combos = np.array(np.meshgrid(*[[1, 0]] * len(names), indexing="ij")).reshape(len(names), -1).T[:8]
    order = sorted(range(len(names)), key=lambda j: -hp.label_layers[j])  # top coupled layer first
    stages = tuple((j,) for j in order)
    grid = np.asarray(tools.compose_attributes(params, key, jnp.asarray(combos, jnp.int32), stages))
    rows = [", ".join(f"{names[j]}={v}" for j, v in enumerate(c)) for c in combos]
    cols = " → ".join(f"+{names[j]} (z_{hp.label_layers[j] + 1})" for j in order)
    viz.save_grid_panels(
        [(f"columns: {cols}", grid)], os.path.join(workdir, "compositional.png"), row_labels=[rows]
    )
    return {
        "attribute_names": list(names),
        "attribute_logits_test_accuracy": (hits / max(total, 1)).tolist(),
    }
