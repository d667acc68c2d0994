"""Latent-space figures and numbers of hierarchical representations (ICCV 2023 Secs. 2.2, 5.1, 5.3, 5.4).

The ``hierarchy`` evaluator uses a method's latent predict functions (``sample_prior``, ``decode``,
``infer``; ``resample_layer`` and ``attack`` where the method has them) to write

* ``hierarchical_sampling.png`` (Figs. 4–5): one panel per layer; each row keeps one prior sample's other
  layers fixed while that layer is drawn anew by the method's prior sampler (one draw per column);
* ``traversal.png`` (Figs. 2 and 6): for the first units of every layer, that unit swept over
  ``[−r, r]`` with everything else fixed at a prior sample;
* ``latent_scatter.png`` (Fig. 7), when some layer is 2-d: prior chain states (blue) after 0, K/4, K/2 and
  K Langevin steps against the inferred latents of test data (coloured by label);
* ``latent_attack.png`` (Fig. 9), for methods with an inference network: per attacked layer, columns
  original, target, adversarial example, its reconstruction; with per-layer numbers for ``summary.json``:
  how far the reconstruction of the adversarial example moved towards the target.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from latentebm_jax import device_map, viz
from latentebm_jax.config_schema import Setting, non_negative, positive
from latentebm_jax.data import iterate_once
from latentebm_jax.methods.base import EvalContext, Evaluator
from latentebm_jax.metrics import per_example_mse

_STREAM = 4
_RESAMPLES = 8  # columns of the hierarchical-sampling panels
_TRAVERSAL_STEPS = 9
_SCATTER_PRIOR = 500
_SCATTER_DATA = 500

Predict = Mapping[str, Callable[..., Any]]


def layer_name(i: int, n: int) -> str:
    """``z_1 (bottom)`` … ``z_L (top)``: the paper's 1-indexed names, bottom first."""
    where = " (bottom)" if i == 0 and n > 1 else " (top)" if i == n - 1 and n > 1 else ""
    return f"z_{i + 1}{where}"


def _decode(predict: Predict, params: Any, z) -> np.ndarray:
    return np.asarray(predict["decode"](params, tuple(z))["image"])


def hierarchical_sampling(predict: Predict, params: Any, key: jax.Array, num_layers: int, rows: int) -> list:
    """Panels ``(layer name, images (rows, _RESAMPLES, H, W, C))`` of hierarchical sampling."""
    base = predict["sample_prior"](params, jax.random.fold_in(key, 0), rows, None)
    panels = []
    for layer in range(num_layers):
        cols = []
        for j in range(_RESAMPLES):
            z = predict["resample_layer"](params, base, layer, jax.random.fold_in(key, 1 + layer * 1000 + j))
            cols.append(_decode(predict, params, z))
        panels.append((f"{layer_name(layer, num_layers)} resampled", np.stack(cols, axis=1)))
    return panels


def traversal(
    predict: Predict, params: Any, key: jax.Array, dims: tuple[int, ...], units: int, value_range: float
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Images ``(rows, _TRAVERSAL_STEPS, H, W, C)``: one row per (layer, unit), the unit swept over
    ``linspace(−r, r)`` with every other unit fixed at one prior sample; row labels; the swept values."""
    base = predict["sample_prior"](params, key, 1, None)
    values = np.linspace(-value_range, value_range, _TRAVERSAL_STEPS).astype(np.float32)
    rows, labels = [], []
    for layer, d in enumerate(dims):
        for unit in range(min(units, d)):
            z = [np.repeat(np.asarray(zi), _TRAVERSAL_STEPS, axis=0) for zi in base]
            z[layer].reshape(_TRAVERSAL_STEPS, -1)[:, unit] = values  # a view: spatial layers too
            rows.append(_decode(predict, params, z))
            labels.append(f"{layer_name(layer, len(dims)).split(' ')[0]}[{unit}]")
    return np.stack(rows), labels, values


def _test_latents(predict: Predict, params, test, limit: int, batch_size: int, key):
    parts, labels = [], []
    params = device_map.replicate(params)
    for i, (batch, valid) in enumerate(iterate_once(test, batch_size, limit)):
        z = device_map.map_batch(predict["infer"], params, batch, jax.random.fold_in(key, i))
        parts.append([np.asarray(zi)[:valid] for zi in z])
        labels.append(batch["label"][:valid])
    return [np.concatenate(p) for p in zip(*parts)], np.concatenate(labels)


def latent_scatter(
    predict: Predict,
    params: Any,
    key: jax.Array,
    dims: tuple[int, ...],
    steps: int,
    test,
    batch_size: int,
    path: str,
) -> str | None:
    """Write ``latent_scatter.png`` for the 2-d layers; returns the path or ``None`` if no layer is 2-d."""
    two_d = [i for i, d in enumerate(dims) if d == 2]
    if not two_d:
        return None
    marks = sorted({0, steps // 4, steps // 2, steps})
    chains = [predict["sample_prior"](params, jax.random.fold_in(key, 0), _SCATTER_PRIOR, k) for k in marks]
    post, labels = _test_latents(predict, params, test, _SCATTER_DATA, batch_size, jax.random.fold_in(key, 1))
    return viz.save_latent_scatter(
        [[np.asarray(c[i]) for c in chains] for i in two_d],
        [post[i] for i in two_d],
        marks,
        [layer_name(i, len(dims)) for i in two_d],
        path,
        posterior_labels=labels if np.all(labels >= 0) else None,
        title="prior Langevin chain (blue) vs inferred latents of test data (coloured by class)",
    )


def latent_attack(
    predict: Predict, params: Any, key: jax.Array, num_layers: int, test, examples: int, settings: tuple
) -> tuple[list, dict[str, list[float]]]:
    """Attack every layer on ``examples`` test images, each aimed at a test image of another class.

    ``settings`` = ``(steps, learning rate, l2 weight)`` of ``attack``. Returns panels ``(layer, images
    (examples, 4, H, W, C))`` and per-layer means over the examples of ``attack_recon_to_target_mse``
    (reconstruction of x̃ vs the target), ``attack_recon_to_original_mse`` and ``attack_delta_rmse``.
    """
    batch, valid = next(iterate_once(test, 4 * examples))
    x, y = batch["image"][:valid], batch["label"][:valid]
    order = np.arange(len(x))
    originals = order[:examples]
    targets = []
    for i in originals:  # the next image of a different class (or just the next one)
        other = [j for j in order[examples:] if y[j] != y[i] and j not in targets]
        targets.append(other[0] if other else order[(i + examples) % len(x)])
    x_o, x_t = x[originals], x[np.asarray(targets)]
    panels, numbers = [], {"to_target": [], "to_original": [], "delta": []}
    for layer in range(num_layers):
        x_adv = np.asarray(predict["attack"](params, x_o, x_t, layer, *settings))
        recon = predict["reconstruct"](params, {"image": x_adv}, jax.random.fold_in(key, layer))
        recon = np.asarray(recon["image"])
        panels.append(
            (f"attack on {layer_name(layer, num_layers)}", np.stack([x_o, x_t, x_adv, recon], axis=1))
        )
        numbers["to_target"].append(float(np.mean(per_example_mse(x_t, recon))))
        numbers["to_original"].append(float(np.mean(per_example_mse(x_o, recon))))
        numbers["delta"].append(float(np.sqrt(np.mean(np.square(x_adv - x_o)))))
    return panels, {
        "attack_recon_to_target_mse": numbers["to_target"],
        "attack_recon_to_original_mse": numbers["to_original"],
        "attack_delta_rmse": numbers["delta"],
    }


def hierarchy(ctx: EvalContext) -> dict[str, Any]:
    """Write the figures the method's predict functions allow; return the numbers for ``summary.json``."""
    cfg, e, method = ctx.config, ctx.config.eval, ctx.method
    predict, params, latents = method.predict, ctx.params, method.latents
    key = jax.random.fold_in(ctx.key, _STREAM)
    n = len(latents.dims)
    title = f"{cfg.method} on {cfg.data.name} · step {ctx.step:,}"
    if "resample_layer" in predict and n > 1:
        panels = hierarchical_sampling(predict, params, jax.random.fold_in(key, 0), n, e.hierarchy_rows)
        viz.save_grid_panels(
            panels,
            os.path.join(ctx.out_dir, "hierarchical_sampling.png"),
            suptitle=f"{title}: each row resamples one layer with the other layers fixed",
        )
    images, labels, values = traversal(
        predict, params, jax.random.fold_in(key, 1), latents.dims, e.traversal_units, e.traversal_range
    )
    viz.save_grid_panels(
        [("latent traversal", images)],
        os.path.join(ctx.out_dir, "traversal.png"),
        suptitle=f"{title}: one unit swept, the rest fixed at a prior sample",
        row_labels=[labels],
        col_labels=[f"{v:.2g}" for v in values],
    )
    latent_scatter(
        predict,
        params,
        jax.random.fold_in(key, 2),
        latents.dims,
        latents.prior_steps,
        ctx.splits.test,
        e.batch_size,
        os.path.join(ctx.out_dir, "latent_scatter.png"),
    )
    out: dict[str, Any] = {}
    if "attack" in predict:
        panels, numbers = latent_attack(
            predict,
            params,
            jax.random.fold_in(key, 3),
            n,
            ctx.splits.test,
            e.attack_examples,
            (e.attack_steps, e.attack_lr, e.attack_l2),
        )
        viz.save_grid_panels(
            panels,
            os.path.join(ctx.out_dir, "latent_attack.png"),
            suptitle=f"{title}: latent attack per layer (original, target, adversarial, reconstruction)",
            ncols=min(len(panels), 5),
        )
        out.update(numbers)
    return out


EVALUATORS = (
    Evaluator(
        "hierarchy",
        hierarchy,
        "hierarchical sampling, traversals, prior-vs-posterior scatter and latent attack (ICCV 2023)",
        needs=("sample_prior", "decode", "infer"),
        reads=("image",),
        main_only=True,
        settings={
            "hierarchy_rows": Setting(8, "base samples (rows) per panel", check=positive),
            "traversal_units": Setting(4, "units traversed per layer", check=positive),
            "traversal_range": Setting(3.0, "each unit swept over [-r, r]", check=positive),
            "attack_examples": Setting(8, "test images attacked per layer", check=positive),
            "attack_steps": Setting(200, "Adam steps of the latent attack", check=non_negative),
            "attack_lr": Setting(0.01, "learning rate of the latent attack", check=positive),
            "attack_l2": Setting(0.1, "weight of ||delta||^2 in the attack objective", check=non_negative),
        },
    ),
)
