"""Orbax checkpoints of the whole :class:`TrainState`: atomic, resumable, pickle-free, verified.

Every checkpoint gets a manifest, ``<step>/latentebm_manifest.json``: the config that wrote it, a SHA-256 of
every stored array (its dtype, shape and bytes) and of every file orbax wrote. Restoring

* checks the stored tree against the state the current config builds *before* reading any array, so an
  incompatible checkpoint (another architecture or latent size) is reported by name and shape;
* checks the files against the manifest, then every restored array: a changed bit anywhere is a
  :class:`CheckpointError` naming the step and the arrays (or files) that differ;
* reports unreadable files (truncated or garbled) with the step and the path instead of a traceback from
  deep inside the storage layer.

:meth:`Checkpointer.restore_newest_intact` falls back to earlier checkpoints when asked to.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

MANIFEST = "latentebm_manifest.json"
log = logging.getLogger("latentebm_jax.checkpoint")


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


def _leaf_in_message(message: str, names: Any) -> str | None:
    """The stored array a storage error message names (orbax stores ``a.b.c`` under ``a.b.c/``)."""
    for name in sorted(names, key=len, reverse=True):
        if any(f"{q}{form}/" in message for q in "\"'" for form in (name, name.replace(".", "/"))):
            return name
    return None


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    """A restore target for one leaf: its shape and dtype, placed where it is (or on the first device)."""
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
        device = jax.local_devices()[0]
        return jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=jax.sharding.SingleDeviceSharding(device)
        )
    return ocp.utils.to_shape_dtype_struct(leaf)


def array_digest(value: Any) -> str:
    """SHA-256 of an array's dtype, shape and bytes (the manifest's checksum of a stored array)."""
    a = np.ascontiguousarray(np.asarray(jax.device_get(value)))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(directory: str) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` but the manifest, by relative path."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if rel != MANIFEST:
                out[rel] = _file_digest(path)
    return out


def _disk_full(err: BaseException) -> bool:
    text = str(err)
    return (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left" in text


class Checkpointer:
    """Periodic and final checkpoints of a run's state under ``<workdir>/checkpoints``.

    ``primary``: this process writes the manifests (process 0 of a multi-host run).
    """

    def __init__(self, workdir: str, max_to_keep: int = 3, primary: bool = True):
        self.primary = primary
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

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, config: dict[str, Any] | None = None) -> None:
        """Save ``state`` (on the host, not replicated) as checkpoint ``step`` with its manifest (``config``:
        the run's config as JSON); overwrites nothing.

        Raises:
          OSError (``ENOSPC``) when the disk is full, whatever layer noticed it.
        """
        if step in self._manager.all_steps():
            return
        try:
            self._manager.save(int(step), args=ocp.args.StandardSave(state))
            self._manager.wait_until_finished()
            if self.primary:
                manifest = {
                    "step": int(step),
                    "config": config,
                    "arrays": {name: array_digest(v) for name, v in _named_leaves(state).items()},
                    "files": _files(self.step_dir(step)),
                }
                tmp = os.path.join(self.step_dir(step), MANIFEST + ".tmp")
                with open(tmp, "w") as f:
                    json.dump(manifest, f)
                os.replace(tmp, os.path.join(self.step_dir(step), MANIFEST))
        except Exception as err:
            if _disk_full(err) and not isinstance(err, OSError):
                raise OSError(errno.ENOSPC, f"no space left while writing checkpoint {step}") from err
            raise

    def read_manifest(self, step: int) -> dict[str, Any] | None:
        """The manifest of checkpoint ``step`` (``None`` for a checkpoint written without one)."""
        path = os.path.join(self.step_dir(step), MANIFEST)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint at step {step} ({self.step_dir(step)}) is corrupted: its manifest is unreadable "
                f"({err}).{self._hint(step)}"
            ) from err

    def _hint(self, step: int) -> str:
        others = [s for s in self.all_steps() if s < step]
        if others:
            return (
                f" Earlier checkpoints there: {others}; set --config.train.bad_checkpoint=previous to resume "
                f"from the newest intact one, or delete {self.step_dir(step)}."
            )
        return " Delete it or start a fresh run with another --workdir."

    def restore(self, target: Any, step: int | None = None) -> Any:
        """Restore checkpoint ``step`` (default: latest) into the structure and shapes of ``target``, verified
        against its manifest.

        Raises:
          CheckpointError naming the step and what is wrong: another architecture (names and shapes), an
          unreadable file, arrays or files that differ from their checksums, non-finite values.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        where = self.step_dir(step)
        hint = self._hint(step)
        expected = _named_leaves(target)
        manifest = self.read_manifest(step)
        changed_files = []
        if manifest is not None:
            now = _files(where)
            changed_files = sorted(rel for rel, digest in manifest["files"].items() if now.get(rel) != digest)
        try:
            metadata = self._manager.item_metadata(step)
            stored = _named_leaves(getattr(metadata, "tree", metadata))
        except Exception as err:
            raise CheckpointError(self._corrupted(step, err, expected, changed_files)) from err
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
            raise CheckpointError(self._corrupted(step, err, expected, changed_files)) from err
        if manifest is not None:
            differ = [
                name
                for name, value in _named_leaves(restored).items()
                if manifest["arrays"].get(name) not in (None, array_digest(value))
            ]
            if differ or changed_files:
                arrays = (
                    f"{len(differ)} array(s) differ from their recorded checksums: {differ[:3]}"
                    if differ
                    else "every array still matches its checksum"
                )
                raise CheckpointError(
                    f"checkpoint at step {step} ({where}) is corrupted: {arrays}; files changed since it was "
                    f"written: {changed_files[:3] or 'none'}.{hint}"
                )
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

    def _corrupted(self, step: int, err: Exception, names: Any, changed_files: list[str]) -> str:
        """The message for a checkpoint the storage layer cannot read: the step, the array (when the error
        names it), the files that changed since it was written, the cause's first line."""
        text = str(err).splitlines()[0] if str(err) else ""
        leaf = _leaf_in_message(text, names)
        what = f"the data of {leaf} is unreadable" if leaf else "its files are unreadable"
        files = f"; files changed since it was written: {changed_files[:3]}" if changed_files else ""
        cause = f"{type(err).__name__}: {text.split(' [tensorstore_spec')[0][:240]}"
        where = self.step_dir(step)
        return f"checkpoint at step {step} ({where}) is corrupted: {what}{files} ({cause}).{self._hint(step)}"

    def restore_newest_intact(self, target: Any, fallback: bool) -> tuple[Any, int]:
        """The newest checkpoint that restores; with ``fallback`` an unusable one is skipped (with a warning)
        for the one before it. Returns ``(state, step)``.

        Raises:
          CheckpointError of the newest checkpoint if none restores (or ``fallback`` is off).
        """
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        first_error = None
        for step in steps:
            try:
                return self.restore(target, step), step
            except CheckpointError as err:
                first_error = first_error or err
                if not fallback:
                    raise
                log.warning(
                    "checkpoint %d is unusable, trying the one before it: %s", step, str(err).split("\n")[0]
                )
        raise first_error

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
