"""The base config: the shared groups and the chosen method's own, and their validation.

``get_config(method)`` holds

* ``data``: the keys of the dataset's kind (``latentebm_jax/data/settings.py``: images or text corpora);
* ``train``: the training loop (batch, length, logging, checkpoints);
* ``eval``: the evaluators to run (``metrics`` at the end and for ``--mode=eval``; ``interval_metrics`` at
  every ``train.eval_every`` steps) and the keys those evaluators read (``latentebm_jax/evaluation``);
* the method's own group(s) — model, sampler and optimiser settings — at the paper's reference setting
  (``methods.<module>.SPEC.configure``: LEBM's SVHN, the joint prior's SVHN, the diffusion prior's and
  BiDVL's CIFAR-10, the text LEBM's PTB).

Dataset files (``configs/<dataset>.py``) start from it and set only what differs. :func:`validate` rejects,
before anything compiles, a key no component reads (naming the nearest key that exists), a value of the
wrong type, and values outside what the reading component allows.
"""

from __future__ import annotations

import ml_collections

from latentebm_jax import evaluation, methods
from latentebm_jax.config_schema import (
    ConfigError,
    Setting,
    check_group,
    check_keys,
    group_of,
    non_negative,
    non_negative_int,
    positive_int,
)
from latentebm_jax.data.settings import check_dataset_name, data_group, validate_data

TRAIN = {
    "batch_size": Setting(100, "global batch (divided over the devices)", check=positive_int),
    "num_epochs": Setting(201, "training length in epochs", check=positive_int),
    "num_steps": Setting(
        -1,
        "training length in steps (-1 = num_epochs)",
        check=lambda x: x == -1 or x > 0,
        what="-1 (use num_epochs) or a positive integer",
    ),
    "log_every": Setting(50, "steps between metrics.jsonl records", check=positive_int),
    "eval_every": Setting(
        5000,
        "steps between eval.interval_metrics (0 = only at the end)",
        check=non_negative,
        what="a non-negative integer (0 = only at the end)",
    ),
    "eval_last_epochs": Setting(
        0,
        "also run eval.interval_metrics at the end of each of the last N epochs; summary.json gets each "
        "number's mean over them as <key>_last_<N>_epochs (LEBM Table 4 / ICCV Table 3 AUPRC protocol)",
        check=non_negative_int,
    ),
    "ckpt_every": Setting(1000, "steps between checkpoints", check=positive_int),
    "tensorboard": Setting(
        True, "write TensorBoard event files (scalars, images) to <workdir>/tensorboard (tensorboardX, no TF)"
    ),
    "wandb_project": Setting(
        "", "also log to Weights & Biases under this project ('' = off; needs `pip install wandb`)"
    ),
    "keep_checkpoints": Setting(3, "newest checkpoints kept", check=positive_int),
    "prefetch": Setting(2, "batches prepared ahead", check=non_negative_int),
    "bad_checkpoint": Setting(
        "stop",
        "a corrupted newest checkpoint: stop, or resume from the newest intact one (previous)",
        choices=("stop", "previous"),
    ),
    "max_abs_energy": Setting(
        1e6, "divergence guard: an energy beyond this magnitude is a warning (0 = off)", check=non_negative
    ),
    "min_grad_norm": Setting(
        1e-10,
        "divergence guard: generator gradient norms below this are a warning (0 = off)",
        check=non_negative,
    ),
    "divergence_patience": Setting(
        3, "divergence guard: warned log windows in a row that stop the run", check=positive_int
    ),
}
EVAL = {
    "batch_size": Setting(
        100, "batch of every evaluator's calls (divided over the local devices)", check=positive_int
    ),
    "metrics": Setting((), "evaluators run at the end of training and by --mode=eval (in order)"),
    "interval_metrics": Setting((), "evaluators run every train.eval_every steps"),
    "cache_dir": Setting("", 'metric caches; "" = next to the data (tfds) or ~/.cache/latentebm_jax'),
}


def eval_group(spec: methods.MethodSpec) -> ml_collections.ConfigDict:
    """The runner's ``eval`` keys and the keys of every evaluator the method can run."""
    return group_of({**EVAL, **evaluation.settings(evaluation.available(spec).values())})


def get_config(method: str = "lebm") -> ml_collections.ConfigDict:
    """The base groups and ``method``'s own, at the method's reference setting (its paper's dataset)."""
    spec = methods.spec(method or "lebm")
    c = ml_collections.ConfigDict()
    c.method = spec.name
    c.seed = 1
    c.data = data_group("svhn_cropped")
    c.train = group_of(TRAIN)
    c.eval = eval_group(spec)
    spec.configure(c)
    return c


def reference_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Every key ``config``'s method and dataset read, at the library's defaults: what :func:`validate`
    checks keys against, and what a resumed run compares keys its checkpoint lacks with (a key added by a
    later version of the library, held at its default, changes nothing)."""
    spec = methods.spec(config.get("method"))
    reference = get_config(spec.name)
    reference.data = data_group(config.get("data", {}).get("name"))
    if spec.adapt_reference is not None:
        spec.adapt_reference(reference, config)
    return reference


def validate(config: ml_collections.ConfigDict) -> None:
    """Validate ``config`` against its method's schema: keys, types, the values every reading component
    allows, cross-field checks. Raises :class:`ConfigError` naming the key, the value and the fix."""
    spec = methods.spec(config.get("method"))
    name = config.get("data", {}).get("name")
    check_dataset_name(name, config.get("data", {}).get("data_dir", ""))
    reference = reference_config(config)
    check_keys(config, reference, f"method {spec.name!r} with dataset {name!r}")
    if not 0 <= config.seed < 2**32:
        raise ConfigError(f"config key 'seed' has value {config.seed}; it must be an integer in [0, 2^32)")
    validate_data(config.data)
    check_group(config.train, TRAIN, "train")
    _check_loggers(config.train)
    check_group(config.eval, EVAL, "eval")
    spec.validate(config)
    evaluation.check_config(config, spec)


def _check_loggers(train: ml_collections.ConfigDict) -> None:
    """The packages the chosen loggers need are installed (checked without importing them)."""
    import importlib.util

    if train.tensorboard and importlib.util.find_spec("tensorboardX") is None:
        raise ConfigError(
            "config key 'train.tensorboard' is True but the tensorboardX package is missing; "
            "pip install tensorboardX, or set --config.train.tensorboard=False"
        )
    if train.wandb_project and importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            f"config key 'train.wandb_project' = {train.wandb_project!r} needs the wandb package; "
            "pip install wandb, or leave the key empty"
        )


SMOKE_METRICS = ("reconstruction", "recon_nll", "samples", "text_samples")


def smoke(config: ml_collections.ConfigDict) -> None:
    """Shrink ``config`` to a set-up check (``--smoke``): 3 training steps, each logged and the last
    checkpointed, no interval evaluation, and at the end only the cheap evaluators the config has
    (:data:`SMOKE_METRICS`) on one evaluation batch."""
    t, e = config.train, config.eval
    t.num_steps, t.log_every, t.ckpt_every, t.eval_every, t.eval_last_epochs = 3, 1, 3, 0, 0
    e.metrics = tuple(m for m in e.metrics if m in SMOKE_METRICS)
    e.interval_metrics = ()
    for key in ("max_test_examples", "num_samples"):
        if key in e:
            e[key] = min(e[key], e.batch_size) if e[key] > 0 else e.batch_size


def add_metrics(config: ml_collections.ConfigDict, *names: str) -> None:
    """Add evaluators to ``eval.metrics`` (before the sample pictures), keeping the order and no repeats."""
    pictures = ("samples", "chains", "text_samples", "text_chains")
    metrics = list(config.eval.metrics)
    head = [m for m in metrics if m not in pictures]
    tail = [m for m in metrics if m in pictures]
    config.eval.metrics = tuple(head + [n for n in names if n not in head] + tail)
