"""Pieces the methods share: per-example keys, cross-device averaging, optimiser updates, the EBM half of
Algorithm 1, short-run sampler settings and long-run prior chains."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from latentebm_jax import losses
from latentebm_jax.config_schema import non_negative, non_negative_int, positive, setting
from latentebm_jax.langevin import langevin

PyTree = Any


def example_keys(step_key: jax.Array, batch_size: int, axis_name: str | None = None) -> jax.Array:
    """One typed key per example: ``fold_in(step_key, global_index)``.

    Under ``pmap`` the global index of local example ``b`` on device ``i`` is ``i·batch_size + b``, so a
    global batch split ``[devices, per_device]`` gets exactly the keys the undivided batch gets on one device.
    """
    offset = lax.axis_index(axis_name) * batch_size if axis_name is not None else 0
    index = offset + jnp.arange(batch_size)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, index)


def fold_keys(keys: jax.Array, data: int) -> jax.Array:
    """``fold_in`` every key of a batch of keys with the same integer (a named sub-stream per example)."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, data)


def normal_per_example(keys: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """``(B, *shape)`` standard normals, row ``b`` drawn from ``keys[b]`` alone."""
    return jax.vmap(lambda k: jax.random.normal(k, shape, dtype))(keys)


def normal_layers(latent_dims: tuple, keys: jax.Array, stream: int) -> tuple[jax.Array, ...]:
    """One ``(B, d_i)`` standard normal per latent layer (``(B, *shape_i)`` where an entry is a shape, as
    NVAE's spatial groups) from the named sub-stream ``stream`` of each example's key; row ``b`` depends on
    ``keys[b]`` alone."""
    base = fold_keys(keys, stream)
    return tuple(
        normal_per_example(fold_keys(base, i), tuple(d) if isinstance(d, tuple) else (d,))
        for i, d in enumerate(latent_dims)
    )


def cross_replica_mean(tree: PyTree, axis_name: str | None) -> PyTree:
    """``lax.pmean`` over the device axis, or the identity on a single device."""
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def apply_updates(
    tx: optax.GradientTransformation, grads: PyTree, opt_state: Any, params: PyTree
) -> tuple[PyTree, Any]:
    """One optimiser step; returns ``(new_params, new_opt_state)``."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def contrastive_ebm_grad(
    neg_energies: Callable[[PyTree], tuple[jax.Array, jax.Array, Any]], ebm_params: PyTree
) -> tuple[jax.Array, jax.Array, jax.Array, Any, PyTree]:
    """The EBM half of LEBM's Algorithm 1 (Eq. 10; ICCV 2023 Eq. 10): ``(loss_e, f(z⁺), f(z⁻), aux,
    ∇ loss_e)`` with ``loss_e = mean f(z⁻) − mean f(z⁺)``.

    ``neg_energies(params) -> (f(z⁺), f(z⁻), aux)`` evaluates the energy at the positive and negative
    samples: two calls of one network (:func:`separately`), or one call on both batches that also returns
    updated network state as ``aux`` (the joint prior's spectral norm).
    """

    def loss(params):
        f_pos, f_neg, aux = neg_energies(params)
        return losses.contrastive_ebm_loss(f_pos, f_neg), (f_pos, f_neg, aux)

    (loss_e, (f_pos, f_neg, aux)), grads = jax.value_and_grad(loss, has_aux=True)(ebm_params)
    return loss_e, f_pos, f_neg, aux, grads


def separately(
    neg_energy_fn: Callable[[PyTree, PyTree], jax.Array], z_pos: PyTree, z_neg: PyTree
) -> Callable[[PyTree], tuple[jax.Array, jax.Array, None]]:
    """``neg_energies`` for :func:`contrastive_ebm_grad` from ``neg_energy_fn(params, z) = f_α(z)``."""
    return lambda params: (neg_energy_fn(params, z_pos), neg_energy_fn(params, z_neg), None)


def apply_updates_per_network(
    tx: dict[str, optax.GradientTransformation], grads: dict, opt_state: dict, params: dict
) -> tuple[dict, dict]:
    """One step of each network's own optimiser ``tx[name]`` (every name in ``grads``); networks without
    gradients keep their parameters and optimiser state."""
    new_params, new_opt = dict(params), dict(opt_state)
    for name in grads:
        new_params[name], new_opt[name] = apply_updates(tx[name], grads[name], opt_state[name], params[name])
    return new_params, new_opt


def short_run_metrics(
    loss_e: jax.Array, f_pos: jax.Array, f_neg: jax.Array, z_pos: jax.Array, z_neg: jax.Array
) -> dict[str, jax.Array]:
    """The EBM-side numbers every LEBM-style step logs: loss, mean ``f`` at posterior and prior samples,
    mean latent norms."""
    return {
        "loss_e": loss_e,
        "f_pos": jnp.mean(f_pos),
        "f_neg": jnp.mean(f_neg),
        "z_pos_norm": jnp.mean(jnp.linalg.norm(z_pos, axis=-1)),
        "z_neg_norm": jnp.mean(jnp.linalg.norm(z_neg, axis=-1)),
    }


@dataclasses.dataclass(frozen=True)
class PriorSampler:
    """Short-run prior Langevin (LEBM Eq. 9; config group ``sampler``): ``K₀`` steps of size ``s₀`` from
    ``N(0, σ_init² I)``. Defaults: the authors' SVHN settings."""

    init_sigma: float = setting(
        1.0, "std of the N(0, s^2 I) every short-run chain starts from", check=positive
    )
    prior_steps: int = setting(60, "K0: prior Langevin steps", check=non_negative_int)
    prior_step_size: float = setting(0.4, "s0: prior Langevin step size", check=positive)
    prior_unroll: int = setting(
        1,
        "lax.scan unroll of the prior chain (speed only; 0 = fully unrolled)",
        check=non_negative,
        what="a non-negative integer (0 = fully unrolled)",
    )


@dataclasses.dataclass(frozen=True)
class PosteriorSampler:
    """Short-run posterior Langevin (LEBM Eq. 9; config group ``sampler``): ``K₁`` steps of size ``s₁``."""

    posterior_steps: int = setting(20, "K1: posterior Langevin steps", check=non_negative_int)
    posterior_step_size: float = setting(0.1, "s1: posterior Langevin step size", check=positive)
    # XLA:CPU runs the generator's convolutions several times faster outside a loop
    posterior_unroll: int = setting(
        0,
        "lax.scan unroll of the posterior chain (speed only; 0 = fully)",
        check=non_negative,
        what="a non-negative integer (0 = fully unrolled)",
    )
    eval_posterior_steps: int = setting(-1, "K1 at evaluation (-1 = posterior_steps)")

    @property
    def eval_steps(self) -> int | None:
        """``K₁`` at evaluation, ``None`` for the training value."""
        return self.eval_posterior_steps if self.eval_posterior_steps > 0 else None


def long_run_prior_chain(
    log_prior_fn: Callable[[PyTree], jax.Array],
    decode_fn: Callable[[PyTree], jax.Array],
    z0: PyTree,
    noise_keys: jax.Array,
    *,
    step_size: float,
    num_steps: int,
    record_every: int,
    unroll: int = 1,
) -> dict[str, jax.Array]:
    """A long prior Langevin chain from ``z0`` with its energy profile (LEBM Figs. 3–4, ICCV 2023 Fig. 8).

    Returns ``frames``, ``decode_fn`` of the states every ``record_every`` steps (step 0 included) stacked
    on a leading axis of ``S + 1``, ``steps`` ``(S + 1,)``, and ``energy`` ``(num_steps + 1,)``: the mean over
    chains of ``−log p̃(z_k)`` at every step (Gaussian reference term included), and the ``final`` state.
    ``noise_keys`` holds one key per chain.
    """
    if num_steps % record_every:
        raise ValueError(f"num_steps={num_steps} must be a multiple of record_every={record_every}")

    def segment(z, i):
        z, tr = langevin(
            log_prior_fn,
            z,
            fold_keys(noise_keys, i),
            step_size=step_size,
            num_steps=record_every,
            trace=True,
            unroll=unroll,
        )
        return z, (z, tr.log_prob)

    z_last, (zs, log_probs) = lax.scan(segment, z0, jnp.arange(num_steps // record_every))
    zs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], axis=0), z0, zs)
    frames = jax.vmap(decode_fn)(zs)
    energy = -jnp.concatenate([log_probs.reshape(-1), jnp.mean(log_prior_fn(z_last))[None]])
    return {
        "frames": frames,
        "steps": jnp.arange(jax.tree.leaves(frames)[0].shape[0]) * record_every,
        "energy": energy,
        "final": z_last,
    }
