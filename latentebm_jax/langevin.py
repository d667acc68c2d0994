"""Short-run Langevin dynamics on any pytree of latents.

One sampler serves every target in the library: the EBM prior, the LEBM posterior, the conditional
targets of the diffusion prior and data-space targets. The update is

    z_{k+1} = z_k + (s²/2) ∇_z log π(z_k) + s ε_k,    ε_k ~ N(0, I),

which is LEBM Eq. 9 (``z + s'∇log π + sqrt(2 s') ε``) written with ``s' = s²/2``, the convention of the
authors' code (drift ``s²/2``, noise standard deviation ``s``). The ICCV 2023 paper's Eq. 13 as printed
has drift ``s/2`` with noise ``s``; the joint prior follows its authors' code (``s²/2``), a paper-vs-code
choice the README lists. The chain is a ``lax.scan`` over ``K`` steps, compiled with ``jax.jit``.

``log_prob_fn(z) -> (batch,)`` returns one log-density per chain; gradients are taken of its *sum*, so every
chain follows its own gradient (per-sample gradients, as in the authors' samplers).

Randomness: ``key`` is either one key, or a batch of keys with one key per chain (shape ``(batch,)``, typed
or raw). With a batch of keys every chain's noise depends only on its own key, so a batch split across
devices draws exactly the noise that the undivided batch would.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.tree_util import Partial

PyTree = Any
LogProbFn = Callable[[PyTree], jax.Array]


class LangevinTrace(NamedTuple):
    """Per-step diagnostics of a chain, each of shape ``(num_steps,)``.

    Entry ``k`` is measured at ``z_k``, the point where step ``k`` takes its gradient (so entry 0 is the
    initial state and the final state ``z_K`` is not included).
    """

    log_prob: jax.Array  # mean over chains of log π(z_k)
    grad_norm: jax.Array  # mean over chains of ‖∇ log π(z_k)‖ (all leaves together)


def as_typed_key(key: jax.Array) -> jax.Array:
    """Return ``key`` as a typed PRNG key array (raw ``uint32`` keys are wrapped)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def batch_size_of(z: PyTree) -> int:
    """The common leading dimension of every leaf of ``z``."""
    leaves = jax.tree.leaves(z)
    if not leaves:
        raise ValueError("the latent pytree has no arrays; pass z0 with leaves of shape (B, ...)")
    for leaf in leaves:
        if jnp.ndim(leaf) == 0:
            raise ValueError(
                "every latent leaf needs a leading batch dimension, shape (B, ...); got a leaf of shape () "
                "(for one chain pass z[None])"
            )
    sizes = {leaf.shape[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"every latent leaf must share the batch dimension; got leading sizes {sizes}")
    return sizes.pop()


def gaussian_like(key: jax.Array, z: PyTree) -> PyTree:
    """Standard normal noise shaped like ``z``.

    ``key`` is one typed key (noise for the whole pytree) or a batch of typed keys of shape ``(B,)``
    (chain ``b``'s noise depends on ``key[b]`` alone).
    """
    leaves, treedef = jax.tree.flatten(z)
    out = []
    for i, leaf in enumerate(leaves):
        if key.ndim == 0:
            out.append(jax.random.normal(jax.random.fold_in(key, i), leaf.shape, leaf.dtype))
        else:
            draw = lambda k, shape=leaf.shape[1:], dtype=leaf.dtype, i=i: jax.random.normal(
                jax.random.fold_in(k, i), shape, dtype
            )
            out.append(jax.vmap(draw)(key))
    return jax.tree.unflatten(treedef, out)


def _per_chain_norm(tree: PyTree) -> jax.Array:
    sq = [jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in jax.tree.leaves(tree)]
    return jnp.sqrt(sum(sq))


def check_log_density(value: jax.Array, batch: int, name: str = "log_prob_fn") -> None:
    """A one-sentence ``ValueError`` unless ``value`` holds one real log-density per chain, ``(batch,)``.

    The common mistake is an energy network with a ``Dense(1)`` head, ``(B, 1)``: broadcast against a
    ``(B,)`` Gaussian term it silently becomes ``(B, B)`` and every chain's gradient ``B`` times too large.
    """
    shape, dtype = jnp.shape(value), jnp.result_type(value)
    if shape == (batch,) and jnp.issubdtype(dtype, jnp.floating):
        return
    hint = ""
    if shape == (batch, 1):
        hint = " (a Dense(1) head: return out[..., 0] or out.squeeze(-1))"
    elif shape == ():
        hint = " (do not sum or average over the batch: the sampler sums the chains itself)"
    elif jnp.issubdtype(dtype, jnp.complexfloating):
        hint = " (a log-density must be real)"
    raise ValueError(
        f"{name} must return one real log-density per chain, shape ({batch},); "
        f"it returned shape {shape} of dtype {dtype}{hint}"
    )


def step_size_tree(step_size: Any, z: PyTree) -> PyTree:
    """``step_size`` as a pytree like ``z``, each leaf broadcastable against its latent leaf.

    ``step_size`` is one scalar, one value per chain (shape ``(B,)`` or ``(B, 1, …)``), or a pytree with
    ``z``'s structure whose leaves are any of these (e.g. one step size per layer). A non-scalar array is
    aligned with the batch axis: ``(B,)`` means one step per chain; a per-dimension step needs a leading
    ``1``, e.g. ``(1, D)``. Raises a one-sentence ``ValueError`` for anything else.
    """
    leaves, treedef = jax.tree.flatten(z)
    b = batch_size_of(z)
    if jax.tree.structure(step_size).num_leaves == 1 and not isinstance(step_size, (list, tuple, dict)):
        s_leaves = [step_size] * len(leaves)
    else:
        try:
            s_leaves = treedef.flatten_up_to(step_size)
        except (ValueError, TypeError):
            raise ValueError(
                f"step_size has structure {jax.tree.structure(step_size)}, which does not match the latents' "
                f"{treedef}; pass one scalar, one value per chain (shape ({b},)) or a pytree like the latents"
            ) from None
    out = []
    for x, s in zip(leaves, s_leaves):
        s = jnp.asarray(s)
        if not (jnp.issubdtype(s.dtype, jnp.floating) or jnp.issubdtype(s.dtype, jnp.integer)):
            raise ValueError(f"step_size must be real; got dtype {s.dtype}")
        if s.ndim == 0:
            out.append(s)
            continue
        per_chain = s.shape[0] == b and all(d == 1 for d in s.shape[1:]) and s.ndim <= x.ndim
        if per_chain:
            out.append(s.reshape((b,) + (1,) * (x.ndim - 1)))
        elif s.ndim <= x.ndim and s.shape[0] == 1 and _broadcasts(s.shape, x.shape):
            out.append(s)
        else:
            raise ValueError(
                f"step_size of shape {s.shape} does not fit the latent leaf of shape {x.shape}; expected a "
                f"scalar, one value per chain ({b},), or a shape that broadcasts from the batch axis such as "
                f"(1, {', '.join(map(str, x.shape[1:]))})"
            )
    return jax.tree.unflatten(treedef, out)


def _broadcasts(small: tuple[int, ...], big: tuple[int, ...]) -> bool:
    small = small + (1,) * (len(big) - len(small))
    return all(a in (1, c) for a, c in zip(small, big))


def langevin_step(
    log_prob_fn: LogProbFn, z: PyTree, key: jax.Array, step_size: Any
) -> tuple[PyTree, jax.Array, jax.Array]:
    """One Langevin update ``z + (s²/2)∇log π(z) + s ε`` (LEBM Eq. 9 in the code's convention).

    ``key`` must already be typed (one key, or one per chain). ``step_size``: see :func:`step_size_tree`.
    Returns ``(z_next, log_prob(z), grad_norm(z))`` with per-chain values of shape ``(B,)``; a log-density of
    any other shape is a ``ValueError`` (:func:`check_log_density`).
    """
    log_p, pullback = jax.vjp(log_prob_fn, z)
    check_log_density(log_p, batch_size_of(z))
    (grad,) = pullback(jnp.ones_like(log_p))  # gradient of the batch sum: per-chain gradients
    noise = gaussian_like(key, z)
    s_tree = step_size_tree(step_size, z)
    z_next = jax.tree.map(lambda x, g, e, s: x + 0.5 * s * s * g + s * e, z, grad, noise, s_tree)
    return z_next, log_p, _per_chain_norm(grad)


@functools.partial(jax.jit, static_argnames=("num_steps", "trace", "unroll"))
def _langevin_jit(
    log_prob_fn: Partial,
    z0: PyTree,
    key: jax.Array,
    step_size: Any,
    *,
    num_steps: int,
    trace: bool,
    unroll: int | bool,
):
    key = as_typed_key(key)

    def body(z, k):
        step_key = (
            jax.vmap(jax.random.fold_in, in_axes=(0, None))(key, k)
            if key.ndim
            else (jax.random.fold_in(key, k))
        )
        z_next, log_p, gnorm = langevin_step(log_prob_fn, z, step_key, step_size)
        out = (jnp.mean(log_p), jnp.mean(gnorm)) if trace else None
        return z_next, out

    z, stats = lax.scan(body, z0, jnp.arange(num_steps), unroll=unroll)
    if trace:
        return z, LangevinTrace(log_prob=stats[0], grad_norm=stats[1])
    return z


def langevin(
    log_prob_fn: LogProbFn,
    z0: PyTree,
    key: jax.Array,
    *,
    step_size: Any,
    num_steps: int,
    trace: bool = False,
    unroll: int | bool = 1,
):
    """Run ``num_steps`` of short-run Langevin from ``z0`` towards ``π ∝ exp(log_prob_fn)``.

    Args:
      log_prob_fn: ``z -> (B,)`` unnormalised log-density per chain. Pass a ``jax.tree_util.Partial`` that
        carries its arrays (e.g. ``Partial(log_prior, params)``) to reuse the compiled sampler across calls
        with new parameters; a plain function or closure works too (it compiles once per function object,
        and inside an outer ``jit`` it is simply inlined).
      z0: pytree of initial states, every leaf with leading batch dimension ``B``.
      key: one PRNG key, or ``B`` keys (one per chain; see the module docstring).
      step_size: ``s`` (drift ``s²/2``, noise ``s``): a scalar or a pytree matching ``z0``.
      num_steps: ``K``.
      trace: also return a :class:`LangevinTrace` with per-step mean log-density and gradient norm.
      unroll: ``lax.scan`` unroll factor; ``0`` or ``True`` unrolls the whole chain (a performance knob:
        XLA:CPU runs convolutions much faster outside a loop; the result is the same).

    Returns:
      ``z_K`` (same structure as ``z0``), or ``(z_K, LangevinTrace)`` when ``trace=True``.
    """
    chex.assert_tree_has_only_ndarrays(z0)
    b = batch_size_of(z0)
    typed = _check_key(key, b)
    num_steps = _check_num_steps(num_steps)
    step_size = step_size_tree(step_size, z0)
    unroll = True if (unroll is True or unroll == 0) else int(unroll)
    if not isinstance(log_prob_fn, Partial):
        log_prob_fn = Partial(log_prob_fn)
    return _langevin_jit(
        log_prob_fn, z0, typed, step_size, num_steps=int(num_steps), trace=trace, unroll=unroll
    )


def _check_key(key: Any, batch: int) -> jax.Array:
    """``key`` as typed keys, after checking it is one PRNG key or one per chain."""
    if isinstance(key, (int, np.integer)) or (
        hasattr(key, "dtype") and jnp.ndim(key) == 0 and jnp.issubdtype(key.dtype, jnp.integer)
    ):
        raise TypeError(
            f"key must be a PRNG key such as jax.random.key({int(key)}); got the integer {int(key)}"
        )
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and (
        key.dtype != jnp.uint32 or key.shape[-1:] != (2,)
    ):
        raise TypeError(
            f"key must be a PRNG key (jax.random.key(seed)) or raw uint32 key data of shape (2,) or "
            f"({batch}, 2); got dtype {key.dtype}, shape {key.shape}"
        )
    typed = as_typed_key(key)
    if typed.ndim not in (0, 1) or (typed.ndim == 1 and typed.shape[0] != batch):
        raise ValueError(
            f"key must be a single key or one key per chain (shape ({batch},)); "
            f"got keys of shape {typed.shape}"
        )
    return typed


def _check_num_steps(num_steps: Any) -> int:
    if isinstance(num_steps, jax.core.Tracer):
        raise TypeError(
            "num_steps must be a Python int: it fixes the length of the compiled loop; got a traced value "
            "(mark the argument static, e.g. jax.jit(f, static_argnames='num_steps'))"
        )
    try:
        n = operator.index(num_steps)
    except TypeError:
        raise TypeError(f"num_steps must be a Python int; got {num_steps!r}") from None
    if n < 0:
        raise ValueError(f"num_steps must be >= 0, got {n}")
    return n


def langevin_on_layer(
    log_prob_fn: LogProbFn,
    z: tuple[jax.Array, ...],
    layer: int,
    layer_init: jax.Array,
    key: jax.Array,
    *,
    step_size: Any,
    num_steps: int,
    unroll: int | bool = 1,
) -> tuple[jax.Array, ...]:
    """Resample one layer of a joint latent ``z = (z_1, …, z_L)`` with the others held fixed.

    Runs :func:`langevin` on ``z_layer`` alone, from ``layer_init``, towards the conditional
    ``π(z_layer | z_{−layer}) ∝ exp(log_prob_fn(z))`` (for the joint EBM prior, ICCV 2023 Eq. 3 with the
    other layers fixed: hierarchical sampling, Figs. 4–5). Returns the tuple with that layer replaced; the
    other layers are returned unchanged (the very same arrays).
    """
    z = tuple(z)
    if not 0 <= layer < len(z):
        raise ValueError(f"layer {layer} out of range for {len(z)} latent layers")
    if layer_init.shape != z[layer].shape:
        raise ValueError(f"layer_init has shape {layer_init.shape}, layer {layer} has {z[layer].shape}")
    others = z[:layer] + z[layer + 1 :]

    def conditional(zi: jax.Array) -> jax.Array:
        return log_prob_fn((*others[:layer], zi, *others[layer:]))

    zi = langevin(conditional, layer_init, key, step_size=step_size, num_steps=num_steps, unroll=unroll)
    return (*z[:layer], zi, *z[layer + 1 :])
