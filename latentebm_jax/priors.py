"""Log-densities of latent-space EBM models, as pure functions of the latents.

Sign convention: ``f(z)`` is the *negative* energy (higher is more likely); an EBM-tilted prior is

    log p_α(z) = f_α(z) + log p_0(z) − log Z(α),      p_0(z) = N(z; 0, σ_p² I)      (LEBM Eq. 2)

and ``log Z(α)`` is dropped (it does not depend on z). Latents are pytrees whose leaves share a leading
batch dimension; every function here returns one value per example, shape ``(B,)``, summing over all
other dimensions and all leaves (so the same function serves one layer and joint layers ``(z_1, …, z_L)``).

Gaussian terms keep their normalising constants, so on Gaussian targets these are exact log-densities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from latentebm_jax.langevin import batch_size_of, check_log_density

PyTree = Any
NegEnergyFn = Callable[[PyTree], jax.Array]
GeneratorFn = Callable[[PyTree], jax.Array]


def _per_example_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


def gaussian_log_prob(z: PyTree, sigma: float = 1.0, mean: PyTree | None = None) -> jax.Array:
    """``log N(z; mean, σ² I)`` per example, summed over every non-batch dimension and every leaf."""
    leaves = jax.tree.leaves(z)
    means = [None] * len(leaves) if mean is None else jax.tree.leaves(mean)
    total = 0.0
    for leaf, mu in zip(leaves, means):
        d = math.prod(leaf.shape[1:])
        diff = leaf if mu is None else leaf - mu
        total = total + (
            -0.5 * _per_example_sum(jnp.square(diff)) / sigma**2
            - d * (jnp.log(sigma) + 0.5 * math.log(2.0 * math.pi))
        )
    return total


def ebm_log_prior(neg_energy_fn: NegEnergyFn, z: PyTree, sigma_p: float = 1.0) -> jax.Array:
    """EBM-tilted prior ``log p_α(z) = f_α(z) + log N(z; 0, σ_p² I)`` up to ``−log Z(α)`` (LEBM Eq. 2).

    ``neg_energy_fn(z) -> (B,)`` is ``f_α``; for joint hierarchical priors it takes the whole tuple of layers.
    Any other shape (a ``Dense(1)`` head's ``(B, 1)`` would broadcast to ``(B, B)``) is a ``ValueError``.
    """
    f = neg_energy_fn(z)
    check_log_density(f, batch_size_of(z), "neg_energy_fn")
    return f + gaussian_log_prob(z, sigma_p)


def gaussian_log_likelihood(x: jax.Array, x_mean: jax.Array, sigma: float) -> jax.Array:
    """``log N(x; g(z), σ² I_D)`` per example (LEBM Eq. 3): ``−‖x − g(z)‖²/(2σ²) − D log(σ√(2π))``."""
    if x.shape != x_mean.shape:
        raise ValueError(f"data shape {x.shape} and generator output shape {x_mean.shape} differ")
    return gaussian_log_prob(x, sigma, mean=x_mean)


def lebm_log_joint(
    neg_energy_fn: NegEnergyFn,
    generator_fn: GeneratorFn,
    z: PyTree,
    x: jax.Array,
    *,
    sigma: float,
    sigma_p: float = 1.0,
) -> jax.Array:
    """``log p_θ(x, z) = log p_α(z) + log p_β(x|z)`` up to ``−log Z(α)`` (LEBM Eq. 1–3).

    As a function of ``z`` this is the unnormalised LEBM posterior
    ``log p_θ(z|x) ∝ f_α(z) + log N(z; 0, σ_p² I) − ‖x − g_β(z)‖²/(2σ²)``, the target of posterior
    Langevin; at posterior samples it is the anomaly score of LEBM Sec. 3.4.
    """
    return ebm_log_prior(neg_energy_fn, z, sigma_p) + gaussian_log_likelihood(x, generator_fn(z), sigma)


lebm_log_posterior = lebm_log_joint
"""Alias of :func:`lebm_log_joint`: the posterior ``p_θ(z|x)`` up to its normaliser ``p_θ(x)``."""
