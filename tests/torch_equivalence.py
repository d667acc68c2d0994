"""Helpers of the PyTorch-equivalence tests (``tests/test_bench_*.py``): zero noise for the library's
draws and tree comparisons. Each test loads the library's weights into a PyTorch reference step, sets every
Gaussian draw to zero in both and compares the results."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def zeros_like_normal(key: Any, shape: tuple[int, ...] = (), dtype: Any = jnp.float32, *args, **kwargs):
    """Drop-in for ``jax.random.normal`` that draws zeros: patch ``jax.random.normal`` with it."""
    return jnp.zeros(shape, dtype)


def assert_trees_close(
    got: Any, want: Any, what: str, rtol: float = 0.0, atol: float = 0.0, rel: float | None = None
) -> None:
    """Every leaf of ``got`` equals ``want``'s at the same path (same structure); ``rel`` sets each leaf's
    ``atol`` to ``rel · max |want leaf|``."""
    flat_want = jax.tree_util.tree_flatten_with_path(want)[0]
    flat_got = jax.tree_util.tree_flatten_with_path(got)[0]
    assert len(flat_got) == len(flat_want), f"{what}: {len(flat_got)} leaves, expected {len(flat_want)}"
    for (path, g), (_, w) in zip(flat_got, flat_want):
        tol = atol if rel is None else rel * float(np.abs(w).max())
        np.testing.assert_allclose(g, w, rtol=rtol, atol=tol, err_msg=f"{what} {jax.tree_util.keystr(path)}")
