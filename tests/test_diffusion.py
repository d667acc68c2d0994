"""ũ-space diffusion (ICML 2024): the z ↔ u transform, the schedule, the forward kernel, the conditional
density, and learning on a toy mixture against the marginal EBM."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latentebm_jax import diffusion as dif
from latentebm_jax.langevin import langevin
from latentebm_jax.nets.energy import LayerwiseEnergy, TimeConditionedEnergy, timestep_embedding

D1, D2 = 3, 2  # bottom, top


def two_layer_conditional(dtype=jnp.float32):
    """``p(z_1 | z_2) = N(W z_2 + tanh(z_2) c, (exp(0.5 tanh(V z_2)) + 0.1)²)``, ``p(z_2) = N(0, I)``."""
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(D2, D1)), dtype)
    v = jnp.asarray(rng.normal(size=(D2, D1)), dtype)
    c = jnp.asarray(rng.normal(size=(D2, D1)), dtype)

    def conditional(i, z_above):
        if i == 1:
            return jnp.zeros((), dtype), jnp.ones((), dtype)
        (z2,) = z_above
        return z2 @ w + jnp.tanh(z2) @ c, jnp.exp(0.5 * jnp.tanh(z2 @ v)) + 0.1

    return conditional


def test_transform_inverts_and_log_det_matches_autodiff():
    with jax.enable_x64(True):
        cond = two_layer_conditional(jnp.float64)
        rng = np.random.default_rng(1)
        u = (jnp.asarray(rng.normal(size=(4, D1))), jnp.asarray(rng.normal(size=(4, D2))))
        z = dif.u_to_z(cond, u)
        back = dif.z_to_u(cond, z)
        for a, b in zip(u, back):
            np.testing.assert_allclose(a, b, atol=1e-12)
        np.testing.assert_allclose(dif.u_to_z(cond, dif.z_to_u(cond, z))[0], z[0], atol=1e-12)

        def flat_t(v):  # one example, flattened
            zz = dif.u_to_z(cond, (v[None, :D1], v[None, D1:]))
            return jnp.concatenate([zz[0][0], zz[1][0]])

        log_det = dif.log_det_jacobian(cond, u)
        for b in range(4):
            v = jnp.concatenate([u[0][b], u[1][b]])
            jac = jax.jacfwd(flat_t)(v)
            np.testing.assert_allclose(log_det[b], np.linalg.slogdet(np.asarray(jac))[1], atol=1e-10)


def test_pushforward_matches_ancestral_sampling_and_density():
    """z̃ = T(ũ), ũ ~ N(0, I), has the ancestral sampler's moments; log p(z̃) is the chain rule's."""
    cond = two_layer_conditional()
    n = 40000
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    u = (jax.random.normal(k1, (n, D1)), jax.random.normal(k2, (n, D2)))
    z = jnp.concatenate(dif.u_to_z(cond, u), axis=1)
    # ancestral sampling with other noise: z_2 ~ N(0, I), then z_1 ~ p(z_1 | z_2)
    z2 = jax.random.normal(k3, (n, D2))
    m, s = cond(0, (z2,))
    z1 = m + s * jax.random.normal(jax.random.fold_in(k3, 1), (n, D1))
    ref = jnp.concatenate([z1, z2], axis=1)
    np.testing.assert_allclose(jnp.mean(z, 0), jnp.mean(ref, 0), atol=0.06)
    np.testing.assert_allclose(jnp.cov(z.T), jnp.cov(ref.T), atol=0.12)
    # the change-of-variables density equals log p(z_2) + log p(z_1 | z_2)
    zz = (z1[:8], z2[:8])
    direct = (
        -0.5 * jnp.sum(z2[:8] ** 2, 1)
        - D2 * 0.5 * np.log(2 * np.pi)
        + jnp.sum(-0.5 * ((z1[:8] - m[:8]) / s[:8]) ** 2 - jnp.log(s[:8]) - 0.5 * np.log(2 * np.pi), 1)
    )
    np.testing.assert_allclose(dif.prior_log_prob_z(cond, zz), direct, rtol=1e-5, atol=1e-4)


def test_schedule_matches_the_authors_values():
    s = dif.noise_schedule(3)
    np.testing.assert_array_equal(s.index, [0, 250, 500, 999])
    np.testing.assert_allclose(s.a, [0.99995, 0.72213, 0.38627, 0.02278], atol=1e-5)
    np.testing.assert_allclose(s.sigma, [0.01000, 0.69175, 0.92239, 0.99974], atol=1e-5)
    np.testing.assert_allclose(s.a_bar, [0.99995, 0.72210, 0.27892, 0.00635], atol=1e-5)
    np.testing.assert_allclose(s.sigma_bar, [0.01000, 0.69179, 0.96031, 0.99998], atol=1e-5)
    six = dif.noise_schedule(6)
    np.testing.assert_array_equal(six.index, [0, 100, 200, 300, 400, 500, 999])
    np.testing.assert_allclose(six.a[1:6], [0.94617, 0.85629, 0.77480, 0.70092, 0.63396], atol=1e-5)
    assert float(six.a_bar[-1]) < 0.01 and float(s.a_bar[-1]) < 0.01  # ≈ 0 at T
    np.testing.assert_allclose(s.a**2 + s.sigma**2, 1.0, atol=1e-6)
    # the authors' CIFAR-10 Langevin variances s_t for b = 3e-5
    np.testing.assert_allclose(dif.langevin_step_sizes(s, 3e-5), [1.44e-5, 1.77e-3, 2.88e-3], rtol=0.01)
    with pytest.raises(ValueError, match="T >= 2"):
        dif.noise_schedule(1)


def test_forward_pair_has_the_kernel_moments():
    s = dif.noise_schedule(3)
    n = 50000
    u0 = (jnp.full((n, 1), 2.0),)
    t = jnp.asarray(np.arange(n) % 3, jnp.int32)
    u_t, u_next = dif.q_sample_pair(s, u0, t, jax.random.split(jax.random.key(3), n))
    for step in range(3):
        sel = np.asarray(t) == step
        a_t, a_n = np.asarray(u_t[0])[sel, 0], np.asarray(u_next[0])[sel, 0]
        np.testing.assert_allclose(a_t.mean(), 2.0 * float(s.a_bar[step]), atol=0.02)
        np.testing.assert_allclose(a_t.std(), float(s.sigma_bar[step]), atol=0.02)
        np.testing.assert_allclose(a_n.mean(), 2.0 * float(s.a_bar[step + 1]), atol=0.02)
        np.testing.assert_allclose(a_n.std(), float(s.sigma_bar[step + 1]), atol=0.02)
        resid = a_n - float(s.a[step + 1]) * a_t  # the kernel's noise, independent of u_t
        np.testing.assert_allclose(resid.std(), float(s.sigma[step + 1]), atol=0.02)
        assert abs(np.corrcoef(resid, a_t)[0, 1]) < 0.03


def test_conditional_log_density_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        cond = two_layer_conditional(jnp.float64)
        sched = dif.noise_schedule(3)
        sched = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, sched)
        rng = np.random.default_rng(2)
        wz = jnp.asarray(rng.normal(size=(D1 + D2,)))

        def neg_energy(z, t):
            flat = jnp.concatenate(z, axis=1)
            return jnp.sin(flat @ wz) * (1.0 + t) + 0.1 * jnp.sum(flat**2, 1)

        to_z = lambda u: dif.u_to_z(cond, u)
        u = (jnp.asarray(rng.normal(size=(3, D1))), jnp.asarray(rng.normal(size=(3, D2))))
        u_next = (jnp.asarray(rng.normal(size=(3, D1))), jnp.asarray(rng.normal(size=(3, D2))))
        t = jnp.asarray([0, 1, 2])
        for keep in (True, False):
            f = functools.partial(
                lambda uu, keep: dif.conditional_log_density(
                    neg_energy, to_z, sched, uu, u_next, t, keep_last_kernel=keep
                ),
                keep=keep,
            )
            grad = jax.grad(lambda uu, f=f: jnp.sum(f(uu)))(u)
            eps = 1e-6
            for layer, d in ((0, D1), (1, D2)):
                for j in range(d):
                    bump = jnp.zeros((3, d)).at[:, j].set(eps)
                    up = tuple(x + bump if i == layer else x for i, x in enumerate(u))
                    dn = tuple(x - bump if i == layer else x for i, x in enumerate(u))
                    fd = (f(up) - f(dn)) / (2 * eps)
                    np.testing.assert_allclose(grad[layer][:, j], fd, rtol=1e-6, atol=1e-7)
        # the kernel term is Eq. 13's quadratic, dropped only at t = T−1 by keep_last_kernel=False
        diff = dif.conditional_log_density(
            neg_energy, to_z, sched, u, u_next, t
        ) - dif.conditional_log_density(neg_energy, to_z, sched, u, u_next, t, keep_last_kernel=False)
        kernel = dif.kernel_log_prob(sched, u, u_next, t)
        np.testing.assert_allclose(diff, [0.0, 0.0, kernel[2]], atol=1e-12)


def test_time_conditioned_energies_shapes_and_time_dependence():
    e = timestep_embedding(jnp.asarray([0, 1, 2]), 128)
    assert e.shape == (3, 128)
    np.testing.assert_allclose(e[0, :64], 1.0)  # cos(0) first
    np.testing.assert_allclose(e[0, 64:], 0.0)
    # RBG keys and no spectral norm: a fifth of the compile time (the spectral-norm conv trunk is run by
    # the slow NVAE stage-2 test)
    key = jax.random.key(0, impl="rbg")
    z = (jnp.ones((2, 3)), jnp.ones((2, 8, 8, 4)))
    net = LayerwiseEnergy(num_layers=2, hidden=16, num_blocks=2, out_dims=(1, 5), spectral_norm=False)
    variables = jax.jit(net.init)(key, z, jnp.zeros((2,), jnp.int32))  # one program, not op by op
    outs = jax.jit(net.apply)(variables, z, jnp.asarray([0, 2]))
    assert outs[0].shape == (2, 1) and outs[1].shape == (2, 5)
    assert not np.allclose(outs[0][0], outs[0][1])  # same z, different t
    single = TimeConditionedEnergy(hidden=8)
    p = jax.jit(single.init)(key, jnp.ones((1, 2)), jnp.zeros((1,), jnp.int32))
    with pytest.raises(ValueError, match="latent layer"):
        single.apply(p, jnp.ones((1, 2, 2)), jnp.zeros((1,), jnp.int32))


def test_reverse_diffusion_recovers_mode_weights_the_marginal_chain_misses():
    """A 2-D mixture behind an identity backbone, with the *exact* energies: ``F(u, t) = log q_t(u) −
    log N(u; 0, I)`` where ``q_t`` is the mixture diffused to step ``t`` (closed form). Algorithm 2 (3 × 30
    steps) reproduces the unequal mode weights; the marginal chain from noise (Eq. 8, 90 steps) lands in the
    mode whose basin it starts in and returns near-equal weights — the sampling burden the paper's diffusion
    scheme removes (Sec. 3.2). Distance: total variation between mode frequencies, and the mean distance to
    the nearest mode centre (≈ 0.25 for the target)."""
    w = jnp.asarray([0.55, 0.25, 0.15, 0.05])
    mu = 3.0 * jnp.asarray([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    sd = 0.2
    sched = dif.noise_schedule(3)

    def neg_energy(z, t):
        (u,) = z
        ab, sb = sched.a_bar[t], sched.sigma_bar[t]
        var = (ab**2 * sd**2 + sb**2)[:, None]
        d = u[:, None, :] - ab[:, None, None] * mu[None]
        log_q = jax.nn.logsumexp(
            jnp.log(w)[None] - 0.5 * jnp.sum(d**2, -1) / var - jnp.log(2 * jnp.pi * var), -1
        )
        return log_q + 0.5 * jnp.sum(u**2, 1)

    def distances(x):
        dist = jnp.linalg.norm(x[:, None] - mu[None], axis=-1)
        freq = np.bincount(np.asarray(jnp.argmin(dist, 1)), minlength=4) / x.shape[0]
        return 0.5 * float(np.abs(freq - np.asarray(w)).sum()), float(jnp.mean(jnp.min(dist, 1)))

    n = 2000
    keys = jax.random.split(jax.random.key(0), n)
    u_T = (jax.random.normal(jax.random.key(1), (n, 2)),)
    identity = lambda u: u
    settings = dif.ReverseSettings(step=jnp.sqrt(dif.langevin_step_sizes(sched, 1e-2)), num_steps=30)
    reverse = dif.reverse_sample(neg_energy, identity, sched, settings, u_T, keys)[0]
    marginal = langevin(
        lambda u: dif.marginal_log_density(neg_energy, identity, u), u_T, keys, step_size=0.1, num_steps=90
    )[0]
    tv_rev, near_rev = distances(reverse)
    tv_marg, near_marg = distances(marginal)
    assert tv_rev < 0.15 < 0.25 < tv_marg, (tv_rev, tv_marg)
    assert near_rev < 0.5 and near_marg < 0.5  # both reach the modes; only the weights differ


def test_fixed_layers_clean_or_diffused_to_each_steps_noise_level():
    """Hierarchical sampling with a fixed layer: ``"clean"`` conditions every reverse step on the clean
    value; ``"diffused"`` on the forward trajectory ``u_k = a_k u_{k-1} + σ_k ε_k`` of that layer (its
    marginal is ``N(ā_k u_0, σ̄_k² I)``, checked here), written out step by step with
    :func:`conditional_step`. The fixed layer comes out clean either way."""
    sched = dif.noise_schedule(3)
    settings = dif.ReverseSettings(step=jnp.sqrt(dif.langevin_step_sizes(sched, 1e-2)), num_steps=5)

    def neg_energy(z, t):  # couples the layers, so the fixed layer's noise level matters
        return -0.5 * jnp.sum((z[0] - z[1]) ** 2, -1) * (1.0 + t)

    identity = lambda u: u
    n = 4000
    keys = jax.random.split(jax.random.key(0), n)
    clean = jnp.full((n, 2), 1.5)
    u_T = (jax.random.normal(jax.random.key(1), (n, 2)), clean)
    free = (True, False)
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))

    # the fixed layer's forward trajectory: the kernel's increments are standard normal, independent of
    # the previous state, and the marginals are N(ā_k u_0, σ̄_k² I)
    traj = [v[1] for v in dif.forward_trajectory(sched, u_T, fold(keys, 1_000_003), 3)]
    np.testing.assert_array_equal(traj[0], clean)
    for k in range(1, 4):
        eps = np.asarray((traj[k] - sched.a[k] * traj[k - 1]) / sched.sigma[k])
        np.testing.assert_allclose([eps.mean(), eps.std()], [0.0, 1.0], atol=0.03)
        if k > 1:  # u_0 is constant
            assert abs(np.corrcoef(eps[:, 0], np.asarray(traj[k - 1])[:, 0])[0, 1]) < 0.05
        np.testing.assert_allclose(np.mean(traj[k]), sched.a_bar[k] * 1.5, atol=0.05)
        np.testing.assert_allclose(np.std(traj[k]), sched.sigma_bar[k], rtol=0.05)

    step = functools.partial(dif.conditional_step, neg_energy, identity, sched, settings)
    u = (u_T[0], traj[3])
    for t in (2, 1, 0):
        tt = jnp.full((n,), t, jnp.int32)
        u = step(u, tt, fold(keys, t), init=(u[0], traj[t]), free=free)
    diffused = dif.reverse_sample(
        neg_energy, identity, sched, settings, u_T, keys, free=free, fixed_layers="diffused"
    )
    np.testing.assert_allclose(diffused[0], u[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(diffused[1], clean)

    kept = dif.reverse_sample(neg_energy, identity, sched, settings, u_T, keys, free=free)
    np.testing.assert_array_equal(kept[1], clean)
    assert not np.allclose(kept[0], diffused[0], atol=1e-3)
    with pytest.raises(ValueError, match="fixed_layers"):
        dif.reverse_sample(neg_energy, identity, sched, settings, u_T, keys, free=free, fixed_layers="noisy")
