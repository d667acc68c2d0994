"""Training losses, as batch means of per-example terms (gradients are taken of these).

LEBM (Pang et al. 2020, Algorithm 1):

* generator: the learning gradient Eq. 11 is ``E_{p̃(z|x)}[∇_β log p_β(x|z)]``, i.e. descend
  ``‖x − g_β(z⁺)‖² / (2σ²)`` at posterior samples ``z⁺`` (:func:`gaussian_reconstruction_loss`). The authors'
  code drops the ``1/(2σ²)`` factor (``scale="sum_squared"``); under Adam the two differ only through ε.
* EBM: Eq. 10 ascends ``E_{p̃(z|x)}[f_α(z)] − E_{p̃_α(z)}[f_α(z)]``, so the loss is
  ``mean f_α(z⁻) − mean f_α(z⁺)`` (:func:`contrastive_ebm_loss`). The official code writes the same loss with
  the energy ``E = −f``: ``mean E(z⁺) − mean E(z⁻)``.

Gaussian inference terms (ICCV 2023, BiDVL): log-densities and KLs of diagonal Gaussians. The losses only one
method uses live with that method (BiDVL's in ``methods/bidvl.py``).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp


def sum_squared_error(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Per-example ``‖x − x̂‖²`` summed over all non-batch dimensions, shape ``(B,)``."""
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {x_hat.shape}")
    return jnp.sum(jnp.square(x - x_hat).reshape(x.shape[0], -1), axis=1)


def gaussian_reconstruction_loss(
    x: jax.Array,
    x_hat: jax.Array,
    sigma: float,
    scale: Literal["gaussian_nll", "sum_squared"] = "gaussian_nll",
) -> jax.Array:
    """Batch mean of ``‖x − x̂‖²/(2σ²)`` (``gaussian_nll``, the paper's −log p_β(x|z) up to a constant)
    or of ``‖x − x̂‖²`` (``sum_squared``, the official LEBM code's generator loss)."""
    sse = sum_squared_error(x, x_hat)
    if scale == "gaussian_nll":
        return jnp.mean(sse) / (2.0 * sigma**2)
    if scale == "sum_squared":
        return jnp.mean(sse)
    raise ValueError(f"unknown reconstruction scale {scale!r}; allowed: 'gaussian_nll', 'sum_squared'")


def contrastive_ebm_loss(f_pos: jax.Array, f_neg: jax.Array) -> jax.Array:
    """``mean f(z⁻) − mean f(z⁺)``: descending it follows LEBM Eq. 10 (``f`` is the negative energy)."""
    return jnp.mean(f_neg) - jnp.mean(f_pos)


# ----------------------------------------------------------------------------- Gaussian inference (ICCV 2023)


def diag_gaussian_log_prob(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """``log N(z; μ, diag exp(ℓ))`` per example, shape ``(B,)``, constants included."""
    if not (z.shape == mean.shape == log_var.shape):
        raise ValueError(f"shapes differ: z {z.shape}, mean {mean.shape}, log-variance {log_var.shape}")
    per = -0.5 * (jnp.square(z - mean) * jnp.exp(-log_var) + log_var + jnp.log(2.0 * jnp.pi))
    return jnp.sum(per.reshape(z.shape[0], -1), axis=1)


def gaussian_kl_to_standard(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Closed-form ``KL(N(μ, diag exp(ℓ)) ‖ N(0, I))`` per example: ``½ Σ (μ² + e^ℓ − 1 − ℓ)``."""
    if mean.shape != log_var.shape:
        raise ValueError(f"shapes differ: mean {mean.shape}, log-variance {log_var.shape}")
    per = 0.5 * (jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var)
    return jnp.sum(per.reshape(mean.shape[0], -1), axis=1)


def gaussian_kl(
    mean_q: jax.Array, log_var_q: jax.Array, mean_p: jax.Array, log_var_p: jax.Array
) -> jax.Array:
    """Closed-form ``KL(N(μ_q, diag e^{ℓ_q}) ‖ N(μ_p, diag e^{ℓ_p}))`` per example (the latent attack's
    objective, Gondim-Ribeiro et al. 2018)."""
    per = 0.5 * (
        log_var_p - log_var_q + (jnp.exp(log_var_q) + jnp.square(mean_q - mean_p)) * jnp.exp(-log_var_p) - 1.0
    )
    return jnp.sum(per.reshape(mean_q.shape[0], -1), axis=1)
