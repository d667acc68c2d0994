"""Run the training runs of a protocol (resuming unfinished ones, skipping finished ones) and read back their
``summary.json``.

A run lives in ``<workdir>/<paper>/<scale>/<run name>/seed<k>``. It counts as finished when its
``summary.json`` comes from training (it has ``train_steps``) and its ``config.json`` is the config asked
for; otherwise :func:`latentebm_jax.training.loop.train` is called on it, which resumes from the newest
checkpoint (or refuses, naming the key, when the directory holds a run of another config).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from experiments.reproduce.protocol import Protocol, Run
from latentebm_jax.config_schema import ConfigError, set_keys


def run_dir(workdir: str, paper: str, scale: str, run: Run, seed: int) -> str:
    return os.path.join(workdir, paper, scale, run.name, f"seed{seed}")


def load_config(spec: str):
    """The config ``"configs/<file>.py[:method]"`` names, as ``--config`` loads it."""
    path, _, method = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist (run from the repository root)")
    module_spec = importlib.util.spec_from_file_location("_reproduce_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(method) if method else module.get_config()


def parse_value(text: str) -> Any:
    """A ``--set KEY=VALUE`` value: a Python literal (``3``, ``1e-4``, ``(1, 2)``, ``True``) or a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def build_config(
    run: Run, seed: int, dirs: Mapping[str, str], extra: Mapping[str, Any], scale_overrides: Mapping[str, Any]
):
    """The validated config of ``run`` at ``seed``: the file, the protocol's overrides, the directories of
    the runs it builds on, then the user's ``--set`` overrides."""
    from configs.default import validate

    config = load_config(run.config)
    set_keys(config, scale_overrides, f"run {run.name}")
    set_keys(config, run.overrides, f"run {run.name}")
    set_keys(config, {key: dirs[name] for key, name in run.run_dirs.items()}, f"run {run.name}")
    set_keys(config, extra, "--set")
    config.seed = seed
    validate(config)
    return config


def is_finished(directory: str, config) -> bool:
    """``directory`` holds a finished training run of ``config``: its ``summary.json`` comes from training
    and every key its ``config.json`` shares with ``config`` has the same value (keys a later version of the
    library added, at their defaults, do not make a finished run stale)."""
    from latentebm_jax.config_schema import leaf_values
    from latentebm_jax.training.workdir import config_json

    try:
        with open(os.path.join(directory, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(directory, "config.json")) as f:
            stored = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    a, b = leaf_values(stored), leaf_values(json.loads(json.dumps(config_json(config))))
    return "train_steps" in summary and all(a[k] == b[k] for k in set(a) & set(b))


def read_summary(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, "summary.json")) as f:
        return json.load(f)


def ordered_runs(protocol: Protocol) -> list[Run]:
    """The runs with every run before those built on it."""
    done: list[Run] = []
    pending = list(protocol.runs)
    while pending:
        ready = [r for r in pending if all(n in {d.name for d in done} for n in r.run_dirs.values())]
        if not ready:
            raise ValueError(f"runs {[r.name for r in pending]} depend on runs missing from the protocol")
        done.extend(ready)
        pending = [r for r in pending if r not in ready]
    return done


def run_protocol(
    protocol: Protocol,
    *,
    paper: str,
    scale: str,
    workdir: str,
    seeds: Iterable[int],
    extra: Mapping[str, Any] = {},
    scale_overrides: Mapping[str, Any] = {},
    train: Callable[[Any, str], dict] | None = None,
    report_only: bool = False,
    say: Callable[[str], None] = print,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Train every run of ``protocol`` for every seed (skipping finished ones) and return their summaries,
    ``{(run name, seed): summary}``. Every config is built and validated before the first run starts.
    With ``report_only`` nothing trains: the finished runs are read and the others left out."""
    if train is None:
        from configs.default import reference_config
        from latentebm_jax.training import loop
        from latentebm_jax.training.workdir import config_json

        def train(config, directory: str) -> dict:
            # a run stopped before the library added a key resumes when the key is at its default
            return loop.train(config, directory, config_defaults=config_json(reference_config(config)))

    seeds = list(seeds)
    runs = ordered_runs(protocol)
    configs: dict[tuple[str, int], Any] = {}
    for seed in seeds:
        dirs = {r.name: run_dir(workdir, paper, scale, r, seed) for r in runs}
        for run in runs:
            configs[run.name, seed] = build_config(run, seed, dirs, extra, scale_overrides)
    summaries: dict[tuple[str, int], dict[str, Any]] = {}
    for seed in seeds:
        for run in runs:
            directory = run_dir(workdir, paper, scale, run, seed)
            config = configs[run.name, seed]
            if is_finished(directory, config):
                say(f"  {run.name} seed {seed}: finished, read from {directory}")
            elif report_only:
                say(f"  {run.name} seed {seed}: not finished in {directory}, left out")
                continue
            else:
                say(f"  {run.name} seed {seed}: training in {directory} ({command_of(run, seed, directory)})")
                os.makedirs(directory, exist_ok=True)
                t0 = time.time()
                train(config, directory)
                say(f"  {run.name} seed {seed}: done in {(time.time() - t0) / 60:.1f} min")
            summaries[run.name, seed] = read_summary(directory)
    return summaries


def command_of(run: Run, seed: int, directory: str) -> str:
    """The ``experiments.main`` command that trains the same run (without run-directory overrides)."""
    parts = [
        f"python -m experiments.main --config={run.config} --workdir={directory}",
        f"--config.seed={seed}",
    ]
    parts += [f"--config.{k}={_flag_value(v)}" for k, v in run.overrides.items()]
    parts += [f"--config.{k}=<{name} run>" for k, name in run.run_dirs.items()]
    return " ".join(parts)


def _flag_value(value: Any) -> str:
    text = repr(value) if isinstance(value, (tuple, list)) else str(value)
    return f'"{text}"' if " " in text else text


def copy_figures(
    protocol: Protocol, *, paper: str, scale: str, workdir: str, seeds: Iterable[int], out_dir: str
) -> list[str]:
    """Copy ``protocol.figures`` (``(run name, file)``) of the first seed into ``out_dir`` as
    ``<run>_<file>``; returns the copies (a figure the run did not write is skipped)."""
    seed = next(iter(seeds))
    copied = []
    for name, filename in protocol.figures:
        source = os.path.join(run_dir(workdir, paper, scale, protocol.run_named(name), seed), filename)
        if os.path.isfile(source):
            os.makedirs(out_dir, exist_ok=True)
            dest = os.path.join(out_dir, f"{name}_{os.path.basename(filename)}")
            shutil.copyfile(source, dest)
            copied.append(dest)
    return copied
