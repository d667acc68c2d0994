"""Host-side batching: deterministic shuffling by (seed, epoch), per-host sharding, background prefetch.

The batch of global step ``s`` is a pure function of ``(seed, s)``: epoch ``e = s // steps_per_epoch``
shuffles with ``default_rng([seed, e])`` and takes slice ``s % steps_per_epoch`` (the remainder of an
epoch is dropped, as ``drop_last``). A run resumed at step ``s`` therefore sees exactly the batches an
uninterrupted run sees. With several hosts, host ``i`` reads rows ``[i·L, (i+1)·L)`` of every global batch.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Iterator

import numpy as np

from latentebm_jax.data.sources import ImageSource


class EpochBatcher:
    """Global batches of a training source, addressed by step."""

    def __init__(
        self,
        source: ImageSource,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if global_batch_size % process_count:
            raise ValueError(f"global batch {global_batch_size} is not divisible by {process_count} hosts")
        if len(source) < global_batch_size:
            raise ValueError(
                f"the training set has {len(source)} examples, fewer than one batch of "
                f"{global_batch_size}; lower train.batch_size"
            )
        self.source = source
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // process_count
        self.seed = seed
        self.process_index = process_index
        self.steps_per_epoch = len(source) // global_batch_size
        self._perm_cache: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm_cache = (epoch, rng.permutation(len(self.source)))
        return self._perm_cache[1]

    def indices_at(self, step: int) -> np.ndarray:
        """This host's example indices for global step ``step``."""
        epoch, pos = divmod(int(step), self.steps_per_epoch)
        start = pos * self.global_batch_size + self.process_index * self.local_batch_size
        return self._permutation(epoch)[start : start + self.local_batch_size]

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        """This host's share of the batch of global step ``step``."""
        return self.source.get(self.indices_at(step))

    def iterate(self, start_step: int, end_step: int, prefetch: int = 2) -> Iterator[dict]:
        """Batches for steps ``start_step … end_step − 1``, prepared ``prefetch`` steps ahead in a thread."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            queue: collections.deque = collections.deque()
            next_step = start_step
            while next_step < end_step and len(queue) < max(prefetch, 1):
                queue.append(pool.submit(self.batch_at, next_step))
                next_step += 1
            while queue:
                batch = queue.popleft().result()
                if next_step < end_step:
                    queue.append(pool.submit(self.batch_at, next_step))
                    next_step += 1
                yield batch


def iterate_once(
    source: ImageSource, batch_size: int, limit: int | None = None
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Every example of ``source`` once, in order, as ``(batch, num_valid)``.

    The last batch is padded (by repeating its final example) to ``batch_size`` so compiled evaluation
    functions see one shape; only the first ``num_valid`` rows are real.
    """
    n = len(source) if limit is None else min(limit, len(source))
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        valid = len(idx)
        if valid < batch_size:
            idx = np.concatenate([idx, np.full(batch_size - valid, idx[-1])])
        yield source.get(idx), valid
