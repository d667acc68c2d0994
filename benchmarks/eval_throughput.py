"""Evaluation throughput on all local devices: prior samples, posterior inferences and FID features per
second for the LEBM SVHN and CIFAR-10 configs, and the time FID at 50,000 samples takes.

    python -m benchmarks.eval_throughput                          # both configs, 5 timed batches each
    python -m benchmarks.eval_throughput --num-batches 9 --json runs/eval_throughput.json
    python -m benchmarks.eval_throughput --smoke                  # tiny networks: checks that it runs

Every stage runs as the evaluators run it, mapped over ``jax.local_devices()`` by
:mod:`latentebm_jax.device_map`, with randomly initialised parameters (the cost does not depend on
training) and random images:

* **prior samples/s**: ``generate`` (short-run prior Langevin, ``K₀`` steps, then the generator) through
  ``map_generate``, ``--batch`` samples per device per call, copied to the host;
* **posterior inferences/s**: ``infer`` (posterior Langevin, ``K₁`` steps, on a test-sized batch of
  ``--batch`` images per device) through ``map_batch``;
* **FID features/s**: ``InceptionExtractor.features`` (the FID Inception network, random weights, 32×32
  images resized to 299×299 as the library does), ``eval.inception_batch_size`` images per device per pass.

``eval.batch_size`` is the batch of an evaluator's call, divided over the devices: the FID time holds for
``--config.eval.batch_size`` = ``--batch`` × devices (printed beside it).

Each rate is the median of ``--num-batches`` timed calls after a first call that compiles (its time is
printed apart). The FID time at ``--fid-samples`` is extrapolated as the evaluator runs it, sampling then
features, batch after batch: ``N / samples/s + N / features/s``. The reference statistics (the training
split's features) are computed once per dataset and Inception weights and cached; their one-time cost is
printed beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness
from latentebm_jax import xla_cpu

CONFIGS = ("svhn", "cifar10")
REFERENCE_IMAGES = {"svhn_cropped": 73_257, "cifar10": 50_000}  # the training splits FID's statistics use
SMOKE = {"latent_dim": 8, "ngf": 4, "ebm_hidden": 8, "steps": 2, "batch": 2, "inception_size": 75}


@dataclasses.dataclass(frozen=True)
class Options:
    num_batches: int = 5
    batch: int | None = None  # per device; None: the config's eval.batch_size
    inception_batch: int | None = None  # per device; None: the config's eval.inception_batch_size
    fid_samples: int = 50_000
    smoke: bool = False


def timed_calls(fn: Callable[[], object], num: int) -> tuple[float, float]:
    """``(first call seconds — it compiles —, median of the next ``num`` calls)``."""
    first = harness.timed(fn)
    return first, statistics.median(harness.timed(fn) for _ in range(num))


def lebm_config(name: str, smoke: bool):
    """``configs/<name>.py:get_config("lebm")``, shrunk to tiny networks and chains for ``smoke``."""
    import importlib

    config = importlib.import_module(f"configs.{name}").get_config("lebm")
    if smoke:
        config.lebm.update(latent_dim=SMOKE["latent_dim"], ngf=SMOKE["ngf"], ebm_hidden=SMOKE["ebm_hidden"])
        config.sampler.update(prior_steps=SMOKE["steps"], posterior_steps=SMOKE["steps"])
    return config


@contextlib.contextmanager
def inception_input_size(size: int | None) -> Iterator[None]:
    """Run the Inception network at ``size`` instead of 299 (smoke runs only; ``None``: unchanged)."""
    from latentebm_jax.metrics import inception

    saved = inception.INPUT_SIZE
    if size is not None:
        inception.INPUT_SIZE = size
    try:
        yield
    finally:
        inception.INPUT_SIZE = saved


def random_inception_params() -> Any:
    from latentebm_jax.metrics.inception import load_inception_params, random_inception_npz

    with tempfile.TemporaryDirectory() as tmp:
        return load_inception_params(random_inception_npz(os.path.join(tmp, "random.npz")))


def bench_config(name: str, opts: Options, inception_params: Any) -> dict[str, Any]:
    """One config's three rates and the extrapolated FID time."""
    import jax

    from latentebm_jax import device_map
    from latentebm_jax.methods import lebm
    from latentebm_jax.metrics.inception import InceptionExtractor

    config = lebm_config(name, opts.smoke)
    devices = len(jax.local_devices())
    hp = lebm.hparams_from_config(config)
    tx = lebm.optimizer_from_config(config, "lebm").build(hp.likelihood.network, 1)
    params = device_map.replicate(jax.jit(lambda k: lebm.init(hp, tx, k).params)(jax.random.key(0)))
    predict = lebm.predict_functions(hp)
    per_device = opts.batch or config.eval.batch_size
    total = per_device * devices
    d = config.data
    images = np.random.default_rng(0).uniform(-1, 1, (total, d.image_size, d.image_size, d.channels))
    batch = {"image": images.astype(np.float32)}
    key = jax.random.key(1)

    def sample() -> None:
        np.asarray(device_map.map_generate(predict["generate"], params, key, total)["image"])

    def posterior() -> None:
        jax.block_until_ready(device_map.map_batch(predict["infer"], params, batch, key))

    inception_batch = opts.inception_batch or config.eval.inception_batch_size
    extractor = InceptionExtractor(inception_params, batch_size=inception_batch)
    fid_images = np.resize(batch["image"], (inception_batch * devices, *batch["image"].shape[1:]))

    def features() -> None:
        extractor.features(fid_images)

    rows = {}
    for what, fn, count in (
        ("prior_samples", sample, total),
        ("posterior_inferences", posterior, total),
        ("fid_features", features, len(fid_images)),
    ):
        first, median = timed_calls(fn, opts.num_batches)
        rows[what] = {"per_call": count, "first_call_s": first, "median_s": median, "per_s": count / median}
    n, ref = opts.fid_samples, REFERENCE_IMAGES.get(d.name, 0)
    posterior_steps = hp.eval_steps or hp.posterior_steps
    sampling_s = n / rows["prior_samples"]["per_s"]
    features_s = n / rows["fid_features"]["per_s"]
    return {
        "config": f"configs/{name}.py:lebm",
        "dataset": d.name,
        "settings": f"n_z {hp.latent_dim}, ngf {config.lebm.ngf}, K0 {hp.prior_steps}, K1 {posterior_steps}",
        "devices": devices,
        "batch_per_device": per_device,
        "inception_batch_per_device": inception_batch,
        **rows,
        "fid_samples": n,
        "fid_sampling_s": sampling_s,
        "fid_features_s": features_s,
        "fid_total_s": sampling_s + features_s,
        "reference_images": ref,
        "reference_stats_once_s": ref / rows["fid_features"]["per_s"],
    }


def print_table(results: list[dict[str, Any]]) -> None:
    stages = ("prior_samples", "posterior_inferences", "fid_features")
    print(f"{'config':<22}{'prior samples/s':>16}{'posterior inf./s':>18}{'FID features/s':>16}", end="")
    print(f"{'first calls s (compile)':>26}")
    for r in results:
        rates = "".join(f"{r[k]['per_s']:>{w}.1f}" for k, w in zip(stages, (16, 18, 16), strict=True))
        firsts = "/".join(f"{r[k]['first_call_s']:.1f}" for k in stages)
        print(f"{r['config']:<22}{rates}{firsts:>26}")
    print()
    for r in results:
        minutes = {k: r[k] / 60 for k in ("fid_total_s", "fid_sampling_s", "fid_features_s")}
        print(
            f"{r['config']}: FID at {r['fid_samples']:,} samples ≈ {minutes['fid_total_s']:.1f} min "
            f"(sampling {minutes['fid_sampling_s']:.1f} + Inception features {minutes['fid_features_s']:.1f})"
        )
        print(
            f"  + once per dataset and weights: reference statistics of {r['reference_images']:,} training "
            f"images, {r['reference_stats_once_s'] / 60:.1f} min (cached)"
        )
        print(
            f"  as measured: --config.eval.batch_size={r['batch_per_device'] * r['devices']} (split over "
            f"{r['devices']} device(s)) --config.eval.inception_batch_size={r['inception_batch_per_device']}"
        )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.eval_throughput", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument("--num-batches", type=int, default=5, help="timed calls per stage (median)")
    ap.add_argument(
        "--batch", type=int, help="samples / images per device per call (default eval.batch_size)"
    )
    ap.add_argument("--inception-batch", type=int, help="images per device per Inception pass")
    ap.add_argument("--fid-samples", type=int, default=50_000)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny networks and chains, batch {SMOKE['batch']}, Inception at {SMOKE['inception_size']} px, "
        "one timed batch: checks the benchmark runs (not a measurement)",
    )
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args(argv)
    opts = Options(args.num_batches, args.batch, args.inception_batch, args.fid_samples, args.smoke)
    if args.smoke:
        small = SMOKE["batch"]
        opts = dataclasses.replace(opts, num_batches=1, batch=args.batch or small, inception_batch=small)
    if opts.num_batches < 1 or (opts.batch or 1) < 1 or (opts.inception_batch or 1) < 1:
        sys.exit("--num-batches, --batch and --inception-batch must be positive")
    xla_cpu.configure()  # the runner's XLA:CPU kernels (before JAX starts its backend)

    import jax

    devices = jax.local_devices()
    print(harness.machine_line())
    print(f"{len(devices)} local device(s): {devices[0].device_kind} ({devices[0].platform})")
    if args.smoke:
        print("SMOKE RUN: tiny networks, not a measurement")
    t0 = time.perf_counter()
    with inception_input_size(SMOKE["inception_size"] if args.smoke else None):
        weights = random_inception_params()
        results = []
        for name in args.configs:
            results.append(bench_config(name, opts, weights))
            print(f"{results[-1]['config']}: {results[-1]['settings']}, {len(devices)} device(s)", flush=True)
    print()
    print_table(results)
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": harness.machine_line(), "devices": len(devices), "smoke": args.smoke}
        args.json.write_text(json.dumps({**record, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
