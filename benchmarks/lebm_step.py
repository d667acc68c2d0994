"""Time the library's jitted LEBM train step against a PyTorch eager step, side by side in one process.

    python -m benchmarks.lebm_step                  # batch 100 (the paper's); last line: ratio_jax_over_torch
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
from pathlib import Path

from benchmarks import harness
from latentebm_jax import xla_cpu


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
    batch = {"image": jnp.asarray(harness.config_images(config, s.batch))}

    step = jax.jit(functools.partial(lebm.train_step, hp, tx), donate_argnums=0)
    compiled, compile_s, buffer_bytes = harness.compile_jax_step(step, state, batch)
    built = harness.jax_train_step(compiled, state, batch)
    built.compile_s, built.buffer_bytes = compile_s, buffer_bytes
    holder = built.live

    keys = example_keys(jax.random.key(1), s.batch)
    prior = jax.jit(lambda p, k: lebm.sample_prior(hp, p["ebm"], k))
    post = jax.jit(lambda p, k: lebm.sample_posterior(hp, p, batch, k))
    built.chains = {
        "prior": lambda: prior(holder["state"].params, keys).block_until_ready(),
        "posterior": lambda: post(holder["state"].params, keys).block_until_ready(),
    }
    return built


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

    return harness.Built(
        step=lambda: model.step(x),
        chains={"prior": lambda: run_chain("prior"), "posterior": lambda: run_chain("posterior")},
    )


# ----------------------------------------------------------------------------- the benchmark


def _setting_args(s: Setting) -> list[str]:
    return [
        "--prior-steps",
        str(s.prior_steps),
        "--posterior-steps",
        str(s.posterior_steps),
        "--conv-impl",
        s.conv_impl,
        "--posterior-unroll",
        str(s.posterior_unroll),
    ]


BENCHMARK = harness.StepBenchmark(
    name="lebm",
    module="benchmarks.lebm_step",
    paper_batch=100,
    settings="LEBM on SVHN (configs/svhn.py): 32×32×3, n_z 100, ngf 64, K₀ 60 (s₀ 0.4), K₁ 20 (s₁ 0.1), σ .3",
    build_jax=lambda b: build_jax(Setting(batch=b)),
    build_torch=lambda b: build_torch(Setting(batch=b)),
    model_flops=lambda b: step_model_flops(Setting(batch=b)),
    chain_steps={"prior": 60, "posterior": 20},
)


def run_setting(s: Setting, repeats: int, memory: bool, with_torch: bool = True) -> dict:
    bench = dataclasses.replace(
        BENCHMARK,
        model_flops=lambda b: step_model_flops(s),
        chain_steps={"prior": s.prior_steps, "posterior": s.posterior_steps},
    )
    r = harness.run(
        bench,
        s.batch,
        repeats,
        memory=memory,
        with_torch=with_torch,
        builders=(lambda: build_jax(s), lambda: build_torch(s)),
        memory_args=_setting_args(s),
    )
    r["setting"] = dataclasses.asdict(s)
    return r


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=BENCHMARK.paper_batch, help="default: the paper's 100")
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
    xla_cpu.configure()  # the runner's XLA:CPU kernels (before JAX starts its backend), as harness.main does
    base = Setting(args.batch, args.prior_steps, args.posterior_steps, args.conv_impl, args.posterior_unroll)
    if args.memory_child:
        harness.memory_child(lambda: build_jax(base) if args.memory_child == "jax" else build_torch(base))
        return
    with_torch = not args.no_torch
    if with_torch:
        harness.require_torch()
    peak = harness.matmul_peak_gflops()
    print(harness.machine_line())
    print(harness.peak_line(peak))
    if args.sweep:
        settings = [dataclasses.replace(base, batch=b) for b in (16, 64, 100)]
        settings += [dataclasses.replace(base, batch=16, posterior_steps=k) for k in (60, 120)]
    else:
        settings = [base]
    results = []
    for s in settings:
        r = run_setting(s, args.repeats, memory=not args.no_memory, with_torch=with_torch)
        header = f"  K0 {s.prior_steps}  K1 {s.posterior_steps}  conv_impl {s.conv_impl}"
        header += f"  posterior_unroll {s.posterior_unroll}"
        harness.print_result(r, peak, header)
        results.append(r)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"matmul_peak_gflops": peak, "results": results}, indent=2))
    if with_torch:
        print(f"ratio_jax_over_torch {results[0]['ratio_jax_over_torch']:.4f}")


if __name__ == "__main__":
    main()
