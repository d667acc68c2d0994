"""What training, evaluation and sampling share: data, batching, the bound method and its evaluators, keys,
restoring."""

from __future__ import annotations

import logging

import jax

from latentebm_jax import evaluation
from latentebm_jax.checkpoint import Checkpointer
from latentebm_jax.config_schema import ConfigError
from latentebm_jax.data import DataSplits, EpochBatcher, load_splits
from latentebm_jax.methods import Method, make_method, spec
from latentebm_jax.methods.base import EvalContext
from latentebm_jax.state import TrainState

log = logging.getLogger("latentebm_jax.training")

# Distinct key streams derived from the seed.
INIT_STREAM, EVAL_STREAM, SAMPLE_STREAM = 0, 1, 2


def stream_key(seed: int, stream: int) -> jax.Array:
    """The typed key of one named random stream of a run."""
    return jax.random.fold_in(jax.random.key(seed), stream)


def is_main_process() -> bool:
    """Whether this is process 0 (the one that writes files)."""
    return jax.process_index() == 0


def check_data(config, splits: DataSplits) -> None:
    """What only the loaded data shows: the training split is not empty and the batch fits it (the held-out
    class and the kept classes are checked by ``load_splits``), before anything compiles."""
    n, gb = len(splits.train), config.train.batch_size
    if n == 0:
        raise ConfigError(f"the training split of {config.data.name!r} is empty (check data.classes)")
    if gb > n:
        raise ConfigError(
            f"config key 'train.batch_size' = {gb} is larger than the {n} training examples; use at most {n}"
        )


class RunSetup:
    """Data splits, the step-addressed batcher, the bound :class:`Method` and the evaluators the config names.

    Building it checks that every named evaluator finds the predict functions it needs; nothing is compiled
    yet (the method's functions are jitted lazily).
    """

    def __init__(self, config, splits: DataSplits | None = None):
        self.config = config
        self.splits = splits if splits is not None else load_splits(config.data)
        gb = config.train.batch_size
        n_dev = jax.local_device_count() * jax.process_count()
        if gb % n_dev:
            raise ConfigError(
                f"config key 'train.batch_size' = {gb} must be divisible by the {n_dev} devices; use a "
                f"multiple of {n_dev}"
            )
        check_data(config, self.splits)
        self.batcher = EpochBatcher(
            self.splits.train, gb, config.seed, jax.process_index(), jax.process_count()
        )
        self.steps_per_epoch = self.batcher.steps_per_epoch
        self.method: Method = make_method(config, self.splits, self.steps_per_epoch)
        method_spec = spec(config.method)
        self.run_only_keys = method_spec.run_only_keys
        self.evaluators = evaluation.selected(config, method_spec, "metrics")
        self.interval_evaluators = evaluation.selected(config, method_spec, "interval_metrics")
        evaluation.check_method(self.method, self.evaluators, "eval.metrics")
        evaluation.check_method(self.method, self.interval_evaluators, "eval.interval_metrics")
        t = config.train
        self.total_steps = t.num_steps if t.num_steps > 0 else t.num_epochs * self.steps_per_epoch

    def init_key(self) -> jax.Array:
        return stream_key(self.config.seed, INIT_STREAM)

    def initial_state(self) -> TrainState:
        """The state of a fresh run."""
        return self.method.init(self.init_key())

    def restore_or_init(self, ckpt: Checkpointer) -> TrainState:
        """The newest checkpoint (restored into the method's state shapes, nothing initialised; with
        ``train.bad_checkpoint = "previous"`` the newest intact one), or a fresh state if there is none."""
        if ckpt.latest_step() is None:
            return self.initial_state()
        fallback = self.config.train.bad_checkpoint == "previous"
        state, step = ckpt.restore_newest_intact(self.method.state_shapes(self.init_key()), fallback)
        log.info("resuming from checkpoint at step %d in %s", step, ckpt.directory)
        return state

    def context(self, params, out_dir: str, step: int, stream: int) -> EvalContext:
        """The evaluators' view of a checkpoint: its parameters, the data, where to write, its key."""
        return EvalContext(
            config=self.config,
            method=self.method,
            params=params,
            splits=self.splits,
            out_dir=out_dir,
            step=step,
            key=jax.random.fold_in(stream_key(self.config.seed, stream), step),
            cache_dir=evaluation.cache_root(self.config),
            dataset_id=evaluation.dataset_id(self.config.data),
            main_process=is_main_process(),
        )
