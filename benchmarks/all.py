"""Every method's train step against its PyTorch eager reference: one table.

    python -m benchmarks.all                       # every method at its paper's batch (the README table)
    python -m benchmarks.all --methods lebm joint  # some of them
    python -m benchmarks.all --json runs/bench/all.json

Each benchmark runs in its own process (``python -m benchmarks.<method>_step --json …``, see
:mod:`benchmarks.harness` for the method: alternate timing, medians, compile time apart, peak memory, model
GFLOP/s against a matmul peak measured in the same process), one after the other, so no two share the cores.
The last line is the largest ratio, ``worst_ratio_jax_over_torch <value>``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness
from latentebm_jax import xla_cpu

# method -> (module, goal ratio): LEBM at most 0.6 of PyTorch eager, every other step at most 0.7
METHODS: dict[str, tuple[str, float]] = {
    "lebm": ("benchmarks.lebm_step", 0.6),
    "hvae": ("benchmarks.hvae_step", 0.7),
    "diffusion": ("benchmarks.diffusion_step", 0.7),
    "nvae": ("benchmarks.nvae_step", 0.7),
    "bidvl": ("benchmarks.bidvl_step", 0.7),
    "joint": ("benchmarks.joint_step", 0.7),
    "lebm_text": ("benchmarks.lebm_text_step", 0.7),
}
COMPILE_GOAL_S = 20.0
# the steps that take tens of seconds per framework get fewer timed repeats
MAX_REPEATS = {"joint": 3, "lebm_text": 3}


def run_one(method: str, repeats: int, memory: bool, batch: int | None) -> dict[str, Any]:
    """One benchmark in a fresh process; its result row and matmul peak."""
    module, _ = METHODS[method]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, "--json", str(out), "--repeats", str(repeats)]
        cmd += [] if memory else ["--no-memory"]
        cmd += [] if batch is None else ["--batch", str(batch)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=harness.ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"{' '.join(cmd[1:])} failed (exit {proc.returncode}):\n{tail}")
        data = json.loads(out.read_text())
    row = data["results"][0]
    row["matmul_peak_gflops"] = data["matmul_peak_gflops"]
    row["wall_s"] = time.perf_counter() - t0
    row["goal_ratio"] = METHODS[method][1]
    return row


def _ms(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{1e3 * s:.0f} ms"


def table(rows: list[dict[str, Any]]) -> str:
    """The README's markdown table."""
    lines = [
        "| method | batch | JAX step | PyTorch eager step | ratio (goal) | JAX compile "
        "| memory: JAX buffers / peak RSS JAX / torch | model GFLOP/s JAX / torch (% of matmul peak) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = r["matmul_peak_gflops"]
        ok = "✓" if r["ratio_jax_over_torch"] <= r["goal_ratio"] else "✗"
        mem = f"{r.get('jax_step_buffers_mib', float('nan')):.0f} MiB"
        if "jax_peak_rss_mib" in r:
            mem += f" / {r['jax_peak_rss_mib'] / 1024:.2f} / {r['torch_peak_rss_mib'] / 1024:.2f} GiB"
        flops = (
            f"{r['jax_gflops']:.0f} / {r['torch_gflops']:.0f} "
            f"({100 * r['jax_gflops'] / peak['jax']:.0f}% / {100 * r['torch_gflops'] / peak['torch']:.0f}%)"
        )
        lines.append(
            f"| {r['method']} | {r['batch']} | {_ms(r['jax_step_s'])} | {_ms(r['torch_step_s'])} "
            f"| **{r['ratio_jax_over_torch']:.2f}** ({r['goal_ratio']:.1f} {ok}) | {r['compile_s']:.1f} s "
            f"| {mem} | {flops} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--repeats-cap-off", action="store_true", help=f"ignore the caps {MAX_REPEATS}")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per framework and method (median)")
    ap.add_argument("--batch", type=int, help="one batch for every method (default: each paper's)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--json", type=Path, help="also write every row to this file")
    args = ap.parse_args(argv)
    harness.require_torch()
    xla_cpu.configure()  # the children inherit XLA_FLAGS
    print(harness.machine_line(), flush=True)
    rows = []
    for method in args.methods:
        print(f"{time.strftime('%H:%M:%S')} {method} …", flush=True)
        try:
            cap = None if args.repeats_cap_off else MAX_REPEATS.get(method)
            repeats = min(args.repeats, cap or args.repeats)
            rows.append(run_one(method, repeats, not args.no_memory, args.batch))
        except RuntimeError as err:
            print(f"  {err}", flush=True)
            continue
        r = rows[-1]
        print(
            f"  batch {r['batch']}: jax {_ms(r['jax_step_s'])}, torch {_ms(r['torch_step_s'])}, "
            f"ratio {r['ratio_jax_over_torch']:.3f}, compile {r['compile_s']:.1f} s",
            flush=True,
        )
    if not rows:
        sys.exit("no benchmark ran")
    print()
    print(harness.machine_line())
    peaks = rows[0]["matmul_peak_gflops"]
    print(harness.peak_line(peaks) + " (first benchmark's process)")
    print()
    print(table(rows))
    slow = [r["method"] for r in rows if r["compile_s"] > COMPILE_GOAL_S]
    if slow:
        print(f"\ncompile over {COMPILE_GOAL_S:.0f} s: {', '.join(slow)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"worst_ratio_jax_over_torch {max(r['ratio_jax_over_torch'] for r in rows):.4f}")


if __name__ == "__main__":
    main()
