"""The PyTorch references of the diffusion EBM prior's benchmarks (``benchmarks/torch_diffusion.py``) compute
the library's steps.

With the same initial weights and every Gaussian draw set to zero (posterior draws at the means, the pair
``u_t = ā_t u_0``, ``u_{t+1} = a_{t+1} u_t``, Langevin moving by its drift alone):

* one PyTorch step of the HVAE backbone's negative ELBO and one step of
  :func:`latentebm_jax.methods.hvae.train_step` give the same loss, reconstruction term, per-layer KLs,
  gradient norm and updated parameters;
* one PyTorch iteration of Algorithm 1 (Eqs. 7, 9, 12, 13) and one step of
  :func:`latentebm_jax.methods.diffusion_prior.train_step` on the same frozen backbone give the same loss,
  per-layer losses and energies, gradient norm, updated EBM weights and spectral-norm vectors. The per-example
  diffusion steps ``t`` are the library's own draw (recomputed from the step's key, covering every
  ``t = 0 … T−1``) and injected into the PyTorch step.

A different likelihood σ (backbone) or Langevin length (stage 2) does not match: the comparison can fail.
The benchmarks' ratios therefore compare two implementations of one computation. Runs only where PyTorch is
installed (the ``bench`` extra)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_equivalence import zeros_like_normal  # noqa: E402

from benchmarks import diffusion_step, harness, hvae_step  # noqa: E402
from benchmarks.torch_diffusion import (  # noqa: E402
    DiffusionSettings,
    HVAESettings,
    TorchDiffusionStep,
    TorchHVAEStep,
    ebm_params_of,
    hvae_params_of,
    load_ebm_params,
    load_hvae_params,
)
from configs import default  # noqa: E402
from latentebm_jax.methods import diffusion_prior as dm  # noqa: E402
from latentebm_jax.methods import hvae  # noqa: E402
from latentebm_jax.methods.common import example_keys, fold_keys  # noqa: E402
from latentebm_jax.state import new_train_state  # noqa: E402

_BATCH, _SIZE = 6, 8
_SMALL = {"latent_dims": (2, 3, 4), "widths": (4, 6, 8, 16), "prior_hidden": 16}


def _config(method: str):
    c = default.get_config(method)
    c.data.image_size = _SIZE
    c.backbone.update(**_SMALL)
    if method == "diffusion":
        c.diffusion.update(ebm_hidden=16, langevin_steps=3)
    return c


def _images() -> np.ndarray:
    return harness.images(_BATCH, _SIZE, 3)


def _nchw(x: np.ndarray):
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def _zeros(*shape):
    return torch.zeros(*shape)


def _random_like(shapes, seed: int):
    """Arrays of ``shapes`` (a tree of ``ShapeDtypeStruct``) drawn with NumPy, matrices scaled ``1/√fan_in``:
    weights for the comparison without compiling the library's initialisers."""
    rng = np.random.default_rng(seed)

    def draw(s):
        fan_in = int(np.prod(s.shape[:-1])) if len(s.shape) > 1 else max(int(np.prod(s.shape)), 1)
        return jnp.asarray(rng.standard_normal(s.shape).astype(np.float32) / np.sqrt(fan_in))

    return jax.tree.map(draw, shapes)


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def _assert_params_match(got, grads, before, after, lr: float, weight_decay: float) -> None:
    """Every weight moved, and PyTorch's updated weights are the library's. Adam's first update is
    ``lr·ĝ/(|ĝ| + ε)`` with ``ĝ = g + λθ``: where ``|ĝ|`` is near ``ε = 1e-8``, float32 rounding of ``g`` may
    flip its sign, so those few weights are held to the update's size ``2·lr`` only."""
    g, d, b, a = _flat(got), _flat(grads), _flat(before), _flat(after)
    assert g.keys() == a.keys()
    steep_count = 0
    for k in a:
        assert np.abs(a[k] - b[k]).max() > 0, f"{k} did not change"  # the step moved every weight
        steep = np.abs(d[k] + weight_decay * b[k]) > 1e-7
        steep_count += steep.sum()
        np.testing.assert_allclose(g[k][steep], a[k][steep], rtol=1e-4, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(g[k], a[k], rtol=0, atol=2.01 * lr, err_msg=k)
    assert steep_count > 0.9 * sum(v.size for v in a.values())  # most weights held to the tight tolerance


# ----------------------------------------------------------------------------- the backbone (stage 1)


def _library_hvae_step(monkeypatch, config, x):
    bb, tx, _, _ = hvae_step._library_step(config)
    params = {"backbone": _random_like(jax.eval_shape(bb.init, jax.random.key(0)), 0)}
    state = new_train_state(params, {"backbone": tx.init(params["backbone"])}, jax.random.key(0))
    before = jax.device_get(state.params["backbone"])
    monkeypatch.setattr(jax.random, "normal", zeros_like_normal)
    new_state, metrics = jax.jit(functools.partial(hvae.train_step, bb, tx))(state, {"image": jnp.asarray(x)})
    monkeypatch.undo()
    return before, jax.device_get(new_state.params["backbone"]), jax.device_get(metrics)


def _torch_hvae_step(settings: HVAESettings, params, x):
    model = TorchHVAEStep(settings)
    load_hvae_params(model.model, params)
    model.randn = _zeros
    return model, model.step(_nchw(x))


def test_torch_hvae_step_equals_the_library_step_at_zero_noise(monkeypatch):
    config = _config("hvae")
    x = _images()
    before, after, metrics = _library_hvae_step(monkeypatch, config, x)
    settings = HVAESettings.from_config(config)
    model, out = _torch_hvae_step(settings, before, x)

    np.testing.assert_allclose(out["loss"], metrics["loss"], rtol=1e-5)
    np.testing.assert_allclose(
        out["recon"], metrics["mse"] * x[0].size / (2 * settings.likelihood_sigma**2), rtol=1e-5
    )
    for i, kl in enumerate(out["kl"]):
        np.testing.assert_allclose(kl, metrics[f"kl_{i + 1}"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["grad_norm"], metrics["grad_norm"], rtol=1e-4)
    grads = hvae_params_of(model.model, grads=True)
    _assert_params_match(
        hvae_params_of(model.model), grads, before, after, settings.lr, settings.weight_decay
    )

    # another likelihood σ is another objective: the loss no longer matches
    _, other = _torch_hvae_step(dataclasses.replace(settings, likelihood_sigma=0.3), before, x)
    assert not np.isclose(other["loss"], metrics["loss"], rtol=1e-3)


# ----------------------------------------------------------------------------- the EBM prior (stage 2)


def _library_timesteps(state, hp) -> np.ndarray:
    """The step's own ``t ~ U{0 … T−1}`` per example (``diffusion_prior.train_step``'s draw)."""
    keys = fold_keys(example_keys(state.step_key(), _BATCH), dm._TIME)
    draw = lambda k: jax.random.randint(k, (), 0, hp.num_diffusion_steps)
    return np.asarray(jax.vmap(draw)(keys))


def _state_with_every_t(hp, tx):
    """A stage-2 state (random backbone, EBMs and spectral-norm vectors) whose step draws every ``t``."""
    backbone = _random_like(jax.eval_shape(hp.backbone.init, jax.random.key(0)), 0)
    z = tuple(jnp.zeros((1, d)) for d in hp.latent_dims)
    shapes = jax.eval_shape(hp.energy_net().init, jax.random.key(0), z, jnp.zeros((1,), jnp.int32))
    ebm = _random_like(shapes["params"], 1)
    stats = _random_like(shapes["batch_stats"], 2)  # spectral norm's u (and σ, which is only stored)
    for seed in range(50):
        state = new_train_state(
            {"ebm": ebm},
            {"ebm": tx.init(ebm)},
            jax.random.key(seed),
            {"backbone": backbone, "ebm": stats},
        )
        t = _library_timesteps(state, hp)
        if set(t.tolist()) == set(range(hp.num_diffusion_steps)):
            return state, t
    raise AssertionError("no seed below 50 draws every diffusion step")


def _torch_diffusion_step(config, state, t, x, langevin_steps=None):
    s = DiffusionSettings.from_config(config)
    if langevin_steps is not None:
        s = dataclasses.replace(s, langevin_steps=langevin_steps)
    model = TorchDiffusionStep(HVAESettings.from_config(config), s)
    load_hvae_params(model.backbone, jax.device_get(state.model_state["backbone"]))
    load_ebm_params(model.ebms, jax.device_get(state.params["ebm"]), jax.device_get(state.model_state["ebm"]))
    model.randn = _zeros
    model.sample_t = lambda b: torch.from_numpy(t.astype(np.int64))
    return model, model.step(_nchw(x))


def test_torch_diffusion_step_equals_the_library_step_at_zero_noise(monkeypatch):
    config = _config("diffusion")
    hp, tx = diffusion_step.library_setup(config)
    state, t = _state_with_every_t(hp, tx)
    x = _images()
    before = jax.device_get(state.params["ebm"])
    model, out = _torch_diffusion_step(config, state, t, x)

    monkeypatch.setattr(jax.random, "normal", zeros_like_normal)
    new_state, metrics = jax.jit(functools.partial(dm.train_step, hp, tx))(state, {"image": jnp.asarray(x)})
    monkeypatch.undo()
    metrics = jax.device_get(metrics)

    np.testing.assert_allclose(out["loss"], metrics["loss"], rtol=1e-4, atol=1e-3)
    for i in range(hp.num_layers):
        np.testing.assert_allclose(out["per_layer"][i], metrics[f"loss_{i + 1}"], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(out["g_pos"][i], metrics[f"g_pos_{i + 1}"], rtol=1e-5)
        np.testing.assert_allclose(out["g_neg"][i], metrics[f"g_neg_{i + 1}"], rtol=1e-5)
    np.testing.assert_allclose(out["grad_norm"], metrics["grad_norm"], rtol=1e-4)
    params, us = ebm_params_of(model.ebms)
    grads, _ = ebm_params_of(model.ebms, grads=True)
    after = jax.device_get(new_state.params["ebm"])
    _assert_params_match(params, grads, before, after, model.s.lr, model.s.weight_decay)
    stats = jax.device_get(new_state.model_state["ebm"])
    for (layer, dense), u in us.items():
        want = stats[layer][dense]["SpectralNorm_0"]["Dense_0/kernel/u"]
        np.testing.assert_allclose(u, want, rtol=1e-4, atol=1e-6, err_msg=f"{layer}/{dense}")

    # a shorter chain gives other negatives: their energies no longer match
    _, other = _torch_diffusion_step(config, state, t, x, langevin_steps=1)
    assert not np.allclose(
        other["g_neg"], [metrics[f"g_neg_{i + 1}"] for i in range(hp.num_layers)], rtol=1e-3
    )
