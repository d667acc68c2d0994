"""ũ-space diffusion for hierarchical latents (Cui & Han, ICML 2024), as pure functions.

A hierarchical Gaussian prior ``p(z̃) = Π_{i<L} N(z_i; μ_i(z_{i+1}), σ_i²(z_{i+1})) · N(z_L; 0, I)`` (Eq. 1)
is the pushforward of ``p_0(ũ) = N(0, I)`` under the re-parameterisation ``z̃ = T(ũ)`` (Sec. 3.1,
App. A.1, Eqs. 15–16): ``z_L = μ_L + σ_L u_L`` and, top-down, ``z_i = μ_i(z_{i+1}) + σ_i(z_{i+1}) · u_i``.
Its Jacobian is block-triangular, so ``log|det J_T(ũ)| = Σ_i Σ log σ_i``.

Latents are tuples of layers, bottom ``z_1`` first (the library's convention); a backbone describes its prior
by ``conditional(i, z_above) -> (mean, std)`` with ``z_above = (z_{i+1}, …, z_L)`` (empty for the top).

Diffusion in ũ-space (Eqs. 6–7, 9–13) with the schedule and sampler of the authors' code
(jcui1224/diffusion-hierarchical-ebm):

* :func:`noise_schedule`: per-step ``a_t``, ``σ_t = √(1−a_t²)``, cumulative ``ā_t``, ``σ̄_t``; index ``t = 0``
  is "diffused once" (``σ̄_0 = 0.01``), ``t = T`` is pure noise (``ā_T ≈ 0.006``);
* :func:`q_sample_pair`: ``u_t = ā_t u_0 + σ̄_t ε₁``, ``u_{t+1} = a_{t+1} u_t + σ_{t+1} ε₂`` (Eq. 7);
* :func:`conditional_log_density`: ``log p(u_t | u_{t+1}) = F(T(u_t), t) − ‖u_t‖²/2 −
  ‖a_{t+1} u_t − u_{t+1}‖²/(2σ²_{t+1})`` up to a constant (Eqs. 9, 13);
* :func:`langevin_step_sizes`: the authors' per-step ``s_t = b · (σ̄_t/σ̄_0) · σ²_{t+1}``;
* :func:`reverse_sample`: Algorithm 2, ``u_T ~ N(0, I)`` then ``K`` Langevin steps for each ``t = T−1 … 0``,
  every chain started at and conditioned on the previous ``u_{t+1}``.

Langevin follows the library's convention (drift ``s²/2``, noise ``s``): the authors' update
``y + (s_t/2)∇log π + √s_t ε`` is our step size ``√s_t``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from latentebm_jax.langevin import batch_size_of, gaussian_like, langevin

Latents = tuple[jax.Array, ...]
ConditionalFn = Callable[[int, Latents], tuple[Any, Any]]
# F(z̃, t) -> (B,): the (negative) energy of the whole latent at per-example diffusion steps t (B,)
NegEnergyFn = Callable[[Latents, jax.Array], jax.Array]


# ----------------------------------------------------------------------------- z <-> u


def u_to_z(conditional: ConditionalFn, u: Sequence[jax.Array]) -> Latents:
    """``z̃ = T(ũ)``: top-down re-parameterisation (App. A.1, Eq. 15)."""
    u = tuple(u)
    z: list[jax.Array | None] = [None] * len(u)
    for i in reversed(range(len(u))):
        mean, std = conditional(i, tuple(z[i + 1 :]))
        z[i] = mean + std * u[i]
    return tuple(z)


def z_to_u(conditional: ConditionalFn, z: Sequence[jax.Array]) -> Latents:
    """``ũ = T⁻¹(z̃)``: ``u_i = (z_i − μ_i(z_{i+1})) / σ_i(z_{i+1})`` along the given path."""
    z = tuple(z)
    out = []
    for i in range(len(z)):
        mean, std = conditional(i, z[i + 1 :])
        out.append((z[i] - mean) / std)
    return tuple(out)


def log_det_jacobian(conditional: ConditionalFn, u: Sequence[jax.Array]) -> jax.Array:
    """``log|det ∂T(ũ)/∂ũ| = Σ_i Σ_d log σ_i(z_{i+1})`` per example, shape ``(B,)`` (Eq. 16)."""
    u = tuple(u)
    z = u_to_z(conditional, u)
    b = batch_size_of(u)
    total = jnp.zeros((b,), jnp.float32)
    for i in range(len(u)):
        _, std = conditional(i, z[i + 1 :])
        total = total + jnp.sum(jnp.broadcast_to(jnp.log(std), u[i].shape).reshape(b, -1), axis=1)
    return total


def prior_log_prob_z(conditional: ConditionalFn, z: Sequence[jax.Array]) -> jax.Array:
    """``log p_β(z̃) = log N(T⁻¹(z̃); 0, I) − log|det J_T(T⁻¹(z̃))|`` (Eq. 16), per example."""
    u = z_to_u(conditional, z)
    return standard_normal_log_prob(u) - log_det_jacobian(conditional, u)


def standard_normal_log_prob(u: Sequence[jax.Array]) -> jax.Array:
    """``log N(ũ; 0, I)`` per example over every layer."""
    total = 0.0
    for leaf in u:
        flat = leaf.reshape(leaf.shape[0], -1)
        total = total - 0.5 * jnp.sum(flat * flat, axis=1) - 0.5 * flat.shape[1] * np.log(2 * np.pi)
    return total


# ----------------------------------------------------------------------------- schedule


@chex.dataclass(frozen=True)
class NoiseSchedule:
    """The ũ-space forward process for ``t = 0 … T`` (arrays of length ``T + 1``, float32).

    ``a[t]``, ``sigma[t]``: the kernel ``q(u_t | u_{t−1}) = N(a_t u_{t−1}, σ_t² I)`` (``a[0]`` maps the
    clean ``u`` to ``t = 0``); ``a_bar``, ``sigma_bar``: ``q(u_t | u) = N(ā_t u, σ̄_t² I)``;
    ``index``: the steps of the underlying 1000-step DDPM schedule.
    """

    a: jax.Array
    sigma: jax.Array
    a_bar: jax.Array
    sigma_bar: jax.Array
    index: jax.Array

    @property
    def num_steps(self) -> int:
        """``T``."""
        return int(self.a.shape[0]) - 1


def noise_schedule(
    num_steps: int = 3, beta_start: float = 1e-4, beta_end: float = 0.02, base_steps: int = 1000
) -> NoiseSchedule:
    """The authors' schedule for ``T = num_steps`` (computed in float64, as the authors'
    jcui1224/diffusion-hierarchical-ebm).

    ``β_k = linspace(β_start, β_end, 1000)``; the kept indices are ``j · ⌊1000 / (2(T−1))⌋`` for
    ``j < T`` (the first half of the DDPM schedule) and ``999`` for ``T``; ``a_j`` is the product of
    ``√(1−β_k)`` between consecutive kept indices. ``T = 3``: ``a = (0.99995, 0.72213, 0.38627, 0.02278)``,
    ``ā_T = 0.00635``.
    """
    if num_steps < 2:
        raise ValueError(f"the authors' schedule needs T >= 2 diffusion steps, got {num_steps}")
    betas = np.linspace(beta_start, beta_end, base_steps, dtype=np.float64)
    stride = base_steps // (2 * (num_steps - 1))
    index = np.array([j * stride for j in range(num_steps)] + [base_steps - 1])
    root = np.sqrt(1.0 - betas)
    a = [root[0]] + [np.prod(root[index[j - 1] + 1 : index[j] + 1]) for j in range(1, num_steps + 1)]
    a = np.asarray(a)
    a_bar = np.cumprod(a)
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    return NoiseSchedule(
        a=f32(a),
        sigma=f32(np.sqrt(1.0 - a**2)),
        a_bar=f32(a_bar),
        sigma_bar=f32(np.sqrt(1.0 - a_bar**2)),
        index=jnp.asarray(index, jnp.int32),
    )


def langevin_step_sizes(schedule: NoiseSchedule, base: float) -> jax.Array:
    """The authors' Langevin variance per training index ``t = 0 … T−1`` (their code's
    ``e_l_step_size`` ``b``):
    ``s_t = b · (σ̄_t / σ̄_0) · σ²_{t+1}``. Our step size (noise std) is ``√s_t``."""
    sb, s = schedule.sigma_bar, schedule.sigma
    return base * (sb[:-1] / sb[0]) * jnp.square(s[1:])


# ----------------------------------------------------------------------------- forward process


def _per_example(v: jax.Array, leaf: jax.Array) -> jax.Array:
    """``(B,)`` values broadcast against a ``(B, ...)`` leaf."""
    return v.reshape((v.shape[0],) + (1,) * (leaf.ndim - 1))


def q_sample(schedule: NoiseSchedule, u0: Latents, t: jax.Array, noise: Latents) -> Latents:
    """``u_t = ā_t u_0 + σ̄_t ε`` for per-example steps ``t`` (B,) (Eq. 7 marginal)."""
    chex.assert_shape(t, (batch_size_of(u0),))
    ab, sb = schedule.a_bar[t], schedule.sigma_bar[t]
    return tuple(_per_example(ab, u) * u + _per_example(sb, u) * e for u, e in zip(u0, noise))


def q_sample_pair(
    schedule: NoiseSchedule, u0: Latents, t: jax.Array, key: jax.Array
) -> tuple[Latents, Latents]:
    """The training pair ``(u_t, u_{t+1})`` for steps ``t ∈ {0 … T−1}`` (B,), independent noises:
    ``u_t = ā_t u_0 + σ̄_t ε₁``, ``u_{t+1} = a_{t+1} u_t + σ_{t+1} ε₂``. ``key``: one key, or one per
    example."""
    k1, k2 = _split_pair(key)
    u_t = q_sample(schedule, u0, t, gaussian_like(k1, u0))
    a, s = schedule.a[t + 1], schedule.sigma[t + 1]
    noise = gaussian_like(k2, u0)
    u_next = tuple(_per_example(a, u) * u + _per_example(s, u) * e for u, e in zip(u_t, noise))
    return u_t, u_next


def _split_pair(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    if key.ndim == 0:
        return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    return fold(key, 0), fold(key, 1)


# ----------------------------------------------------------------------------- reverse process


def kernel_log_prob(schedule: NoiseSchedule, u_t: Latents, u_next: Latents, t: jax.Array) -> jax.Array:
    """``−‖a_{t+1} u_t − u_{t+1}‖² / (2σ²_{t+1})`` per example: ``log q(u_{t+1} | u_t)`` up to a constant."""
    a, s = schedule.a[t + 1], schedule.sigma[t + 1]
    total = 0.0
    for u, un in zip(u_t, u_next):
        r = (_per_example(a, u) * u - un).reshape(u.shape[0], -1)
        total = total - 0.5 * jnp.sum(r * r, axis=1) / jnp.square(s)
    return total


def conditional_log_density(
    neg_energy: NegEnergyFn,
    to_z: Callable[[Latents], Latents],
    schedule: NoiseSchedule,
    u_t: Latents,
    u_next: Latents,
    t: jax.Array,
    *,
    keep_last_kernel: bool = True,
) -> jax.Array:
    """``log p_ω(u_t | u_{t+1})`` up to ``−log Z(u_{t+1})`` (Eq. 9; its gradient is Eq. 13), per example:

        F_ω(T(u_t), t) − ‖u_t‖²/2 − ‖a_{t+1} u_t − u_{t+1}‖² / (2σ²_{t+1}).

    ``keep_last_kernel=False`` drops the kernel term at ``t = T − 1`` as the authors' code does (their top
    step samples the marginal ``∝ exp(F) N(0, I)``; with ``a_T ≈ 0.02`` the term is almost flat anyway).
    """
    chex.assert_shape(t, (batch_size_of(u_t),))
    out = neg_energy(to_z(u_t), t) - 0.5 * _sum_squares(u_t)
    kernel = kernel_log_prob(schedule, u_t, u_next, t)
    if not keep_last_kernel:
        kernel = jnp.where(t + 1 == schedule.num_steps, 0.0, kernel)
    return out + kernel


def marginal_log_density(
    neg_energy: NegEnergyFn, to_z: Callable[[Latents], Latents], u: Latents
) -> jax.Array:
    """``log p_ω(ũ) = F_ω(T(ũ)) − ‖ũ‖²/2`` up to a constant: the marginal EBM prior on ũ-space (Eq. 8),
    evaluated with ``t = 0``."""
    t = jnp.zeros((batch_size_of(u),), jnp.int32)
    return neg_energy(to_z(u), t) - 0.5 * _sum_squares(u)


def _sum_squares(u: Latents) -> jax.Array:
    return sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in u)


def per_example_step_size(step: jax.Array, like: Latents) -> Latents:
    """A step-size pytree for :func:`~latentebm_jax.langevin.langevin`: one value per chain (B,)."""
    return tuple(_per_example(step, leaf) for leaf in like)


@dataclasses.dataclass(frozen=True)
class ReverseSettings:
    """How Algorithm 2 samples: ``K`` Langevin steps per diffusion step with per-step size ``step[t]``
    (our convention: noise std, the authors' ``√s_t``), the kernel at ``T−1`` kept or not, temperature."""

    step: jax.Array  # (T,) step sizes for t = 0 … T−1
    num_steps: int
    keep_last_kernel: bool = True
    temperature: float = 1.0
    unroll: int = 1


def conditional_step(
    neg_energy: NegEnergyFn,
    to_z: Callable[[Latents], Latents],
    schedule: NoiseSchedule,
    settings: ReverseSettings,
    u_next: Latents,
    t: jax.Array,
    keys: jax.Array,
    *,
    init: Latents | None = None,
    free: Sequence[bool] | None = None,
    num_steps: int | None = None,
) -> Latents:
    """Sample ``u_t ~ p_ω(u_t | u_{t+1})`` by short-run Langevin (Algorithm 1 line 6, Algorithm 2 line 3).

    The chain starts at ``init`` (default ``u_{t+1}`` itself, as the authors) with per-example steps ``t``
    (B,) and ``keys`` (one per chain). ``free[i] = False`` holds layer ``i`` at its ``init`` value (it is
    returned unchanged): hierarchical and compositional sampling. With temperature ``τ`` the target is
    ``π^{1/τ²}`` and the step ``τ·s`` (the same drift, noise scaled by ``τ``).
    """
    u_next = tuple(u_next)
    init = u_next if init is None else tuple(init)
    free = (True,) * len(init) if free is None else tuple(free)
    tau = settings.temperature

    def log_target(y_free):
        it = iter(y_free)
        y = tuple(next(it) if f else v for f, v in zip(free, init))
        return (
            conditional_log_density(
                neg_energy, to_z, schedule, y, u_next, t, keep_last_kernel=settings.keep_last_kernel
            )
            / tau**2
        )

    y0 = tuple(v for f, v in zip(free, init) if f)
    step = per_example_step_size(tau * settings.step[t], y0)
    y = langevin(
        log_target,
        y0,
        keys,
        step_size=step,
        num_steps=settings.num_steps if num_steps is None else num_steps,
        unroll=settings.unroll,
    )
    it = iter(y)
    return tuple(next(it) if f else v for f, v in zip(free, init))


def reverse_sample(
    neg_energy: NegEnergyFn,
    to_z: Callable[[Latents], Latents],
    schedule: NoiseSchedule,
    settings: ReverseSettings,
    u_T: Latents,
    keys: jax.Array,
    *,
    start: int | None = None,
    stop: int = 0,
    free: Sequence[bool] | None = None,
    fixed_layers: str = "clean",
) -> Latents:
    """Algorithm 2: from ``u_T`` through ``t = start … stop`` (default ``T−1 … 0``), each ``u_t`` sampled
    from ``p_ω(u_t | u_{t+1})`` started at ``u_{t+1}``. Returns ``u_stop`` (map it to ``z̃`` with
    :func:`u_to_z`).

    Layers with ``free[i] = False`` (hierarchical and compositional sampling) hold the clean value given in
    ``u_T``; how they enter the noisy steps is a choice the paper leaves open:

    * ``fixed_layers="clean"`` (default): the clean value at every step, as the conditioning ``u_{t+1}``
      and as part of ``u_t``;
    * ``"diffused"``: a forward trajectory of the fixed layers, ``u_0 =`` the clean value,
      ``u_k = a_k u_{k−1} + σ_k ε_k`` (Eq. 7's kernel, noise from ``keys``), so that at step ``t`` the
      conditioning holds ``u_{t+1}`` and the sampled state ``u_t`` of that trajectory: every layer at the
      step's noise level. The fixed layers come out clean (``u_0``) either way.
    """
    if fixed_layers not in FIXED_LAYERS:
        raise ValueError(f"fixed_layers = {fixed_layers!r} is not one of {FIXED_LAYERS}")
    b = batch_size_of(u_T)
    start = schedule.num_steps - 1 if start is None else start
    u = tuple(u_T)
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    free = (True,) * len(u) if free is None else tuple(free)
    trajectory = None
    if fixed_layers == "diffused" and not all(free):
        trajectory = forward_trajectory(schedule, u, fold(keys, _FIXED_NOISE), start + 1)
        u = _with_fixed(u, trajectory[start + 1], free)
    for t in range(start, stop - 1, -1):
        tt = jnp.full((b,), t, jnp.int32)
        init = None if trajectory is None else _with_fixed(u, trajectory[t], free)
        u = conditional_step(neg_energy, to_z, schedule, settings, u, tt, fold(keys, t), init=init, free=free)
    return u


FIXED_LAYERS = ("clean", "diffused")
_FIXED_NOISE = 1_000_003  # stream of the fixed layers' forward noise (apart from the steps' streams)


def forward_trajectory(schedule: NoiseSchedule, u0: Latents, keys: jax.Array, upto: int) -> list[Latents]:
    """``[u_0, u_1, …, u_upto]`` with ``u_k = a_k u_{k−1} + σ_k ε_k`` (the forward kernel ``q(u_k |
    u_{k−1})`` of Eq. 7, one key per example)."""
    out = [tuple(u0)]
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    for k in range(1, upto + 1):
        noise = gaussian_like(fold(keys, k), out[-1])
        out.append(tuple(schedule.a[k] * v + schedule.sigma[k] * e for v, e in zip(out[-1], noise)))
    return out


def _with_fixed(u: Latents, fixed: Latents, free: Sequence[bool]) -> Latents:
    return tuple(v if f else w for f, v, w in zip(free, u, fixed))
