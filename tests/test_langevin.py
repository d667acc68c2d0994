"""Langevin sampler: exact moments on Gaussian targets, one hand-computed step, keys, traces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from latentebm_jax import gaussian_log_prob, langevin
from latentebm_jax.langevin import as_typed_key, gaussian_like


def gaussian_target(z, mu, sigma):
    return gaussian_log_prob(z, sigma, mean=jnp.broadcast_to(mu, z.shape))


def ar1_moments(z0, mu, sigma, s, k):
    """Exact mean/variance after k steps of z' = z + (s²/2)(−(z−μ)/σ²) + s ε: an AR(1) with
    a = 1 − s²/(2σ²), mean μ + a^k (z0 − μ), variance s² (1 − a^{2k}) / (1 − a²)."""
    a = 1.0 - s * s / (2.0 * sigma**2)
    return mu + a**k * (z0 - mu), s * s * (1.0 - a ** (2 * k)) / (1.0 - a * a)


@pytest.mark.parametrize("num_steps", [3, 40])
def test_gaussian_moments_match_discrete_closed_form(num_steps):
    n, mu, sigma, s = 40000, 1.5, 0.7, 0.3
    z0 = jnp.full((n, 2), -1.0)
    target = Partial(gaussian_target, mu=mu, sigma=sigma)
    z = langevin(target, z0, jax.random.key(0), step_size=s, num_steps=num_steps)
    mean, var = ar1_moments(-1.0, mu, sigma, s, num_steps)
    z = np.asarray(z)
    # standard errors: sqrt(var/n) for the mean, var*sqrt(2/n) for the variance
    np.testing.assert_allclose(z.mean(0), mean, atol=5 * np.sqrt(var / n))
    np.testing.assert_allclose(z.var(0), var, atol=5 * var * np.sqrt(2.0 / n))


def test_long_chain_approaches_target_and_pytree_layers_are_independent():
    # A pytree of two layers with different target scales; small steps → close to the true N(μ, σ²).
    n, s = 20000, 0.1
    sig = (0.5, 2.0)

    def logp(z):
        return gaussian_log_prob(z[0], sig[0]) + gaussian_log_prob(z[1], sig[1])

    z0 = (jnp.zeros((n, 3)), jnp.zeros((n, 1, 2)))
    z = langevin(logp, z0, jax.random.key(1), step_size=(s / 4, s), num_steps=3000)
    for leaf, sd, step in zip(z, sig, (s / 4, s)):
        _, var = ar1_moments(0.0, 0.0, sd, step, 3000)
        np.testing.assert_allclose(np.var(np.asarray(leaf)), var, rtol=0.03)
        np.testing.assert_allclose(var, sd**2, rtol=0.01)  # the discretisation bias is small here


def test_one_step_equals_hand_computed_update():
    key = jax.random.key(3)
    z0 = jnp.array([[0.3, -1.2], [2.0, 0.5]])
    s = 0.25
    w = jnp.array([1.0, -2.0])
    logp = lambda z: -0.5 * jnp.sum(z**2, 1) + jnp.sin(z @ w)
    z1 = langevin(logp, z0, key, step_size=s, num_steps=1)
    grad = -z0 + jnp.cos(z0 @ w)[:, None] * w[None, :]
    noise = gaussian_like(jax.random.fold_in(as_typed_key(key), 0), z0)
    np.testing.assert_allclose(z1, z0 + 0.5 * s * s * grad + s * noise, rtol=1e-6, atol=1e-6)


def test_per_chain_keys_make_chains_independent_of_batch_split():
    keys = jax.random.split(jax.random.key(4), 6)
    z0 = jnp.linspace(-1, 1, 12).reshape(6, 2)
    logp = lambda z: -jnp.sum(z**4, 1)
    full = langevin(logp, z0, keys, step_size=0.2, num_steps=7)
    halves = [langevin(logp, z0[i : i + 3], keys[i : i + 3], step_size=0.2, num_steps=7) for i in (0, 3)]
    np.testing.assert_allclose(full, np.concatenate(halves), rtol=1e-6)
    # raw uint32 keys are accepted and give the same result as typed ones
    raw = jax.random.key_data(keys)
    np.testing.assert_allclose(langevin(logp, z0, raw, step_size=0.2, num_steps=7), full)


def test_trace_records_mean_log_prob_and_grad_norm_at_each_state():
    logp = lambda z: -0.5 * jnp.sum(z**2, 1)
    z0 = jnp.full((5, 3), 2.0)
    key = jax.random.key(5)
    z, tr = langevin(logp, z0, key, step_size=0.3, num_steps=4, trace=True)
    assert tr.log_prob.shape == (4,) and tr.grad_norm.shape == (4,)
    # entry 0 is at z0: log p = -0.5*12 = -6, ‖∇‖ = ‖−z0‖ = sqrt(12)
    np.testing.assert_allclose(tr.log_prob[0], -6.0, rtol=1e-6)
    np.testing.assert_allclose(tr.grad_norm[0], np.sqrt(12.0), rtol=1e-6)
    # later entries: rerun k steps and measure there
    for k in (1, 3):
        zk = langevin(logp, z0, key, step_size=0.3, num_steps=k)
        np.testing.assert_allclose(tr.log_prob[k], np.mean(logp(zk)), rtol=1e-5)
        np.testing.assert_allclose(tr.grad_norm[k], np.mean(np.linalg.norm(zk, axis=1)), rtol=1e-5)
    # unrolling changes nothing
    z_unrolled = langevin(logp, z0, key, step_size=0.3, num_steps=4, unroll=0)
    np.testing.assert_allclose(z_unrolled, z, rtol=1e-6)


def test_zero_steps_is_identity_and_bad_keys_are_rejected():
    z0 = jnp.ones((3, 2))
    np.testing.assert_array_equal(
        langevin(lambda z: -jnp.sum(z, 1), z0, jax.random.key(0), step_size=1.0, num_steps=0), z0
    )
    with pytest.raises(ValueError, match="one key per chain"):
        langevin(
            lambda z: -jnp.sum(z, 1),
            z0,
            jax.random.split(jax.random.key(0), 4),
            step_size=1.0,
            num_steps=1,
        )
    with pytest.raises(ValueError, match="batch dimension"):
        langevin(
            lambda z: -jnp.sum(z[0], 1),
            (z0, jnp.ones((4, 2))),
            jax.random.key(0),
            step_size=1.0,
            num_steps=1,
        )


def test_per_chain_step_sizes_of_shape_b_equal_separate_chains():
    """A ``(B,)`` step size runs chain b with its own step: the same as B one-chain runs (hand update)."""
    key = jax.random.key(5)
    z0 = jnp.array([[0.3, -1.2, 0.1], [2.0, 0.5, -0.4]])
    s = jnp.array([0.1, 0.6])
    logp = lambda z: -0.5 * jnp.sum(z**2, 1)
    z1 = langevin(logp, z0, key, step_size=s, num_steps=1)
    noise = gaussian_like(jax.random.fold_in(as_typed_key(key), 0), z0)
    expected = z0 + 0.5 * (s**2)[:, None] * (-z0) + s[:, None] * noise
    np.testing.assert_allclose(z1, expected, rtol=1e-6, atol=1e-6)


def _dense1_head(z):
    """An energy network's head left as ``Dense(1)``: ``(B, 1)``."""
    return -0.5 * jnp.sum(z**2, axis=1, keepdims=True)


@pytest.mark.parametrize(
    "log_prob, message",
    [
        (_dense1_head, r"shape \(4,\); it returned shape \(4, 1\).*Dense\(1\) head"),
        (lambda z: -0.5 * jnp.sum(z**2), r"returned shape \(\) .*do not sum or average over the batch"),
        (lambda z: -0.5 * z**2, r"returned shape \(4, 3\)"),
        (lambda z: -0.5 * jnp.sum(z**2, 1) + 0j, r"dtype complex64 \(a log-density must be real\)"),
    ],
)
def test_a_log_density_of_the_wrong_shape_or_type_is_named(log_prob, message):
    with pytest.raises(ValueError, match=message):
        langevin(log_prob, jnp.ones((4, 3)), jax.random.key(0), step_size=0.1, num_steps=2)


def test_ebm_log_prior_refuses_a_dense1_head_that_would_broadcast_to_b_by_b():
    from latentebm_jax import ebm_log_prior

    with pytest.raises(
        ValueError, match=r"neg_energy_fn must return .* shape \(4,\); it returned shape \(4, 1\)"
    ):
        ebm_log_prior(_dense1_head, jnp.ones((4, 3)))
    assert ebm_log_prior(lambda z: _dense1_head(z)[:, 0], jnp.ones((4, 3))).shape == (4,)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"z0": jnp.float32(1.0)},
            ValueError,
            r"leading batch dimension, shape \(B, ...\); got a leaf of shape \(\)",
        ),
        ({"key": 0}, TypeError, r"key must be a PRNG key such as jax.random.key\(0\); got the integer 0"),
        ({"key": jnp.arange(2)}, TypeError, r"key must be a PRNG key .* got dtype int32, shape \(2,\)"),
        (
            {"step_size": jnp.ones(3)},
            ValueError,
            r"step_size of shape \(3,\) does not fit the latent leaf of shape \(4, 2\)",
        ),
        ({"step_size": (0.1, 0.2)}, ValueError, r"step_size of shape \(2,\) does not fit"),
        ({"step_size": 0.1j}, ValueError, r"step_size must be real; got dtype complex"),
        ({"num_steps": 2.5}, TypeError, r"num_steps must be a Python int; got 2.5"),
    ],
)
def test_unclear_arguments_get_one_sentence_naming_what_was_passed(kwargs, error, message):
    args = {"z0": jnp.ones((4, 2)), "key": jax.random.key(0), "step_size": 0.1, "num_steps": 1, **kwargs}
    logp = lambda z: -0.5 * jnp.sum(jnp.reshape(z**2, (jnp.shape(z)[0], -1)) if jnp.ndim(z) else z**2, -1)
    with pytest.raises(error, match=message):
        langevin(logp, args["z0"], args["key"], step_size=args["step_size"], num_steps=args["num_steps"])


def test_a_traced_num_steps_says_to_make_it_static():
    z0 = jnp.ones((2, 2))

    @jax.jit
    def run(n):
        return langevin(lambda z: -jnp.sum(z**2, 1), z0, jax.random.key(0), step_size=0.1, num_steps=n)

    with pytest.raises(TypeError, match=r"num_steps must be a Python int: .* static_argnames"):
        run(3)


def test_a_step_size_pytree_unlike_the_latents_is_named():
    z0 = (jnp.ones((4, 2)), jnp.ones((4, 3)))
    logp = lambda z: -0.5 * (jnp.sum(z[0] ** 2, 1) + jnp.sum(z[1] ** 2, 1))
    with pytest.raises(ValueError, match=r"step_size has structure .* does not match the latents'"):
        langevin(logp, z0, jax.random.key(0), step_size=(0.1, 0.2, 0.3), num_steps=1)
    with pytest.raises(ValueError, match=r"step_size has structure .* does not match the latents'"):
        langevin(logp, z0, jax.random.key(0), step_size={"a": 0.1, "b": 0.2}, num_steps=1)
