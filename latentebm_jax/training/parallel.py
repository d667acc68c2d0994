"""Multi-device training with ``jax.pmap`` over the local devices.

The per-device train step averages gradients with ``lax.pmean`` over the axis :data:`AXIS`; the state is
replicated (leading axis = devices) and every batch is laid out ``[devices, per_device, ...]``.
Since JAX 0.8 ``pmap`` runs on ``shard_map``; arrays are placed with explicit shardings rather than the
deprecated ``device_put_replicated``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def local_mesh() -> Mesh:
    """A 1-d mesh over this host's devices, axis :data:`AXIS`."""
    return Mesh(np.asarray(jax.local_devices()), (AXIS,))


def _leading_axis_sharding() -> NamedSharding:
    return NamedSharding(local_mesh(), PartitionSpec(AXIS))


def replicate(tree: Any) -> Any:
    """Stack one copy of every leaf per local device and place copy ``i`` on device ``i``."""
    n = jax.local_device_count()
    sharding = _leading_axis_sharding()
    return jax.tree.map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n, *np.shape(x))), sharding), tree
    )


def unreplicate(tree: Any) -> Any:
    """The copy on the first device, fetched to the host as NumPy arrays."""
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x[0])), tree)


def shard_batch(batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Reshape a host batch ``(B, ...)`` to ``(devices, B / devices, ...)`` and place it."""
    n = jax.local_device_count()
    sharding = _leading_axis_sharding()

    def split(x: np.ndarray) -> jax.Array:
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} does not split over {n} devices")
        return jax.device_put(x.reshape(n, x.shape[0] // n, *x.shape[1:]), sharding)

    return jax.tree.map(split, batch)


def pmap_train_step(train_step: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.pmap`` of ``train_step(state, batch, axis_name)`` over the local devices (state donated)."""
    return jax.pmap(functools.partial(train_step, axis_name=AXIS), axis_name=AXIS, donate_argnums=(0,))


def jit_train_step(train_step: Callable[..., Any]) -> Callable[..., Any]:
    """The single-device step: the same per-device function, jitted, no collectives."""
    return jax.jit(functools.partial(train_step, axis_name=None))
