"""What training, evaluation and sampling share: data, batching, the bound method, keys, checkpoints."""

from __future__ import annotations

import json
import logging
import os

import jax

from latentebm_jax.data import DataSplits, EpochBatcher, load_splits
from latentebm_jax.methods import Method, get_method
from latentebm_jax.training.checkpoint import Checkpointer
from latentebm_jax.training.metrics_writer import write_json
from latentebm_jax.training.state import TrainState

log = logging.getLogger("latentebm_jax.training")

# Distinct key streams derived from the seed.
INIT_STREAM, EVAL_STREAM, SAMPLE_STREAM = 0, 1, 2


def stream_key(seed: int, stream: int) -> jax.Array:
    """The typed key of one named random stream of a run."""
    return jax.random.fold_in(jax.random.key(seed), stream)


def is_main_process() -> bool:
    return jax.process_index() == 0


def say(message: str) -> None:
    """Print ``message`` on the main process only (evaluation results, skipped metrics, chains)."""
    if is_main_process():
        print(message, flush=True)


def write_config(config, workdir: str) -> None:
    """Write ``config.json``, warning if the workdir held a different config."""
    path = os.path.join(workdir, "config.json")
    new = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != new:
            log.warning("config differs from the one in %s; the run continues with the new one", path)
    write_json(path, new)


class RunSetup:
    """Data splits, the step-addressed batcher, the bound :class:`Method` and its initial state."""

    def __init__(self, config, splits: DataSplits | None = None):
        self.config = config
        self.splits = splits if splits is not None else load_splits(config.data)
        gb = config.train.batch_size
        n_dev = jax.local_device_count() * jax.process_count()
        if gb % n_dev:
            raise ValueError(f"config key 'train.batch_size' = {gb} must be divisible by the {n_dev} devices")
        self.batcher = EpochBatcher(
            self.splits.train, gb, config.seed, jax.process_index(), jax.process_count()
        )
        self.steps_per_epoch = self.batcher.steps_per_epoch
        self.method: Method = get_method(config, self.steps_per_epoch, self.splits.vocab)
        t = config.train
        epochs = self.method.num_epochs or t.num_epochs
        self.total_steps = t.num_steps if t.num_steps > 0 else epochs * self.steps_per_epoch

    def initial_state(self) -> TrainState:
        return self.method.init(stream_key(self.config.seed, INIT_STREAM))


def restore_latest(ckpt: Checkpointer, state: TrainState) -> TrainState:
    """The newest checkpoint restored into ``state``'s structure, or ``state`` if there is none."""
    step = ckpt.latest_step()
    if step is None:
        return state
    log.info("resuming from checkpoint at step %d in %s", step, ckpt.directory)
    return ckpt.restore(state, step)
