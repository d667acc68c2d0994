"""Pickle-free ``.npz`` files for small parameter pytrees (cached metric networks) with JSON metadata."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from flax import traverse_util

_META = "__meta__"


def save_tree(path: str, tree: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write a nested dict of arrays and a JSON-able ``meta`` dict to ``path`` atomically."""
    flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}
    if _META in flat:
        raise ValueError(f"'{_META}' is reserved")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **flat, **{_META: np.asarray(json.dumps(meta, sort_keys=True))})
    os.replace(tmp, path)


def load_tree(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read what :func:`save_tree` wrote: ``(tree, meta)``."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f[_META]))
        flat = {tuple(k.split("/")): f[k] for k in f.files if k != _META}
    return traverse_util.unflatten_dict(flat), meta
