"""Two processes on this machine (a localhost coordinator, one CPU device each) as two hosts: they train,
checkpoint (orbax's save is collective: every process calls it), resume, and end with the parameters of a
single-process run on the same global batch and seed; a signal to one host stops both at the same step."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from latentebm_jax.checkpoint import Checkpointer
from latentebm_jax.training.preemption import EXIT_PREEMPTED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow

TINY = [
    "--config=configs/digits.py",
    "--config.lebm.latent_dim=2", "--config.lebm.ngf=4", "--config.lebm.ebm_hidden=4",
    "--config.sampler.prior_steps=2", "--config.sampler.posterior_steps=2",
    "--config.train.batch_size=8", "--config.train.log_every=2", "--config.train.eval_every=0",
    "--config.eval.metrics=('reconstruction',)", "--config.eval.max_test_examples=40",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int = 1) -> dict[str, str]:
    env = dict(os.environ, TQDM_DISABLE="1")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _two_hosts(workdir: str, *args: str) -> list[subprocess.Popen]:
    port = _free_port()
    command = [sys.executable, "-m", "experiments.main", *TINY, f"--workdir={workdir}", *args]
    hosts = ["--distributed", f"--coordinator_address=localhost:{port}", "--num_processes=2"]
    return [
        subprocess.Popen(
            [*command, *hosts, f"--process_id={i}"],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, err))
    return out


def _single(workdir: str, devices: int, *args: str) -> None:
    cmd = [sys.executable, "-m", "experiments.main", *TINY, f"--workdir={workdir}", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(devices), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _leaves(workdir: str, step: int) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(Checkpointer(workdir).restore_stored(step))]


def test_two_hosts_train_checkpoint_resume_and_match_one_process(tmp_path):
    two = str(tmp_path / "two_hosts")
    for steps in (10, 16):  # checkpoints 4, 8, 10; then resumed from 10 to 16
        for status, err in _finish(_two_hosts(two, f"--config.train.num_steps={steps}",
                                              "--config.train.ckpt_every=4")):  # fmt: skip
            assert status == 0, err[-3000:]
            assert "Traceback" not in err
    assert Checkpointer(two).all_steps() == [10, 12, 16]
    with open(os.path.join(two, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    # one writer, nothing twice: the training windows, and the final evaluations of both runs
    assert [r["step"] for r in rows if "epoch" in r] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [r["step"] for r in rows if "eval/recon_mse" in r] == [10, 16]

    one_two_devices, one_device = str(tmp_path / "one_process_2dev"), str(tmp_path / "one_process_1dev")
    _single(one_two_devices, 2, "--config.train.num_steps=16", "--config.train.ckpt_every=100")
    _single(one_device, 1, "--config.train.num_steps=16", "--config.train.ckpt_every=100")
    hosts, same_devices, one = _leaves(two, 16), _leaves(one_two_devices, 16), _leaves(one_device, 16)
    assert len(hosts) == len(one) > 10
    for a, b in zip(hosts, same_devices):  # the same two devices, one or two processes: the same bits
        np.testing.assert_array_equal(a, b)
    for a, b in zip(hosts, one):  # one device: the gradient mean is summed in another order
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert any(not np.array_equal(a, b) for a, b in zip(hosts, one))  # the test can tell them apart


def test_a_signal_to_one_host_stops_both_at_the_same_step_and_the_run_resumes(tmp_path):
    workdir = str(tmp_path / "preempted")
    long = ("--config.train.num_steps=4000", "--config.train.ckpt_every=100000", "--config.train.log_every=1")
    procs = _two_hosts(workdir, *long)
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 240
    while not (os.path.exists(metrics) and os.path.getsize(metrics) > 1500):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "the two hosts did not start"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # the host that does not write files
    results = _finish(procs)
    steps = []
    for status, err in results:
        assert status == EXIT_PREEMPTED, err[-3000:]
        (line,) = [x for x in err.splitlines() if x.startswith("stopped by")]
        steps.append(int(line.split("after step ")[1].split(";")[0]))
        assert "Traceback" not in err
    assert steps[0] == steps[1] and 0 < steps[0] < 4000
    assert Checkpointer(workdir).all_steps() == [steps[0]]
    resumed = _finish(_two_hosts(workdir, f"--config.train.num_steps={steps[0] + 2}", *long[1:]))
    for status, err in resumed:
        assert status == 0, err[-3000:]
    assert Checkpointer(workdir).latest_step() == steps[0] + 2
