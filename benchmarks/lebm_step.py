"""Time the library's jitted LEBM train step against a PyTorch eager step, side by side in one process.

    python -m benchmarks.lebm_step --batch 16                 # one setting; last line: ratio_jax_over_torch
    python -m benchmarks.lebm_step --sweep --json runs/bench.json   # the README scaling table

Settings are the authors' SVHN ones (``configs/svhn.py``: 32×32×3, ``n_z = 100``, ``ngf = 64``, ``K₀ = 60``,
``s₀ = 0.4``, ``K₁ = 20``, ``s₁ = 0.1``, ``σ = 0.3``); the PyTorch step (:mod:`benchmarks.torch_lebm`) has the
same architecture and update equations. Method:

* compile time (``lower`` + ``compile``) and the first call are reported separately and excluded;
* the two steps are timed alternately (JAX, torch, JAX, …) ``--repeats`` times and the medians compared, so
  both see the same machine load;
* prior-only and posterior-only Langevin chains are timed the same way and reported per Langevin step;
* achieved GFLOP/s counts the *model* FLOPs of the step (the direct-convolution count: what the step's
  mathematics costs, whatever algorithm computes it; Winograd forms do fewer) against a float32 matmul
  peak measured in the same run;
* peak memory: the compiled JAX step's buffers (arguments, outputs, temporaries) from XLA's memory analysis,
  and the high-water resident memory of a fresh process running each framework's step
  (``--no-memory`` skips the two child processes).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
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

import numpy as np


@dataclasses.dataclass(frozen=True)
class Setting:
    batch: int = 16
    prior_steps: int = 60
    posterior_steps: int = 20
    conv_impl: str = "fast"
    posterior_unroll: int = 0  # lax.scan unroll of the posterior chain (0 = full, the library default)


# ----------------------------------------------------------------------------- FLOP model


def generator_macs(latent_dim: int = 100, ngf: int = 64, channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass of the 32×32 DCGAN generator, per example (direct form:
    every output pixel of a stride-2 4×4 transposed convolution sees 2×2 taps)."""
    widths = [ngf * 8, ngf * 4, ngf * 2, channels]
    macs = latent_dim * widths[0] * 16  # 1×1 → 4×4
    size = 4
    for cin, cout in itertools.pairwise(widths):
        size *= 2
        macs += size * size * cout * cin * 4
    return macs


def energy_macs(latent_dim: int = 100, hidden: int = 200) -> int:
    return latent_dim * hidden + hidden * hidden + hidden


def step_model_flops(s: Setting) -> float:
    """FLOPs of one LEBM step: every Langevin step is a forward and an input-gradient pass (2× forward);
    the update is the generator forward, input and weight gradients (3×) and the EBM on both batches (3×)."""
    g, e = generator_macs(), energy_macs()
    macs = s.prior_steps * 2 * e + s.posterior_steps * 2 * (g + e) + 3 * g + 2 * 3 * e
    return 2.0 * macs * s.batch


# ----------------------------------------------------------------------------- timing helpers


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, calling them in turn ``repeats`` times (warm-up excluded)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_peak_gflops(repeats: int = 10, n: int = 2048) -> dict[str, float]:
    """float32 ``n×n @ n×n`` GFLOP/s, best of ``repeats`` (JAX and, when present, torch)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    out = {"jax": 2 * n**3 / min(_timed(lambda: f(a).block_until_ready()) for _ in range(repeats)) / 1e9}
    try:
        import torch

        t = torch.ones(n, n)
        out["torch"] = 2 * n**3 / min(_timed(lambda: t @ t) for _ in range(repeats)) / 1e9
    except ImportError:
        pass
    return out


# ----------------------------------------------------------------------------- the two steps


def bench_config(s: Setting):
    """``configs/svhn.py`` with the setting's overrides: the one source of both steps' hyperparameters."""
    from configs import svhn

    config = svhn.get_config()
    config.sampler.prior_steps = s.prior_steps
    config.sampler.posterior_steps = s.posterior_steps
    config.lebm.conv_impl = s.conv_impl
    config.sampler.posterior_unroll = s.posterior_unroll
    return config


def build_jax(s: Setting):
    """The library's jitted train step and chains at ``s``."""
    import jax
    import jax.numpy as jnp

    from latentebm_jax.methods import lebm
    from latentebm_jax.methods.common import example_keys

    config = bench_config(s)
    hp = lebm.hparams_from_config(config)
    tx = lebm.optimizer_from_config(config, "lebm").build("gen", steps_per_epoch=732)
    state = lebm.init(hp, tx, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.uniform(-1, 1, (s.batch, 32, 32, 3)).astype(np.float32))}

    step = jax.jit(functools.partial(lebm.train_step, hp, tx), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    step_bytes = None
    if mem is not None:
        step_bytes = (
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        )
    holder = {"state": state}

    def run_step():
        holder["state"], metrics = compiled(holder["state"], batch)
        jax.block_until_ready(metrics)

    t0 = time.perf_counter()
    run_step()
    first_s = time.perf_counter() - t0

    keys = example_keys(jax.random.key(1), s.batch)
    prior = jax.jit(lambda p, k: lebm.sample_prior(hp, p["ebm"], k))
    post = jax.jit(lambda p, k: lebm.sample_posterior(hp, p, batch, k))

    def run_prior():
        prior(holder["state"].params, keys).block_until_ready()

    def run_post():
        post(holder["state"].params, keys).block_until_ready()

    return {
        "step": run_step,
        "prior": run_prior,
        "posterior": run_post,
        "compile_s": compile_s,
        "first_call_s": first_s,
        "step_buffer_bytes": step_bytes,
    }


def build_torch(s: Setting):
    import torch

    from benchmarks.torch_lebm import StepSettings, TorchLEBM

    c = bench_config(s)
    m, smp, t = c.lebm, c.sampler, c.lebm
    settings = StepSettings(
        batch=s.batch,
        image_size=c.data.image_size,
        channels=c.data.channels,
        latent_dim=m.latent_dim,
        ngf=m.ngf,
        ebm_hidden=m.ebm_hidden,
        prior_steps=smp.prior_steps,
        prior_step_size=smp.prior_step_size,
        posterior_steps=smp.posterior_steps,
        posterior_step_size=smp.posterior_step_size,
        sigma=m.likelihood_sigma,
        sigma_p=m.prior_sigma,
        init_sigma=smp.init_sigma,
        lr_gen=t.lr_gen,
        lr_ebm=t.lr_ebm,
    )
    if (m.generator, m.ebm_layers, m.ebm_activation) != ("dcgan", 2, "gelu"):
        raise ValueError("the PyTorch reference implements the DCGAN generator and 2-layer GELU energy only")
    model = TorchLEBM(settings)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(s.batch, 3, 32, 32, generator=g) * 2 - 1
    chains = {"prior": lambda: model.sample_prior(s.batch), "posterior": lambda: model.sample_posterior(x)}

    def run_chain(name):
        for p in model.ebm.parameters():  # frozen EBM weights during the chains, as inside step()
            p.requires_grad_(False)
        chains[name]()

    def run_step():
        model.step(x)

    return {
        "step": run_step,
        "prior": lambda: run_chain("prior"),
        "posterior": lambda: run_chain("posterior"),
    }


# ----------------------------------------------------------------------------- memory (child processes)


def _child_peak_rss(framework: str, s: Setting, steps: int = 2) -> dict[str, float]:
    """Run ``steps`` steps of one framework in a fresh process; resident-memory high-water marks (MiB)."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.lebm_step",
        "--_memory-child",
        framework,
        "--batch",
        str(s.batch),
        "--prior-steps",
        str(s.prior_steps),
        "--posterior-steps",
        str(s.posterior_steps),
        "--conv-impl",
        s.conv_impl,
        "--posterior-unroll",
        str(s.posterior_unroll),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mib() -> float:
    """This process's resident-memory high-water mark (``VmHWM``; ``ru_maxrss`` would include the parent's
    before ``exec``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_child(framework: str, s: Setting) -> None:
    maxrss = _peak_rss_mib
    built = build_jax(s) if framework == "jax" else build_torch(s)
    before = maxrss()
    for _ in range(2):
        built["step"]()
    print(json.dumps({"peak_rss_mib": maxrss(), "setup_peak_rss_mib": before}))


# ----------------------------------------------------------------------------- one setting


def run_setting(s: Setting, repeats: int, memory: bool, with_torch: bool = True) -> dict:
    jx = build_jax(s)
    res: dict = {
        "setting": dataclasses.asdict(s),
        "compile_s": jx["compile_s"],
        "first_call_s": jx["first_call_s"],
        "model_gflop_per_step": step_model_flops(s) / 1e9,
    }
    fns = {"jax_step": jx["step"]}
    if with_torch:
        tc = build_torch(s)
        fns["torch_step"] = tc["step"]
    res.update({f"{k}_s": v for k, v in alternate(fns, repeats).items()})
    chain_fns = {"jax_prior": jx["prior"], "jax_posterior": jx["posterior"]}
    if with_torch:
        chain_fns.update({"torch_prior": tc["prior"], "torch_posterior": tc["posterior"]})
    chains = alternate(chain_fns, max(3, repeats // 2))
    for name, t in chains.items():
        k = s.prior_steps if name.endswith("prior") else s.posterior_steps
        res[f"{name}_ms_per_langevin_step"] = 1e3 * t / max(k, 1)
    flops = step_model_flops(s)
    res["jax_gflops"] = flops / res["jax_step_s"] / 1e9
    if with_torch:
        res["torch_gflops"] = flops / res["torch_step_s"] / 1e9
        res["ratio_jax_over_torch"] = res["jax_step_s"] / res["torch_step_s"]
    if jx["step_buffer_bytes"] is not None:
        res["jax_step_buffers_mib"] = jx["step_buffer_bytes"] / 2**20
    if memory:
        res["jax_peak_rss_mib"] = _child_peak_rss("jax", s)["peak_rss_mib"]
        if with_torch:
            res["torch_peak_rss_mib"] = _child_peak_rss("torch", s)["peak_rss_mib"]
    return res


def _print_setting(r: dict, peak: dict[str, float]) -> None:
    s = r["setting"]
    print(
        f"\nbatch {s['batch']}  K0 {s['prior_steps']}  K1 {s['posterior_steps']}  conv_impl {s['conv_impl']}"
        f"  posterior_unroll {s['posterior_unroll']}"
    )
    print(f"  compile {r['compile_s']:.1f} s, first call {r['first_call_s']:.2f} s (excluded)")
    line = f"  step: jax {1e3 * r['jax_step_s']:.1f} ms"
    if "torch_step_s" in r:
        line += f"  torch {1e3 * r['torch_step_s']:.1f} ms  (ratio {r['ratio_jax_over_torch']:.3f})"
    print(line)
    for chain in ("prior", "posterior"):
        line = f"  {chain} Langevin per step: jax {r[f'jax_{chain}_ms_per_langevin_step']:.3f} ms"
        if f"torch_{chain}_ms_per_langevin_step" in r:
            line += f"  torch {r[f'torch_{chain}_ms_per_langevin_step']:.3f} ms"
        print(line)
    line = (
        f"  model FLOPs {r['model_gflop_per_step']:.1f} GFLOP/step: jax {r['jax_gflops']:.0f} GFLOP/s "
        f"({100 * r['jax_gflops'] / peak['jax']:.0f}% of its matmul peak)"
    )
    if "torch_gflops" in r and "torch" in peak:
        line += f", torch {r['torch_gflops']:.0f} GFLOP/s ({100 * r['torch_gflops'] / peak['torch']:.0f}%)"
    print(line)
    mem = [f"{k.removesuffix('_mib')} {v:.0f} MiB" for k, v in r.items() if k.endswith("_mib")]
    if mem:
        print("  memory: " + ", ".join(mem))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prior-steps", type=int, default=60)
    ap.add_argument("--posterior-steps", type=int, default=20)
    ap.add_argument("--conv-impl", default="fast", choices=["fast", "winograd", "subpixel", "direct", "xla"])
    ap.add_argument("--posterior-unroll", type=int, default=0, help="scan unroll of the posterior chain")
    ap.add_argument("--repeats", type=int, default=9, help="timed steps per framework (median)")
    ap.add_argument("--sweep", action="store_true", help="batch 16/64/100 and K1 20/60/120 (README table)")
    ap.add_argument("--no-torch", action="store_true", help="time the JAX step only")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--json", type=Path, help="also write every result to this file")
    ap.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    base = Setting(args.batch, args.prior_steps, args.posterior_steps, args.conv_impl, args.posterior_unroll)
    if args.memory_child:
        _memory_child(args.memory_child, base)
        return
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("PyTorch is not installed: pip install -e '.[bench]' (or pass --no-torch)")

    import jax

    peak = matmul_peak_gflops()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}")
    print(
        "matmul peak (float32 2048², best of 10): "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items())
    )
    if args.sweep:
        settings = [dataclasses.replace(base, batch=b) for b in (16, 64, 100)]
        settings += [dataclasses.replace(base, batch=16, posterior_steps=k) for k in (60, 120)]
    else:
        settings = [base]
    results = []
    for s in settings:
        r = run_setting(s, args.repeats, memory=not args.no_memory, with_torch=with_torch)
        _print_setting(r, peak)
        results.append(r)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"matmul_peak_gflops": peak, "results": results}, indent=2))
    if with_torch:
        print(f"ratio_jax_over_torch {results[0]['ratio_jax_over_torch']:.4f}")


if __name__ == "__main__":
    main()
