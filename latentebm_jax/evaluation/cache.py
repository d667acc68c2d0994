"""Where metric caches live and how they are named (domain classifiers, FID statistics, language models)."""

from __future__ import annotations

import hashlib
import os

from latentebm_jax.data import TFDS_DATASETS
from latentebm_jax.data.tfds_sources import default_data_dir


def cache_root(config) -> str:
    """``eval.cache_dir``; else next to the data (``<data_dir>/latentebm_jax_cache`` for tfds datasets); else
    ``$LATENTEBM_JAX_CACHE`` or ``~/.cache/latentebm_jax`` (embedded data)."""
    if config.eval.cache_dir:
        return config.eval.cache_dir
    if config.data.name in TFDS_DATASETS:
        return os.path.join(config.data.data_dir or default_data_dir(), "latentebm_jax_cache")
    return os.environ.get("LATENTEBM_JAX_CACHE") or os.path.expanduser("~/.cache/latentebm_jax")


def dataset_id(data_config) -> str:
    """A file-name-safe identity of the preprocessed dataset (name, and for images size, channels, crop and
    resizing)."""
    d = data_config
    if "image_size" not in d:
        return str(d.name)
    return f"{d.name}_{d.image_size}x{d.image_size}x{d.channels}_{d.crop}_{d.resize_method}"


def file_digest(path: str) -> str:
    """The first 12 hex digits of a file's SHA-1 (cache keys that change when the file does)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]
