"""Orbax checkpoints of the whole :class:`TrainState`: atomic, resumable, pickle-free.

Restoring checks the stored tree against the state the current config builds *before* reading any array,
so an incompatible checkpoint (another architecture or latent size) is reported by name and shape, and an
unreadable one (truncated or garbled files) raises :class:`CheckpointError` with the step and the path
instead of a traceback from deep inside the storage layer.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint cannot be restored into the current run's state."""


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _named_leaves(tree: Any) -> dict[str, Any]:
    """``{"params.gen.ConvTranspose_0.kernel": leaf, ...}`` (orbax's naming of stored arrays)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    return {".".join(_key_name(k) for k in path): leaf for path, leaf in flat}


def describe_mismatch(stored: dict[str, Any], expected: dict[str, Any], limit: int = 6) -> list[str]:
    """Human-readable differences between stored and expected ``{name: array-like}``."""
    problems = []
    for name in sorted(set(expected) - set(stored))[:limit]:
        problems.append(f"missing in checkpoint: {name} {tuple(expected[name].shape)}")
    for name in sorted(set(stored) - set(expected))[:limit]:
        problems.append(f"not in this model: {name} {tuple(stored[name].shape)}")
    # parameters first: they say most plainly which layer differs
    for name in sorted(set(stored) & set(expected), key=lambda n: (not n.startswith("params."), n)):
        s, e = tuple(stored[name].shape), tuple(expected[name].shape)
        if s != e:
            problems.append(f"shape of {name}: checkpoint {s}, this config {e}")
        if len(problems) >= 3 * limit:
            break
    return problems


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    """A restore target for one leaf: its shape and dtype, placed where it is (or on the first device)."""
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
        device = jax.local_devices()[0]
        return jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=jax.sharding.SingleDeviceSharding(device)
        )
    return ocp.utils.to_shape_dtype_struct(leaf)


class Checkpointer:
    """Periodic and final checkpoints of a run's state under ``<workdir>/checkpoints``."""

    def __init__(self, workdir: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Save ``state`` (on the host, not replicated) as checkpoint ``step``; overwrites nothing."""
        if step in self._manager.all_steps():
            return
        self._manager.save(int(step), args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def restore(self, target: Any, step: int | None = None) -> Any:
        """Restore checkpoint ``step`` (default: latest) into the structure and shapes of ``target``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        where = os.path.join(self.directory, str(step))
        others = [s for s in self.all_steps() if s != step]
        hint = (
            f" Earlier checkpoints there: {others}; delete {where} to resume from the newest of them,"
            if others
            else " Delete it"
        ) + " or start a fresh run with another --workdir."
        try:
            metadata = self._manager.item_metadata(step)
            stored = _named_leaves(getattr(metadata, "tree", metadata))
        except Exception as err:
            raise CheckpointError(
                f"checkpoint at step {step} ({where}) is unreadable: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}.{hint}"
            ) from err
        expected = _named_leaves(target)
        problems = describe_mismatch(stored, expected)
        if problems:
            raise CheckpointError(
                f"checkpoint at step {step} ({where}) does not fit the model this config builds "
                f"(was it written with another config?):\n  " + "\n  ".join(problems)
            )
        abstract = jax.tree.map(_abstract, target)
        try:
            restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as err:
            raise CheckpointError(
                f"checkpoint at step {step} ({where}) is corrupted or incomplete: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}.{hint}"
            ) from err
        bad = [
            name
            for name, value in _named_leaves(restored).items()
            if np.issubdtype(np.asarray(value).dtype, np.floating)
            and not np.all(np.isfinite(np.asarray(value)))
        ]
        if bad:
            raise CheckpointError(
                f"checkpoint at step {step} ({where}) holds non-finite values in {bad[:3]}.{hint}"
            )
        return restored

    def restore_stored(self, step: int | None = None) -> dict[str, Any]:
        """The whole stored tree of checkpoint ``step`` (default: latest) as nested dicts, read with the
        shapes and dtypes the checkpoint records (to read part of another run's state, e.g. a backbone)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        where = os.path.join(self.directory, str(step))
        try:
            metadata = self._manager.item_metadata(step)
            tree = getattr(metadata, "tree", metadata)
            abstract = jax.tree.map(
                lambda m: _abstract(jax.ShapeDtypeStruct(tuple(m.shape), m.dtype)),
                tree,
                is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
            )
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as err:
            raise CheckpointError(
                f"checkpoint at step {step} ({where}) is unreadable: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}"
            ) from err

    def close(self) -> None:
        self._manager.close()
