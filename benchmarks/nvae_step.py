"""Time the library's jitted NVAE train step (method ``nvae``, the ICML 2024 paper's backbone trained by its
own objective) against a PyTorch eager NVAE step, side by side in one process.

    python -m benchmarks.nvae_step                       # batch 100; last line: ratio_jax_over_torch
    python -m benchmarks.nvae_step --batch 4 --repeats 1 --no-memory     # a smoke run

Settings. NVAE at the paper's CIFAR-10 size (NVIDIA's checkpoints: 30 groups of 20 × 16 × 16, 128 channels,
``res_mbconv`` cells, flows) is far too slow to time on a few CPU cores, so both steps use the CPU-scale
reproduction setting ``configs/digits_nvae.py``: its architecture (``ARCH`` there: 32×32×1 digits with
NVAE's MNIST Bernoulli decoder, 2 scales × 2 groups of 4 channels at 4×4 and 8×8, 8 base channels,
``res_bnswish`` cells, squeeze-and-excitation, residual posteriors, no flows), its batch (100) and its
``nvae`` group (Adamax lr 1e-2 with weight decay 3e-4 and ε = 1e-3, 2 warm-up epochs then cosine decay, KL
warm-up over 30 % of 60 epochs × 16 steps with balancing, spectral and BatchNorm regularisation λ = 1e-2 with
4 power iterations per step). ``--batch`` changes the batch only.

The PyTorch step (:mod:`benchmarks.torch_nvae`) is NVlabs/NVAE's ``train.py`` iteration written eagerly
for the same architecture (float32, without NVAE's autocast): forward, loss, backward, Adamax.
``tests/test_bench_nvae.py`` shows with shared weights and zero noise that it computes the library's step.

Method (``benchmarks/harness.py``): compile time and the first call excluded, the two steps timed
alternately and their medians compared, peak memory (XLA's buffers of the compiled step; the resident
high-water mark of a fresh process per framework). Model FLOPs: XLA's cost analysis of the compiled step
(forward, backward, update; it is loop-free but for the power iteration's ``fori_loop``, whose body XLA
counts once, so ``num_power_iter − 1`` iterations, ``4 · rows · cols`` FLOPs per matrix, are added
analytically), reused from the benchmark's own compilation when it ran in this process.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from benchmarks import harness

# configs/digits_nvae.py: "60 epochs of 16 steps" (the embedded digits without the held-out 9 at batch 100)
STEPS_PER_EPOCH = 16
_XLA_FLOPS: dict[int, float] = {}  # batch -> XLA's count of the compiled step, filled by build_jax


def bench_config(arch: dict[str, Any] | None = None, **nvae: Any):
    """``configs/digits_nvae.py:nvae`` with optional overrides of its ``backbone`` and ``nvae`` groups: the
    one source of both steps' settings."""
    from configs import digits_nvae

    config = digits_nvae.get_config("nvae")
    if arch:
        config.backbone.update(**arch)
    if nvae:
        config.nvae.update(**nvae)
    return config


def jax_parts(config, steps_per_epoch: int = STEPS_PER_EPOCH):
    """``(backbone, Adamax, objective)`` exactly as ``methods/nvae.py:make`` binds the config."""
    from latentebm_jax.methods import nvae

    method = nvae.make(config, None, steps_per_epoch)
    bb, tx, objective = method.train_step.args
    return bb, tx, objective


def torch_settings(config, steps_per_epoch: int = STEPS_PER_EPOCH):
    """The PyTorch step's :class:`~benchmarks.torch_nvae.StepSettings` from the same config (the run length
    as the library derives it)."""
    from benchmarks.torch_nvae import StepSettings
    from latentebm_jax.methods import nvae

    total = nvae.total_steps(config, steps_per_epoch)
    fields = {f.name for f in dataclasses.fields(StepSettings)}
    shared = {k: config.nvae[k] for k in config.nvae if k in fields}
    return StepSettings(
        steps_per_epoch=steps_per_epoch,
        num_epochs=max(math.ceil(total / steps_per_epoch), 1),
        num_total_iter=total,
        **shared,
    )


def images(config, batch: int, seed: int = 0) -> np.ndarray:
    """A fixed batch of images in [−1, 1], NHWC (the data's layout)."""
    return harness.config_images(config, batch, seed)


def torch_input(x: np.ndarray):
    """NVAE's input: the library's ``to_nvae_input`` at 8 bits (``clip((x + 1)/2, 0, 1)``), NCHW."""
    import torch

    x01 = np.clip((x + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x01, (0, 3, 1, 2))))


def power_iteration_flops(spectral: dict) -> float:
    """FLOPs of one power iteration over every matrix: ``v ← uᵀW``, ``u ← Wv`` (2 MACs per entry)."""
    return float(sum(4 * u.shape[0] * u.shape[1] * v.shape[1] for u, v in spectral.values()))


def build_jax(batch: int, config=None) -> harness.Built:
    """The library's jitted NVAE step at ``batch`` (state donated)."""
    import jax
    import jax.numpy as jnp

    from latentebm_jax.methods import nvae

    config = config or bench_config()
    bb, tx, objective = jax_parts(config)
    state = nvae.init(bb, tx, objective, jax.random.key(0))
    data = {"image": jnp.asarray(images(config, batch))}
    step = jax.jit(functools.partial(nvae.train_step, bb, tx, objective), donate_argnums=0)
    compiled, compile_s, buffer_bytes = harness.compile_jax_step(step, state, data)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    if cost and "flops" in cost:
        extra = (objective.num_power_iter - 1) * power_iteration_flops(state.model_state["spectral"])
        _XLA_FLOPS[batch] = float(cost["flops"]) + extra
    built = harness.jax_train_step(compiled, state, data)
    built.compile_s, built.buffer_bytes = compile_s, buffer_bytes
    return built


def build_torch(batch: int, config=None) -> harness.Built:
    """The PyTorch eager NVAE step at ``batch`` (same architecture and settings)."""
    from benchmarks.torch_nvae import TorchNVAEStep

    config = config or bench_config()
    bb, _, _ = jax_parts(config)
    model = TorchNVAEStep(bb.config, torch_settings(config))
    x = torch_input(images(config, batch))
    return harness.Built(step=lambda: model.step(x))


@functools.cache
def model_flops(batch: int) -> float:
    """FLOPs of one step: XLA's count of the compiled step (module docstring)."""
    if batch not in _XLA_FLOPS:
        build_jax(batch)
    return _XLA_FLOPS[batch]


BENCHMARK = harness.StepBenchmark(
    name="nvae",
    module="benchmarks.nvae_step",
    paper_batch=100,
    settings=(
        "NVAE (method nvae) at the CPU-scale setting configs/digits_nvae.py (not the paper's CIFAR-10 size): "
        "ARCH there, 32×32×1, 2 scales × 2 groups × 4 ch, 8 base ch, res_bnswish+SE, batch 100, Adamax 1e-2, "
        "KL warm-up + balancing, λ 1e-2 spectral (4 power iter.) + BN reg."
    ),
    build_jax=build_jax,
    build_torch=build_torch,
    model_flops=model_flops,
)


if __name__ == "__main__":
    harness.main(BENCHMARK)
