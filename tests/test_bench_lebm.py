"""The PyTorch reference of the LEBM benchmark (``benchmarks/torch_lebm.py``) computes the library's step.

With the same initial weights and every Gaussian draw set to zero (chains start at ``z = 0`` and move by
their drift alone), one PyTorch eager step of LEBM Algorithm 1 (Eqs. 9-11) and one step of
:func:`latentebm_jax.methods.lebm.train_step` give the same losses and the same updated parameters; the
benchmark's ratio therefore compares two implementations of one computation. Runs only where PyTorch is
installed (the ``bench`` extra)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_equivalence import assert_trees_close, zeros_like_normal  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.torch_lebm import StepSettings, TorchLEBM, load_library_params  # noqa: E402
from configs import svhn  # noqa: E402
from latentebm_jax.methods import lebm  # noqa: E402

_BATCH, _K0, _K1, _NGF = 4, 4, 3, 8


def _config():
    c = svhn.get_config()
    c.lebm.ngf = _NGF
    c.sampler.prior_steps, c.sampler.posterior_steps = _K0, _K1
    return c


def _library_step(monkeypatch, config, x):
    monkeypatch.setattr(jax.random, "normal", zeros_like_normal)
    hp = lebm.hparams_from_config(config)
    tx = lebm.optimizer_from_config(config, "lebm").build("gen", steps_per_epoch=732)
    state = lebm.init(hp, tx, jax.random.key(0))
    before = jax.device_get(state.params)
    new_state, metrics = jax.jit(functools.partial(lebm.train_step, hp, tx))(state, {"image": jnp.asarray(x)})
    monkeypatch.undo()
    first_moments = {net: jax.device_get(new_state.opt_state[net][0].mu) for net in ("gen", "ebm")}
    return before, jax.device_get(new_state.params), first_moments, jax.device_get(metrics)


def _torch_step(monkeypatch, config, x, params, posterior_step_size=None):
    m, smp = config.lebm, config.sampler
    settings = StepSettings(
        batch=_BATCH,
        latent_dim=m.latent_dim,
        ngf=m.ngf,
        ebm_hidden=m.ebm_hidden,
        prior_steps=smp.prior_steps,
        prior_step_size=smp.prior_step_size,
        posterior_steps=smp.posterior_steps,
        posterior_step_size=posterior_step_size or smp.posterior_step_size,
        sigma=m.likelihood_sigma,
        sigma_p=m.prior_sigma,
        init_sigma=smp.init_sigma,
        lr_gen=m.lr_gen,
        lr_ebm=m.lr_ebm,
    )
    model = TorchLEBM(settings)
    load_library_params(model, params)
    monkeypatch.setattr(torch, "randn", lambda *a, **k: torch.zeros(*a))
    monkeypatch.setattr(torch, "randn_like", lambda t, **k: torch.zeros_like(t))
    losses = model.step(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    monkeypatch.undo()
    return model, losses


def _as_library(model, which: str):
    """``(parameters, Adam first moments)`` of the torch model in the library's layout."""
    out: dict = {"gen": {}, "ebm": {}}
    moments: dict = {"gen": {}, "ebm": {}}
    convs = [mod for mod in model.gen if isinstance(mod, torch.nn.ConvTranspose2d)]
    dense = [mod for mod in model.ebm if isinstance(mod, torch.nn.Linear)]
    opt = {"gen": model.opt_gen, "ebm": model.opt_ebm}

    def kernel(w, kind):  # the inverse of load_library_params's maps
        w = w.detach().numpy()
        return w.transpose(2, 3, 0, 1)[::-1, ::-1] if kind == "conv" else w.T

    for net, mods, kind in (("gen", convs, "conv"), ("ebm", dense, "dense")):
        for i, mod in enumerate(mods):
            name = f"ConvTranspose_{i}" if kind == "conv" else f"TorchDense_{i}"
            state = opt[net].state
            for tree, get in ((out, lambda t: t), (moments, lambda t, st=state: st[t]["exp_avg"])):
                leaf = {"kernel": kernel(get(mod.weight), kind), "bias": get(mod.bias).detach().numpy()}
                tree[net][name] = leaf if kind == "conv" else {"Dense_0": leaf}
    return out if which == "params" else moments


def test_torch_reference_step_equals_the_library_step_at_zero_noise(monkeypatch):
    config = _config()
    x = harness.images(_BATCH, 32, 3)
    before, after, moments, metrics = _library_step(monkeypatch, config, x)
    model, losses = _torch_step(monkeypatch, config, x, before)

    np.testing.assert_allclose(losses["loss_g"], metrics["loss_g"], rtol=1e-4)  # z⁺ agree (Eq. 9)
    np.testing.assert_allclose(losses["loss_e"], metrics["loss_e"], rtol=1e-3, atol=1e-5)  # z⁻ agree
    # Adam's first moment after one step is (1 − β₁)·gradient: the gradients of Eqs. 10-11 agree ...
    assert_trees_close(_as_library(model, "moments"), moments, "first moment", rel=1e-3)
    # ... and so do the updated weights: Adam's first step moves a weight by lr·g/(|g| + ε), ±lr unless its
    # gradient is near ε, where float32 round-off of g shows (one element in 10⁵ differs by 0.07·lr)
    lr = {"gen": config.lebm.lr_gen, "ebm": config.lebm.lr_ebm}
    got = _as_library(model, "params")
    for net in ("gen", "ebm"):
        moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), after[net], before[net])
        kernels = [
            v for p, v in jax.tree_util.tree_leaves_with_path(moved) if "kernel" in jax.tree_util.keystr(p)
        ]
        assert min(kernels) > 0.5 * lr[net]  # the step moved every kernel (f's last bias has no gradient)
        for g, w in zip(jax.tree.leaves(got[net]), jax.tree.leaves(after[net])):
            np.testing.assert_allclose(g, w, rtol=0, atol=0.2 * lr[net])

    # a different posterior step size is a different step: the generator's gradient no longer matches
    other, _ = _torch_step(monkeypatch, config, x, before, posterior_step_size=0.3)
    with pytest.raises(AssertionError):
        assert_trees_close(_as_library(other, "moments")["gen"], moments["gen"], "first moment", rel=1e-3)
