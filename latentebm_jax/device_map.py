"""Evaluation over every local device: a batched function mapped with ``jax.pmap``.

The evaluators call predict functions (``generate``, ``reconstruct``, ``infer``, ``log_joint`` …) and the
Inception network batch by batch. :func:`map_generate` and :func:`map_batch` run such a call on all of this
host's devices (``jax.local_devices()``: each process of a multi-host run maps over its own devices and
computes nothing with the others):

* the leading batch axis is split over the devices, padded to a multiple of the device count by repeating
  the last example, and the padding is dropped from the result;
* a key becomes ``fold_in(key, d)`` on device ``d``, so every device draws its own noise;
* the parameters are broadcast (``in_axes=None``); :func:`replicate` places them on every device once, so
  the calls of an evaluation loop copy nothing;
* each mapped function is built once per (function, devices) and cached, so each shape compiles once.

With one local device both call the function itself, unchanged: no ``fold_in``, no padding, the same
compiled function and the same numbers as a single-device evaluation. With ``n`` devices a stochastic
function's numbers differ from the single-device ones (other keys), as a training run's do with the
device count; deterministic ones (the Inception features) agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "devices"

Devices = Sequence[jax.Device] | None


def local_devices(devices: Devices = None) -> tuple[jax.Device, ...]:
    """``devices`` as a tuple, by default this host's devices (``jax.local_devices()``)."""
    return tuple(jax.local_devices() if devices is None else devices)


def _mesh(devices: tuple[jax.Device, ...]) -> Mesh:
    return Mesh(np.asarray(devices), (AXIS,))


def replicate(tree: Any, devices: Devices = None) -> Any:
    """``tree`` placed whole on every device (the layout :func:`map_batch` broadcasts parameters in); with
    one device, ``tree`` itself. Placing it once before a loop saves a copy per call."""
    devices = local_devices(devices)
    if len(devices) == 1:
        return tree
    return jax.device_put(tree, NamedSharding(_mesh(devices), PartitionSpec()))


@functools.lru_cache(maxsize=128)
def _pmapped(
    fn: Callable[..., Any], in_axes: tuple[int | None, ...], static: tuple[int, ...], devices: tuple
) -> Callable[..., Any]:
    return jax.pmap(fn, AXIS, in_axes=in_axes, static_broadcasted_argnums=static, devices=devices)


def _device_keys(key: jax.Array | None, devices: tuple[jax.Device, ...]) -> jax.Array | None:
    """``fold_in(key, d)`` for every device ``d``, stacked and placed one per device (``None`` stays)."""
    if key is None:
        return None
    keys = jnp.stack([jax.random.fold_in(key, d) for d in range(len(devices))])
    return jax.device_put(keys, NamedSharding(_mesh(devices), PartitionSpec(AXIS)))


def _split(batch: Any, devices: tuple[jax.Device, ...]) -> tuple[Any, int]:
    """``(batch laid out (devices, per device, ...) and placed, examples)``: the leading axis padded to a
    multiple of the device count by repeating the last example."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(batch)]
    sizes = {len(x) for x in leaves}
    if len(sizes) != 1:
        raise ValueError(f"batch leaves disagree on the batch size: {sorted(sizes)}")
    size, n = sizes.pop(), len(devices)
    if size == 0:
        raise ValueError("cannot map an empty batch over devices")
    per = -(-size // n)
    index = np.minimum(np.arange(n * per), size - 1)
    sharding = NamedSharding(_mesh(devices), PartitionSpec(AXIS))

    def lay_out(x: Any) -> jax.Array:
        x = np.asarray(x)[index]
        return jax.device_put(x.reshape(n, per, *x.shape[1:]), sharding)

    return jax.tree.map(lay_out, batch), size


def _merge(out: Any, size: int) -> Any:
    """The per-device outputs ``(devices, per device, ...)`` as one host batch of its first ``size`` rows."""
    return jax.tree.map(lambda x: np.asarray(x).reshape(-1, *x.shape[2:])[:size], jax.device_get(out))


def map_batch(fn: Callable[..., Any], params: Any, batch: Any, *args: Any, devices: Devices = None) -> Any:
    """``fn(params, batch, *args)`` on every local device, each on its share of ``batch``.

    ``batch`` is a tree of arrays with one leading batch axis; ``fn`` must return a tree whose every leaf has
    that axis (a batch, per-example scores, latents). ``args[0]``, when given, is a key (or ``None``):
    device ``d`` gets ``fold_in(key, d)``; further ``args`` are broadcast. With one device this is
    ``fn(params, batch, *args)``. Otherwise the result is NumPy arrays of the batch's length."""
    devices = local_devices(devices)
    if len(devices) == 1:
        return fn(params, batch, *args)
    shards, size = _split(batch, devices)
    rest = (_device_keys(args[0], devices), *args[1:]) if args else ()
    in_axes = (None, 0, *(0 if i == 0 else None for i in range(len(args))))
    mapped = _pmapped(fn, in_axes, (), devices)
    return _merge(mapped(replicate(params, devices), shards, *rest), size)


def map_generate(
    generate: Callable[..., Any], params: Any, key: jax.Array, num: int, devices: Devices = None
) -> Any:
    """``generate(params, key, num)`` (a ``generate``-style predict function: ``num`` samples) on every local
    device: device ``d`` draws ``ceil(num / devices)`` with ``fold_in(key, d)``; the first ``num`` of
    their samples in device order. With one device this is ``generate(params, key, num)``; otherwise the
    result is NumPy arrays."""
    devices = local_devices(devices)
    if len(devices) == 1:
        return generate(params, key, num)
    per = -(-num // len(devices))
    mapped = _pmapped(generate, (None, 0, None), (2,), devices)
    return _merge(mapped(replicate(params, devices), _device_keys(key, devices), per), num)
