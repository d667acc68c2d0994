"""latentebm_jax: latent-space energy-based priors on generator models, as pure JAX functions.

The math is importable without the runner::

    from latentebm_jax import langevin, ebm_log_prior, lebm_log_joint

* :func:`langevin` — short-run Langevin on any pytree of latents (``lax.scan``, jitted, optional trace);
* :func:`ebm_log_prior`, :func:`lebm_log_joint` / :func:`lebm_log_posterior`, :func:`gaussian_log_prob`,
  :func:`gaussian_log_likelihood` — log-densities (LEBM Eqs. 1–3);
* :mod:`latentebm_jax.losses` — training losses; :mod:`latentebm_jax.nets` — Flax modules;
* :mod:`latentebm_jax.methods` — one module per paper (``methods.lebm``).
"""

from latentebm_jax.langevin import LangevinTrace, langevin, langevin_step
from latentebm_jax.losses import (
    contrastive_ebm_loss,
    gaussian_reconstruction_loss,
    sum_squared_error,
)
from latentebm_jax.priors import (
    ebm_log_prior,
    gaussian_log_likelihood,
    gaussian_log_prob,
    lebm_log_joint,
    lebm_log_posterior,
)

__version__ = "0.1.0"

__all__ = [
    "LangevinTrace",
    "contrastive_ebm_loss",
    "ebm_log_prior",
    "gaussian_log_likelihood",
    "gaussian_log_prob",
    "gaussian_reconstruction_loss",
    "langevin",
    "langevin_step",
    "lebm_log_joint",
    "lebm_log_posterior",
    "sum_squared_error",
]
