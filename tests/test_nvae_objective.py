"""NVAE's training objective (backbones/nvae_objective.py) against closed forms, ``np.linalg.svd`` and numbers
NVIDIA's code computed.

``tests/data/nvae_tiny_objective.npz`` was made by a scratch script outside the repository,
``make_objective_reference.py``, that ran NVlabs/NVAE's own PyTorch code (float32, CPU, no autocast) on the
tiny model of ``nvae_tiny_reference.npz`` (same weights, input and fixed train-mode noise): the per-example
reconstruction loss and ``kl_all``, ``kl_coeff`` at step 100 of 1000, the ``'square'`` α, ``kl_balancer``,
``batchnorm_loss()``, two calls of ``spectral_norm_parallel()`` (the first from recorded initial ``u, v``,
``sr_init/{u,v}/<official module>``) and ``train.py``'s total loss with ``weight_decay_norm_anneal=True``.
"""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latentebm_jax.backbones import nvae_ops
from latentebm_jax.backbones.nvae import NVAE, NVAEConfig
from latentebm_jax.backbones.nvae_convert import convert_state_dict, flax_path
from latentebm_jax.backbones.nvae_distributions import Bernoulli, DiscMixLogistic, decoder_output
from latentebm_jax.backbones.nvae_objective import (
    NVAEObjective,
    batchnorm_loss,
    init_power_iteration,
    init_spectral_state,
    kl_balancer,
    kl_balancer_coeff,
    kl_coeff,
    normalized_weight_names,
    normalized_weights,
    nvae_loss,
    power_iteration,
    reconstruction_loss,
    spectral_loss,
    wdn_coeff,
)

DATA = os.path.join(os.path.dirname(__file__), "data")
MODEL_FIXTURE = os.path.join(DATA, "nvae_tiny_reference.npz")
OBJECTIVE_FIXTURE = os.path.join(DATA, "nvae_tiny_objective.npz")


def test_kl_coeff_is_a_clipped_linear_ramp_and_traces():
    # constant 10 steps at 1e-3, then linear over 100 steps
    want = {0: 1e-3, 10: 1e-3, 10.05: 1e-3, 35: 0.25, 60: 0.5, 110: 1.0, 5000: 1.0}
    for step, value in want.items():
        np.testing.assert_allclose(float(kl_coeff(step, 100.0, 10.0, 1e-3)), value, rtol=1e-6)
    traced = jax.jit(lambda s: kl_coeff(s, 100.0, 10.0, 1e-3))(jnp.arange(0, 130, 20))
    np.testing.assert_allclose(traced, [1e-3, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], rtol=1e-6)
    objective = NVAEObjective(num_total_iter=1000)  # NVAE's defaults: const 0.1 steps, ramp over 300
    np.testing.assert_allclose(float(objective.kl_coeff(100)), (100 - 0.1) / 300, rtol=1e-6)
    np.testing.assert_allclose(float(objective.kl_coeff(0)), 1e-4, rtol=1e-6)


def test_kl_balancer_coeff_top_group_first():
    # groups_per_scale is finest scale first; α is top (coarsest) group first, scale i from the top
    np.testing.assert_allclose(kl_balancer_coeff((2, 1), "square"), [1, 2, 2])  # 1/1, 4/2, 4/2
    np.testing.assert_allclose(kl_balancer_coeff((2, 2), "square"), [1, 1, 4, 4])  # (1/2, 1/2, 4/2, 4/2) ·2
    np.testing.assert_allclose(kl_balancer_coeff((3, 2, 1), "square"), [1, 2, 2, 16 / 3, 16 / 3, 16 / 3])
    np.testing.assert_allclose(kl_balancer_coeff((3, 2, 1), "linear"), [1, 2, 2, 4, 4, 4])
    np.testing.assert_allclose(kl_balancer_coeff((1, 2), "sqrt"), [1, 1, np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(kl_balancer_coeff((1, 2), "equal"), [1, 1, 1])
    assert kl_balancer_coeff((4,), "square").tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="unknown KL balancing"):
        kl_balancer_coeff((1, 1), "cube")


def _balanced_closed_form(kl_all, alpha):
    gamma = np.abs(kl_all).mean(0) + 0.01
    gamma = gamma / alpha * gamma.sum()
    return gamma / gamma.mean()


def test_kl_balancer_weights_groups_by_their_magnitude_over_alpha():
    rng = np.random.default_rng(0)
    kl_all = rng.normal(3.0, 4.0, size=(5, 4)).astype(np.float32)  # some negative, as with flows
    alpha = np.array([1, 1, 4, 4], np.float32)
    gamma = _balanced_closed_form(kl_all.astype(np.float64), alpha)
    kl, coeffs, vals = kl_balancer(jnp.asarray(kl_all), 0.3, alpha, True)
    np.testing.assert_allclose(coeffs, gamma, rtol=1e-5)
    np.testing.assert_allclose(kl, 0.3 * kl_all @ gamma, rtol=1e-5)
    np.testing.assert_allclose(vals, kl_all.mean(0), rtol=1e-6)
    # kl_coeff ≥ 1 (traced) or balance off: plain sum, unit coefficients
    fn = jax.jit(lambda c: kl_balancer(jnp.asarray(kl_all), c, alpha, True))
    for c, want in ((1.0, np.ones(4)), (0.3, gamma)):
        kl, coeffs, _ = fn(jnp.float32(c))
        np.testing.assert_allclose(coeffs, want, rtol=1e-5)
        np.testing.assert_allclose(kl, c * kl_all @ want, rtol=1e-5)
    kl, coeffs, _ = kl_balancer(jnp.asarray(kl_all), 0.3, alpha, False)
    np.testing.assert_allclose(coeffs, np.ones(4))
    np.testing.assert_allclose(kl, 0.3 * kl_all.sum(1), rtol=1e-6)


def test_kl_balancer_gradient_sees_the_coefficients_as_constants():
    rng = np.random.default_rng(1)
    kl_all = jnp.asarray(rng.normal(2.0, 1.0, size=(3, 4)), jnp.float32)
    alpha = np.array([1, 2, 2, 4], np.float32)
    w = jnp.asarray(rng.normal(size=3), jnp.float32)
    grad = jax.grad(lambda k: jnp.sum(w * kl_balancer(k, 0.4, alpha, True)[0]))(kl_all)
    gamma = _balanced_closed_form(np.asarray(kl_all, np.float64), alpha)
    np.testing.assert_allclose(grad, 0.4 * np.asarray(w)[:, None] * gamma[None, :], rtol=1e-5)


def test_wdn_coeff_anneals_log_linearly():
    np.testing.assert_allclose(float(wdn_coeff(0.0, 10.0, 0.01, True)), 10.0, rtol=1e-6)
    np.testing.assert_allclose(float(wdn_coeff(1.0, 10.0, 0.01, True)), 0.01, rtol=1e-5)
    np.testing.assert_allclose(float(wdn_coeff(0.5, 10.0, 0.01, True)), np.sqrt(0.1), rtol=1e-6)
    np.testing.assert_allclose(float(wdn_coeff(0.5, 10.0, 0.01, False)), 0.01)
    np.testing.assert_allclose(float(jax.jit(lambda c: wdn_coeff(c, 4.0, 1.0, True))(0.5)), 2.0, rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        wdn_coeff(0.5, 10.0, 0.0, True)


def test_reconstruction_loss_sums_every_pixel_and_channel_and_crops():
    rng = np.random.default_rng(2)
    x = (rng.random((2, 32, 32, 1)) < 0.3).astype(np.float32)
    logits = rng.normal(size=(2, 32, 32, 1)).astype(np.float32)
    lp = np.asarray(Bernoulli(jnp.asarray(logits)).log_prob(jnp.asarray(x)))  # (B, H, W, C)
    got = reconstruction_loss(Bernoulli(jnp.asarray(logits)), jnp.asarray(x))
    np.testing.assert_allclose(got, -lp.sum((1, 2, 3)), rtol=1e-5)
    got = reconstruction_loss(Bernoulli(jnp.asarray(logits)), jnp.asarray(x), crop=True)
    np.testing.assert_allclose(got, -lp[:, 2:30, 2:30].sum((1, 2, 3)), rtol=1e-5)
    xs = (rng.integers(0, 256, (2, 4, 4, 3)) / 255.0).astype(np.float32)
    dml = DiscMixLogistic(jnp.asarray(rng.normal(size=(2, 4, 4, 30)) * 0.3, jnp.float32), 3)
    lp = np.asarray(dml.log_prob(jnp.asarray(xs)))  # (B, H, W): RGB already summed
    assert lp.shape == (2, 4, 4)
    np.testing.assert_allclose(reconstruction_loss(dml, jnp.asarray(xs)), -lp.sum((1, 2)), rtol=1e-5)


def _random_matrices(seed, shapes):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]


def test_spectral_loss_converges_to_the_largest_singular_values_and_its_gradient_is_u_outer_v():
    shapes = [(6, 10), (4, 9), (6, 10), (1, 5), (6, 10)]
    weights = _random_matrices(3, shapes)
    state = init_power_iteration(weights, jax.random.key(0), num_iter=20)  # 200 iterations
    assert sorted(state) == ["1x5", "4x9", "6x10"] and state["6x10"][0].shape == (3, 6)
    loss, state = spectral_loss(weights, state, 20)
    sigma = sum(np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)[0] for w in weights)
    np.testing.assert_allclose(float(loss), sigma, rtol=1e-5)
    # the gradient treats u, v as constants, also far from convergence (one iteration from random vectors)
    fresh = init_power_iteration(weights, jax.random.key(1), num_iter=0)
    (loss, new), grads = jax.value_and_grad(lambda ws: spectral_loss(ws, fresh, 1), has_aux=True)(weights)
    position = {"6x10": [0, 2, 4], "4x9": [1], "1x5": [3]}
    for key, idx in position.items():
        u, v = (np.asarray(a) for a in new[key])
        np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
        for n, i in enumerate(idx):
            np.testing.assert_allclose(grads[i], np.outer(u[n], v[n]), rtol=1e-5, atol=1e-7)
    want = sum(
        float(np.asarray(new[k][0])[n] @ np.asarray(weights[i]) @ np.asarray(new[k][1])[n])
        for k, idx in position.items()
        for n, i in enumerate(idx)
    )
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    with pytest.raises(ValueError, match="init_power_iteration"):
        spectral_loss(weights[:2], state, 1)


def test_power_iteration_is_nvaes_normalised_update():
    (w,) = _random_matrices(4, [(3, 5)])
    u0 = np.array([[0.6, 0.8, 0.0]], np.float32)
    v0 = np.full((1, 5), 1 / np.sqrt(5), np.float32)
    state = power_iteration([w], {"3x5": (jnp.asarray(u0), jnp.asarray(v0))}, 2)
    u, v, wn = u0[0].astype(np.float64), v0[0], np.asarray(w, np.float64)
    for _ in range(2):
        v = u @ wn / max(np.linalg.norm(u @ wn), 1e-3)
        u = wn @ v / max(np.linalg.norm(wn @ v), 1e-3)
    np.testing.assert_allclose(state["3x5"][0][0], u, rtol=1e-5)
    np.testing.assert_allclose(state["3x5"][1][0], v, rtol=1e-5)
    # the eps of F.normalize: a tiny vector is divided by 1e-3, not by its norm
    tiny = power_iteration([w * 1e-6], {"3x5": (jnp.asarray(u0), jnp.asarray(v0))}, 1)
    np.testing.assert_allclose(tiny["3x5"][1][0], u0[0] @ np.asarray(w) * 1e-6 / 1e-3, rtol=1e-4)


class _TwoConvs(nn.Module):
    @nn.compact
    def __call__(self, x):
        mask = nvae_ops.conv_mask(3, 4, 1, 6, True, False)
        x = nvae_ops.Conv2D(6, 3, padding=1, mask=mask, name="masked")(x)
        x = nvae_ops.Conv2D(6, 3, padding=1, groups=3, use_bias=True, name="grouped")(x)
        return nvae_ops.Conv2D(2, 1, weight_norm=False, name="plain")(x)


def test_normalized_weights_are_nvaes_weight_normalized_view_out_minus_one():
    x = jnp.ones((1, 5, 5, 4))
    module = _TwoConvs()
    variables = module.init(jax.random.key(0), x)
    params = jax.tree.map(lambda a: a + 0.1, variables["params"])  # log_weight_norm away from its init
    _, upd = module.apply({"params": params}, x, mutable=["intermediates"])
    assert normalized_weight_names(upd["intermediates"]) == ["grouped", "masked", "plain"]
    got = normalized_weights(upd)  # the mutated variables work too

    def nvae_matrix(p, mask=None):
        w = np.transpose(np.asarray(p["kernel"]), (3, 2, 0, 1))  # OIHW
        if mask is not None:
            w = w * np.transpose(mask, (3, 2, 0, 1))
        if "log_weight_norm" in p:
            norm = np.sqrt((w * w).sum((1, 2, 3)))
            w = (
                np.exp(np.asarray(p["log_weight_norm"]))[:, None, None, None]
                * w
                / (norm + 1e-5)[:, None, None, None]
            )
        return w.reshape(w.shape[0], -1)

    mask = nvae_ops.conv_mask(3, 4, 1, 6, True, False)
    want = [nvae_matrix(params["grouped"]), nvae_matrix(params["masked"], mask), nvae_matrix(params["plain"])]
    assert [g.shape for g in got] == [(6, 18), (6, 36), (2, 6)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    # without a mutable intermediates collection nothing is sown
    _, upd = module.apply({"params": params}, x, mutable=["batch_stats"])
    assert "intermediates" not in upd


def test_batchnorm_loss_sums_the_largest_absolute_scale_of_every_batchnorm():
    params = {
        "a": {"bn": {"scale": jnp.array([0.5, -2.0]), "bias": jnp.array([9.0, 9.0])}},
        "b": {"conv": {"kernel": jnp.full((1, 1, 2, 2), 7.0)}, "scale": jnp.array([1.5, 0.2, -0.1])},
    }
    np.testing.assert_allclose(float(batchnorm_loss(params)), 3.5)
    grad = jax.grad(batchnorm_loss)(params)
    np.testing.assert_allclose(grad["a"]["bn"]["scale"], [0.0, -1.0])
    np.testing.assert_allclose(grad["b"]["scale"], [1.0, 0.0, 0.0])


def _reference():
    if not os.path.exists(MODEL_FIXTURE) or not os.path.exists(OBJECTIVE_FIXTURE):
        pytest.fail(f"missing test data {MODEL_FIXTURE} or {OBJECTIVE_FIXTURE}")
    data, ref = np.load(MODEL_FIXTURE), np.load(OBJECTIVE_FIXTURE)
    with open(MODEL_FIXTURE.replace(".npz", ".json")) as f:
        cfg = NVAEConfig.from_args(json.load(f)["args"])
    state = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    variables = convert_state_dict(state, cfg)
    x = jnp.asarray(np.transpose(data["x"], (0, 2, 3, 1)))
    eps = [
        jnp.asarray(np.transpose(data[f"eps/train/{g}"], (0, 2, 3, 1))) for g in range(len(cfg.group_shapes))
    ]
    after = {k[len("post_train_state/") :]: data[k] for k in data.files if k.startswith("post_train_state/")}
    stats_after = convert_state_dict({**state, **after}, cfg)["batch_stats"]  # after NVAE's train forward
    return cfg, variables, x, eps, ref, stats_after


def _recorded_state(names, weights, ref):
    """The recorded initial u, v (official module names) stacked in the JAX order of ``names``."""
    official = {k[len("sr_init/u/") :] for k in ref.files if k.startswith("sr_init/u/")}
    by_path = {"/".join(flax_path(n + ".weight")[:-1]): n for n in official}
    assert sorted(by_path) == sorted(names)  # the same set of convolutions as NVAE's all_conv_layers
    state: dict = {}
    for name, w in zip(names, weights):
        u, v = state.setdefault(f"{w.shape[0]}x{w.shape[1]}", ([], []))
        u.append(ref[f"sr_init/u/{by_path[name]}"])
        v.append(ref[f"sr_init/v/{by_path[name]}"])
    return {k: (jnp.asarray(np.stack(u)), jnp.asarray(np.stack(v))) for k, (u, v) in state.items()}


@pytest.mark.slow  # NVAE's whole objective compiled at once: ~18 s
def test_the_objective_is_what_nvidias_code_computes():
    cfg, variables, x, eps, ref, stats_after = _reference()
    model = NVAE(cfg)
    step, total = int(ref["setting/step"]), int(ref["setting/num_total_iter"])
    num_iter = int(ref["setting/num_power_iter"])
    objective = NVAEObjective(
        num_total_iter=total,
        weight_decay_norm=float(ref["setting/weight_decay_norm"]),
        weight_decay_norm_init=float(ref["setting/weight_decay_norm_init"]),
        weight_decay_norm_anneal=True,
        num_power_iter=num_iter,
    )
    rtol = 1e-4

    def close(got, key):
        want = ref[key]
        np.testing.assert_allclose(
            np.asarray(got), want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=key
        )

    # the convolutions' names and matrix shapes (tracing only), for the recorded initial u, v
    _, shapes = jax.eval_shape(
        lambda v: model.apply(v, x, eps, True, mutable=["batch_stats", "intermediates"]), variables
    )
    names = normalized_weight_names(shapes["intermediates"])
    sr0 = _recorded_state(names, jax.eval_shape(normalized_weights, shapes["intermediates"]), ref)

    @jax.jit
    def run(variables, sr0):  # one program: XLA merges the two identical forward passes
        out, upd = model.apply(variables, x, eps, True, mutable=["batch_stats", "intermediates"])
        recon = reconstruction_loss(decoder_output(cfg, out["logits"]), x)
        weights = normalized_weights(upd["intermediates"])
        sr1 = power_iteration(weights, sr0, 10 * num_iter)  # NVAE's first call: 10× the iterations, then σ
        first, _ = spectral_loss(weights, sr1, 0)
        pieces = (recon, jnp.stack(out["kl_all"], 1), first, sr1)
        return pieces, nvae_loss(cfg, variables, x, eps, step, objective, sr1)

    (recon, kl_all, first, sr1), (loss, aux, stats, sr2) = run(variables, sr0)
    close(recon, "recon")
    close(kl_all, "kl_all")
    close(first, "sn_first")
    beta = objective.kl_coeff(step)
    close(beta, "kl_coeff")
    alpha = kl_balancer_coeff(cfg.groups_per_scale, "square")
    close(alpha, "alpha")
    balanced, coeffs, vals = kl_balancer(jnp.asarray(ref["kl_all"]), ref["kl_coeff"], alpha, True)
    close(balanced, "balanced_kl")
    close(coeffs, "kl_coeffs")
    close(vals, "kl_vals")
    close(kl_balancer(jnp.asarray(ref["kl_all"]), 1.0, alpha, False)[0], "unbalanced_kl")
    close(batchnorm_loss(variables["params"]), "bn_loss")
    close(loss, "loss")
    # the KL part of the loss is the balanced one (unbalanced: mean 12.4 instead of 15.0)
    kl_part = loss - aux["wdn_coeff"] * (aux["spectral"] + aux["bn"]) - aux["recon"]
    np.testing.assert_allclose(kl_part, ref["balanced_kl"].mean(), atol=0.01)
    close(aux["nelbo"], "nelbo")
    close(aux["spectral"], "sn_second")
    close(aux["bn"], "bn_loss")
    close(aux["wdn_coeff"], "wdn_coeff")
    close(aux["kl_coeff"], "kl_coeff")
    close(aux["kl_per_group"], "kl_vals")
    close(aux["kl_balance_coeffs"], "kl_coeffs")
    np.testing.assert_allclose(aux["recon"], ref["recon"].mean(), rtol=rtol)
    np.testing.assert_allclose(aux["kl"], ref["kl_all"].sum(1).mean(), rtol=rtol)
    assert jax.tree.structure(stats) == jax.tree.structure(stats_after)
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(stats_after)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert jax.tree.structure(sr2) == jax.tree.structure(sr1)
    # the helper that starts the state: one group per matrix shape, unit vectors (convergence: the SVD test)
    start = init_spectral_state(cfg, variables, jax.random.key(0), num_power_iter=0)
    assert jax.tree.map(jnp.shape, start) == jax.tree.map(jnp.shape, sr1)
    for u, v in start.values():
        np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
