"""Latent probes (ICCV 2023, Table 1): a classifier per latent layer, trained on inferred latents.

The probe is the paper's: two linear layers with 256 hidden units, ReLU, softmax output, trained with
cross-entropy on the training split's inferred latents; its accuracy on the test split's latents says how
much class information the layer carries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn


class ProbeMLP(nn.Module):
    """``Dense(hidden) → ReLU → Dense(classes)`` (softmax in the loss)."""

    num_classes: int
    hidden: int = 256

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes)(nn.relu(nn.Dense(self.hidden)(z)))


def probe_accuracy(
    z_train: np.ndarray,
    y_train: np.ndarray,
    z_test: np.ndarray,
    y_test: np.ndarray,
    *,
    hidden: int = 256,
    epochs: int = 100,
    batch_size: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
) -> float:
    """Train a :class:`ProbeMLP` on ``(z_train, y_train)`` and return its accuracy on ``(z_test, y_test)``.

    Latents of any shape are flattened per example.
    """
    z_train = np.asarray(z_train, np.float32).reshape(len(z_train), -1)
    z_test = np.asarray(z_test, np.float32).reshape(len(z_test), -1)
    y_train, y_test = np.asarray(y_train, np.int32), np.asarray(y_test, np.int32)
    if len(z_train) != len(y_train) or len(z_test) != len(y_test):
        raise ValueError("latents and labels differ in length")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    module = ProbeMLP(num_classes, hidden)
    params = module.init(jax.random.key(seed), z_train[:1])["params"]
    tx = optax.adam(lr)
    opt_state = tx.init(params)
    batch_size = min(batch_size, len(z_train))
    steps = len(z_train) // batch_size

    @jax.jit
    def epoch(params, opt_state, key):
        perm = jax.random.permutation(key, len(z_train))[: steps * batch_size].reshape(steps, batch_size)

        def step(carry, idx):
            params, opt_state = carry

            def loss_fn(p):
                logits = module.apply({"params": p}, jnp.asarray(z_train)[idx])
                return optax.softmax_cross_entropy_with_integer_labels(
                    logits, jnp.asarray(y_train)[idx]
                ).mean()

            grads = jax.grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), perm)
        return params, opt_state

    key = jax.random.key(seed + 1)
    for e in range(epochs):
        params, opt_state = epoch(params, opt_state, jax.random.fold_in(key, e))
    pred = np.argmax(np.asarray(module.apply({"params": params}, z_test)), axis=1)
    return float(np.mean(pred == y_test))


def layer_probe_accuracies(
    latents_train: tuple[np.ndarray, ...],
    y_train: np.ndarray,
    latents_test: tuple[np.ndarray, ...],
    y_test: np.ndarray,
    **kwargs,
) -> list[float]:
    """:func:`probe_accuracy` for every layer (bottom ``z_1`` first)."""
    return [probe_accuracy(a, y_train, b, y_test, **kwargs) for a, b in zip(latents_train, latents_test)]
