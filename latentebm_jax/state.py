"""The train state shared by every method: one pytree, saved and restored whole."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped.

    Attributes:
      step: number of train steps taken (int32 scalar).
      params: ``{network name: flax params}``, e.g. ``{"ebm": …, "gen": …}``.
      opt_state: ``{network name: optax state}``, one optimiser per network.
      model_state: non-trainable collections (batch statistics, spectral-norm vectors); ``{}`` if none.
      rng: raw ``uint32`` key data; per-step keys are ``fold_in(rng, step)``, so a resumed run draws
        the same randomness as an uninterrupted one.
    """

    step: jax.Array
    params: dict[str, Any]
    opt_state: dict[str, Any]
    model_state: dict[str, Any]
    rng: jax.Array

    def step_key(self) -> jax.Array:
        """The typed key of the current step."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def new_train_state(
    params: dict[str, Any],
    opt_state: dict[str, Any],
    rng: jax.Array,
    model_state: dict | None = None,
) -> TrainState:
    """A state at step 0; ``rng`` may be typed or raw and is stored raw (checkpoint-friendly)."""
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        model_state=model_state or {},
        rng=rng,
    )
