"""Train, evaluate or sample a latent-space EBM model from a config file.

Quick start (the embedded digits; no download; a few minutes on 2 CPU cores):
  python -m experiments.main --config=configs/digits.py --workdir=runs/digits
  python -m experiments.main --config=configs/digits.py --workdir=runs/smoke --smoke   # set-up check, < 1 min

--config=configs/<file>.py[:method] (':method' picks the method, default the first named; each file has
the papers' settings for the methods named beside it):
  digits.py         embedded 8×8 digits (no download): lebm, joint, hvae, diffusion, bidvl; the CPU runs
  digits32.py       the digits at 32×32×3 with the papers' SVHN-sized networks
  digits_toy.py     digits 0–2 with 2-d latents (ICCV 2023's toy): lebm, joint
  digits_nvae.py    the digits on an NVAE backbone: nvae, diffusion
  text_toy.py       shipped toy-grammar sentences: lebm_text (CPU-sized)
  text_modes.py     shipped sentences with sentence-level choices: lebm_text (CPU-sized)
  svhn.py           SVHN 32×32 (tfds svhn_cropped): lebm, joint, bidvl
  cifar10.py        CIFAR-10 32×32: lebm, joint, bidvl, nvae, diffusion
  celeba64.py       CelebA 64×64: lebm, joint, hvae, diffusion, bidvl
  celeba32.py       CelebA 32×32 (BiDVL's crop): bidvl
  celeba_hq256.py   CelebA-HQ 256×256 on NVAE: nvae, diffusion
  mnist.py          MNIST anomaly detection (one digit held out): lebm, joint, hvae, diffusion
  fashion_mnist.py  Fashion-MNIST 32×32: lebm, joint
  ptb.py, yahoo.py  text corpora from local files: lebm_text
  snli.py           SNLI sentences (tfds): lebm_text
  Real datasets are read from a local tfds data_dir (--config.data.data_dir=DIR; see the README).

Methods (the ':method' part):
  lebm       LEBM (Pang et al. 2020): one latent vector, EBM prior, short-run Langevin prior and posterior
  lebm_text  LEBM on sentences: an LSTM decoder (text configs: ptb, snli, yahoo, text_toy, text_modes)
  joint      Joint hierarchical EBM prior (Cui, Wu, Han, ICCV 2023) with an inference network
  hvae       The hierarchical VAE backbone of the diffusion prior (stage 1)
  nvae       NVAE trained by its own objective (stage 1 on NVIDIA's architecture)
  diffusion  Diffusion hierarchical EBM prior (Cui & Han, ICML 2024), stage 2 on a trained backbone:
             --config.diffusion.backbone_dir=<stage-1 workdir>
  bidvl      BiDVL (Kan et al., CVPR 2022): MCMC-free bi-level learning

--mode: train (default; resumes from the newest checkpoint in --workdir), eval (scores the newest
  checkpoint again: summary.json), sample (sample grids and long-run chains into <workdir>/samples_final).

Overrides: --config.<group>.<key>=<value>, e.g. --config.train.batch_size=64
  --config.sampler.prior_steps=40 "--config.eval.metrics=('reconstruction','fd')". An unknown key is refused
  naming the nearest one; every key and what it means: configs/default.py and each method's module.
A run writes checkpoints, metrics.jsonl, TensorBoard events (tensorboard --logdir=<workdir>),
loss_curves.png, sample pictures and summary.json into --workdir.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file configs/<file>.py, optionally ':method'.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, pictures).")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "sample"], "train (resumes), eval or sample the newest checkpoint."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() first: on TPU pods and SLURM/cloud clusters JAX finds the "
    "coordinator itself; elsewhere also pass --coordinator_address, --num_processes and --process_id.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (with --distributed), e.g. localhost:12355."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 … num_processes-1.")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Continue from (or evaluate) a checkpoint written with a config that differs in keys that change the "
    "model, the data or the optimisation; the earlier config is kept in config_history.jsonl.",
)
_DEBUG = flags.DEFINE_bool("debug", False, "Show the Python traceback of an error instead of one line.")
_NUM_SAMPLES = flags.DEFINE_integer(
    "num_samples",
    0,
    "With --mode=sample: also export this many samples as <workdir>/samples_final/samples_<N>.npz (uint8 "
    "NHWC, key arr_0) and a folder of PNGs, for clean-fid, torch-fidelity or the TF FID scripts.",
)
_SAMPLES_NPZ = flags.DEFINE_string(
    "samples_npz",
    None,
    "With --mode=eval: score this .npz of samples (uint8 NHWC, e.g. another model's) with fd and FID/IS "
    "against the config's dataset instead of a checkpoint; writes <workdir>/scores_<name>.json.",
)
_SMOKE = flags.DEFINE_bool(
    "smoke",
    False,
    "Check a set-up: a few training steps and a small evaluation (reconstructions, samples) instead of the "
    "config's length and evaluators; under a minute on 2 CPU cores for the digits configs.",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Validate before importing anything that compiles.
    from configs.default import reference_config, smoke, validate
    from latentebm_jax.config_schema import ConfigError

    config = _CONFIG.value
    try:
        if _SMOKE.value:
            smoke(config)
        validate(config)
        _check_distributed_flags()
        _check_sample_flags()
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2

    from latentebm_jax import xla_cpu

    cpu_kernels = xla_cpu.configure()  # before JAX starts its backends
    import jax

    from latentebm_jax.training import loop
    from latentebm_jax.training.preemption import EXIT_PREEMPTED, Preempted
    from latentebm_jax.training.workdir import config_json

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    if _DISTRIBUTED.value:
        try:
            jax.distributed.initialize(
                coordinator_address=_COORDINATOR.value,
                num_processes=_NUM_PROCESSES.value,
                process_id=_PROCESS_ID.value,
                initialization_timeout=_INIT_TIMEOUT_S,
            )
        except Exception as err:  # no cluster detected, coordinator unreachable, processes missing
            if _DEBUG.value:
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(
                f"error: --distributed could not join the other processes ({first[:300]}); pass "
                f"--coordinator_address, --num_processes and --process_id unless the cluster sets them, "
                f"and start every process within {_INIT_TIMEOUT_S} s",
                file=sys.stderr,
            )
            return 1
    _log_plainly()
    workdir = _WORKDIR.value
    defaults = config_json(reference_config(config))  # keys added since a checkpoint, at these, are no change
    allow = {"allow_config_change": _ALLOW_CHANGE.value, "config_defaults": defaults}
    print(
        f"{_MODE.value} {config.method} on {config.data.name}: {jax.device_count()} "
        f"{jax.default_backend()} device(s), workdir {os.path.abspath(workdir)}",
        flush=True,
    )
    if jax.default_backend() == "cpu":
        print(f"XLA:CPU kernels: {cpu_kernels.reason}", flush=True)
    try:
        if _MODE.value == "train":
            summary = loop.train(config, workdir, **allow)
        elif _MODE.value == "eval" and _SAMPLES_NPZ.value:
            from latentebm_jax.training.samples_io import score_samples

            summary = score_samples(config, _SAMPLES_NPZ.value, workdir)
        elif _MODE.value == "eval":
            summary = loop.evaluate(config, workdir, **allow)
        else:
            paths = loop.sample(config, workdir, num_samples=_NUM_SAMPLES.value, **allow)
            print("wrote:\n  " + "\n  ".join(paths))
            return 0
    except Preempted as stop:
        print(str(stop), file=sys.stderr)
        return EXIT_PREEMPTED
    except Exception as err:
        status = user_error(err, workdir)
        if status is None or _DEBUG.value:
            raise
        return status
    shown = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, list))}
    print(
        "summary: "
        + ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    )
    return 0


def _log_plainly() -> None:
    """The library's log lines (progress lines when stderr is not a terminal, resuming, warnings) as
    ``HH:MM:SS message``, without absl's prefix."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    library = logging.getLogger("latentebm_jax")
    library.setLevel(logging.INFO)
    library.handlers = [handler]
    library.propagate = False


_INIT_TIMEOUT_S = 300  # how long a process waits for the others to join


def _check_distributed_flags() -> None:
    """The explicit multi-process flags go together and make sense (before anything starts)."""
    from latentebm_jax.config_schema import ConfigError

    given = {
        "--coordinator_address": _COORDINATOR.value,
        "--num_processes": _NUM_PROCESSES.value,
        "--process_id": _PROCESS_ID.value,
    }
    named = [k for k, v in given.items() if v is not None]
    if named and not _DISTRIBUTED.value:
        raise ConfigError(f"{', '.join(named)} only apply to multi-process runs; add --distributed")
    n, i = _NUM_PROCESSES.value, _PROCESS_ID.value
    if n is not None and n < 1:
        raise ConfigError(f"--num_processes = {n} must be at least 1")
    if n is not None and i is not None and not 0 <= i < n:
        raise ConfigError(f"--process_id = {i} must be in 0 … {n - 1} (--num_processes = {n})")
    address = _COORDINATOR.value
    if address is not None and (":" not in address or not address.rsplit(":", 1)[1].isdigit()):
        raise ConfigError(f"--coordinator_address = {address!r} must be host:port, e.g. localhost:12355")


def _check_sample_flags() -> None:
    from latentebm_jax.config_schema import ConfigError

    if _NUM_SAMPLES.value < 0:
        raise ConfigError(f"--num_samples = {_NUM_SAMPLES.value} must be >= 0")
    if _NUM_SAMPLES.value and _MODE.value != "sample":
        raise ConfigError("--num_samples exports samples with --mode=sample; add --mode=sample")
    if _SAMPLES_NPZ.value and _MODE.value != "eval":
        raise ConfigError("--samples_npz scores a samples file with --mode=eval; add --mode=eval")
    if _SAMPLES_NPZ.value and not os.path.isfile(_SAMPLES_NPZ.value):
        raise ConfigError(f"--samples_npz file {_SAMPLES_NPZ.value} does not exist")


def user_error(err: Exception, workdir: str) -> int | None:
    """Print a user-facing error in one or two lines and return the exit status; ``None`` for a bug (the
    traceback is shown)."""
    from latentebm_jax.backbones import BackboneError
    from latentebm_jax.checkpoint import CheckpointError
    from latentebm_jax.config_schema import ConfigError
    from latentebm_jax.data import DatasetNotFoundError, DatasetReadError
    from latentebm_jax.metrics.inception import InceptionWeightsError
    from latentebm_jax.training.divergence import DivergenceError
    from latentebm_jax.training.loop import NonFiniteError
    from latentebm_jax.training.metrics_writer import MetricsFileError
    from latentebm_jax.training.samples_io import SamplesFileError
    from latentebm_jax.training.workdir import WorkdirError, is_disk_full

    if isinstance(err, ConfigError):
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if is_disk_full(err):
        print(
            f"error: the disk is full ({err}); free space under {os.path.abspath(workdir)} and run the same "
            f"command to resume from the newest checkpoint",
            file=sys.stderr,
        )
        return 1
    known = (
        BackboneError,
        CheckpointError,
        DatasetNotFoundError,
        DatasetReadError,
        DivergenceError,
        InceptionWeightsError,
        MetricsFileError,
        NonFiniteError,
        WorkdirError,
        SamplesFileError,
        FileNotFoundError,
    )
    if isinstance(err, known):
        print(f"error: {err}", file=sys.stderr)
        return 1
    return None


def _base_config(argv: list[str]):
    """The config ``--config=FILE[:method]`` names, loaded as the flag parser will (``None`` if the file
    cannot be read; the parser then reports it)."""
    import importlib.util

    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return None
    path, _, method = spec.partition(":")
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        shipped = sorted(n for n in os.listdir(folder) if n.endswith(".py") and not n.startswith("_")) if (
            os.path.isdir(folder)
        ) else []  # fmt: skip
        print(
            f"config error: --config file {path} does not exist"
            + (f"; files in {folder}: {', '.join(shipped)}" if shipped else ""),
            file=sys.stderr,
        )
        sys.exit(2)
    module_spec = importlib.util.spec_from_file_location("_run_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(method) if method else module.get_config()


def _check_overrides(argv: list[str]) -> None:
    """Before the flag parser applies ``--config.a.b=v``: a method the registry lacks, or a key the config
    does not have, is one line naming it and the nearest key that exists (exit status 2)."""
    from latentebm_jax.config_schema import ConfigError, flatten, nearest_key

    try:
        config = _base_config(argv)
    except (ConfigError, ValueError) as err:  # an unknown method, or one the config file has no setting for
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    if config is None:
        return
    schema = flatten(config)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0]
        if path not in schema:
            near = nearest_key(path, schema)
            hint = f"; did you mean '{near}'?" if near else ""
            print(
                f"config error: config key '{path}' is not read by method '{config.method}' with dataset "
                f"'{config.data.name}'{hint} (--config.{path})",
                file=sys.stderr,
            )
            sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
    if any(a in ("--help", "-h", "-?", "--helpshort") for a in argv[1:]):
        # absl's own --help exits with status 1; asking for help is no error
        flags.FLAGS.mark_as_parsed()
        print(__doc__)
        print("flags:\n" + flags.FLAGS.main_module_help().split(":\n", 1)[-1])
        sys.exit(0)
    _check_overrides(argv)
    return flags.FLAGS(argv)


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)
