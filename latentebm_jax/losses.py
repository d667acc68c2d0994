"""Training losses, as batch means of per-example terms (gradients are taken of these).

LEBM (Pang et al. 2020, Algorithm 1):

* generator: the learning gradient Eq. 11 is ``E_{p̃(z|x)}[∇_β log p_β(x|z)]``, i.e. descend
  ``‖x − g_β(z⁺)‖² / (2σ²)`` at posterior samples ``z⁺`` (:func:`gaussian_reconstruction_loss`). The authors'
  code drops the ``1/(2σ²)`` factor (``scale="sum_squared"``); under Adam the two differ only through ε.
* EBM: Eq. 10 ascends ``E_{p̃(z|x)}[f_α(z)] − E_{p̃_α(z)}[f_α(z)]``, so the loss is
  ``mean f_α(z⁻) − mean f_α(z⁺)`` (:func:`contrastive_ebm_loss`). The official code writes the same loss with
  the energy ``E = −f``: ``mean E(z⁺) − mean E(z⁻)``.

BiDVL (Kan et al. 2022, offset gradients Eqs. 13–14, Sec. 4.4, Eq. 15) at the end of this module, written
with the negative energy ``f = −E_ψ′`` like everything here.
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


def sampled_kl_to_standard(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """One-sample estimate ``log q(z|x) − log N(z; 0, I)`` at a reparameterised ``z ~ q`` (the ICCV 2023
    code's KL term), per example. Its expectation is :func:`gaussian_kl_to_standard`."""
    standard = -0.5 * (jnp.square(z) + jnp.log(2.0 * jnp.pi))
    return diag_gaussian_log_prob(z, mean, log_var) - jnp.sum(standard.reshape(z.shape[0], -1), axis=1)


def gaussian_kl(
    mean_q: jax.Array, log_var_q: jax.Array, mean_p: jax.Array, log_var_p: jax.Array
) -> jax.Array:
    """Closed-form ``KL(N(μ_q, diag e^{ℓ_q}) ‖ N(μ_p, diag e^{ℓ_p}))`` per example (the latent attack's
    objective, Gondim-Ribeiro et al. 2018)."""
    per = 0.5 * (
        log_var_p - log_var_q + (jnp.exp(log_var_q) + jnp.square(mean_q - mean_p)) * jnp.exp(-log_var_p) - 1.0
    )
    return jnp.sum(per.reshape(mean_q.shape[0], -1), axis=1)


# ----------------------------------------------------------------------------- BiDVL losses (CVPR 2022)

BIAS_TERMS = ("none", "sigmoid", "self_normalized")
LATENT_LOSSES = ("nll", "code")


def bidvl_upper_loss(f_data: jax.Array, f_gen: jax.Array) -> jax.Array:
    """Upper level, Eq. 14: ``mean E(v) − mean E(v̂)`` over data ``v`` and generated ``v̂ = G(ĥ)``, i.e.
    ``mean f(v̂) − mean f(v)`` with ``f = −E`` (the same form as :func:`contrastive_ebm_loss`)."""
    return jnp.mean(f_gen) - jnp.mean(f_data)


def importance_weights(f_data: jax.Array, basic_ratio: float, bias: str = "none") -> jax.Array:
    """Per-example importance ratio ``r(v)`` of the weighted VAE term (Eq. 15), without gradient.

    ``r(v) ≈ r′ · exp(−E(v)) / E_q[exp(−E(v))]`` (Eq. 15) with the basic ratio ``r′`` and a bias term:
    ``none``: 1 (the paper's final choice, Sec. 5.4, and the authors' code); ``sigmoid``: the paper's
    surrogate ``Sigmoid(E_q[E(v)] − E(v)) = σ(f(v) − mean f)``; ``self_normalized``: Eq. 15's bias term
    estimated on the batch, ``exp(f(v)) / mean exp(f)``. Shape ``(B,)``.
    """
    f = jax.lax.stop_gradient(f_data)
    if bias == "none":
        return jnp.full_like(f, basic_ratio)
    if bias == "sigmoid":
        return basic_ratio * jax.nn.sigmoid(f - jnp.mean(f))
    if bias == "self_normalized":
        return basic_ratio * f.shape[0] * jax.nn.softmax(f)
    raise ValueError(f"unknown importance-ratio bias {bias!r}; allowed: {BIAS_TERMS}")


def weighted_vae_loss(
    x: jax.Array,
    x_rec: jax.Array,
    mean: jax.Array,
    log_var: jax.Array,
    weights: jax.Array,
    sigma: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The importance-weighted VAE term of Eqs. 11/13, ``∇_ω D_r(v)(q(v) q_ω1(h|v) ‖ p_ω2(v, h))``:

        mean_b r(v_b) [ ‖v_b − G(h_b)‖² / (2σ²) + KL(q_ω1(h|v_b) ‖ N(0, I)) ],   h_b ~ q_ω1(h|v_b),

    with the Gaussian likelihood ``N(v; G(h), σ² I)`` standing in for the implicit ``p_ω2(v|h)`` (constants
    dropped) and the closed-form KL. The authors' code uses the plain sum of squares, ``σ² = 1/2``.
    Returns the loss and the unweighted batch means ``rec`` (sum of squares) and ``kl``.
    """
    sse = sum_squared_error(x, x_rec)
    kl = gaussian_kl_to_standard(mean, log_var)
    if weights.shape != sse.shape:
        raise ValueError(f"weights must have shape {sse.shape}, got {weights.shape}")
    loss = jnp.mean(weights * (sse / (2.0 * sigma**2) + kl))
    return loss, {"rec": jnp.mean(sse), "kl": jnp.mean(kl)}


def generator_energy_loss(f_gen: jax.Array) -> jax.Array:
    """``E_{p_ω2}[E_ψ′(v)]`` of Eqs. 11/13 (the generator chases the EBM): ``−mean f(G(ĥ))``."""
    return -jnp.mean(f_gen)


def latent_reconstruction_loss(
    h: jax.Array, mean: jax.Array, log_var: jax.Array, form: str = "nll"
) -> jax.Array:
    """The latent reconstruction ``D_KL(p_ω2(v, h) ‖ q_ω1(h|v))`` of Eqs. 11/13 up to ω-free terms: the
    negative log-likelihood of the generator's latent ``ĥ`` under the inference model at ``v̂ = G(ĥ)``.

    ``nll`` (the paper): ``mean_b −log N(ĥ_b; μ(v̂_b), diag e^{ℓ(v̂_b)})``, constants included.
    ``code`` (the authors' code): ``mean_b ‖μ(v̂_b) − ĥ_b‖² / d``, a unit-variance NLL without ``ℓ``,
    scaled by ``1/d`` (``d`` = latent dimension); their not-offset variant passes a reparameterised
    sample of ``q(h|v̂)`` as ``mean``.
    """
    if form == "nll":
        return -jnp.mean(diag_gaussian_log_prob(h, mean, log_var))
    if form == "code":
        if h.shape != mean.shape:
            raise ValueError(f"shapes differ: h {h.shape}, mean {mean.shape}")
        return jnp.mean(jnp.sum(jnp.square(mean - h), axis=-1)) / h.shape[-1]
    raise ValueError(f"unknown latent reconstruction form {form!r}; allowed: {LATENT_LOSSES}")


def upper_encoder_loss(mean: jax.Array, log_var: jax.Array, form: str = "nll") -> jax.Array:
    """The inference model's upper-level loss of the *not offset* algorithm (Sec. 4.4): instead of
    ascending ``D_KL(p_ω2(v, h) ‖ q_ω1(h|v))`` (Eq. 12), ω1 descends ``KL(q_ω1(h|v̂) ‖ N(0, I))`` at
    generated ``v̂``: ``mean_b KL`` (the paper), divided by ``d`` in the authors' code (``form='code'``)."""
    kl = jnp.mean(gaussian_kl_to_standard(mean, log_var))
    if form == "nll":
        return kl
    if form == "code":
        return kl / mean.shape[-1]
    raise ValueError(f"unknown latent reconstruction form {form!r}; allowed: {LATENT_LOSSES}")
