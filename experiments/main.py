"""Train, evaluate or sample a latent-EBM model from a config file.

    python -m experiments.main --config=configs/digits.py --workdir=runs/digits
    python -m experiments.main --config=configs/svhn.py:lebm --workdir=runs/svhn \
        --config.data.data_dir=/data/tfds --config.train.batch_size=64
    python -m experiments.main --config=configs/digits.py --workdir=runs/digits --mode=eval

``--mode=train`` resumes from the newest checkpoint in the workdir; ``eval`` and ``sample`` use it.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally ':method'.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, pictures).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host TPU pods)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Validate before importing anything that compiles.
    from configs.default import validate
    from latentebm_jax.training.validation import ConfigError

    config = _CONFIG.value
    try:
        validate(config)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2

    import jax

    from latentebm_jax.data import DatasetNotFoundError
    from latentebm_jax.metrics.inception import InceptionWeightsError
    from latentebm_jax.training import loop
    from latentebm_jax.training.checkpoint import CheckpointError

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    logging.getLogger("latentebm_jax").setLevel(logging.INFO)
    workdir = _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    print(
        f"{_MODE.value} {config.method} on {config.data.name}: {jax.device_count()} "
        f"{jax.default_backend()} device(s), workdir {os.path.abspath(workdir)}",
        flush=True,
    )
    try:
        if _MODE.value == "train":
            summary = loop.train(config, workdir)
        elif _MODE.value == "eval":
            summary = loop.evaluate(config, workdir)
        else:
            paths = loop.sample(config, workdir)
            print("wrote:\n  " + "\n  ".join(paths))
            return 0
    except (
        DatasetNotFoundError,
        CheckpointError,
        InceptionWeightsError,
        loop.NonFiniteError,
        FileNotFoundError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    shown = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, list))}
    print(
        "summary: "
        + ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    )
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
