"""Log-densities: closed forms, gradients against finite differences, the exact factor-analysis posterior."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from latentebm_jax import (
    ebm_log_prior,
    gaussian_log_likelihood,
    gaussian_log_prob,
    langevin,
    lebm_log_joint,
)
from latentebm_jax.nets import Generator8, MLPEnergy


def test_gaussian_log_prob_matches_scipy_for_pytrees():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 2, 2))
    got = gaussian_log_prob((jnp.asarray(a), jnp.asarray(b)), sigma=1.7)
    want = stats.norm(0, 1.7).logpdf(a).sum(1) + stats.norm(0, 1.7).logpdf(b).reshape(4, -1).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    x, m = rng.normal(size=(4, 8, 8, 1)), rng.normal(size=(4, 8, 8, 1))
    np.testing.assert_allclose(
        gaussian_log_likelihood(jnp.asarray(x), jnp.asarray(m), 0.3),
        stats.norm(m, 0.3).logpdf(x).reshape(4, -1).sum(1),
        rtol=1e-5,
    )


def _finite_difference_grad(fn, z, eps=1e-5):
    z = np.asarray(z, np.float64)
    grad = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (np.sum(fn(up)) - np.sum(fn(down))) / (2 * eps)
    return grad


def test_prior_and_posterior_gradients_match_finite_differences():
    with jax.enable_x64(True):
        ebm, gen = MLPEnergy(hidden=8), Generator8(channels=1, ngf=4)
        z = jax.random.normal(jax.random.key(0), (2, 3), jnp.float64)
        pe = jax.tree.map(lambda p: p.astype(jnp.float64), ebm.init(jax.random.key(1), z))
        pg = jax.tree.map(lambda p: p.astype(jnp.float64), gen.init(jax.random.key(2), z))
        x = jax.random.uniform(jax.random.key(3), (2, 8, 8, 1), jnp.float64, -1, 1)
        f = functools.partial(ebm.apply, pe)
        g = functools.partial(gen.apply, pg)
        prior = lambda zz: ebm_log_prior(f, jnp.asarray(zz), sigma_p=1.3)
        post = lambda zz: lebm_log_joint(f, g, jnp.asarray(zz), x, sigma=0.3, sigma_p=1.3)
        for fn in (prior, post):
            auto = jax.jit(jax.grad(lambda zz, fn=fn: jnp.sum(fn(zz))))(z)
            # one compiled function for the 2·6 evaluations (eager calls dispatch op by op)
            np.testing.assert_allclose(auto, _finite_difference_grad(jax.jit(fn), z), rtol=1e-6, atol=1e-8)
        # the prior gradient is ∇f − z/σ_p²
        np.testing.assert_allclose(
            jax.grad(lambda zz: jnp.sum(prior(zz)))(z),
            jax.grad(lambda zz: jnp.sum(f(zz)))(z) - z / 1.3**2,
            rtol=1e-10,
        )


def test_posterior_langevin_recovers_exact_factor_analysis_posterior():
    """Linear generator g(z) = W z + b with N(0, I) prior (f ≡ 0): p(z|x) = N(m, C) with
    C = (I + WᵀW/σ²)⁻¹ and m = C Wᵀ (x − b)/σ²."""
    rng = np.random.default_rng(1)
    d, D, sigma = 3, 5, 0.8
    W = rng.normal(size=(D, d)) * 0.7
    b = rng.normal(size=(D,)) * 0.1
    x = rng.normal(size=(D,))
    C = np.linalg.inv(np.eye(d) + W.T @ W / sigma**2)
    m = C @ W.T @ (x - b) / sigma**2
    n = 10000
    zero_energy = lambda z: jnp.zeros(z.shape[0])
    generator = lambda z: (z @ jnp.asarray(W, jnp.float32).T + jnp.asarray(b, jnp.float32)).reshape(
        -1, D, 1, 1
    )
    xs = jnp.broadcast_to(jnp.asarray(x, jnp.float32).reshape(1, D, 1, 1), (n, D, 1, 1))
    target = lambda z: lebm_log_joint(zero_energy, generator, z, xs, sigma=sigma, sigma_p=1.0)
    z = langevin(target, jnp.zeros((n, d)), jax.random.key(7), step_size=0.05, num_steps=4000)
    z = np.asarray(z, np.float64)
    se = np.sqrt(np.diag(C) / n)
    np.testing.assert_allclose(z.mean(0), m, atol=6 * se.max())
    np.testing.assert_allclose(np.cov(z.T), C, atol=0.05 * np.abs(C).max())
