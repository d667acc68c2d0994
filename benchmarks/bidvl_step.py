"""Time the library's jitted BiDVL train step against a PyTorch eager step, side by side in one process.

    python -m benchmarks.bidvl_step        # the authors' batch 100; last line: ratio_jax_over_torch
    python -m benchmarks.bidvl_step --batch 16 --repeats 3 --no-memory

Settings are those of the paper's main table, CIFAR-10 32×32 (``configs/cifar10.py:get_config("bidvl")``,
the authors' train_cifar_BiDVL.py): ``h ∈ R¹⁰⁰``, widths Q/P/E 48/48/64, spectrally normalised energy with
``E = softplus``, BatchNorm in Q and P, ``r′ = 0.05`` without bias term, ``σ² = ½``, offset gradients
(Eqs. 13-14), ``N = 1`` lower-level step, Algorithm 1's order (lower level, then upper), the paper's
latent NLL, Adam betas (0, 0.9), lr E 1e-4 / QP 3e-4, QP weight decay 1e-4, batch 100. The PyTorch step
(:mod:`benchmarks.torch_bidvl`) has the authors' networks and the library's update equations, order and
train/eval modes. BiDVL has no MCMC, so there are no chains to time apart.

Model FLOPs: XLA's cost analysis of the whole step (it is loop-free) compiled with ``conv_impl='xla'``
(Flax's plain transposed convolutions, which XLA counts by their nonzero taps, as it counts every
convolution and its gradients without the padding), so the count is the direct form's, what the step's
mathematics costs whatever algorithm the timed step uses (``fast``'s Winograd forms do fewer).
"""

from __future__ import annotations

import dataclasses
import functools

from benchmarks import harness

STEPS_PER_EPOCH = 500  # CIFAR-10's 50,000 training images at the authors' batch 100 (the lr schedule only)


def bench_config():
    """``configs/cifar10.py:get_config("bidvl")``: the one source of both steps' hyperparameters."""
    from configs import cifar10

    return cifar10.get_config("bidvl")


def torch_settings(config, batch: int):
    """The PyTorch reference's :class:`~benchmarks.torch_bidvl.StepSettings` from a BiDVL config."""
    from benchmarks.torch_bidvl import StepSettings

    b, d = config.bidvl, config.data
    if b.grad_clip_norm > 0:
        raise ValueError("the PyTorch reference does not clip gradients (the authors' default)")
    return StepSettings(
        batch=batch,
        image_size=d.image_size,
        channels=d.channels,
        **{f.name: b[f.name] for f in dataclasses.fields(StepSettings) if f.name in b},
    )


def _jax_setup(config, batch: int):
    """``(hp, tx, state, batch dict)`` of the library at ``config``."""
    import jax
    import jax.numpy as jnp

    from latentebm_jax.methods import bidvl

    hp = bidvl.hparams_from_config(config)
    tx = bidvl.optimizers_from_config(config, STEPS_PER_EPOCH)
    state = jax.jit(functools.partial(bidvl.init, hp, tx))(jax.random.key(0))
    d = config.data
    return hp, tx, state, {"image": jnp.asarray(harness.images(batch, d.image_size, d.channels))}


def build_jax(batch: int) -> harness.Built:
    """The library's jitted train step (state donated) at the paper's settings."""
    import jax

    from latentebm_jax.methods import bidvl

    hp, tx, state, data = _jax_setup(bench_config(), batch)
    step = jax.jit(functools.partial(bidvl.train_step, hp, tx), donate_argnums=0)
    compiled, compile_s, buffer_bytes = harness.compile_jax_step(step, state, data)
    built = harness.jax_train_step(compiled, state, data)
    built.compile_s, built.buffer_bytes = compile_s, buffer_bytes
    return built


def build_torch(batch: int) -> harness.Built:
    """The PyTorch eager step (:class:`~benchmarks.torch_bidvl.TorchBiDVL`) at the same settings."""
    import torch

    from benchmarks.torch_bidvl import TorchBiDVL

    config = bench_config()
    model = TorchBiDVL(torch_settings(config, batch))
    d = config.data
    x = torch.from_numpy(harness.images(batch, d.image_size, d.channels)).permute(0, 3, 1, 2).contiguous()
    return harness.Built(step=lambda: model.step(x))


@functools.lru_cache
def model_flops(batch: int) -> float:
    """FLOPs of one step: XLA's count of the whole (loop-free) step with Flax's plain transposed
    convolutions (``conv_impl='xla'``); see the module docstring."""
    from latentebm_jax.methods import bidvl

    config = bench_config()
    config.bidvl.conv_impl = "xla"
    hp, tx, state, data = _jax_setup(config, batch)
    return harness.xla_flops(functools.partial(bidvl.train_step, hp, tx), state, data)


BENCHMARK = harness.StepBenchmark(
    name="bidvl",
    module="benchmarks.bidvl_step",
    paper_batch=100,
    settings=(
        "BiDVL on CIFAR-10 (configs/cifar10.py:bidvl, train_cifar_BiDVL.py): 32×32×3, h 100, Q/P/E 48/48/64, "
        "SN energy, BN in Q/P, r' .05, offset, N 1, lower level first, Adam (0, .9) lr 1e-4 / 3e-4"
    ),
    build_jax=build_jax,
    build_torch=build_torch,
    model_flops=model_flops,
    chain_steps={},
)


if __name__ == "__main__":
    harness.main(BENCHMARK)
