"""The run directory: checked before anything compiles, held by one run at a time, and the record of which
config wrote which checkpoint.

* :func:`check_workdir`: a workdir that is a file, is not writable, is not valid UTF-8, or (for
  ``--mode=eval|sample``) holds no checkpoint is a :class:`WorkdirError` naming the path and the fix;
* :class:`WorkdirLock`: ``<workdir>/.lock`` holds the PID and host of the run using the directory; a
  second run is refused naming them; a lock whose process is gone is taken over;
* :func:`check_provenance`: a run that continues from (or evaluates) a checkpoint with a config that
  differs in a key that changes the model, the data or the optimisation is refused with the list of keys
  (old → new), unless the change is allowed explicitly; :func:`record_config` keeps every earlier config
  in ``config_history.jsonl`` beside ``config.json``.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any

from latentebm_jax.config_schema import leaf_values
from latentebm_jax.training.metrics_writer import write_json

log = logging.getLogger("latentebm_jax.training")

# Keys a run may change between its checkpoints without changing what it computes: how long it trains, how
# often it logs, evaluates and checkpoints, where the data lies, and everything evaluation does.
RUN_ONLY_KEYS = (
    "train.num_epochs",
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.ckpt_every",
    "train.keep_checkpoints",
    "train.prefetch",
    "train.bad_checkpoint",
    "train.max_abs_energy",
    "train.min_grad_norm",
    "train.divergence_patience",
    "train.tensorboard",
    "train.wandb_project",
    "data.data_dir",
)
RUN_ONLY_GROUPS = ("eval.",)


class WorkdirError(RuntimeError):
    """The run directory cannot be used as asked (the message says why and what to do)."""


def check_workdir(workdir: str, mode: str) -> str:
    """The absolute run directory after checking it can serve ``mode`` (``train``, ``eval``, ``sample``).

    Raises:
      WorkdirError naming the path and the fix.
    """
    try:
        workdir.encode("utf-8")
    except UnicodeEncodeError as err:
        raise WorkdirError(f"--workdir {workdir!r} is not valid UTF-8; choose a plain path") from err
    if not workdir.strip():
        raise WorkdirError("--workdir is empty; name a run directory, e.g. --workdir=runs/digits")
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"--workdir {path} is a file, not a directory; name a directory")
    if mode == "train":
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as err:
            raise WorkdirError(
                f"cannot create --workdir {path}: {err.strerror}; choose a writable path"
            ) from err
        if not os.access(path, os.W_OK | os.X_OK):
            raise WorkdirError(f"--workdir {path} is not writable; fix its permissions or choose another")
        return path
    if not os.path.isdir(os.path.join(path, "checkpoints")) or not any(
        name.isdigit() for name in os.listdir(os.path.join(path, "checkpoints"))
    ):
        raise WorkdirError(
            f"no checkpoint in {path}: --mode={mode} needs a trained run (train first with --mode=train, or "
            f"check --workdir)"
        )
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkdirLock:
    """``<workdir>/.lock`` while a run uses the directory (a context manager; a no-op when ``enabled`` is
    false, e.g. on the processes other than 0 of a multi-host run)."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.path = os.path.join(workdir, ".lock")
        self.enabled = enabled
        self.held = False

    def _info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }

    def acquire(self) -> None:
        if not self.enabled:
            return
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._read()
                mine = other.get("host") == socket.gethostname()
                pid = other.get("pid")
                if isinstance(pid, int) and mine and not _alive(pid):
                    log.warning("taking over the stale lock of PID %d (not running) in %s", pid, self.path)
                    os.remove(self.path)
                    continue
                if not other:  # unreadable: a run that died while writing it
                    log.warning("taking over an unreadable lock file %s", self.path)
                    os.remove(self.path)
                    continue
                raise WorkdirError(
                    f"{os.path.dirname(self.path)} is in use by PID {pid} on {other.get('host')} since "
                    f"{other.get('started')} ({other.get('command')}); wait for it or use another --workdir "
                    f"(if that run is gone, delete {self.path})"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(self._info(), f)
            self.held = True
            return

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.held and self._read().get("pid") == os.getpid():
            os.remove(self.path)
        self.held = False

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- provenance


def config_changes(
    old: dict[str, Any],
    new: dict[str, Any],
    run_only: tuple[str, ...] = (),
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """``key: old → new`` for every key that changes the model, the data or the optimisation (``run_only``:
    more keys that do not, e.g. a method's).

    ``defaults`` (flat ``a.b`` keys → the library's default values): a key absent from ``old`` that ``new``
    holds at its default is a key a later version of the library added, and every added key's default keeps
    the earlier behaviour, so it is no change."""
    a, b = leaf_values(old), leaf_values(new)
    skip = set(RUN_ONLY_KEYS) | set(run_only)
    defaults = leaf_values(defaults) if defaults else {}
    out = []
    for key in sorted(set(a) | set(b)):
        if key in skip or key.startswith(RUN_ONLY_GROUPS) or a.get(key, "(absent)") == b.get(key, "(absent)"):
            continue
        if key not in a and key in defaults and _same(b[key], defaults[key]):
            continue
        out.append(f"{key}: {a.get(key, '(absent)')!r} → {b.get(key, '(absent)')!r}")
    return out


def _same(x: Any, y: Any) -> bool:
    """Equal as JSON values (tuples and lists alike)."""
    return json.dumps(x, sort_keys=True, default=str) == json.dumps(y, sort_keys=True, default=str)


def config_json(config) -> dict[str, Any]:
    """A config as plain JSON."""
    return json.loads(config.to_json_best_effort())


def check_provenance(
    stored: dict[str, Any] | None,
    config,
    step: int,
    allow_change: bool,
    run_only: tuple[str, ...] = (),
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """Compare the config a checkpoint was written with (``stored``) to ``config``; returns the changed keys
    (``defaults``: see :func:`config_changes`).

    Raises:
      WorkdirError listing the keys (old → new) when they change the model, the data or the optimisation
      and ``allow_change`` is false.
    """
    if stored is None:
        return []
    changes = config_changes(stored, config_json(config), run_only, defaults)
    if changes and not allow_change:
        raise WorkdirError(
            f"the checkpoint at step {step} was written with another config:\n  "
            + "\n  ".join(changes[:20])
            + ("\n  …" if len(changes) > 20 else "")
            + "\nUse the config it was written with, or pass --allow_config_change to continue with the new "
            "values (the earlier config is kept in config_history.jsonl)."
        )
    return changes


def record_config(config, workdir: str, changes: list[str]) -> None:
    """Write ``config.json``; a differing earlier one goes to ``config_history.jsonl`` with the changes."""
    path = os.path.join(workdir, "config.json")
    new = config_json(config)
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
        if old is not None and old != new:
            entry = {
                "replaced": datetime.datetime.now().isoformat(timespec="seconds"),
                "changes": changes or config_changes(old, new),
                "config": old,
            }
            with open(os.path.join(workdir, "config_history.jsonl"), "a") as f:
                f.write(json.dumps(entry) + "\n")
            log.warning("config.json replaced; the earlier config is in config_history.jsonl")
    write_json(path, new)


def is_disk_full(err: BaseException) -> bool:
    """Whether an error is the file system running out of space (or quota)."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
