"""The benchmark suite's plumbing, without PyTorch and without timing anything: every method has a benchmark
module that ``python -m benchmarks.all`` can run, the two steps are timed alternately with the warm-up left
out, and the README table is computed from the rows."""

from __future__ import annotations

import importlib
import sys

import pytest

from benchmarks import all as bench_all
from benchmarks import harness
from latentebm_jax import methods


def test_every_method_has_a_benchmark_at_its_papers_batch_that_imports_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` fails, as in CI
    assert set(bench_all.METHODS) == set(methods.METHODS)
    for name, (module, goal) in bench_all.METHODS.items():
        bench = importlib.import_module(module).BENCHMARK
        assert (bench.name, bench.module) == (name, module)
        assert bench.paper_batch >= 1 and goal == (0.6 if name == "lebm" else 0.7)


def test_alternate_interleaves_the_functions_and_leaves_the_warm_up_out(monkeypatch):
    calls: list[str] = []
    clock = iter(range(1000))
    monkeypatch.setattr(harness.time, "perf_counter", lambda: next(clock))

    def fn(name: str, cost: int):
        def run():
            calls.append(name)
            for _ in range(cost - 1):  # each call advances the fake clock by ``cost``
                next(clock)

        return run

    medians = harness.alternate({"a": fn("a", 3), "b": fn("b", 5)}, repeats=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert medians == {"a": 3, "b": 5}


def test_the_table_marks_each_ratio_against_its_goal():
    row = {
        "method": "lebm", "batch": 100, "jax_step_s": 1.2, "torch_step_s": 2.0, "ratio_jax_over_torch": 0.6,
        "goal_ratio": 0.6, "compile_s": 12.0, "jax_step_buffers_mib": 126.0, "jax_gflops": 200.0,
        "torch_gflops": 120.0, "matmul_peak_gflops": {"jax": 200.0, "torch": 200.0},
    }  # fmt: skip
    text = bench_all.table([row, {**row, "method": "joint", "ratio_jax_over_torch": 0.71, "goal_ratio": 0.7}])
    lines = text.splitlines()
    assert len(lines) == 4
    want = "| lebm | 100 | 1.20 s | 2.00 s | **0.60** (0.6 ✓) | 12.0 s | 126 MiB | 200 / 120 (100% / 60%) |"
    assert lines[2] == want
    assert "**0.71** (0.7 ✗)" in lines[3]


@pytest.mark.parametrize("argv", [["--batch", "0"]])
def test_a_bad_batch_is_one_line_naming_the_flag(argv, capsys):
    bench = importlib.import_module("benchmarks.lebm_step").BENCHMARK
    with pytest.raises(SystemExit) as err:
        harness.main(bench, argv)
    assert "--batch must be a positive integer, got 0" in str(err.value)
