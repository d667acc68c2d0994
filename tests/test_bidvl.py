"""BiDVL (CVPR 2022): every loss term against a hand computation, one train step against a reference
computation of Algorithm 1 (offset, Eqs. 13–14), the directions of the two levels, the networks' shapes,
configs, synchronised BatchNorm over 4 simulated devices, and OOD detection after a short digits32 run."""

import dataclasses
import functools
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import apply_overrides

from configs import celeba32, celeba64, cifar10, digits32, svhn
from configs.default import validate
from latentebm_jax.config_schema import ConfigError
from latentebm_jax.data import load_digits
from latentebm_jax.methods import bidvl
from latentebm_jax.methods.common import example_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = bidvl.BiDVLHparams(
    image_shape=(8, 8, 1), latent_dim=3, enc_width=2, gen_width=2, ebm_width=2, conv_impl="xla"
)


def _x(n=6):
    return jnp.asarray(load_digits("train").get(np.arange(n))["image"])


def _sgd(ebm=0.05, enc=0.01, gen=0.01):
    return {"ebm": optax.sgd(ebm), "enc": optax.sgd(enc), "gen": optax.sgd(gen)}


@functools.cache
def _state(hp=TINY, key=0):
    return _init(hp, _sgd(), key)


def _init(hp, tx, seed):
    """``bidvl.init`` with the initialisers drawn by the RBG generator, which XLA:CPU compiles in a third of
    threefry's time; the state's own key (the per-step draws) is the default threefry key."""
    state = jax.jit(functools.partial(bidvl.init, hp, tx))(jax.random.key(seed, impl="rbg"))
    return state.replace(rng=jax.random.key_data(jax.random.key(seed)))


@functools.cache
def _step(hp, lrs):
    return jax.jit(functools.partial(bidvl.train_step, hp, _sgd(*lrs)))


# ----------------------------------------------------------------------------- loss terms by hand


def test_upper_loss_is_eq_14():
    # E(v) = (1, 3), E(v̂) = (2, 6): mean E(v) − mean E(v̂) = 2 − 4
    loss = bidvl.upper_loss(jnp.array([-1.0, -3.0]), jnp.array([-2.0, -6.0]))
    np.testing.assert_allclose(loss, -2.0, rtol=1e-6)


def test_importance_weights_of_eq_15():
    f = jnp.array([0.0, -2.0])  # E = (0, 2), mean E = 1
    np.testing.assert_allclose(bidvl.importance_weights(f, 0.05, "none"), [0.05, 0.05])
    # Sigmoid(mean E − E): σ(1), σ(−1)
    s = 1 / (1 + math.exp(-1))
    np.testing.assert_allclose(
        bidvl.importance_weights(f, 0.05, "sigmoid"), [0.05 * s, 0.05 * (1 - s)], rtol=1e-6
    )
    # exp(−E) / mean exp(−E) = (1, e⁻²) / ((1 + e⁻²)/2)
    z = (1 + math.exp(-2)) / 2
    np.testing.assert_allclose(
        bidvl.importance_weights(f, 0.1, "self_normalized"), [0.1 / z, 0.1 * math.exp(-2) / z], rtol=1e-6
    )
    # no gradient reaches the energy through the ratio
    g = jax.grad(lambda f: jnp.sum(bidvl.importance_weights(f, 0.1, "sigmoid")))(f)
    np.testing.assert_array_equal(g, 0.0)
    with pytest.raises(ValueError, match="unknown importance-ratio bias 'exp'"):
        bidvl.importance_weights(f, 0.1, "exp")


def test_weighted_vae_term_by_hand():
    x = jnp.array([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])  # (2, 1, 1, 2)
    x_rec = jnp.array([[[[0.0, 0.0]]], [[[0.5, -0.5]]]])
    mean = jnp.array([[1.0], [0.0]])
    log_var = jnp.array([[0.0], [math.log(2.0)]])
    w = jnp.array([0.1, 0.3])
    # SSE = (1, 0.5); KL = ½(μ² + e^ℓ − 1 − ℓ) = (0.5, ½(1 − log 2)); σ² = ½ makes SSE/(2σ²) = SSE
    kl = (0.5, 0.5 * (1.0 - math.log(2.0)))
    want = 0.5 * (0.1 * (1.0 + kl[0]) + 0.3 * (0.5 + kl[1]))
    loss, parts = bidvl.weighted_vae_loss(x, x_rec, mean, log_var, w, math.sqrt(0.5))
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(parts["rec"], 0.75, rtol=1e-6)
    np.testing.assert_allclose(parts["kl"], 0.5 * sum(kl), rtol=1e-6)
    # σ = 1 halves the reconstruction part
    loss1, _ = bidvl.weighted_vae_loss(x, x_rec, mean, log_var, w, 1.0)
    np.testing.assert_allclose(loss1, 0.5 * (0.1 * (0.5 + kl[0]) + 0.3 * (0.25 + kl[1])), rtol=1e-6)


def test_latent_reconstruction_and_upper_encoder_terms_by_hand():
    h = jnp.array([[1.0, 0.0]])
    mean = jnp.zeros((1, 2))
    log_var = jnp.array([[0.0, math.log(4.0)]])
    # −log N(h; μ, e^ℓ) = ½[(1 − 0)²/1 + 0 + log 2π] + ½[0 + log 4 + log 2π]
    nll = 0.5 + 0.5 * math.log(4.0) + math.log(2 * math.pi)
    np.testing.assert_allclose(bidvl.latent_reconstruction_loss(h, mean, log_var, "nll"), nll, rtol=1e-6)
    # the authors' form: ‖μ − h‖² / d
    np.testing.assert_allclose(bidvl.latent_reconstruction_loss(h, mean, log_var, "code"), 0.5, rtol=1e-6)
    # not offset, upper level: KL(q ‖ N(0, I)) = ½[(0 + 1 − 1 − 0) + (0 + 4 − 1 − log 4)], /d for "code"
    kl = 0.5 * (3.0 - math.log(4.0))
    np.testing.assert_allclose(bidvl.upper_encoder_loss(mean, log_var, "nll"), kl, rtol=1e-6)
    np.testing.assert_allclose(bidvl.upper_encoder_loss(mean, log_var, "code"), kl / 2, rtol=1e-6)
    np.testing.assert_allclose(bidvl.generator_energy_loss(jnp.array([-1.0, -2.0])), 1.5, rtol=1e-6)


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("size,top", [(32, 512), (64, 1024)])
def test_networks_have_the_authors_shapes(size, top):
    """Shapes only (no compilation): E 64 → 512 (32×32) / 1024 (64×64) channels, Q 48 → 384 / 768,
    P 384 / 768 → 96 → image; BatchNorm in Q and P only, no bias before a BatchNorm."""
    hp = bidvl.BiDVLHparams(image_shape=(size, size, 3))
    x, h, key = jnp.zeros((2, size, size, 3)), jnp.zeros((2, 100)), jax.random.key(0)
    f, ve = jax.eval_shape(lambda: hp.energy_net().init_with_output(key, x))
    (mean, log_var), vq = jax.eval_shape(lambda: hp.encoder_net().init_with_output(key, x, train=False))
    images, vg = jax.eval_shape(lambda: hp.generator_net().init_with_output(key, h, train=False))
    assert f.shape == (2,) and mean.shape == log_var.shape == (2, 100) and images.shape == (2, size, size, 3)
    pe, pq, pg = ve["params"], vq["params"], vg["params"]
    n = int(math.log2(size // 4))
    convs = [pe[f"Conv_{i}"]["kernel"].shape for i in range(2 * n + 2)]
    assert convs[:3] == [(3, 3, 3, 64), (4, 4, 64, 64), (3, 3, 64, 128)]
    assert convs[-1] == (4, 4, top, top)  # the 4/1/0 conv to 1×1
    assert pe["Dense_0"]["kernel"].shape == (top, top) and pe["Dense_1"]["kernel"].shape == (top, 1)
    assert set(ve) == {"params", "batch_stats"}  # spectral-norm vectors; no BatchNorm in E
    assert not any(k.startswith("BatchNorm") for k in pe)
    assert pq["Conv_0"]["kernel"].shape == (3, 3, 3, 48) and "bias" not in pq["Conv_1"]
    assert pq["mean"]["kernel"].shape == pq["log_var"]["kernel"].shape == (4, 4, 48 * 2**n, 100)
    assert pg["TorchConvTranspose_0"]["kernel"].shape == (4, 4, 100, 48 * 2**n)
    assert pg["TorchConvTranspose_1"]["kernel"].shape == (4, 4, 48 * 2**n, 48 * 2**n)
    assert pg[f"TorchConvTranspose_{n}"]["kernel"].shape[-1] == 96
    assert pg["to_image"]["kernel"].shape == (3, 3, 96, 3)
    assert len([k for k in pq if k.startswith("BatchNorm")]) == n + 1
    assert len([k for k in pg if k.startswith("BatchNorm")]) == n + 1


def test_energy_output_is_minus_softplus():
    state = _state()
    x = _x(4)
    raw = dataclasses.replace(TINY, energy_output="identity")
    f, out = jax.jit(
        lambda pe, st: (bidvl.neg_energy(TINY, pe, st, x), -bidvl.neg_energy(raw, pe, st, x))  # −net output
    )(state.params["ebm"], state.model_state["ebm"])
    np.testing.assert_allclose(f, -jax.nn.softplus(out), rtol=1e-5)
    assert np.all(np.asarray(f) < 0)


# ----------------------------------------------------------------------------- Algorithm 1


LRS = (0.05, 0.01, 0.02)  # SGD learning rates of E, Q, P


def _nets(hp, stats):
    """The three networks in train mode, as the paper's equations use them: ``(out, new_running_stats)``."""
    q = lambda p, st, v: hp.encoder_net().apply(
        {"params": p, "batch_stats": st}, v, train=True, mutable=["batch_stats"]
    )
    g = lambda p, st, h: hp.generator_net().apply(
        {"params": p, "batch_stats": st}, h, train=True, mutable=["batch_stats"]
    )
    f = lambda p, v: hp.energy_net().apply({"params": p, "batch_stats": stats["ebm"]}, v)
    return q, g, f


def _draw(state, b, stream, d):
    keys = example_keys(state.step_key(), b)
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(jax.random.fold_in(k, 0), stream), (d,)))(
        keys
    )


@pytest.fixture(scope="module")
def one_step():
    state = _state()
    x = _x(6)
    new_state, metrics = _step(TINY, LRS)(state, {"image": x})
    return state, x, new_state, metrics


def test_train_step_equals_reference_computation_of_algorithm_1(one_step):
    """Lower level by Eq. 13 (Q gets the weighted VAE term only: its latent term is offset; P all three
    terms), then the upper level by Eq. 14 at the updated generator; plain SGD; BatchNorm running averages
    advanced by every train-mode call (Q on v then on G(ĥ); P on h then ĥ, then ĥ again)."""
    state, x, new_state, metrics = one_step
    want = jax.jit(_reference_step)(state, x)
    for name in ("enc", "gen", "ebm"):
        for a, b in zip(jax.tree.leaves(new_state.params[name]), jax.tree.leaves(want[name])):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    for name in ("enc", "gen"):  # BatchNorm running averages
        for a, b in zip(jax.tree.leaves(new_state.model_state[name]), jax.tree.leaves(want[f"{name}_stats"])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(metrics["f_data"], want["f_data"], rtol=1e-5)
    np.testing.assert_allclose(metrics["mse_rec"], want["mse_rec"], rtol=1e-5)
    assert int(new_state.step) == 1


def _reference_step(state, x):
    """Algorithm 1 (lower level first) written out from Eqs. 13–14 with plain SGD."""
    p, s = state.params, state.model_state
    q, g, f = _nets(TINY, s)
    h_hat, eps = _draw(state, x.shape[0], 0, 3), _draw(state, x.shape[0], 1, 3)
    r, two_var = TINY.basic_ratio, 2 * TINY.likelihood_sigma**2

    def vae(enc, gen):
        (mu, lv), _ = q(enc, s["enc"], x)
        x_rec, _ = g(gen, s["gen"], mu + jnp.exp(lv / 2) * eps)
        sse = jnp.sum((x - x_rec) ** 2, axis=(1, 2, 3))
        kl = 0.5 * jnp.sum(mu**2 + jnp.exp(lv) - 1 - lv, axis=1)
        return jnp.mean(r * (sse / two_var + kl))

    def chase_and_latent(gen):
        v_hat, _ = g(gen, s["gen"], h_hat)
        (mu, lv), _ = q(p["enc"], s["enc"], v_hat)
        nll = 0.5 * jnp.sum((h_hat - mu) ** 2 / jnp.exp(lv) + lv + jnp.log(2 * jnp.pi), axis=1)
        return -jnp.mean(f(p["ebm"], v_hat)) + jnp.mean(nll)

    g_enc = jax.grad(vae)(p["enc"], p["gen"])
    g_gen = jax.grad(lambda gen: vae(p["enc"], gen) + chase_and_latent(gen))(p["gen"])
    enc1 = jax.tree.map(lambda a, d: a - LRS[1] * d, p["enc"], g_enc)
    gen1 = jax.tree.map(lambda a, d: a - LRS[2] * d, p["gen"], g_gen)
    v_hat1 = g(gen1, s["gen"], h_hat)[0]
    g_ebm = jax.grad(lambda pe: jnp.mean(-f(pe, x)) - jnp.mean(-f(pe, v_hat1)))(p["ebm"])
    ebm1 = jax.tree.map(lambda a, d: a - LRS[0] * d, p["ebm"], g_ebm)

    # running averages: Q saw v then G(ĥ); P saw h, ĥ (lower level) and ĥ again (upper level, updated P)
    (mu, lv), st_q = q(p["enc"], s["enc"], x)
    x_rec, st_g = g(p["gen"], s["gen"], mu + jnp.exp(lv / 2) * eps)
    v_hat, st_g = g(p["gen"], st_g["batch_stats"], h_hat)
    _, st_q = q(p["enc"], st_q["batch_stats"], v_hat)
    _, st_g = g(gen1, st_g["batch_stats"], h_hat)
    return {
        "enc": enc1,
        "gen": gen1,
        "ebm": ebm1,
        "enc_stats": st_q["batch_stats"],
        "gen_stats": st_g["batch_stats"],
        "f_data": jnp.mean(f(p["ebm"], x)),
        "mse_rec": jnp.mean((x - x_rec) ** 2),
    }


def test_upper_level_step_lowers_the_energy_of_data_relative_to_samples(one_step):
    """The upper-level update of the step (Eq. 14) raises ``mean f(v) − mean f(G(ĥ))`` at the samples it
    used (P after the lower-level update)."""
    state, x, new_state, metrics = one_step
    _, g, _ = _nets(TINY, state.model_state)

    @jax.jit
    def gap(ebm, ebm_stats):  # mean E(G(ĥ)) − mean E(v)
        v_hat = g(new_state.params["gen"], state.model_state["gen"], _draw(state, 6, 0, 3))[0]
        f = lambda v: bidvl.neg_energy(TINY, ebm, ebm_stats, v)
        return jnp.mean(f(x)) - jnp.mean(f(v_hat))

    before = float(gap(state.params["ebm"], new_state.model_state["ebm"]))
    after = float(gap(new_state.params["ebm"], new_state.model_state["ebm"]))
    # a step of size lr on the loss −gap raises the gap by lr·‖∇‖² to first order
    first_order = LRS[0] * float(metrics["grad_norm_ebm"]) ** 2
    assert 0.8 * first_order < after - before < 1.2 * first_order, (before, after, first_order)


def test_lower_level_step_raises_the_negative_energy_of_samples():
    """With r′ = 0 and no latent term, the lower level is Eq. 13's ``E_{p_ω2}[E(v)]`` alone: one SGD step of
    P raises ``mean f(G(ĥ))`` (E is held fixed by a zero learning rate)."""
    hp = dataclasses.replace(TINY, basic_ratio=0.0, offset="without")
    state = _state()
    x = _x(6)
    lr = 0.05
    new_state, metrics = _step(hp, (0.0, 0.01, lr))(state, {"image": x})
    _, g, f = _nets(hp, state.model_state)
    mean_f = jax.jit(
        lambda gen: jnp.mean(
            f(state.params["ebm"], g(gen, state.model_state["gen"], _draw(state, 6, 0, 3))[0])
        )
    )
    before, after = float(mean_f(state.params["gen"])), float(mean_f(new_state.params["gen"]))
    np.testing.assert_allclose(metrics["chase"], -before, rtol=1e-5)
    first_order = lr * float(metrics["grad_norm_gen"]) ** 2  # a step of size lr on −f: lr·‖∇‖² to first order
    assert 0.5 * first_order < after - before < 1.5 * first_order, (before, after, first_order)
    for a, b in zip(jax.tree.leaves(new_state.params["enc"]), jax.tree.leaves(state.params["enc"])):
        np.testing.assert_array_equal(a, b)  # no term of this loss reaches Q


def test_not_offset_variant_with_code_losses_runs_in_the_authors_order():
    """``offset='not_offset'`` (Sec. 4.4) in the authors' order (upper level first) with N = 2 lower-level
    steps, the code's latent losses and the sigmoid bias term: the upper level also trains Q, by
    ``KL(q(h|G(ĥ)) ‖ N(0, I)) / d`` at the *initial* networks (it runs first)."""
    hp = dataclasses.replace(
        TINY, offset="not_offset", order="upper_first", lower_steps=2, bias="sigmoid", latent_loss="code"
    )
    state, x = _state(), _x(6)
    new_state, metrics = _step(hp, LRS)(state, {"image": x})
    q, g, f = _nets(hp, state.model_state)

    @jax.jit
    def reference(p):
        v_hat = g(p["gen"], state.model_state["gen"], _draw(state, 6, 0, 3))[0]
        (mu, lv), _ = q(p["enc"], state.model_state["enc"], v_hat)
        kl = 0.5 * jnp.sum(mu**2 + jnp.exp(lv) - 1 - lv, axis=1)
        return jnp.mean(kl) / 3, jnp.mean(f(p["ebm"], v_hat))

    loss_enc, f_gen = reference(state.params)
    np.testing.assert_allclose(metrics["loss_ul_enc"], loss_enc, rtol=1e-4)
    np.testing.assert_allclose(metrics["f_gen_ul"], f_gen, rtol=1e-4)
    assert 0 < float(metrics["weight_mean"]) < hp.basic_ratio  # r′·σ(·) averages below r′
    assert all(np.isfinite(float(v)) for v in metrics.values()) and int(new_state.step) == 1


def test_method_record_samples_reconstructs_and_scores():
    """``make``'s functions (``configs/digits.py:bidvl``, shrunk): samples ``G(h)``, ``h ~ N(0, I)``;
    reconstructions ``G(μ(v))``; ``log p(v, h) = −E(v) + log q(h|v)`` at a sample of ``q`` (Eq. 8);
    the OOD score ``−E(v)``; all with BatchNorm's running averages."""
    from configs import digits

    cfg = apply_overrides(
        digits.get_config("bidvl"),
        {"bidvl.latent_dim": 3, "bidvl.enc_width": 2, "bidvl.gen_width": 2, "bidvl.ebm_width": 2},
    )
    validate(cfg)
    method = bidvl.make(cfg, None, steps_per_epoch=1)
    hp = bidvl.hparams_from_config(cfg)
    assert dataclasses.replace(hp, conv_impl="xla", latent_loss="nll") == TINY and method.name == "bidvl"
    predict = method.predict
    state = _state()
    params, x, key = method.inference_params(state), _x(5), jax.random.key(3)
    enc = jax.jit(
        lambda v: hp.encoder_net().apply(
            {"params": params["enc"], "batch_stats": params["enc_stats"]}, v, train=False
        )
    )
    dec = jax.jit(
        lambda h: hp.generator_net().apply(
            {"params": params["gen"], "batch_stats": params["gen_stats"]}, h, train=False
        )
    )
    samples = predict["generate"](params, key, 5)["image"]
    np.testing.assert_allclose(samples, dec(jax.random.normal(key, (5, 3))), rtol=1e-5, atol=1e-6)
    assert samples.shape == (5, 8, 8, 1) and float(jnp.max(jnp.abs(samples))) <= 1.0
    mu, lv = enc(x)
    batch = {"image": x}
    np.testing.assert_allclose(
        predict["reconstruct"](params, batch, key)["image"], dec(mu), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(predict["infer"](params, batch, key)[0], mu, rtol=1e-5, atol=1e-6)
    score = predict["ood_score"](params, batch, key)
    assert score.shape == (5,) and np.all(np.asarray(score) < 0)  # −softplus(·)
    # log q(h|v) = −½Σ(ℓ + log 2π) − ½‖ε‖² at h = μ + e^{ℓ/2} ε: the remainder is a chi-square draw
    log_q = predict["log_joint"](params, batch, key) - score
    chi2 = -2 * (log_q + 0.5 * jnp.sum(lv + jnp.log(2 * jnp.pi), axis=1))
    assert np.all(np.asarray(chi2) > 0) and np.ptp(np.asarray(chi2)) > 0


# ----------------------------------------------------------------------------- configs


BIDVL_CONFIGS = {
    "cifar10": cifar10,
    "svhn": svhn,
    "celeba64": celeba64,
    "celeba32": celeba32,
    "digits32": digits32,
}


@pytest.mark.parametrize("name", sorted(BIDVL_CONFIGS))
def test_bidvl_configs_validate_and_bind(name):
    cfg = BIDVL_CONFIGS[name].get_config("bidvl")
    validate(cfg)
    hp = bidvl.hparams_from_config(cfg)
    size = {"celeba64": 64}.get(name, 32)
    assert hp.image_shape == (size, size, 3)
    assert hp.basic_ratio == (0.1 if name == "celeba64" else 0.05)  # Table 5 / Sec. 5.4
    assert (hp.offset, hp.order, hp.bias, hp.lower_steps) == ("offset", "lower_first", "none", 1)
    assert hp.latent_loss == ("code" if name == "digits32" else "nll")
    if name != "digits32":  # the authors' networks and optimiser
        assert (hp.enc_width, hp.gen_width, hp.ebm_width, hp.latent_dim) == (48, 48, 64, 100)
        t = cfg.bidvl
        assert (t.lr_ebm, t.lr_enc_gen, t.beta1, t.beta2, t.weight_decay_enc_gen, t.lr_decay) == (
            1e-4,
            3e-4,
            0.0,
            0.9,
            1e-4,
            0.998,
        )
    if name.startswith("celeba"):
        assert cfg.data.crop == "center160"
    tx = bidvl.optimizers_from_config(cfg, steps_per_epoch=10)
    assert set(tx) == {"ebm", "enc", "gen"}


@pytest.mark.parametrize(
    "path,value,pattern",
    [
        (
            "bidvl.offset",
            "half",
            r"'bidvl.offset' has value 'half'; allowed values: \['offset', 'not_offset'",
        ),
        ("bidvl.latent_loss", "l1", r"'bidvl.latent_loss' has value 'l1'"),
        ("bidvl.basic_ratio", -0.1, r"'bidvl.basic_ratio' has value -0.1; it must be non-negative"),
        ("bidvl.lower_steps", 0, r"'bidvl.lower_steps' has value 0"),
        (
            "eval.ood_sets",
            ("gaussian",),
            r"'eval.ood_sets' has value \('gaussian',\); it must be a tuple of names",
        ),
        ("eval.ood_sets", ("holdout",), r"'eval.ood_sets' names 'holdout' but 'data.holdout_class' is -1"),
    ],
)
def test_bad_bidvl_values_are_named(path, value, pattern):
    cfg = apply_overrides(digits32.get_config("bidvl"), {path: value})
    with pytest.raises(ConfigError, match=pattern):
        validate(cfg)


def test_hparams_reject_unknown_options():
    with pytest.raises(ValueError, match=r"BiDVLHparams.offset = 'half': allowed values: \['offset'"):
        dataclasses.replace(TINY, offset="half")
    with pytest.raises(ValueError, match="lower_steps = 0: it must be a positive integer"):
        dataclasses.replace(TINY, lower_steps=0)


# ----------------------------------------------------------------------------- multi-device

SCRIPT = textwrap.dedent(
    """
    import functools, sys
    import jax, numpy as np, optax
    assert jax.local_device_count() == 4, jax.devices()
    from latentebm_jax.data import load_digits
    from latentebm_jax.methods import bidvl
    from latentebm_jax.training import parallel

    hp = bidvl.BiDVLHparams(image_shape=(8, 8, 1), latent_dim=3, enc_width=2, gen_width=2, ebm_width=2,
                            conv_impl="xla")
    tx = {"ebm": optax.sgd(0.05), "enc": optax.sgd(0.01), "gen": optax.sgd(0.02)}
    # the test's initial state (structure from an abstract init: nothing is compiled for it)
    treedef = jax.tree.structure(jax.eval_shape(functools.partial(bidvl.init, hp, tx), jax.random.key(0)))
    saved = np.load(sys.argv[1])
    pstate = parallel.replicate(jax.tree.unflatten(treedef, [saved[f"{i}"] for i in range(len(saved.files))]))
    many = parallel.pmap_train_step(functools.partial(bidvl.train_step, hp, tx))
    src = load_digits("train")
    for i in range(2):
        batch = parallel.shard_batch({"image": src.get(np.arange(8 * i, 8 * i + 8))["image"]})
        pstate, metrics = many(pstate, batch)
    for leaf in jax.tree.leaves((pstate.params, pstate.model_state, metrics)):
        leaf = np.asarray(leaf)
        assert np.all(leaf == leaf[:1])  # the four copies stay identical; metrics are pmean-ed
    flat = jax.tree_util.tree_flatten_with_path((pstate.params, pstate.model_state, metrics))[0]
    np.savez(sys.argv[2], **{jax.tree_util.keystr(k): np.asarray(v[0]) for k, v in flat})
    """
)


@pytest.mark.slow  # a subprocess with 4 simulated devices: compiles the step twice
def test_batch_norm_statistics_agree_between_1_and_4_devices(tmp_path):
    """Two train steps on 4 simulated devices (BatchNorm synchronised over the ``batch`` axis, in a
    subprocess) equal the single-device steps on the same global batches: BatchNorm running averages,
    spectral-norm vectors, parameters and metrics. Unsynchronised, a device's statistics would differ."""
    state_file, out_file = str(tmp_path / "state.npz"), str(tmp_path / "multi.npz")
    np.savez(state_file, **{f"{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(_state()))})
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, state_file, out_file],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    state, src = _state(), load_digits("train")
    for i in range(2):
        state, metrics = _step(TINY, LRS)(
            state, {"image": jnp.asarray(src.get(np.arange(8 * i, 8 * i + 8))["image"])}
        )
    multi = np.load(out_file)
    flat = jax.tree_util.tree_flatten_with_path((state.params, state.model_state, metrics))[0]
    assert len(flat) == len(multi.files)
    for path, value in flat:
        name = jax.tree_util.keystr(path)
        tol = (
            dict(rtol=1e-4, atol=1e-6)
            if "batch_stats" in name or "'stats'" in name
            else dict(rtol=2e-4, atol=2e-6)
        )
        np.testing.assert_allclose(multi[name], np.asarray(value), err_msg=name, **tol)
    assert any("BatchNorm" in name and "'mean'" in name for name in multi.files)
    # what synchronisation buys: one device's quarter of a batch has other statistics than the batch
    x = jnp.asarray(src.get(np.arange(8))["image"])
    s0 = _state()
    stats = jax.jit(lambda v: bidvl.encode(TINY, s0.params["enc"], s0.model_state["enc"], v, train=True)[1])
    quarter, whole = stats(x[:2]), stats(x)
    moved = np.abs(whole["BatchNorm_0"]["mean"] - s0.model_state["enc"]["BatchNorm_0"]["mean"])
    gap = np.abs(quarter["BatchNorm_0"]["mean"] - whole["BatchNorm_0"]["mean"])
    assert np.max(gap) > 0.05 * np.max(moved)


# ----------------------------------------------------------------------------- a short digits32 run


@pytest.mark.slow
def test_short_digits32_run_detects_uniform_noise(tmp_path):
    """``configs/digits32.py:bidvl`` shrunk to a few seconds of training (widths 8, batch 32, 15 steps): the
    AUROC of ``−E(v)`` for the digits test split against uniform noise (Table 4's "Random") rises from
    below 0.9 at initialisation to above it."""
    from latentebm_jax.methods.bidvl_ood import ood_detection
    from latentebm_jax.training.setup import EVAL_STREAM, RunSetup

    cfg = apply_overrides(
        digits32.get_config("bidvl"),
        {
            "bidvl.latent_dim": 16,
            "bidvl.conv_impl": "xla",  # compiles in half the time of the fast transposed convolutions
            "bidvl.enc_width": 8,
            "bidvl.gen_width": 8,
            "bidvl.ebm_width": 8,
            "train.batch_size": 32,
            "eval.ood_max_examples": 200,
        },
    )
    cfg.seed = 2
    setup = RunSetup(cfg)
    state = _init(bidvl.hparams_from_config(cfg), bidvl.optimizers_from_config(cfg, setup.steps_per_epoch), 2)
    step = jax.jit(functools.partial(setup.method.train_step, axis_name=None))

    def ood(state):
        return ood_detection(
            setup.context(setup.method.inference_params(state), str(tmp_path), 0, EVAL_STREAM)
        )

    before = ood(state)
    for batch in setup.batcher.iterate(0, 15, prefetch=0):
        state, metrics = step(state, {"image": jnp.asarray(batch["image"])})
    after = ood(state)
    assert before["ood_auroc_uniform"] < 0.9 < after["ood_auroc_uniform"], (before, after)
    assert after["ood_examples_uniform"] == after["ood_in_distribution_examples"] == 200
    assert float(metrics["energy_gap"]) > 0  # E(G(ĥ)) above E(v) on average: the EBM separates them
    assert os.path.exists(after["ood_figure"])
