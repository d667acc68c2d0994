"""Time the library's jitted HVAE backbone step (stage 1 of the ICML 2024 diffusion EBM prior) against a
PyTorch eager step, side by side in one process.

    python -m benchmarks.hvae_step --batch 100         # last line: ratio_jax_over_torch

The step is one Adam step on the backbone's negative ELBO (:func:`latentebm_jax.methods.hvae.train_step`):
``‖x − g(z̃)‖²/(2σ²) + KL(q(z_L|x) ‖ N(0, I)) + Σ_{i<L} KL(q(z_i|x) ‖ p(z_i | z_{i+1}))`` at the
reparameterised posterior draw (ICML 2024 Sec. 2.1, Eq. 1; Sec. 5.5's 3-layer HVAE on CIFAR-10). Settings:
``configs/default.py:get_config("hvae")`` — the library's CIFAR-10 backbone (32×32×3, latent layers
(20, 20, 20), widths (64, 128, 256, 512), prior MLPs 256 wide, σ² = 1/20), Adam lr 1e-3, betas (0.9, 0.999),
batch 100 (the paper publishes no HVAE batch; this is the config's). The PyTorch step
(:class:`benchmarks.torch_diffusion.TorchHVAEStep`) has the same networks and equations.

Model FLOPs: XLA's cost analysis of the whole jitted step (it has no loop): encoder, decoder and conditional
priors forward and backward, and the Adam update.
"""

from __future__ import annotations

import functools

from benchmarks import harness

STEPS_PER_EPOCH = 500  # CIFAR-10's 50,000 images in batches of 100 (the schedule is constant anyway)


def bench_config():
    """``configs/default.py:get_config("hvae")``: the one source of both steps' settings."""
    from configs import default

    return default.get_config("hvae")


def _library_step(config):
    """``(backbone, tx, jitted step, init)`` of :mod:`latentebm_jax.methods.hvae` at ``config``."""
    import jax

    from latentebm_jax.backbones import hvae as hvae_backbone
    from latentebm_jax.config_schema import values_of
    from latentebm_jax.methods import hvae

    d = config.data
    bb = hvae_backbone.build(config.backbone, (d.image_size, d.image_size, d.channels))
    opt = hvae.HVAEOptimizer(**values_of(config.hvae, hvae.HVAEOptimizer))
    tx = opt.adam(opt.lr, opt.weight_decay, STEPS_PER_EPOCH)
    step = jax.jit(functools.partial(hvae.train_step, bb, tx), donate_argnums=0)
    return bb, tx, step, functools.partial(hvae.init, bb, tx)


def build_jax(batch: int) -> harness.Built:
    import jax
    import jax.numpy as jnp

    config = bench_config()
    _, _, step, init = _library_step(config)
    state = jax.jit(init)(jax.random.key(0))
    images = {"image": jnp.asarray(harness.config_images(config, batch))}
    compiled, compile_s, buffer_bytes = harness.compile_jax_step(step, state, images)
    built = harness.jax_train_step(compiled, state, images)
    built.compile_s, built.buffer_bytes = compile_s, buffer_bytes
    return built


def build_torch(batch: int) -> harness.Built:
    import torch

    from benchmarks.torch_diffusion import HVAESettings, TorchHVAEStep

    config = bench_config()
    model = TorchHVAEStep(HVAESettings.from_config(config))
    x = torch.from_numpy(harness.config_images(config, batch)).permute(0, 3, 1, 2).contiguous()
    return harness.Built(step=lambda: model.step(x))


@functools.cache
def model_flops(batch: int) -> float:
    """XLA's FLOP count of the (loop-free) jitted step at ``batch``."""
    import jax
    import jax.numpy as jnp

    from latentebm_jax.methods import hvae

    config = bench_config()
    bb, tx, _, init = _library_step(config)
    state = jax.eval_shape(init, jax.random.key(0))
    images = {"image": jnp.asarray(harness.config_images(config, batch))}
    return harness.xla_flops(functools.partial(hvae.train_step, bb, tx), state, images)


BENCHMARK = harness.StepBenchmark(
    name="hvae",
    module="benchmarks.hvae_step",
    paper_batch=100,
    settings=(
        "HVAE backbone ELBO step (configs/default.py:hvae): CIFAR-10 32×32×3, z (20, 20, 20), "
        "widths (64, 128, 256, 512), prior MLP 256, σ² 1/20, Adam 1e-3 (0.9, 0.999)"
    ),
    build_jax=build_jax,
    build_torch=build_torch,
    model_flops=model_flops,
)

if __name__ == "__main__":
    harness.main(BENCHMARK)
