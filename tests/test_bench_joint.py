"""The PyTorch reference of the joint-prior benchmark (``benchmarks/torch_joint.py``) computes the library's
step.

Same initial weights (and spectral-norm vectors) in both frameworks, every Gaussian draw set to zero
(``z⁺ = μ_φ(x)``; the prior chain starts at ``z = 0`` and moves by its drift alone), at the benchmark's
configuration (``configs/svhn.py:get_config("joint")``) with small widths and a short chain:

* one step of ICCV 2023 Algorithm 1 — G+I update (Eqs. 11–12), joint prior Langevin (Eqs. 13–14), EBM update
  (Eq. 10) — with both optimisers replaced by SGD at learning rate 1, so the parameter change *is* the
  gradient: PyTorch eager (:class:`~benchmarks.torch_joint.TorchJoint`) and
  :func:`latentebm_jax.methods.joint.train_step` give the same losses, the same gradients of all three
  networks and the same advanced power-iteration vectors;
* the configured optimisers (Adam, betas ``(0, 0.9)``, coupled weight decay, learning rates) turn those
  gradients into the same updates in both.

(Adam's first step moves each weight by about ``±lr·sign(g)``, which hides the gradient's size and
amplifies rounding where a gradient is zero in exact arithmetic: hence the two parts.) So the benchmark's
ratio compares two implementations of one computation. A different prior step size does not match (the
test can fail). Runs only where PyTorch is installed (the ``bench`` extra)."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny shapes: one PyTorch thread

from torch_equivalence import zeros_like_normal  # noqa: E402

from benchmarks import harness, joint_step  # noqa: E402
from benchmarks.torch_joint import StepSettings, TorchJoint, load_library_params  # noqa: E402
from latentebm_jax.methods import joint  # noqa: E402
from latentebm_jax.state import new_train_state  # noqa: E402

_BATCH, _K = 4, 3
_WIDTHS = (4, 8, 8, 8, 16, 16)


def _config():
    c = joint_step.bench_config()
    c.joint.widths = _WIDTHS
    c.joint.conv_impl = "xla"  # the quickest to compile; every impl is one function (test_conv_transpose)
    c.sampler.prior_steps = _K
    return c


def _sgd() -> dict:
    import optax

    return {"ebm": optax.sgd(1.0), "gen_enc": optax.sgd(1.0)}


def _initial(hp: joint.JointHparams) -> tuple[dict, dict]:
    """Parameters and spectral-norm vectors in the library's layout, drawn with numpy (nothing to compile):
    kernels ``N(0, 1/fan_in)``, biases ``U(−0.1, 0.1)``, ``u ~ N(0, I)``."""
    shapes = jax.eval_shape(lambda k: joint.init(hp, _sgd(), k), jax.random.key(0))
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("sigma']"):
            return np.ones(leaf.shape, np.float32)
        if len(leaf.shape) == 1:
            return rng.uniform(-0.1, 0.1, leaf.shape).astype(np.float32)
        scale = 1.0 if name.endswith("u']") else 1.0 / math.sqrt(math.prod(leaf.shape[:-1]))
        return (scale * rng.standard_normal(leaf.shape)).astype(np.float32)

    params = jax.tree_util.tree_map_with_path(draw, shapes.params)
    return params, jax.tree_util.tree_map_with_path(draw, shapes.model_state["ebm"])


def _hp() -> joint.JointHparams:
    return joint_step.hparams_and_optimizer(_config())[0]


def _images(hp: joint.JointHparams) -> np.ndarray:
    return harness.images(_BATCH, hp.image_shape[0], hp.image_shape[2])


@functools.cache
def _library_step() -> tuple:
    """``(params and SN state before, after one SGD(1) step, metrics)`` of the library at zero noise."""
    hp, tx = _hp(), _sgd()
    before = _initial(hp)

    def step(params, stats, x):
        model = {"gen": params["gen"], "enc": params["enc"]}
        opt = {"ebm": tx["ebm"].init(params["ebm"]), "gen_enc": tx["gen_enc"].init(model)}
        state = new_train_state(params, opt, jax.random.key(0), {"ebm": stats})
        new, metrics = joint.train_step(hp, tx, state, {"image": x})
        return new.params, new.model_state["ebm"], metrics

    with pytest.MonkeyPatch.context() as mp:
        jax.clear_caches()  # nothing traced with real noise (e.g. the module-level Langevin jit) is reused
        mp.setattr(jax.random, "normal", zeros_like_normal)
        params, stats, metrics = jax.device_get(jax.jit(step)(*before, _images(hp)))
    jax.clear_caches()  # and nothing traced with zero noise outlives this function
    return before, (params, stats), metrics


def _settings(**overrides) -> StepSettings:
    return dataclasses.replace(joint_step.torch_settings(_config()), **overrides)


def _torch_model(params_and_stats: tuple, **overrides) -> TorchJoint:
    model = TorchJoint(_settings(**overrides), randn=lambda *shape: torch.zeros(*shape))
    load_library_params(model, *params_and_stats)
    return model


def _state(model: TorchJoint) -> dict[str, np.ndarray]:
    nets = {"gen": model.gen, "enc": model.enc, "ebm": model.ebm}
    return {
        f"{k}.{n}": t.detach().numpy().copy() for k, net in nets.items() for n, t in net.state_dict().items()
    }


def _torch_sgd_step(before: tuple, **overrides) -> tuple[dict, dict]:
    model = _torch_model(before, **overrides)
    model.opt_gen_enc = torch.optim.SGD(list(model.gen.parameters()) + list(model.enc.parameters()), lr=1.0)
    model.opt_ebm = torch.optim.SGD(model.ebm.parameters(), lr=1.0)
    x = torch.from_numpy(_images(_hp())).permute(0, 3, 1, 2).contiguous()
    losses = model.step(x)
    return _state(model), losses


def _gradients(start: dict, after: dict) -> dict[str, np.ndarray]:
    """SGD at learning rate 1: the gradient is the parameter change."""
    return {k: start[k] - after[k] for k in start if not k.endswith(".u")}


def test_torch_reference_step_equals_the_library_step_at_zero_noise():
    """Losses, every gradient (read off an SGD(1) step) and the stored power-iteration vectors agree."""
    before, after, metrics = _library_step()
    got_state, losses = _torch_sgd_step(before)
    start, want_state = _state(_torch_model(before)), _state(_torch_model(after))  # torch layout

    np.testing.assert_allclose(losses["loss_ge"], metrics["loss_ge"], rtol=1e-5)
    np.testing.assert_allclose(losses["loss_e"], metrics["loss_e"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(losses["f_neg"], metrics["f_neg"], rtol=1e-5, atol=1e-6)
    want, got = _gradients(start, want_state), _gradients(start, got_state)
    for name in want:
        scale = np.abs(want[name]).max()
        assert scale > 1e-4 or name == "ebm.layers.2.bias", name  # every network has a gradient
        ulp = np.spacing(np.abs(start[name]).max())  # the gradient is read off θ − g in float32
        atol = 1e-5 * scale + 2 * ulp
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=atol, err_msg=name)
    for name in (k for k in want_state if k.endswith(".u")):  # the power iteration advanced once, in both
        assert not np.allclose(want_state[name], start[name]), name
        np.testing.assert_allclose(got_state[name], want_state[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_the_configured_optimisers_update_alike():
    """The config's Adams (library ``torch_adam``: coupled weight decay, betas, learning rates) and the
    reference's ``torch.optim.Adam`` turn the step's gradients into the same updates: two steps, the
    second with gradients rescaled elementwise (a first Adam step alone does not see the betas)."""
    before, after, _ = _library_step()
    _, tx = joint_step.hparams_and_optimizer(_config())
    rng = np.random.default_rng(1)
    g1 = jax.tree.map(lambda a, b: a - b, before[0], after[0])
    g2 = jax.tree.map(lambda g: (g * rng.uniform(-2, 2, g.shape)).astype(np.float32), g1)

    @jax.jit
    def two_adam_steps(params, g1, g2):
        model = {"gen": params["gen"], "enc": params["enc"]}
        opt = {"gen_enc": tx["gen_enc"].init(model), "ebm": tx["ebm"].init(params["ebm"])}
        for g in (g1, g2):  # gen and enc share one Adam; the EBM has its own
            model = {"gen": params["gen"], "enc": params["enc"]}
            upd, opt["gen_enc"] = tx["gen_enc"].update(
                {"gen": g["gen"], "enc": g["enc"]}, opt["gen_enc"], model
            )
            upd_ebm, opt["ebm"] = tx["ebm"].update(g["ebm"], opt["ebm"], params["ebm"])
            params = jax.tree.map(lambda p, u: p + u, params, {**upd, "ebm": upd_ebm})
        return params

    want = _state(_torch_model((jax.device_get(two_adam_steps(before[0], g1, g2)), before[1])))
    model = _torch_model(before)
    for g in (g1, g2):
        gradient = _torch_model((g, before[1]))  # the gradients, loaded through the same layout map
        for net, g_net in ((model.gen, gradient.gen), (model.enc, gradient.enc), (model.ebm, gradient.ebm)):
            for p, gp in zip(net.parameters(), g_net.parameters()):
                p.grad = gp.detach().clone()
        model.opt_gen_enc.step()
        model.opt_ebm.step()
    got = _state(model)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-9, err_msg=name)


def test_a_different_prior_step_size_is_a_different_step():
    """The comparison can fail: with ``s = 0.4`` instead of the config's 0.3 the negatives, the EBM loss and
    the EBM's gradient differ from the library's, while the G+I half still matches."""
    before, after, metrics = _library_step()
    got_state, losses = _torch_sgd_step(before, prior_step_size=0.4)
    start, want_state = _state(_torch_model(before)), _state(_torch_model(after))
    want, got = _gradients(start, want_state), _gradients(start, got_state)
    assert not np.isclose(losses["f_neg"], metrics["f_neg"], rtol=1e-4, atol=1e-6)
    name = "ebm.layers.0.weight"
    assert not np.allclose(got[name], want[name], rtol=1e-4, atol=1e-5 * np.abs(want[name]).max())
    np.testing.assert_allclose(losses["loss_ge"], metrics["loss_ge"], rtol=1e-5)
