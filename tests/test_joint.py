"""Joint hierarchical EBM prior (ICCV 2023): network wiring, ELBO terms, KL gradients, hierarchical sampling,
one train step against a reference computation of Algorithm 1, and a short digits run that learns."""

import dataclasses
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import apply_overrides

from configs import celeba64, cifar10, digits, fashion_mnist, mnist, svhn
from configs.default import validate
from latentebm_jax.data import load_digits
from latentebm_jax.methods import joint
from latentebm_jax.methods.common import example_keys, fold_keys, normal_per_example
from latentebm_jax.nets.generator import hierarchical_resolutions

TINY = joint.JointHparams(
    image_shape=(8, 8, 1),
    latent_dims=(2, 3, 4),
    widths=(4, 6, 8, 16),
    ebm_hidden=8,
    prior_steps=4,
    prior_step_size=0.4,
    likelihood_sigma=0.3,
    conv_impl="xla",  # the quickest to compile (every impl is the same function, test_conv_transpose.py)
)


def _x(n=6):
    return jnp.asarray(load_digits("train").get(np.arange(n))["image"])


SGD = {"ebm": optax.sgd(0.1), "gen_enc": optax.sgd(0.01)}


@functools.cache
def _init(hp, key):
    """``joint.init`` with the initialisers drawn by the RBG generator (XLA:CPU compiles it in a third of
    threefry's time); the state's own key (the per-step draws) is the default threefry key."""
    state = jax.jit(functools.partial(joint.init, hp, SGD))(jax.random.key(key, impl="rbg"))
    return state.replace(rng=jax.random.key_data(jax.random.key(key)))


def _state(hp=TINY, key=0):
    return _init(hp, key), SGD


# ----------------------------------------------------------------------------- wiring


@pytest.mark.parametrize("module", [digits, mnist, fashion_mnist, svhn, cifar10, celeba64])
def test_every_joint_config_wires_generator_and_ladder_network(module):
    """Shapes only (no compilation): every layer enters the generator at the size Eq. 5's hierarchy gives,
    every ladder branch reads the trunk at the matching depth (Eq. 8), and the output is the image."""
    cfg = module.get_config("joint")
    validate(cfg)
    hp = joint.hparams_from_config(cfg)
    n, size = hp.num_layers, hp.image_shape[0]
    z = tuple(jax.ShapeDtypeStruct((2, d), jnp.float32) for d in hp.latent_dims)
    x = jax.ShapeDtypeStruct((2, *hp.image_shape), jnp.float32)
    gen = jax.eval_shape(hp.generator_net().init, jax.random.key(0), z)["params"]
    enc = jax.eval_shape(hp.encoder_net().init, jax.random.key(0), x)["params"]
    assert jax.eval_shape(hp.generator_net().apply, {"params": gen}, z).shape == (2, *hp.image_shape)
    stats = jax.eval_shape(hp.encoder_net().apply, {"params": enc}, x)
    assert [(m.shape, v.shape) for m, v in stats] == [((2, d), (2, d)) for d in hp.latent_dims]

    res = hierarchical_resolutions(size, n)
    c, top = hp.widths[:n], hp.widths[n]
    assert res[-1] == res[-2] == size // 2 ** (n - 1)
    assert gen["top_0"]["kernel"].shape == (hp.latent_dims[-1], top)
    assert gen["top_out"]["kernel"].shape == (top, c[-1] * res[-1] ** 2)
    for i in range(n - 1):  # z_{i+1} joins h_{i+2} at size res[i], then is doubled by block i
        assert gen[f"proj_{i}"]["kernel"].shape == (hp.latent_dims[i], c[i + 1] * res[i] ** 2)
        assert gen[f"block_{i}_up"]["kernel"].shape == (4, 4, c[i + 1], c[i])
        # the ladder branch of z_{i+1} sees the trunk after i halvings and halves once more
        assert enc[f"mean_{i}"]["kernel"].shape == (
            hp.widths[i] * (size // 2 ** (i + 1)) ** 2,
            hp.latent_dims[i],
        )
    assert enc[f"mean_{n - 1}"]["kernel"].shape == (hp.widths[n - 1], hp.latent_dims[-1])


def test_every_layer_reaches_the_image_and_the_image_reaches_every_layer():
    state, _ = _state()
    p = state.params
    z = joint.sample_prior(TINY, p["ebm"], state.model_state["ebm"], jax.random.split(jax.random.key(1), 3))
    decode = jax.jit(functools.partial(joint.decode, TINY))
    encode = jax.jit(functools.partial(joint.encode, TINY))
    x_hat = decode(p["gen"], z)
    for i in range(TINY.num_layers):
        moved = decode(p["gen"], (*z[:i], z[i] + 1.0, *z[i + 1 :]))
        assert float(jnp.max(jnp.abs(moved - x_hat))) > 1e-4, f"z_{i + 1} does not reach the image"
    x = _x(2)
    stats = encode(p["enc"], x)
    bumped = encode(p["enc"], x.at[:, 3, 4, 0].add(1.0))  # one pixel
    for i in range(TINY.num_layers):
        assert float(jnp.max(jnp.abs(bumped[i][0] - stats[i][0]))) > 1e-6, f"x does not reach q(z_{i + 1}|x)"


# ----------------------------------------------------------------------------- ELBO and KL


def test_elbo_terms_against_a_hand_computation():
    state, _ = _state()
    p, stats_ebm = state.params, state.model_state["ebm"]
    x = _x()
    noise = tuple(jax.random.normal(jax.random.key(10 + i), (6, d)) for i, d in enumerate(TINY.latent_dims))
    for estimator in ("analytic", "sample"):
        hp = dataclasses.replace(TINY, kl_estimator=estimator)
        terms = joint.negative_elbo_terms(hp, p, p["ebm"], stats_ebm, x, noise)
        # by hand, in float64 numpy, from the networks' raw outputs
        enc_out = hp.encoder_net().apply({"params": p["enc"]}, x)
        mu = [np.asarray(m, np.float64) for m, _ in enc_out]
        lv = [np.asarray(v, np.float64) for _, v in enc_out]
        eps = [np.asarray(e, np.float64) for e in noise]
        z = [m + np.exp(0.5 * v) * e for m, v, e in zip(mu, lv, eps)]
        x_hat = np.asarray(hp.generator_net().apply({"params": p["gen"]}, tuple(jnp.asarray(a) for a in z)))
        recon = np.mean(np.sum((np.asarray(x) - x_hat) ** 2, axis=(1, 2, 3))) / (2 * 0.3**2)
        if estimator == "analytic":
            kl = [np.mean(0.5 * np.sum(m**2 + np.exp(v) - 1 - v, axis=1)) for m, v in zip(mu, lv)]
        else:  # log q(z|x) − log N(z; 0, I) at the sample
            kl = [
                np.mean(np.sum(-0.5 * ((zz - m) ** 2 / np.exp(v) + v) + 0.5 * zz**2, axis=1))
                for zz, m, v in zip(z, mu, lv)
            ]
        f = np.asarray(
            hp.energy_net().apply(
                {"params": p["ebm"], "batch_stats": stats_ebm}, tuple(jnp.asarray(a) for a in z)
            )
        )
        np.testing.assert_allclose(terms["recon"], recon, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(terms["kl"]), kl, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(terms["f"], f, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(terms["loss"], recon + sum(kl) - f.mean(), rtol=1e-4)


def test_kl_gradient_with_respect_to_the_inference_network():
    """∇_φ KL(q_φ ‖ p_α) = ∇_φ [Σ_i closed-form KL(q_φ(z_i|x) ‖ N(0, I)) − E_q f_α(z)] (log Z(α) does not
    depend on φ): the library's gradient equals autodiff of that written out here, and the authors'
    one-sample estimator's gradient averages to it."""
    state, _ = _state()
    p, stats_ebm = state.params, state.model_state["ebm"]
    n = 4000
    x = jnp.repeat(_x(1), n, axis=0)
    noise = tuple(jax.random.normal(jax.random.key(20 + i), (n, d)) for i, d in enumerate(TINY.latent_dims))
    f = lambda z: TINY.energy_net().apply({"params": p["ebm"], "batch_stats": stats_ebm}, z)

    def written_out(enc):
        out = TINY.encoder_net().apply({"params": enc}, x)
        kl = sum(jnp.mean(0.5 * jnp.sum(m**2 + jnp.exp(v) - 1.0 - v, axis=1)) for m, v in out)
        z = tuple(m + jnp.exp(0.5 * v) * e for (m, v), e in zip(out, noise))
        return kl - jnp.mean(f(z))

    def library(enc, estimator):
        hp = dataclasses.replace(TINY, kl_estimator=estimator)
        t = joint.negative_elbo_terms(hp, {"gen": p["gen"], "enc": enc}, p["ebm"], stats_ebm, x, noise)
        return sum(t["kl"]) - jnp.mean(t["f"])

    want = jax.jit(jax.grad(written_out))(p["enc"])  # compiled: eager autodiff dispatches op by op
    got = jax.jit(jax.grad(library, argnums=0), static_argnums=1)(p["enc"], "analytic")
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    sampled = jax.jit(jax.grad(library, argnums=0), static_argnums=1)(p["enc"], "sample")
    flat = lambda t: np.concatenate([np.ravel(v) for v in jax.tree.leaves(t)])
    g_s, g_a = flat(sampled), flat(want)
    cosine = g_s @ g_a / (np.linalg.norm(g_s) * np.linalg.norm(g_a))
    assert cosine > 0.98, cosine
    assert abs(np.linalg.norm(g_s) / np.linalg.norm(g_a) - 1) < 0.1


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("nef", [8, 0])
def test_hierarchical_sampling_leaves_the_other_layers_bit_identical(nef):
    hp = dataclasses.replace(TINY, ebm_hidden=nef)
    state, _ = _state(hp)
    p, st = state.params, state.model_state["ebm"]
    z = joint.sample_prior(hp, p["ebm"], st, jax.random.split(jax.random.key(3), 5))
    fn = jax.jit(functools.partial(joint.resample_layer, hp), static_argnums=3)
    for layer in range(hp.num_layers):
        new = fn(p["ebm"], st, z, layer, jax.random.split(jax.random.key(4 + layer), 5))
        for i in range(hp.num_layers):
            same = np.array_equal(np.asarray(new[i]), np.asarray(z[i]))
            assert same == (i != layer), (layer, i)


def test_gaussian_prior_baseline_samples_the_standard_normal_exactly():
    hp = dataclasses.replace(TINY, ebm_hidden=0, latent_dims=(3, 3, 3))
    state, _ = _state(hp)
    assert state.params["ebm"] == {}
    z = joint.sample_prior(hp, {}, {}, jax.random.split(jax.random.key(5), 20000))
    flat = np.concatenate([np.asarray(a) for a in z], axis=1)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose(np.cov(flat.T), np.eye(9), atol=0.04)


# ----------------------------------------------------------------------------- learning


def _langevin_reference(logp, z, keys, s, k_steps):
    """Explicit joint Langevin z ← z + (s²/2)∇log p(z) + s ε on all layers; each chain has its own key."""
    from latentebm_jax.langevin import gaussian_like

    noise_keys = fold_keys(keys, 1)  # the prior-noise stream
    for k in range(k_steps):
        grad = jax.grad(lambda zz: jnp.sum(logp(zz)))(z)
        eps = gaussian_like(jax.vmap(jax.random.fold_in, in_axes=(0, None))(noise_keys, k), z)
        z = tuple(a + 0.5 * s * s * g + s * e for a, g, e in zip(z, grad, eps))
    return z


def _reference_step(p, st, x, step_key):
    """Algorithm 1 written out from the paper's equations, with plain SGD (lr 0.01 / 0.1)."""
    keys = example_keys(step_key, x.shape[0])
    layer_normals = lambda stream: tuple(
        normal_per_example(fold_keys(fold_keys(keys, stream), i), (d,))
        for i, d in enumerate(TINY.latent_dims)
    )
    f = lambda pe, z: TINY.energy_net().apply({"params": pe, "batch_stats": st}, z)
    g = lambda pg, z: TINY.generator_net().apply({"params": pg}, z)
    q = lambda pq: TINY.encoder_net().apply({"params": pq}, x)
    eps = layer_normals(2)

    def neg_elbo(model):  # Eqs. 11–12: reconstruction, closed-form KL per layer, minus the EBM term
        stats = q(model["enc"])
        z = tuple(m + jnp.exp(0.5 * v) * e for (m, v), e in zip(stats, eps))
        recon = jnp.mean(jnp.sum((x - g(model["gen"], z)) ** 2, (1, 2, 3))) / (2 * 0.3**2)
        kl = sum(jnp.mean(0.5 * jnp.sum(m**2 + jnp.exp(v) - 1 - v, 1)) for m, v in stats)
        return recon + kl - jnp.mean(f(p["ebm"], z)), z

    g_model, z_pos = jax.grad(neg_elbo, has_aux=True)({"gen": p["gen"], "enc": p["enc"]})
    log_prior = lambda z: f(p["ebm"], z) - 0.5 * sum(jnp.sum(a**2, 1) for a in z)
    z_neg = _langevin_reference(log_prior, layer_normals(0), keys, TINY.prior_step_size, TINY.prior_steps)
    # Eq. 10 (spectral norm: σ from one power iteration of the stored u, as in the G+I loss)
    g_ebm = jax.grad(lambda pe: jnp.mean(f(pe, z_neg)) - jnp.mean(f(pe, z_pos)))(p["ebm"])
    want = {
        "gen": jax.tree.map(lambda a, d: a - 0.01 * d, p["gen"], g_model["gen"]),
        "enc": jax.tree.map(lambda a, d: a - 0.01 * d, p["enc"], g_model["enc"]),
        "ebm": jax.tree.map(lambda a, d: a - 0.1 * d, p["ebm"], g_ebm),
    }
    return want, jnp.mean(f(p["ebm"], z_neg))


def test_train_step_equals_reference_computation_of_algorithm_1():
    state, tx = _state()
    x = _x()
    new, metrics = jax.jit(functools.partial(joint.train_step, TINY, tx))(state, {"image": x})

    p, st = state.params, state.model_state["ebm"]
    want, f_neg = jax.jit(_reference_step)(p, st, x, state.step_key())
    for name in ("gen", "enc", "ebm"):
        for a, b in zip(jax.tree.leaves(new.params[name]), jax.tree.leaves(want[name])):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(metrics["f_neg"], f_neg, rtol=1e-4, atol=1e-6)
    # the spectral-norm vectors advanced by one power iteration, and only them
    moved = [
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(new.model_state), jax.tree.leaves(state.model_state))
    ]
    assert any(moved)
    assert int(new.step) == 1


def tiny_joint_config(**overrides):
    c = digits.get_config("joint")
    c.joint.widths = (8, 16, 32, 128)
    c.joint.ebm_hidden = 32
    c.sampler.prior_steps = 10
    # 200 steps of 50 at 3x the config's generator learning rate: a third of the examples of 300 steps of
    # 100 at 1e-3, and still learns the hierarchy (measured: probe accuracies 0.53 / 0.54 / 0.63 bottom to
    # top, ELBO -2554 -> -162); 100 steps of 50 at 1e-3 do not (probes 0.42 / 0.44 / 0.26)
    c.train.num_steps = 200
    c.train.batch_size = 50
    c.joint.lr_gen_enc = 3e-3
    c.train.log_every = 25
    c.train.ckpt_every = 200
    c.train.eval_every = 0
    c.eval.batch_size = 100
    c.eval.max_test_examples = 200
    c.eval.num_samples = 16
    c.eval.long_run_steps = (10,)
    c.eval.long_run_chains = 2
    c.eval.long_run_frames = 5
    c.eval.metrics = tuple(m for m in c.eval.metrics if m != "fd")
    c.eval.probe_epochs = 30
    c.eval.hierarchy_rows = 2
    c.eval.traversal_units = 2
    c.eval.attack_examples = 2
    c.eval.attack_steps = 5
    validate(apply_overrides(c, overrides))
    return c


@pytest.mark.slow
def test_short_digits_run_learns_and_writes_the_hierarchy_figures(tmp_path):
    from latentebm_jax.training import loop

    workdir = str(tmp_path / "joint")
    summary = loop.train(tiny_joint_config(), workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as fh:
        rows = [json.loads(line) for line in fh if '"elbo"' in line]
    first, last = rows[0], rows[-1]
    assert last["elbo"] > first["elbo"] + 10, (first["elbo"], last["elbo"])
    assert last["mse_pos"] < 0.7 * first["mse_pos"], (first["mse_pos"], last["mse_pos"])
    probes = summary["probe_accuracy"]
    assert len(probes) == 3 and probes[-1] > probes[0], probes
    assert 0 <= summary["auprc"] <= 1 and math.isfinite(summary["recon_mse"])
    assert len(summary["attack_recon_to_target_mse"]) == 3
    for name in (
        "hierarchical_sampling",
        "traversal",
        "latent_scatter",
        "latent_attack",
        "samples",
        "chain_10",
    ):
        assert os.path.getsize(os.path.join(workdir, f"{name}.png")) > 1000, name
