"""The PyTorch reference of the BiDVL benchmark (``benchmarks/torch_bidvl.py``) computes the library's step.

With the same initial state (weights, BatchNorm running averages, spectral-norm vectors) and the same
Gaussian draws ``(ĥ, ε)`` in both (the library's ``_draws`` replaced by fixed values, the reference's
``draws`` likewise), one PyTorch eager step of Algorithm 1 (lower level by Eq. 13, then upper level by
Eq. 14, the paper's config with small widths) and one step of :func:`latentebm_jax.methods.bidvl.train_step`
give the same losses, the same gradient norms, the same parameters after the Adam updates, the same
BatchNorm running averages (PyTorch's unbiased-variance averages converted to Flax's biased ones with each
call's own batch) and the same spectral-norm vectors (one power iteration kept per step). The benchmark's
ratio therefore compares two implementations of one computation. A reference with a different likelihood
``σ`` does not match. Runs only where PyTorch is installed (the ``bench`` extra)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_equivalence import assert_trees_close  # noqa: E402

from benchmarks import bidvl_step, harness  # noqa: E402
from benchmarks.torch_bidvl import TorchBiDVL, library_layout, load_library_state  # noqa: E402
from latentebm_jax.methods import bidvl  # noqa: E402

_BATCH, _SIZE, _D, _W = 4, 16, 6, 4


def _config():
    """The benchmark's config (CIFAR-10, the paper's settings) at 16×16 with small widths; Flax's plain
    transposed convolutions (``conv_impl='xla'``, the same function as the benchmark's ``fast``, compiled in
    less time)."""
    c = bidvl_step.bench_config()
    c.data.image_size = _SIZE
    c.bidvl.update(latent_dim=_D, enc_width=_W, gen_width=_W, ebm_width=_W, conv_impl="xla")
    return c


def _draws():
    rng = np.random.default_rng(1)
    return tuple(rng.standard_normal((_BATCH, _D)).astype(np.float32) for _ in range(3))


def _library_step(monkeypatch, config, x, draws):
    hp = bidvl.hparams_from_config(config)
    tx = bidvl.optimizers_from_config(config, bidvl_step.STEPS_PER_EPOCH)
    # initialisers drawn by the RBG generator (XLA:CPU compiles it faster than threefry); the draws are fixed
    state = jax.jit(functools.partial(bidvl.init, hp, tx))(jax.random.key(0, impl="rbg"))
    state = state.replace(rng=jax.random.key_data(jax.random.key(0)))
    fixed = tuple(jnp.asarray(d) for d in draws)
    monkeypatch.setattr(bidvl, "_draws", lambda hp, keys, n: fixed)  # looked up at trace time
    new_state, metrics = jax.jit(functools.partial(bidvl.train_step, hp, tx))(
        state, {"image": jnp.asarray(x)}
    )
    monkeypatch.undo()
    return jax.device_get(state), jax.device_get(new_state), jax.device_get(metrics)


def _batch_norm_corrections(model):
    """Per BatchNorm module, ``running_var(PyTorch) − running_var(Flax)``: every train-mode call adds
    ``momentum · var_biased / (m − 1)`` (PyTorch averages the unbiased variance), decayed like the average."""
    corr = {}

    def hook(mod, inputs):
        if mod.training:
            h = inputs[0].detach()
            m = h.numel() // h.shape[1]
            var = h.var(dim=(0, 2, 3), unbiased=False)
            corr[mod] = (1 - mod.momentum) * corr.get(mod, 0.0) + mod.momentum * var / (m - 1)

    for net in (model.enc, model.gen):
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.register_forward_pre_hook(hook)
    return corr


def _torch_step(config, x, state, draws, **overrides):
    import dataclasses

    settings = dataclasses.replace(bidvl_step.torch_settings(config, _BATCH), **overrides)
    model = TorchBiDVL(settings)
    load_library_state(model, state.params, state.model_state)
    model.draws = lambda b: [(torch.from_numpy(draws[0]), torch.from_numpy(draws[1]))]
    corr = _batch_norm_corrections(model)
    out = model.step(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    params, stats = library_layout(model)
    for name, net in (("enc", model.enc), ("gen", model.gen)):
        bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for i, bn in enumerate(bns):
            stats[name][f"BatchNorm_{i}"]["var"] = stats[name][f"BatchNorm_{i}"]["var"] - corr[bn].numpy()
    return params, stats, out


def _sn_vectors(ebm_stats):
    return {k.split("/")[0]: v[0] for g in ebm_stats.values() for k, v in g.items() if k.endswith("/u")}


@pytest.fixture(scope="module")
def library_step():
    config = _config()
    x = harness.images(_BATCH, _SIZE, 3)
    draws = _draws()
    with pytest.MonkeyPatch.context() as mp:
        before, after, metrics = _library_step(mp, config, x, draws)
    return config, x, draws, before, after, metrics


def test_torch_reference_step_equals_the_library_step(library_step):
    config, x, draws, before, after, metrics = library_step
    params, stats, out = _torch_step(config, x, before, draws)

    for key in ("loss_ll", "chase", "latent_rec", "loss_ul", "f_data", "f_gen_ul", "mse_rec"):
        np.testing.assert_allclose(out[key], metrics[key], rtol=1e-4, atol=1e-5, err_msg=key)
    for key in ("grad_norm_enc", "grad_norm_gen", "grad_norm_ebm"):  # gradient magnitudes (Adam hides them)
        np.testing.assert_allclose(out[key], metrics[key], rtol=2e-4, err_msg=key)
    for name in ("enc", "gen", "ebm"):
        moved = max(
            np.abs(a - b).max()
            for a, b in zip(jax.tree.leaves(after.params[name]), jax.tree.leaves(before.params[name]))
        )
        assert moved > 1e-5, name  # the step changed the weights: the comparison below is of the update
        assert_trees_close(params[name], after.params[name], rtol=1e-4, atol=1e-6, what=name)
    for name in ("enc", "gen"):  # BatchNorm running averages after Q(v), P(h), P(ĥ), Q(P(ĥ)), P(ĥ)
        assert_trees_close(stats[name], after.model_state[name], rtol=1e-4, atol=1e-6, what=f"{name} stats")
    want_u = _sn_vectors(after.model_state["ebm"])
    assert not np.allclose(want_u["Conv_0"], _sn_vectors(before.model_state["ebm"])["Conv_0"])
    for layer, u in want_u.items():  # one power iteration kept: the upper level's
        np.testing.assert_allclose(stats["ebm"][layer], u, rtol=1e-4, atol=1e-6, err_msg=layer)


def test_a_different_likelihood_sigma_does_not_match(library_step):
    """σ = 1 instead of the config's √½ (the authors' plain sum of squares) reweighs reconstruction against
    KL: other gradients, and other signs among them, so even Adam's first update differs."""
    config, x, draws, before, after, metrics = library_step
    params, _, out = _torch_step(config, x, before, draws, likelihood_sigma=1.0)
    assert not np.isclose(out["grad_norm_enc"], metrics["grad_norm_enc"], rtol=1e-2)
    for name in ("enc", "gen"):
        with pytest.raises(AssertionError):
            assert_trees_close(params[name], after.params[name], rtol=1e-4, atol=1e-6, what=name)
