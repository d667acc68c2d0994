"""Latent-space figures and numbers of hierarchical representations (ICCV 2023 Secs. 2.2, 5.1, 5.3, 5.4).

:func:`write_representation_figures` uses a method's :class:`~latentebm_jax.methods.LatentTools` to write

* ``hierarchical_sampling.png`` (Figs. 4–5): one panel per layer; each row keeps one prior sample's other
  layers fixed while that layer is drawn anew by Langevin on the joint prior (one draw per column);
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
from typing import Any

import jax
import numpy as np

from latentebm_jax import viz
from latentebm_jax.data import iterate_once
from latentebm_jax.methods import LatentTools
from latentebm_jax.metrics import per_example_mse

_RESAMPLES = 8  # columns of the hierarchical-sampling panels
_TRAVERSAL_STEPS = 9
_SCATTER_PRIOR = 500
_SCATTER_DATA = 500


def layer_name(i: int, n: int) -> str:
    """``z_1 (bottom)`` … ``z_L (top)``: the paper's 1-indexed names, bottom first."""
    where = " (bottom)" if i == 0 and n > 1 else " (top)" if i == n - 1 and n > 1 else ""
    return f"z_{i + 1}{where}"


def hierarchical_sampling(tools: LatentTools, params: Any, key: jax.Array, rows: int, steps: int) -> list:
    """Panels ``(layer name, images (rows, _RESAMPLES, H, W, C))`` of hierarchical sampling."""
    base = tools.sample_prior(params, jax.random.fold_in(key, 0), rows, steps)
    n = len(tools.latent_dims)
    panels = []
    for layer in range(n):
        cols = []
        for j in range(_RESAMPLES):
            z = tools.resample_layer(params, base, layer, jax.random.fold_in(key, 1 + layer * 1000 + j))
            cols.append(np.asarray(tools.decode(params, z)))
        panels.append((f"{layer_name(layer, n)} resampled", np.stack(cols, axis=1)))
    return panels


def traversal(
    tools: LatentTools, params: Any, key: jax.Array, units: int, value_range: float, steps: int
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Images ``(rows, _TRAVERSAL_STEPS, H, W, C)``: one row per (layer, unit), the unit swept over
    ``linspace(−r, r)`` with every other unit fixed at one prior sample; row labels; the swept values."""
    base = tools.sample_prior(params, key, 1, steps)
    values = np.linspace(-value_range, value_range, _TRAVERSAL_STEPS).astype(np.float32)
    n = len(tools.latent_dims)
    rows, labels = [], []
    for layer, d in enumerate(tools.latent_dims):
        for unit in range(min(units, d)):
            z = [np.repeat(np.asarray(zi), _TRAVERSAL_STEPS, axis=0) for zi in base]
            z[layer][:, unit] = values
            rows.append(np.asarray(tools.decode(params, tuple(z))))
            labels.append(f"{layer_name(layer, n).split(' ')[0]}[{unit}]")
    return np.stack(rows), labels, values


def _test_latents(
    tools, params, test, limit: int, batch_size: int, key
) -> tuple[list[np.ndarray], np.ndarray]:
    parts, labels = [], []
    for i, (batch, valid) in enumerate(iterate_once(test, batch_size, limit)):
        z = tools.infer(params, batch["image"], jax.random.fold_in(key, i))
        parts.append([np.asarray(zi)[:valid] for zi in z])
        labels.append(batch["label"][:valid])
    return [np.concatenate(p) for p in zip(*parts)], np.concatenate(labels)


def latent_scatter(
    tools: LatentTools, params: Any, key: jax.Array, test, batch_size: int, steps: int, path: str
):
    """Write ``latent_scatter.png`` for the 2-d layers; returns the path or ``None`` if no layer is 2-d."""
    two_d = [i for i, d in enumerate(tools.latent_dims) if d == 2]
    if not two_d:
        return None
    marks = sorted({0, steps // 4, steps // 2, steps})
    chains = [tools.sample_prior(params, jax.random.fold_in(key, 0), _SCATTER_PRIOR, k) for k in marks]
    post, labels = _test_latents(tools, params, test, _SCATTER_DATA, batch_size, jax.random.fold_in(key, 1))
    n = len(tools.latent_dims)
    return viz.save_latent_scatter(
        [[np.asarray(c[i]) for c in chains] for i in two_d],
        [post[i] for i in two_d],
        marks,
        [layer_name(i, n) for i in two_d],
        path,
        posterior_labels=labels if np.all(labels >= 0) else None,
        title="prior Langevin chain (blue) vs inferred latents of test data (coloured by class)",
    )


def latent_attack(
    tools: LatentTools, method, params: Any, key: jax.Array, test, examples: int
) -> tuple[list, dict[str, list[float]]]:
    """Attack every layer on ``examples`` test images, each aimed at a test image of another class.

    Returns panels ``(layer, images (examples, 4, H, W, C))`` and per-layer means over the examples of
    ``attack_recon_to_target_mse`` (reconstruction of x̃ vs the target), ``attack_recon_to_original_mse``
    and ``attack_delta_rmse`` (size of the perturbation).
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
    n = len(tools.latent_dims)
    for layer in range(n):
        x_adv = np.asarray(tools.attack(params, x_o, x_t, layer))
        recon = np.asarray(method.reconstruct(params, x_adv, jax.random.fold_in(key, layer)))
        panels.append((f"attack on {layer_name(layer, n)}", np.stack([x_o, x_t, x_adv, recon], axis=1)))
        numbers["to_target"].append(float(np.mean(per_example_mse(x_t, recon))))
        numbers["to_original"].append(float(np.mean(per_example_mse(x_o, recon))))
        numbers["delta"].append(float(np.sqrt(np.mean(np.square(x_adv - x_o)))))
    return panels, {
        "attack_recon_to_target_mse": numbers["to_target"],
        "attack_recon_to_original_mse": numbers["to_original"],
        "attack_delta_rmse": numbers["delta"],
    }


def write_representation_figures(setup, params: Any, workdir: str, key: jax.Array) -> dict[str, Any]:
    """Write the figures the method's latent tools allow; return the numbers for ``summary.json``."""
    cfg, method = setup.config, setup.method
    tools = method.latent_tools
    if tools is None:
        return {"hierarchy_skipped": f"method {cfg.method} has no latent tools"}
    e, steps = cfg.eval, cfg.sampler.prior_steps
    out: dict[str, Any] = {}
    title = f"{cfg.method} on {cfg.data.name}"
    if tools.resample_layer is not None and len(tools.latent_dims) > 1:
        panels = hierarchical_sampling(tools, params, jax.random.fold_in(key, 0), e.hierarchy_rows, steps)
        viz.save_grid_panels(
            panels,
            os.path.join(workdir, "hierarchical_sampling.png"),
            suptitle=f"{title}: each row resamples one layer by Langevin with the other layers fixed",
        )
    images, labels, values = traversal(
        tools, params, jax.random.fold_in(key, 1), e.traversal_units, e.traversal_range, steps
    )
    viz.save_grid_panels(
        [("latent traversal", images)],
        os.path.join(workdir, "traversal.png"),
        suptitle=f"{title}: one unit swept, the rest fixed at a prior sample",
        row_labels=[labels],
        col_labels=[f"{v:.2g}" for v in values],
    )
    latent_scatter(
        tools,
        params,
        jax.random.fold_in(key, 2),
        setup.splits.test,
        e.batch_size,
        steps,
        os.path.join(workdir, "latent_scatter.png"),
    )
    if tools.attack is not None:
        panels, numbers = latent_attack(
            tools, method, params, jax.random.fold_in(key, 3), setup.splits.test, e.attack_examples
        )
        viz.save_grid_panels(
            panels,
            os.path.join(workdir, "latent_attack.png"),
            suptitle=f"{title}: latent attack per layer (original, target, adversarial, reconstruction)",
            ncols=min(len(panels), 5),
        )
        out.update(numbers)
    return out
