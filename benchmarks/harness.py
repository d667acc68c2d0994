"""What every ``benchmarks/<method>_step.py`` shares: timing side by side, the matmul peak, XLA's FLOP count,
peak memory in a fresh process, the printed report and the command line.

A benchmark module defines one :class:`StepBenchmark` named ``BENCHMARK`` and ends with
``if __name__ == "__main__": harness.main(BENCHMARK)``. Its two builders take the batch size and return a
:class:`Built`: a zero-argument ``step`` that runs one train step to completion (``block_until_ready``
for JAX), plus, for JAX, the compile time and the compiled step's buffers. Method:

* compile time (``lower`` + ``compile``) and the first call are reported separately and excluded;
* the two steps are timed alternately (JAX, torch, JAX, …) ``repeats`` times and the medians compared, so
  both see the same machine load;
* achieved GFLOP/s counts the step's *model* FLOPs (the benchmark's own count; by default XLA's cost
  analysis of loop-free pieces times the chain lengths) against a float32 matmul peak measured in the same
  run;
* peak memory: the compiled JAX step's buffers (arguments, outputs, temporaries, from XLA's memory analysis)
  and the resident high-water mark of a fresh process running two steps of each framework.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latentebm_jax import xla_cpu

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Built:
    """One framework's step, ready to time."""

    step: Callable[[], object]
    compile_s: float | None = None
    first_call_s: float | None = None
    buffer_bytes: int | None = None
    chains: dict[str, Callable[[], object]] = dataclasses.field(default_factory=dict)
    # the JAX step's live train state under key "state" (the step donates it), for chains timed beside it
    live: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StepBenchmark:
    """A method's benchmark: its name, the paper's batch, what it runs, and the two steps' builders."""

    name: str
    module: str  # ``benchmarks.<name>_step``: the memory child runs ``python -m <module>``
    paper_batch: int
    settings: str  # one line: the paper settings the two steps share
    build_jax: Callable[[int], Built]
    build_torch: Callable[[int], Built]
    model_flops: Callable[[int], float]  # FLOPs of one step at a batch size
    chain_steps: dict[str, int] = dataclasses.field(default_factory=dict)  # chain name -> Langevin steps


# ----------------------------------------------------------------------------- timing


def images(batch: int, size: int, channels: int, seed: int = 0) -> Any:
    """A fixed ``(B, H, W, C)`` float32 batch uniform in ``[−1, 1]`` (a step's cost does not depend on the
    values): every benchmark's and equivalence test's input."""
    import numpy as np

    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, channels)).astype(np.float32)


def config_images(config: Any, batch: int, seed: int = 0) -> Any:
    """:func:`images` at a config's ``data.image_size`` and ``data.channels``."""
    return images(batch, config.data.image_size, config.data.channels, seed)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, calling them in turn ``repeats`` times (one warm-up call excluded)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_peak_gflops(repeats: int = 10, n: int = 2048) -> dict[str, float]:
    """float32 ``n×n @ n×n`` GFLOP/s, best of ``repeats`` (JAX and, when present, torch)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    out = {"jax": 2 * n**3 / min(timed(lambda: f(a).block_until_ready()) for _ in range(repeats)) / 1e9}
    try:
        import torch

        t = torch.ones(n, n)
        out["torch"] = 2 * n**3 / min(timed(lambda: t @ t) for _ in range(repeats)) / 1e9
    except ImportError:
        pass
    return out


def compile_jax_step(step: Callable[..., Any], *args: Any) -> tuple[Callable[..., Any], float, int | None]:
    """``(compiled, compile seconds, buffer bytes)`` of a jitted function at ``args``."""
    t0 = time.perf_counter()
    compiled = step.lower(*args).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    size = None
    if mem is not None:
        size = (
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        )
    return compiled, seconds, size


def jax_train_step(compiled: Callable[..., Any], state: Any, *args: Any) -> Built:
    """A :class:`Built` that runs ``state, metrics = compiled(state, *args)`` (state donated) to completion,
    with the first call timed apart."""
    import jax

    holder = {"state": state}

    def run() -> None:
        holder["state"], metrics = compiled(holder["state"], *args)
        jax.block_until_ready(metrics)

    first = timed(run)
    built = Built(step=run, first_call_s=first, live=holder)
    return built


def xla_flops(fn: Callable[..., Any], *args: Any) -> float:
    """FLOPs XLA's cost analysis counts for ``jit(fn)(*args)``: use it on loop-free pieces (a loop body is
    counted once, whatever its trip count)."""
    import jax

    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return float(cost["flops"])


# ----------------------------------------------------------------------------- memory (child processes)


def peak_rss_mib() -> float:
    """This process's resident-memory high-water mark (``VmHWM``; ``ru_maxrss`` would include the parent's
    before ``exec``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_peak_rss(bench: StepBenchmark, framework: str, batch: int, extra: list[str] | None = None) -> float:
    """Resident high-water mark (MiB) of a fresh process that builds and runs twice one framework's step."""
    cmd = [sys.executable, "-m", bench.module, "--_memory-child", framework, "--batch", str(batch)]
    out = subprocess.run(cmd + (extra or []), capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def memory_child(build: Callable[[], Built]) -> None:
    built = build()
    for _ in range(2):
        built.step()
    print(json.dumps({"peak_rss_mib": peak_rss_mib()}))


# ----------------------------------------------------------------------------- one benchmark


def run(
    bench: StepBenchmark,
    batch: int,
    repeats: int,
    memory: bool = True,
    with_torch: bool = True,
    builders: tuple[Callable[[], Built], Callable[[], Built]] | None = None,
    memory_args: list[str] | None = None,
) -> dict[str, Any]:
    """Build both steps at ``batch``, time them alternately, count FLOPs and memory: one result row."""
    build_jax, build_torch = builders or (lambda: bench.build_jax(batch), lambda: bench.build_torch(batch))
    jx = build_jax()
    res: dict[str, Any] = {
        "method": bench.name,
        "batch": batch,
        "compile_s": jx.compile_s,
        "first_call_s": jx.first_call_s,
    }
    fns = {"jax_step": jx.step}
    tc = None
    if with_torch:
        tc = build_torch()
        fns["torch_step"] = tc.step
    res.update({f"{k}_s": v for k, v in alternate(fns, repeats).items()})
    chain_fns = {f"jax_{k}": v for k, v in jx.chains.items()}
    if tc is not None:
        chain_fns.update({f"torch_{k}": v for k, v in tc.chains.items()})
    if chain_fns:
        for name, t in alternate(chain_fns, max(3, repeats // 2)).items():
            k = bench.chain_steps.get(name.split("_", 1)[1], 1)
            res[f"{name}_ms_per_langevin_step"] = 1e3 * t / max(k, 1)
    flops = bench.model_flops(batch)
    res["model_gflop_per_step"] = flops / 1e9
    res["jax_gflops"] = flops / res["jax_step_s"] / 1e9
    if tc is not None:
        res["torch_gflops"] = flops / res["torch_step_s"] / 1e9
        res["ratio_jax_over_torch"] = res["jax_step_s"] / res["torch_step_s"]
    if jx.buffer_bytes is not None:
        res["jax_step_buffers_mib"] = jx.buffer_bytes / 2**20
    if memory:
        res["jax_peak_rss_mib"] = child_peak_rss(bench, "jax", batch, memory_args)
        if tc is not None:
            res["torch_peak_rss_mib"] = child_peak_rss(bench, "torch", batch, memory_args)
    return res


def machine_line() -> str:
    import jax

    line = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}"
    try:
        import torch

        line += f", torch {torch.__version__}"
    except ImportError:
        pass
    with contextlib.suppress(OSError):
        line += f", load average {os.getloadavg()[0]:.2f}"
    return line + f", XLA_FLAGS '{os.environ.get('XLA_FLAGS', '')}'"


def peak_line(peak: dict[str, float]) -> str:
    return "matmul peak (float32 2048², best of 10): " + ", ".join(
        f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()
    )


def print_result(r: dict[str, Any], peak: dict[str, float], header: str = "") -> None:
    print(f"\n{r['method']}  batch {r['batch']}{header}")
    print(f"  compile {r['compile_s']:.1f} s, first call {r['first_call_s']:.2f} s (excluded)")
    line = f"  step: jax {1e3 * r['jax_step_s']:.1f} ms"
    if "torch_step_s" in r:
        line += f"  torch {1e3 * r['torch_step_s']:.1f} ms  (ratio {r['ratio_jax_over_torch']:.3f})"
    print(line)
    for key in sorted(k for k in r if k.startswith("jax_") and k.endswith("_ms_per_langevin_step")):
        chain = key.removeprefix("jax_").removesuffix("_ms_per_langevin_step")
        line = f"  {chain} Langevin per step: jax {r[key]:.3f} ms"
        if f"torch_{chain}_ms_per_langevin_step" in r:
            line += f"  torch {r[f'torch_{chain}_ms_per_langevin_step']:.3f} ms"
        print(line)
    line = (
        f"  model FLOPs {r['model_gflop_per_step']:.2f} GFLOP/step: jax {r['jax_gflops']:.0f} GFLOP/s "
        f"({100 * r['jax_gflops'] / peak['jax']:.0f}% of its matmul peak)"
    )
    if "torch_gflops" in r and "torch" in peak:
        line += f", torch {r['torch_gflops']:.0f} GFLOP/s ({100 * r['torch_gflops'] / peak['torch']:.0f}%)"
    print(line)
    mem = [f"{k.removesuffix('_mib')} {v:.0f} MiB" for k, v in r.items() if k.endswith("_mib")]
    if mem:
        print("  memory: " + ", ".join(mem))


def require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("PyTorch is not installed: pip install -e '.[bench]' (or pass --no-torch)")


def main(bench: StepBenchmark, argv: list[str] | None = None) -> dict[str, Any]:
    """The command line of ``python -m benchmarks.<method>_step``."""
    ap = argparse.ArgumentParser(
        prog=f"python -m {bench.module}",
        description=f"{bench.name}: the library's jitted step against a PyTorch eager step. {bench.settings}",
    )
    ap.add_argument(
        "--batch", type=int, default=bench.paper_batch, help=f"default: the paper's {bench.paper_batch}"
    )
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per framework (median)")
    ap.add_argument("--no-torch", action="store_true", help="time the JAX step only")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--json", type=Path, help="also write the result to this file")
    ap.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.batch < 1:
        sys.exit(f"--batch must be a positive integer, got {args.batch}")
    xla_cpu.configure()  # the runner's XLA:CPU kernels (before JAX starts its backend)
    if args.memory_child:
        build = bench.build_jax if args.memory_child == "jax" else bench.build_torch
        memory_child(lambda: build(args.batch))
        return {}
    with_torch = not args.no_torch
    if with_torch:
        require_torch()
    peak = matmul_peak_gflops()
    print(machine_line())
    print(peak_line(peak))
    print(bench.settings)
    r = run(bench, args.batch, args.repeats, memory=not args.no_memory, with_torch=with_torch)
    print_result(r, peak)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"matmul_peak_gflops": peak, "results": [r]}, indent=2))
    if with_torch:
        print(f"ratio_jax_over_torch {r['ratio_jax_over_torch']:.4f}")
    return r
