"""Failures and recovery: a real signal stops a run resumably (bit-identical), checksums catch flipped bits,
a corrupted newest checkpoint can be skipped, a changed config is refused by key, one run per workdir, a
torn metrics line, divergence beyond NaN, and user errors found before anything compiles."""

from __future__ import annotations

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from latentebm_jax.checkpoint import Checkpointer, CheckpointError
from latentebm_jax.config_schema import ConfigError
from latentebm_jax.training import loop
from latentebm_jax.training.divergence import DivergenceError
from latentebm_jax.training.metrics_writer import MetricsFileError, read_jsonl
from latentebm_jax.training.preemption import EXIT_PREEMPTED, Preempted
from latentebm_jax.training.setup import RunSetup
from latentebm_jax.training.workdir import WorkdirError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flip(path: str, rng: random.Random) -> None:
    """Flip one bit of a file at a random place."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    with open(path, "wb") as f:
        f.write(data)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _state(workdir, config, step=None):
    setup = RunSetup(config, None)
    return Checkpointer(workdir).restore(setup.method.state_shapes(setup.init_key()), step)


def _leaves(state):
    return jax.tree.leaves((state.params, state.opt_state, state.model_state, state.rng))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_config):
    """An uninterrupted tiny run (10 steps, checkpoints 5 and 10)."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    config = tiny_config(**{"eval.metrics": ("reconstruction",)})
    default.validate(config)
    loop.train(config, workdir)
    return workdir, config


# ----------------------------------------------------------------------------- preemption


def test_a_real_sigterm_checkpoints_the_step_and_the_resumed_run_is_bit_identical(tmp_path, reference):
    ref_dir, config = reference
    workdir = str(tmp_path / "preempted")

    def sigterm_at_3(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # what a preempted TPU VM receives

    with pytest.raises(Preempted, match=r"stopped by SIGTERM after step 3; checkpoint 3 saved") as info:
        loop.train(config, workdir, hooks=[sigterm_at_3])
    assert info.value.step == 3 and Checkpointer(workdir).all_steps() == [3]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
    loop.train(config, workdir)
    for a, b in zip(_leaves(_state(ref_dir, config)), _leaves(_state(workdir, config))):
        np.testing.assert_array_equal(a, b)
    steps = [r["step"] for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "loss_g" in r]
    assert steps == [2, 3, 4, 6, 8, 10]  # the window up to the stop, then the resumed ones


@pytest.mark.slow
def test_the_command_line_stops_on_sigterm_with_status_75_and_resumes(tmp_path):
    workdir = str(tmp_path / "cli")
    args = [
        sys.executable, "-m", "experiments.main", "--config=configs/digits.py", f"--workdir={workdir}",
        "--config.lebm.latent_dim=2", "--config.lebm.ngf=4", "--config.lebm.ebm_hidden=4",
        "--config.sampler.prior_steps=2", "--config.sampler.posterior_steps=2",
        "--config.train.num_steps=4000",
        "--config.train.log_every=1", "--config.train.ckpt_every=100000", "--config.train.eval_every=0",
        "--config.eval.metrics=('reconstruction',)", "--config.eval.max_test_examples=40",
    ]  # fmt: skip
    env = dict(os.environ, TQDM_DISABLE="1")
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = os.path.join(workdir, "metrics.jsonl")
    while proc.poll() is None and not (os.path.exists(metrics) and os.path.getsize(metrics) > 2000):
        pass
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    (line,) = [x for x in err.splitlines() if x.startswith("stopped by SIGTERM")]
    step = int(line.split("after step ")[1].split(";")[0])
    assert 0 < step < 4000 and Checkpointer(workdir).all_steps() == [step]
    assert "Traceback" not in err
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert Checkpointer(workdir).latest_step() == 4000


# ----------------------------------------------------------------------------- integrity


def test_sixteen_flipped_bits_in_the_stored_arrays_are_all_detected(tmp_path):
    state = {
        "params": {"w": jnp.arange(3000, dtype=jnp.float32).reshape(30, 100), "b": jnp.ones((100,)) * 0.5},
        "opt": {"mu": jnp.linspace(-1.0, 1.0, 700), "count": jnp.int32(7)},
    }
    rng = random.Random(0)
    messages = []
    for trial in range(16):
        workdir = str(tmp_path / f"flip{trial}")
        Checkpointer(workdir).save(3, state, {"note": "test"})
        chunks = [
            f
            for f in glob.glob(os.path.join(workdir, "checkpoints", "3", "**", "d", "*"), recursive=True)
            if os.path.getsize(f) > 0
        ]
        _flip(rng.choice(chunks), rng)
        with pytest.raises(CheckpointError) as info:
            Checkpointer(workdir).restore(jax.tree.map(jnp.zeros_like, state))
        messages.append(str(info.value))
    for message in messages:
        assert "checkpoint at step 3" in message and "corrupted" in message and len(message) < 1000, message
        # the array that differs, or the data file that changed under it
        assert any(leaf in message for leaf in ("params.w", "params.b", "opt.mu", "opt.count")) or (
            "files changed since it was written: ['default/" in message
        ), message


def test_a_corrupted_newest_checkpoint_can_be_skipped_for_the_previous_one(tmp_path, reference):
    import shutil

    src, config = reference
    workdir = str(tmp_path / "corrupt")
    shutil.copytree(src, workdir)
    (chunk,) = glob.glob(os.path.join(workdir, "checkpoints", "10", "default", "ocdbt.process_0", "d", "*"))[
        :1
    ]
    _flip(chunk, random.Random(1))
    with pytest.raises(CheckpointError, match=r"checkpoint at step 10 .*corrupted.*bad_checkpoint=previous"):
        loop.evaluate(config, workdir)
    fallback = config.copy_and_resolve_references()
    fallback.train.bad_checkpoint = "previous"
    assert loop.evaluate(fallback, workdir)["step"] == 5


# ----------------------------------------------------------------------------- provenance


def test_a_changed_config_is_refused_by_key_unless_allowed_and_recorded(tmp_path, reference):
    import shutil

    src, config = reference
    workdir = str(tmp_path / "changed")
    shutil.copytree(src, workdir)
    changed = config.copy_and_resolve_references()
    changed.lebm.lr_gen = 5e-3
    changed.sampler.prior_steps = 7
    changed.train.num_steps = 12  # training longer changes nothing the checkpoint computed
    with pytest.raises(WorkdirError) as info:
        loop.train(changed, workdir)
    message = str(info.value)
    assert "lebm.lr_gen: 0.001 → 0.005" in message and "sampler.prior_steps: 5 → 7" in message
    assert "num_steps" not in message and "--allow_config_change" in message
    assert Checkpointer(workdir).all_steps() == [5, 10]  # nothing was touched
    evaluated = config.copy_and_resolve_references()
    evaluated.eval.max_test_examples = 60  # evaluation settings may change
    assert loop.evaluate(evaluated, workdir)["num_test_examples"] == 60
    summary = loop.train(changed, workdir, allow_config_change=True)
    assert summary["step"] == 12
    (entry,) = [json.loads(x) for x in _read(os.path.join(workdir, "config_history.jsonl")).splitlines()]
    assert "lebm.lr_gen: 0.001 → 0.005" in entry["changes"] and entry["config"]["lebm"]["lr_gen"] == 1e-3
    assert json.loads(_read(os.path.join(workdir, "config.json")))["lebm"]["lr_gen"] == 5e-3


def test_eval_or_sample_without_a_checkpoint_is_an_error_that_writes_nothing(tmp_path, tiny_config):
    config = tiny_config()
    for missing in (str(tmp_path / "typo"), str(tmp_path)):
        with pytest.raises(WorkdirError, match=r"no checkpoint in .*--mode=eval needs a trained run"):
            loop.evaluate(config, missing)
        with pytest.raises(WorkdirError, match=r"--mode=sample needs a trained run"):
            loop.sample(config, missing)
    assert not os.path.exists(tmp_path / "typo") and os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- one run per workdir


def test_a_second_run_is_refused_naming_the_first_and_a_stale_lock_is_taken_over(tmp_path, tiny_config):
    import socket

    config = tiny_config(**{"train.num_steps": 2, "eval.metrics": ("reconstruction",)})
    workdir = tmp_path / "locked"
    workdir.mkdir()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": alive.pid, "host": socket.gethostname(), "started": "now", "command": "other run"}
        (workdir / ".lock").write_text(json.dumps(lock))
        with pytest.raises(WorkdirError, match=rf"in use by PID {alive.pid} on .*\(other run\)"):
            loop.train(config, str(workdir))
        assert not (workdir / "checkpoints").exists()
    finally:
        alive.kill()
        alive.wait()
    # the other run is gone: its lock is stale and taken over
    assert loop.train(config, str(workdir))["step"] == 2
    assert not (workdir / ".lock").exists()  # released at the end


# ----------------------------------------------------------------------------- torn lines, divergence


def test_a_torn_last_metrics_line_is_dropped_and_a_broken_middle_line_is_named(tmp_path, reference):
    import shutil

    src, config = reference
    workdir = str(tmp_path / "torn")
    shutil.copytree(src, workdir)
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"step": 11, "loss_g": 0.')  # the disk filled up mid-line
    longer = config.copy_and_resolve_references()
    longer.train.num_steps = 12
    assert loop.train(longer, workdir)["step"] == 12
    records = read_jsonl(path)
    assert [r["step"] for r in records if "loss_g" in r] == [2, 4, 6, 8, 10, 12]
    lines = _read(path).splitlines()
    lines.insert(1, "{broken")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(MetricsFileError, match=r"line 2 of .*metrics.jsonl is not JSON"):
        read_jsonl(path)


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"train.max_abs_energy": 1e-6}, r"\|f_(pos|neg)\| = .* > train\.max_abs_energy"),
        ({"train.min_grad_norm": 1e9}, r"grad_norm_g = .* < train\.min_grad_norm .*stopped learning"),
    ],
)
def test_divergence_beyond_nan_stops_and_names_the_last_good_checkpoint(
    tmp_path, tiny_config, override, pattern
):
    config = tiny_config(
        **{**override, "train.divergence_patience": 2, "train.log_every": 2, "train.ckpt_every": 1}
    )
    with pytest.raises(DivergenceError, match=pattern) as info:
        loop.train(config, str(tmp_path / "diverged"))
    message = str(info.value)
    # warned at step 2 (the first window) and stopped at step 4: checkpoint 1 is the last one before it
    assert "training stopped at step 4" in message and "since step 2" in message
    assert (
        "the last good checkpoint is step 1" in message and "checkpoints [2, 3] were written after" in message
    )


# ----------------------------------------------------------------------------- user errors, one line each


def _main(*args, timeout=120):
    env = dict(os.environ, TQDM_DISABLE="1")
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("--config.data.holdout_class=42",),
            "'data.holdout_class' names [42], which are not classes of 'digits'",
        ),
        (("--mode=eval",), "no checkpoint in"),
        (
            ("--config=configs/nonexistent.py",),
            "--config file configs/nonexistent.py does not exist; files in",
        ),
    ],
)
def test_user_errors_are_one_line_without_a_traceback(tmp_path, args, message):
    config = [a for a in args if a.startswith("--config=")] or ["--config=configs/digits.py"]
    rest = [a for a in args if not a.startswith("--config=")]
    out = _main(*config, f"--workdir={tmp_path / 'run'}", *rest)
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 2
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train.batch_size": 5000}, "'train.batch_size' = 5000 is larger than the 1298 training examples"),
        ({"seed": -3}, "'seed' has value -3; it must be an integer in [0, 2^32)"),
        ({"train.num_steps": 0}, "'train.num_steps' has value 0; it must be -1 (use num_epochs)"),
        ({"eval.max_test_examples": 0}, "'eval.max_test_examples' has value 0"),
        (
            {"data.classes": (0, 9, 11)},
            "'data.classes' names [11], which are not classes",
        ),
    ],
)
def test_config_and_data_errors_are_found_before_anything_compiles(tiny_config, overrides, message):
    """The same errors the command line prints in one line (main's handler prints a ConfigError's text)."""
    config = tiny_config()
    with config.ignore_type():
        for key, value in overrides.items():
            *groups, leaf = key.split(".")
            target = config
            for g in groups:
                target = target[g]
            target[leaf] = value
    with pytest.raises(ConfigError) as info:
        default.validate(config)
        RunSetup(config, None)  # what only the data shows
    assert message in str(info.value)


def test_a_workdir_that_is_a_file_and_garbage_inception_weights_are_refused_early(tmp_path):
    path = tmp_path / "afile"
    path.write_text("not a directory")
    out = _main("--config=configs/digits.py", f"--workdir={path}")
    assert (
        out.returncode == 1 and f"--workdir {path} is a file" in out.stderr and "Traceback" not in out.stderr
    )
    weights = tmp_path / "garbage.npz"
    weights.write_bytes(b"\x00not an npz")
    out = _main(
        "--config=configs/digits.py", f"--workdir={tmp_path / 'run'}",
        f"--config.eval.inception_weights={weights}", "--config.eval.metrics=('reconstruction','fid')",
    )  # fmt: skip
    assert out.returncode == 2 and "'eval.inception_weights'" in out.stderr and "cannot read" in out.stderr
    assert not os.path.exists(tmp_path / "run")


def test_a_corrupted_domain_classifier_cache_is_trained_again(tmp_path, monkeypatch):
    from latentebm_jax.data import load_digits
    from latentebm_jax.metrics.domain import domain_classifier

    train, test = load_digits("train"), load_digits("test")
    first = domain_classifier(str(tmp_path), "digits", train, test, seed=0, epochs=1)
    (cached,) = glob.glob(str(tmp_path / "domain_classifier" / "*.npz"))
    with open(cached, "wb") as f:
        f.write(b"garbage")
    again = domain_classifier(str(tmp_path), "digits", train, test, seed=0, epochs=1)
    assert again.test_accuracy == pytest.approx(first.test_accuracy)


def test_the_batch_must_divide_over_the_devices(tiny_config, monkeypatch):
    monkeypatch.setattr(jax, "local_device_count", lambda: 3)
    with pytest.raises(ConfigError, match=r"'train.batch_size' = 20 must be divisible by the 3 devices"):
        RunSetup(tiny_config(), None)


def test_disk_full_is_recognised_whatever_layer_raises_it():
    import errno

    from latentebm_jax.training.workdir import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


@pytest.mark.parametrize(
    "workdir,message",
    [
        ("", "--workdir is empty"),
        ("runs/caf\udce9", "is not valid UTF-8"),
        (
            "/proc/latentebm_jax_run",
            "cannot create --workdir /proc/latentebm_jax_run",
        ),  # read-only even for root
    ],
)
def test_an_empty_non_utf8_or_unwritable_workdir_is_refused_before_anything_runs(workdir, message):
    from latentebm_jax.training.workdir import WorkdirError, check_workdir

    with pytest.raises(WorkdirError, match=re.escape(message)):
        check_workdir(workdir, "train")


def test_a_key_added_since_the_checkpoint_is_no_change_only_at_its_default():
    from latentebm_jax.training.workdir import config_changes, config_json

    config = default.get_config("lebm_text")
    config.data = default.data_group("text_toy")
    new = config_json(config)
    old = json.loads(json.dumps(new))
    del old["lebm_text"]["word_dropout"]  # written before the library had the key
    defaults = config_json(default.reference_config(config))
    assert config_changes(old, new) == ["lebm_text.word_dropout: '(absent)' → 0.0"]
    assert config_changes(old, new, defaults=defaults) == []
    new["lebm_text"]["word_dropout"] = 0.5
    assert config_changes(old, new, defaults=defaults) == ["lebm_text.word_dropout: '(absent)' → 0.5"]
    old["lebm_text"]["lr_gen"] = 1.0  # a key both hold still counts however the defaults read
    assert len(config_changes(old, new, defaults=defaults)) == 2
