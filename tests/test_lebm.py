"""LEBM method: one train step against a reference computation of Algorithm 1; learning on digits."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from latentebm_jax.data import load_digits
from latentebm_jax.langevin import gaussian_like
from latentebm_jax.methods import lebm
from latentebm_jax.methods.common import example_keys
from latentebm_jax.optim import torch_adam

HP = lebm.LEBMHparams(
    latent_dim=4,
    ebm_hidden=16,
    prior_steps=4,
    prior_step_size=0.4,
    posterior_steps=3,
    posterior_step_size=0.1,
    likelihood=lebm.GaussianImageLikelihood(
        image_shape=(8, 8, 1), generator="small8", ngf=8, likelihood_sigma=0.3
    ),
)
SIGMA = HP.likelihood.likelihood_sigma


def _reference_chain(logp, z, keys, noise_stream, s, k_steps):
    """Explicit Langevin: z ← z + (s²/2)∇log p(z) + s ε, with each chain's noise from its own key."""
    grad_logp = jax.jit(jax.grad(lambda zz: jnp.sum(logp(zz))))  # the reference's own chain, compiled once
    for k in range(k_steps):
        grad = grad_logp(z)
        stream_keys = jax.vmap(lambda kk: jax.random.fold_in(kk, noise_stream))(keys)
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(stream_keys, k)
        z = z + 0.5 * s * s * grad + s * gaussian_like(step_keys, z)
    return z


def test_train_step_equals_reference_computation_of_algorithm_1():
    tx = {"ebm": optax.sgd(0.5), "gen": optax.sgd(0.01)}
    state = lebm.init(HP, tx, jax.random.key(0))
    x = jnp.asarray(load_digits("train").get(np.arange(6))["image"])
    new_state, metrics = jax.jit(functools.partial(lebm.train_step, HP, tx))(state, {"image": x})

    # --- reference, written from the paper's equations ---
    pe, pg = state.params["ebm"], state.params["gen"]
    f = lambda p, z: HP.energy_net().apply({"params": p}, z)
    g = lambda p, z: HP.likelihood.net().apply({"params": p}, z)
    keys = example_keys(state.step_key(), 6)
    normal0 = lambda stream: jax.vmap(
        lambda k: jax.random.normal(jax.random.fold_in(k, stream), (HP.latent_dim,))
    )(keys)
    log_prior = lambda z: f(pe, z) - 0.5 * jnp.sum(z**2, 1)  # σ_p = 1, constants dropped
    log_post = lambda z: log_prior(z) - jnp.sum((x - g(pg, z)) ** 2, (1, 2, 3)) / (2 * SIGMA**2)
    z_neg = _reference_chain(log_prior, normal0(0), keys, 1, HP.prior_step_size, HP.prior_steps)
    z_pos = _reference_chain(log_post, normal0(2), keys, 3, HP.posterior_step_size, HP.posterior_steps)
    # Eq. 11: ascend E[log p_β(x|z⁺)]; Eq. 10: ascend E[f(z⁺)] − E[f(z⁻)] (plain SGD here)
    grad_g = jax.grad(lambda p: jnp.mean(jnp.sum((x - g(p, z_pos)) ** 2, (1, 2, 3))) / (2 * SIGMA**2))(pg)
    grad_e = jax.grad(lambda p: jnp.mean(f(p, z_neg)) - jnp.mean(f(p, z_pos)))(pe)
    want_g = jax.tree.map(lambda p, d: p - 0.01 * d, pg, grad_g)
    want_e = jax.tree.map(lambda p, d: p - 0.5 * d, pe, grad_e)

    for got, want in ((new_state.params["gen"], want_g), (new_state.params["ebm"], want_e)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(metrics["f_pos"], jnp.mean(f(pe, z_pos)), rtol=1e-4)
    np.testing.assert_allclose(metrics["f_neg"], jnp.mean(f(pe, z_neg)), rtol=1e-4)
    assert int(new_state.step) == 1


def test_gaussian_prior_baseline_is_short_run_inference_under_n01():
    """``ebm_hidden = 0`` (Table 1's SRI baseline): no EBM parameters, prior samples are exact draws of
    ``N(0, σ_p² I)``, and the generator step is the reference one with posterior Langevin on
    ``log N(z; 0, I) + log p_β(x|z)``."""
    hp = dataclasses.replace(HP, ebm_hidden=0)
    tx = {"ebm": optax.sgd(0.5), "gen": optax.sgd(0.01)}
    state = lebm.init(hp, tx, jax.random.key(0))
    assert state.params["ebm"] == {}
    keys = example_keys(jax.random.key(3), 4000)
    z = lebm.sample_prior(hp, {}, keys)
    np.testing.assert_allclose(np.std(np.asarray(z)), hp.prior_sigma, rtol=0.02)
    np.testing.assert_allclose(np.mean(np.asarray(z)), 0.0, atol=0.01)

    x = jnp.asarray(load_digits("train").get(np.arange(6))["image"])
    new_state, metrics = jax.jit(functools.partial(lebm.train_step, hp, tx))(state, {"image": x})
    pg = state.params["gen"]
    g = lambda p, z: hp.likelihood.net().apply({"params": p}, z)
    keys = example_keys(state.step_key(), 6)
    z0 = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 2), (hp.latent_dim,)))(keys)
    log_post = lambda z: -0.5 * jnp.sum(z**2, 1) - jnp.sum((x - g(pg, z)) ** 2, (1, 2, 3)) / (2 * SIGMA**2)
    z_pos = _reference_chain(log_post, z0, keys, 3, hp.posterior_step_size, hp.posterior_steps)
    grad_g = jax.grad(lambda p: jnp.mean(jnp.sum((x - g(p, z_pos)) ** 2, (1, 2, 3))) / (2 * SIGMA**2))(pg)
    want_g = jax.tree.map(lambda p, d: p - 0.01 * d, pg, grad_g)
    for a, b in zip(jax.tree.leaves(new_state.params["gen"]), jax.tree.leaves(want_g)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    assert new_state.params["ebm"] == {}
    assert float(metrics["f_pos"]) == 0.0 and float(metrics["grad_norm_e"]) == 0.0


def test_official_generator_loss_option_differs_only_by_the_constant():
    x = jnp.ones((2, 8, 8, 1))
    x_hat = jnp.zeros((2, 8, 8, 1))
    from latentebm_jax.losses import gaussian_reconstruction_loss

    paper = gaussian_reconstruction_loss(x, x_hat, 0.3, "gaussian_nll")
    code = gaussian_reconstruction_loss(x, x_hat, 0.3, "sum_squared")
    np.testing.assert_allclose(code, 64.0, rtol=1e-6)
    np.testing.assert_allclose(paper, code / (2 * 0.09), rtol=1e-6)


@pytest.fixture(scope="module")
def trained():
    """A small LEBM trained for 300 steps on the digits (about 10 s on 2 cores)."""
    hp = lebm.LEBMHparams(
        latent_dim=8,
        ebm_hidden=64,
        prior_steps=20,
        posterior_steps=20,
        likelihood=lebm.GaussianImageLikelihood(image_shape=(8, 8, 1), generator="small8", ngf=16),
    )
    tx = {"ebm": torch_adam(1e-4, b1=0.5), "gen": torch_adam(1e-3, b1=0.5)}
    state0 = lebm.init(hp, tx, jax.random.key(0))
    step = jax.jit(functools.partial(lebm.train_step, hp, tx))
    train = load_digits("train")
    rng = np.random.default_rng(0)
    state, history = state0, []
    for _ in range(300):
        batch = train.get(rng.choice(len(train), 50, replace=False))
        state, metrics = step(state, {"image": jnp.asarray(batch["image"])})
        history.append({k: float(v) for k, v in metrics.items()})
    return hp, state0, state, history


def _test_recon_mse(hp, params):
    x = jnp.asarray(load_digits("test").get(np.arange(200))["image"])
    x_hat = jax.jit(functools.partial(lebm.reconstruct, hp))(params, {"image": x}, jax.random.key(1))["image"]
    return float(jnp.mean((x - x_hat) ** 2))


@pytest.mark.slow
def test_lebm_learns_on_digits(trained):
    hp, state0, state, history = trained
    loss = [h["loss_g"] for h in history]
    assert np.all(np.isfinite(loss))
    assert np.mean(loss[-30:]) < 0.5 * np.mean(loss[:30])
    before, after = _test_recon_mse(hp, state0.params), _test_recon_mse(hp, state.params)
    assert after < 0.6 * before, (before, after)
    # samples move toward the data: distance to the nearest training image falls
    train = load_digits("train").images.reshape(1437, -1)

    def nn_dist(params):
        xs = np.asarray(lebm.generate(hp, params, jax.random.key(2), 100)["image"]).reshape(100, -1)
        d = ((xs[:, None, :] - train[None]) ** 2).sum(-1)
        return float(np.mean(np.sqrt(d.min(1))))

    assert nn_dist(state.params) < 0.8 * nn_dist(state0.params)


@pytest.mark.slow
def test_prior_chain_energy_trace_settles(trained):
    hp, _, state, _ = trained
    out = jax.jit(functools.partial(lebm.long_run_chain, hp), static_argnums=(2, 3, 4))(
        state.params, jax.random.key(3), 64, 400, 50
    )
    energy = np.asarray(out["energy"])
    assert energy.shape == (401,) and out["frames"]["image"].shape == (9, 64, 8, 8, 1)
    third, last = energy[200:300].mean(), energy[300:].mean()
    # the chain moves from the initial N(0, I) draws into a lower-energy region and stays there
    assert last < energy[0]
    assert abs(third - last) < 0.25 * (energy[0] - min(third, last)) + 0.5
    # energy equals −(f + log N(z; 0, I)) of the recorded final states
    z_imgs = out["frames"]["image"][-1]
    assert np.all(np.abs(z_imgs) <= 1.0)


@pytest.mark.slow
def test_anomaly_score_is_log_joint_at_posterior_samples(trained):
    hp, _, state, _ = trained
    x = jnp.asarray(load_digits("test").get(np.arange(10))["image"])
    key = jax.random.key(4)
    score = lebm.log_joint_at_posterior(hp, state.params, {"image": x}, key)
    z = lebm.sample_posterior(hp, state.params, {"image": x}, jax.random.split(key, 10))
    np.testing.assert_allclose(score, lebm.log_joint(hp, state.params, z, {"image": x}), rtol=1e-5)
    # a far-off image is much less likely than a digit
    noise = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (10, 8, 8, 1)), jnp.float32)
    far = lebm.log_joint_at_posterior(hp, state.params, {"image": noise}, key)
    assert float(jnp.mean(far)) < float(jnp.mean(score))


@pytest.mark.slow
def test_svhn_networks_train_on_digits32():
    """configs/digits32.py: the authors' SVHN generator and EBM on the embedded digits at 32×32×3."""
    from configs import digits32

    config = digits32.get_config("lebm")
    config.sampler.prior_steps = config.sampler.posterior_steps = 2
    hp = lebm.hparams_from_config(config)
    lik = hp.likelihood
    assert lik.image_shape == (32, 32, 3) and (lik.ngf, hp.latent_dim, hp.ebm_hidden) == (64, 100, 200)
    tx = lebm.optimizer_from_config(config, "lebm").build("gen", steps_per_epoch=14)
    state = lebm.init(hp, tx, jax.random.key(0))
    x = jnp.asarray(load_digits("train", 32, 3).get(np.arange(4))["image"])
    new_state, metrics = jax.jit(functools.partial(lebm.train_step, hp, tx))(state, {"image": x})
    assert all(np.isfinite(float(v)) for v in metrics.values())
    flat_new = jax.tree_util.tree_flatten_with_path(new_state.params)[0]
    flat_old = jax.tree.leaves(state.params)
    for (path, a), b in zip(flat_new, flat_old):
        name = jax.tree_util.keystr(path)
        if name == "['ebm']['TorchDense_2']['Dense_0']['bias']":
            # the contrastive loss is invariant to a constant in f: its output bias gets no gradient
            np.testing.assert_array_equal(a, b)
        else:
            assert float(jnp.max(jnp.abs(a - b))) > 0, name  # every other parameter was updated


@pytest.mark.slow  # compiles every predict function of the digits LEBM (about 15 s on 2 idle cores)
def test_method_predict_functions_are_the_pure_functions_bound_to_the_config():
    """make() binds the config: the hparams its groups describe, and predict functions that equal the pure
    ones (the anomaly score at the same key uses the same posterior sample as the reconstruction)."""
    from configs import digits

    config = digits.get_config("lebm")
    config.lebm.update(latent_dim=8, ngf=16, ebm_hidden=64)
    config.sampler.prior_steps = config.sampler.posterior_steps = 2
    hp = lebm.hparams_from_config(config)
    assert hp == dataclasses.replace(
        HP, latent_dim=8, ebm_hidden=64, prior_steps=2, posterior_steps=2, posterior_unroll=0,
        likelihood=dataclasses.replace(HP.likelihood, ngf=16),
    )  # fmt: skip
    method = lebm.make(config, None, steps_per_epoch=1)
    state = jax.jit(method.init)(jax.random.key(0))
    batch = {"image": jnp.asarray(load_digits("test").get(np.arange(10))["image"])}
    key = jax.random.key(5)
    x_hat = method.predict["reconstruct"](state.params, batch, key)["image"]
    z = jax.jit(functools.partial(lebm.infer, hp))(state.params, batch, key)
    np.testing.assert_allclose(x_hat, hp.likelihood.mean(state.params["gen"], z), rtol=1e-5, atol=1e-6)
    score = method.predict["log_joint"](state.params, batch, key)
    np.testing.assert_allclose(score, lebm.log_joint(hp, state.params, z, batch), rtol=1e-5)
    (z_method,) = method.predict["infer"](state.params, batch, key)
    np.testing.assert_allclose(z_method, z, rtol=1e-5, atol=1e-6)
