"""NVAE's distributions (NVlabs/NVAE ``distributions.py``) as pure JAX: the clamped Normal of every latent
group, and the decoders' output distributions over images in [0, 1].

* :class:`Normal`: from raw ``(μ, log σ)``, ``μ ← 5 tanh(μ/5)``, ``σ = exp(5 tanh(log σ/5)) + 0.01`` (NVAE's
  soft clamps), times a sampling temperature; log-density and the analytic KL to another such Normal.
* :class:`DiscMixLogistic`: the discretised mixture of logistics with the linear channel dependencies of
  PixelCNN++ (Salimans et al. 2017), on ``2x − 1`` with bin half-width ``1 / (2^bits − 1)``; NVAE's edge
  cases (``x < −0.999`` → the lower tail, ``x > 0.99`` → the upper tail).
* :class:`NormalDecoder`: a clamped Normal on ``2x − 1`` (NVAE's ``num_mixture_dec = 1``).
* :class:`Bernoulli`: logits for binary images (MNIST, Omniglot).

Every ``log_prob`` returns per-pixel terms (per channel for the Normal and Bernoulli, summed over the three
channels for the mixture), as NVAE does; images are NHWC.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def soft_clamp5(x: jax.Array) -> jax.Array:
    """``5 tanh(x / 5)``: a differentiable clamp to (−5, 5)."""
    return 5.0 * jnp.tanh(x / 5.0)


@jax.tree_util.register_pytree_node_class
class Normal:
    """A latent group's Normal (see the module docstring); ``raw_mu`` / ``raw_log_sigma`` keep the network's
    outputs before the clamps (for the posterior, the residual terms before they are added to the prior)."""

    def __init__(self, mu, log_sigma, temperature: float = 1.0, raw_mu=None, raw_log_sigma=None):
        self.mu = soft_clamp5(mu)
        self.sigma = jnp.exp(soft_clamp5(log_sigma)) + 1e-2
        if temperature != 1.0:
            self.sigma = self.sigma * temperature
        self.raw_mu, self.raw_log_sigma = raw_mu, raw_log_sigma

    @classmethod
    def from_mu_sigma(cls, mu: jax.Array, sigma: jax.Array, raw_mu=None, raw_log_sigma=None) -> Normal:
        """A Normal with these (already clamped) parameters."""
        out = cls.__new__(cls)
        out.mu, out.sigma, out.raw_mu, out.raw_log_sigma = mu, sigma, raw_mu, raw_log_sigma
        return out

    def tree_flatten(self):
        return (self.mu, self.sigma, self.raw_mu, self.raw_log_sigma), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls.from_mu_sigma(*children)

    def with_temperature(self, t: float) -> Normal:
        return self if t == 1.0 else Normal.from_mu_sigma(self.mu, self.sigma * t)

    def sample_given_eps(self, eps: jax.Array) -> jax.Array:
        return eps * self.sigma + self.mu

    def to_eps(self, z: jax.Array) -> jax.Array:
        return (z - self.mu) / self.sigma

    def log_p(self, z: jax.Array) -> jax.Array:
        n = (z - self.mu) / self.sigma
        return -0.5 * n * n - 0.5 * math.log(2 * math.pi) - jnp.log(self.sigma)

    def kl(self, other: Normal) -> jax.Array:
        """``KL(self ‖ other)`` per element."""
        t1 = (self.mu - other.mu) / other.sigma
        t2 = self.sigma / other.sigma
        return 0.5 * (t1 * t1 + t2 * t2) - 0.5 - jnp.log(t2)


class DiscMixLogistic:
    """The mixture-of-logistics decoder (see the module docstring) from logits ``(B, H, W, 10 M)``: channels
    ``[0, M)`` are the mixture logits, then per colour channel ``c`` (NVAE's ``view(B, 3, 3M, H, W)``) the
    block ``[M + 3M c, M + 3M (c + 1))`` holds M means, M log-scales (≥ −7) and M coefficients (tanh)."""

    def __init__(self, logits: jax.Array, num_mix: int = 10, num_bits: int = 8):
        b, h, w, _ = logits.shape
        self.num_mix = m = num_mix
        self.logit_probs = logits[..., :m]  # B, H, W, M
        rest = logits[..., m:].reshape(b, h, w, 3, 3 * m)  # B, H, W, 3, 3M
        self.means = rest[..., :m]
        self.log_scales = jnp.maximum(rest[..., m : 2 * m], -7.0)
        self.coeffs = jnp.tanh(rest[..., 2 * m :])
        self.max_val = 2.0**num_bits - 1

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``log p(x)`` per pixel ``(B, H, W)`` for ``x`` in [0, 1] ``(B, H, W, 3)``."""
        x = 2.0 * x - 1.0
        xs = x[..., :, None]  # B, H, W, 3, 1
        c = self.coeffs
        mean1 = self.means[..., 0, :]
        mean2 = self.means[..., 1, :] + c[..., 0, :] * xs[..., 0, :]
        mean3 = self.means[..., 2, :] + c[..., 1, :] * xs[..., 0, :] + c[..., 2, :] * xs[..., 1, :]
        means = jnp.stack([mean1, mean2, mean3], axis=-2)  # B, H, W, 3, M
        centered = xs - means
        inv_stdv = jnp.exp(-self.log_scales)
        plus_in = inv_stdv * (centered + 1.0 / self.max_val)
        min_in = inv_stdv * (centered - 1.0 / self.max_val)
        cdf_delta = jax.nn.sigmoid(plus_in) - jax.nn.sigmoid(min_in)
        log_cdf_plus = plus_in - jax.nn.softplus(plus_in)
        log_one_minus_cdf_min = -jax.nn.softplus(min_in)
        mid_in = inv_stdv * centered
        log_pdf_mid = mid_in - self.log_scales - 2.0 * jax.nn.softplus(mid_in)
        mid = jnp.where(
            cdf_delta > 1e-5,
            jnp.log(jnp.maximum(cdf_delta, 1e-10)),
            log_pdf_mid - math.log(self.max_val / 2),
        )
        log_probs = jnp.where(xs < -0.999, log_cdf_plus, jnp.where(xs > 0.99, log_one_minus_cdf_min, mid))
        log_probs = jnp.sum(log_probs, axis=-2) + jax.nn.log_softmax(self.logit_probs, axis=-1)
        return jax.nn.logsumexp(log_probs, axis=-1)

    def _combine(self, means: jax.Array, coeffs: jax.Array) -> jax.Array:
        x0 = jnp.clip(means[..., 0], -1.0, 1.0)
        x1 = jnp.clip(means[..., 1] + coeffs[..., 0] * x0, -1.0, 1.0)
        x2 = jnp.clip(means[..., 2] + coeffs[..., 1] * x0 + coeffs[..., 2] * x1, -1.0, 1.0)
        return jnp.stack([x0, x1, x2], axis=-1) / 2.0 + 0.5

    def sample(self, key: jax.Array, temperature: float = 1.0) -> jax.Array:
        """A sample in [0, 1]: a component by Gumbel-max, then a logistic draw (not rounded to 8 bits)."""
        k1, k2 = jax.random.split(key)
        u = jax.random.uniform(k1, self.logit_probs.shape, minval=1e-5, maxval=1.0 - 1e-5)
        sel = jax.nn.one_hot(
            jnp.argmax(self.logit_probs / temperature - jnp.log(-jnp.log(u)), axis=-1), self.num_mix
        )
        sel = sel[..., None, :]  # B, H, W, 1, M
        means = jnp.sum(self.means * sel, axis=-1)
        log_scales = jnp.sum(self.log_scales * sel, axis=-1)
        coeffs = jnp.sum(self.coeffs * sel, axis=-1)
        v = jax.random.uniform(k2, means.shape, minval=1e-5, maxval=1.0 - 1e-5)
        x = means + jnp.exp(log_scales) / temperature * (jnp.log(v) - jnp.log(1.0 - v))
        return self._combine(x, coeffs)

    def mean(self) -> jax.Array:
        """NVAE's ``mean()``: mixture-weighted means and coefficients, channels chained, in [0, 1]."""
        sel = jax.nn.softmax(self.logit_probs, axis=-1)[..., None, :]
        return self._combine(jnp.sum(self.means * sel, axis=-1), jnp.sum(self.coeffs * sel, axis=-1))


class NormalDecoder:
    """``num_mixture_dec = 1``: a clamped Normal on ``2x − 1``; logits ``(B, H, W, 6)`` = 3 means, 3 log σ."""

    def __init__(self, logits: jax.Array, num_bits: int = 8):
        c = logits.shape[-1] // 2
        self.dist = Normal(logits[..., :c], logits[..., c:])

    def log_prob(self, x: jax.Array) -> jax.Array:
        return self.dist.log_p(2.0 * x - 1.0)

    def sample(self, key: jax.Array, temperature: float = 1.0) -> jax.Array:
        eps = jax.random.normal(key, self.dist.mu.shape)
        return jnp.clip(self.dist.sample_given_eps(eps), -1.0, 1.0) / 2.0 + 0.5

    def mean(self) -> jax.Array:
        return jnp.clip(self.dist.mu, -1.0, 1.0) / 2.0 + 0.5


class Bernoulli:
    """Binary images: ``log p(x) = x log σ(l) + (1 − x) log σ(−l)`` per pixel."""

    def __init__(self, logits: jax.Array):
        self.logits = logits

    def log_prob(self, x: jax.Array) -> jax.Array:
        return x * jax.nn.log_sigmoid(self.logits) + (1.0 - x) * jax.nn.log_sigmoid(-self.logits)

    def sample(self, key: jax.Array, temperature: float = 1.0) -> jax.Array:
        return jax.random.bernoulli(key, jax.nn.sigmoid(self.logits)).astype(jnp.float32)

    def mean(self) -> jax.Array:
        return jax.nn.sigmoid(self.logits)


def decoder_output(config, logits: jax.Array):
    """NVAE's ``decoder_output``: the image distribution of an architecture's logits."""
    if config.dataset in ("mnist", "omniglot"):
        return Bernoulli(logits)
    if config.num_mixture_dec == 1:
        return NormalDecoder(logits, config.num_x_bits)
    return DiscMixLogistic(logits, config.num_mixture_dec, config.num_x_bits)
