"""Time the library's jitted stage-2 step of the diffusion hierarchical EBM prior (Cui & Han, ICML 2024) on
the HVAE backbone against a PyTorch eager step, side by side in one process.

    python -m benchmarks.diffusion_step --batch 50      # last line: ratio_jax_over_torch

The step is one iteration of Algorithm 1 (:func:`latentebm_jax.methods.diffusion_prior.train_step`): a
posterior draw of the frozen backbone mapped to ``u_0 = T⁻¹(z̃)`` (App. A.1, Eq. 15), ``t ~ U{0 … T−1}`` per
example and the pair ``(u_t⁺, u_{t+1})`` (Eq. 7), ``K`` conditional Langevin steps on
``log p(u_t | u_{t+1})`` (Eqs. 9, 13) from ``u_{t+1}`` for the negatives, the loss of Eq. 12 with
``F = g/s_t`` and one Adam step of the per-layer time-conditioned EBMs. Settings:
``configs/default.py:get_config("diffusion")``: the authors' CIFAR-10 stage-2 settings (T = 3, K = 50,
b = 3e-5, EBM width 128 with 2 dense blocks and spectral norm, Adam 4e-5, betas (0.99, 0.999), weight
decay 3e-5, global batch 50) on the library's CIFAR-10 HVAE backbone (3 layers of 20 units, Sec. 5.5; the
paper's main backbone, NVAE, is ``benchmarks/nvae``'s). The PyTorch step
(:class:`benchmarks.torch_diffusion.TorchDiffusionStep`) has the same networks, sampler and update.

Model FLOPs from XLA's cost analysis of the step compiled loop-free (chain unrolled) with ``K = 0`` and
``K = 1``: the first is everything outside the chain, the difference one Langevin step (the log-density
gradient through ``T`` and the EBMs, and the update; loop-invariant work such as the spectral-norm power
iteration counted once); the step's count is the first plus ``K`` times the difference.
The negative chain alone is timed as ``negative`` (per Langevin step).
"""

from __future__ import annotations

import functools

import numpy as np

from benchmarks import harness

STEPS_PER_EPOCH = 1000  # CIFAR-10's 50,000 images in batches of 50


def bench_config():
    """``configs/default.py:get_config("diffusion")``: the one source of both steps' settings."""
    from configs import default

    return default.get_config("diffusion")


def library_setup(config):
    """``(hparams, tx)`` of :mod:`latentebm_jax.methods.diffusion_prior` at ``config``."""
    from latentebm_jax.config_schema import values_of
    from latentebm_jax.methods import diffusion_prior as dm

    hp = dm.hparams_from_config(config)
    opt = dm.DiffusionOptimizer(**values_of(config.diffusion, dm.DiffusionOptimizer))
    return hp, opt.adam(opt.lr, opt.weight_decay, STEPS_PER_EPOCH)


def _init(hp, tx, key):
    """Fresh EBMs on a freshly initialised (untrained: the cost is the same) backbone."""
    import jax

    from latentebm_jax.methods import diffusion_prior as dm

    return dm.init(hp, tx, key, hp.backbone.init(jax.random.fold_in(key, 1)))


def _state(hp, tx, seed: int = 0, shapes_only: bool = False):
    """The stage-2 state (compiled once), or its shapes."""
    import jax

    init = functools.partial(_init, hp, tx)
    key = jax.random.key(seed)
    return jax.eval_shape(init, key) if shapes_only else jax.jit(init)(key)


def _chain_inputs(hp, batch: int):
    """``(u_{t+1}, t, keys)`` for the negative chain alone: every ``t`` in turn."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    u_next = tuple(jnp.asarray(rng.standard_normal((batch, d)).astype(np.float32)) for d in hp.latent_dims)
    t = jnp.arange(batch, dtype=jnp.int32) % hp.num_diffusion_steps
    return u_next, t, jax.random.split(jax.random.key(2), batch)


def build_jax(batch: int) -> harness.Built:
    import jax
    import jax.numpy as jnp

    from latentebm_jax.methods import diffusion_prior as dm

    config = bench_config()
    hp, tx = library_setup(config)
    state = _state(hp, tx)
    images = {"image": jnp.asarray(harness.config_images(config, batch))}
    step = jax.jit(functools.partial(dm.train_step, hp, tx), donate_argnums=0)
    compiled, compile_s, buffer_bytes = harness.compile_jax_step(step, state, images)
    built = harness.jax_train_step(compiled, state, images)
    built.compile_s, built.buffer_bytes = compile_s, buffer_bytes
    holder = built.live

    u_next, t, keys = _chain_inputs(hp, batch)
    chain = jax.jit(lambda p, u, t, k: dm.negative_samples(hp, p, u, u, t, k))

    def negative():
        jax.block_until_ready(chain(dm.inference_params(holder["state"]), u_next, t, keys))

    built.chains = {"negative": negative}
    return built


def build_torch(batch: int) -> harness.Built:
    import torch

    from benchmarks.torch_diffusion import DiffusionSettings, HVAESettings, TorchDiffusionStep

    config = bench_config()
    model = TorchDiffusionStep(HVAESettings.from_config(config), DiffusionSettings.from_config(config))
    x = torch.from_numpy(harness.config_images(config, batch)).permute(0, 3, 1, 2).contiguous()
    rng = np.random.default_rng(1)
    u_next = [
        torch.from_numpy(rng.standard_normal((batch, d)).astype(np.float32))
        for d in config.backbone.latent_dims
    ]
    t = torch.arange(batch) % model.s.num_diffusion_steps

    def negative():
        for p in model.ebms.parameters():  # frozen EBM weights during the chain, as inside step()
            p.requires_grad_(False)
        model.sample_negative(u_next, t)
        for p in model.ebms.parameters():
            p.requires_grad_(True)

    return harness.Built(step=lambda: model.step(x), chains={"negative": negative})


def _flops_config(langevin_steps: int):
    config = bench_config()
    config.diffusion.langevin_steps = langevin_steps
    config.diffusion.unroll = 0  # the chain unrolled: no loop for the cost analysis to count once
    return config


def _step_flops(batch: int, langevin_steps: int) -> float:
    import jax.numpy as jnp

    from latentebm_jax.methods import diffusion_prior as dm

    config = _flops_config(langevin_steps)
    hp, tx = library_setup(config)
    images = {"image": jnp.asarray(harness.config_images(config, batch))}
    state = _state(hp, tx, shapes_only=True)
    return harness.xla_flops(functools.partial(dm.train_step, hp, tx), state, images)


@functools.cache
def model_flops(batch: int) -> float:
    """FLOPs of one step (XLA's count): the step without its chain (``K = 0``) plus ``K`` times what one
    more Langevin step adds (``K = 1`` minus ``K = 0``)."""
    k = bench_config().diffusion.langevin_steps
    outside, one = _step_flops(batch, 0), _step_flops(batch, 1)
    return outside + k * (one - outside)


BENCHMARK = harness.StepBenchmark(
    name="diffusion",
    module="benchmarks.diffusion_step",
    paper_batch=50,
    settings=(
        "diffusion EBM prior stage 2 on the HVAE backbone (configs/default.py:diffusion): CIFAR-10, "
        "z (20, 20, 20), T 3, K 50, b 3e-5, EBM width 128 ×2 blocks + SN, Adam 4e-5 (0.99, 0.999), wd 3e-5"
    ),
    build_jax=build_jax,
    build_torch=build_torch,
    model_flops=model_flops,
    chain_steps={"negative": 50},
)

if __name__ == "__main__":
    harness.main(BENCHMARK)
