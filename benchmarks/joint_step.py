"""Time the library's jitted joint-prior train step (ICCV 2023) against a PyTorch eager step, side by side.

    python -m benchmarks.joint_step --batch 100        # last line: ratio_jax_over_torch

Settings are the authors' SVHN ``train_fid.py``, the setting of the paper's main image table (Table 2,
SVHN): ``configs/svhn.py:get_config("joint")`` — 32×32×3, five latent layers of 10, channel list
``128, 256, 256, 512, 1024, 2048``, concatenation merge, EBM 2 × 100 LReLU with spectral norm, ``K = 100``
prior Langevin steps of ``s = 0.3``, ``σ² = 1/20`` (Gfactor 10), Adam betas ``(0, 0.9)``, batch 100. The
PyTorch step (:mod:`benchmarks.torch_joint`) has the same networks and update equations
(``tests/test_bench_joint.py`` shows both compute the same step). The prior chain alone is also timed, per
Langevin step.

Model FLOPs (:func:`model_flops`) are XLA's cost analysis of the loop-free pieces of one step, with plain
XLA convolutions (``conv_impl='xla'``: the direct-convolution count, whatever algorithm the step uses):
the generator + inference value-and-gradient (Eqs. 11–12), one prior Langevin gradient (Eq. 13) times
``K``, and the EBM's contrastive gradient (Eq. 10) on both batches; the optimiser updates are not counted.
"""

from __future__ import annotations

import dataclasses
import functools

from benchmarks import harness

STEPS_PER_EPOCH = 5311  # SVHN extra (531,131 images) at batch 100: only the lr schedule's period


def bench_config():
    """``configs/svhn.py:get_config("joint")``: the one source of both steps' hyperparameters."""
    from configs import svhn

    return svhn.get_config("joint")


def hparams_and_optimizer(config):
    from latentebm_jax.config_schema import values_of
    from latentebm_jax.methods import joint

    hp = joint.hparams_from_config(config)
    tx = joint.JointOptimizer(**values_of(config.joint, joint.JointOptimizer)).build(STEPS_PER_EPOCH)
    return hp, tx


def torch_settings(config):
    """The PyTorch step's settings, read from the same config."""
    from benchmarks.torch_joint import StepSettings

    m, smp, d = config.joint, config.sampler, config.data
    return StepSettings(
        image_size=d.image_size,
        channels=d.channels,
        latent_dims=tuple(m.latent_dims),
        widths=tuple(m.widths),
        merge=m.merge,
        ebm_hidden=m.ebm_hidden,
        ebm_layers=m.ebm_layers,
        ebm_activation=m.ebm_activation,
        ebm_spectral_norm=m.ebm_spectral_norm,
        prior_steps=smp.prior_steps,
        prior_step_size=smp.prior_step_size,
        init_sigma=smp.init_sigma,
        sigma=m.likelihood_sigma,
        sigma_p=m.prior_sigma,
        kl_estimator=m.kl_estimator,
        lr_ebm=m.lr_ebm,
        lr_gen_enc=m.lr_gen_enc,
        beta1=m.beta1,
        beta2=m.beta2,
        weight_decay_ebm=m.weight_decay_ebm,
        weight_decay_gen_enc=m.weight_decay_gen_enc,
    )


# ----------------------------------------------------------------------------- the two steps


def build_jax(batch: int) -> harness.Built:
    """The library's jitted train step (state donated) and its prior chain alone."""
    import jax
    import jax.numpy as jnp

    from latentebm_jax.methods import joint
    from latentebm_jax.methods.common import example_keys

    config = bench_config()
    hp, tx = hparams_and_optimizer(config)
    if not hp.has_ebm:
        raise ValueError("the joint benchmark times the EBM prior; the config has ebm_hidden = 0")
    state = jax.jit(functools.partial(joint.init, hp, tx))(jax.random.key(config.seed))
    x = {"image": jnp.asarray(harness.config_images(config, batch))}

    step = jax.jit(functools.partial(joint.train_step, hp, tx), donate_argnums=0)
    compiled, compile_s, buffer_bytes = harness.compile_jax_step(step, state, x)
    built = harness.jax_train_step(compiled, state, x)
    built.compile_s, built.buffer_bytes = compile_s, buffer_bytes
    holder = built.live

    keys = example_keys(jax.random.key(1), batch)
    prior = jax.jit(lambda p, stats, k: joint.sample_prior(hp, p["ebm"], stats, k))

    def prior_chain() -> None:
        st = holder["state"]
        jax.block_until_ready(prior(st.params, st.model_state["ebm"], keys))

    built.chains = {"prior": prior_chain}
    return built


def build_torch(batch: int) -> harness.Built:
    """The PyTorch eager step (:class:`benchmarks.torch_joint.TorchJoint`) and its prior chain alone."""
    import torch

    from benchmarks.torch_joint import TorchJoint

    config = bench_config()
    s = torch_settings(config)
    model = TorchJoint(s, seed=config.seed)
    x = torch.from_numpy(harness.images(batch, s.image_size, s.channels)).permute(0, 3, 1, 2).contiguous()

    def prior_chain() -> None:
        model.freeze_ebm(True)  # frozen EBM weights during the chain, as inside step()
        model.sample_prior(batch)

    return harness.Built(step=lambda: model.step(x), chains={"prior": prior_chain})


# ----------------------------------------------------------------------------- FLOP model


@functools.lru_cache
def _piece_flops(batch: int) -> tuple[float, float, float]:
    """XLA FLOPs of ``(G+I value_and_grad, one Langevin gradient, EBM contrastive gradient)`` at ``batch``."""
    import jax
    import jax.numpy as jnp

    from latentebm_jax.methods import joint

    config = bench_config()
    hp, tx = hparams_and_optimizer(config)
    hp = dataclasses.replace(hp, conv_impl="xla")
    state = jax.eval_shape(lambda k: joint.init(hp, tx, k), jax.random.key(0))
    params, stats = state.params, state.model_state["ebm"]
    x = jax.ShapeDtypeStruct((batch, *hp.image_shape), jnp.float32)
    z = tuple(jax.ShapeDtypeStruct((batch, d), jnp.float32) for d in hp.latent_dims)
    z2 = tuple(jax.ShapeDtypeStruct((2 * batch, d), jnp.float32) for d in hp.latent_dims)
    model = {"gen": params["gen"], "enc": params["enc"]}

    def gen_enc(p, pe, st, x, noise):
        return jax.value_and_grad(lambda p: joint.negative_elbo_terms(hp, p, pe, st, x, noise)["loss"])(p)

    def langevin_grad(pe, st, z):
        return jax.grad(lambda z: jnp.sum(joint.log_prior(hp, pe, st, z)))(z)

    def ebm_grad(pe, st, z):
        def loss(pe):
            f, _ = hp.energy_net().apply(
                {"params": pe, "batch_stats": st}, z, update_stats=True, mutable=["batch_stats"]
            )
            return jnp.mean(f[batch:]) - jnp.mean(f[:batch])

        return jax.value_and_grad(loss)(pe)

    return (
        harness.xla_flops(gen_enc, model, params["ebm"], stats, x, z),
        harness.xla_flops(langevin_grad, params["ebm"], stats, z),
        harness.xla_flops(ebm_grad, params["ebm"], stats, z2),
    )


def model_flops(batch: int) -> float:
    """FLOPs of one step: G+I update, ``K`` prior Langevin gradients, the EBM update (XLA's count)."""
    gen_enc, langevin, ebm = _piece_flops(batch)
    return gen_enc + bench_config().sampler.prior_steps * langevin + ebm


# ----------------------------------------------------------------------------- the benchmark


def _settings_line() -> str:
    c = bench_config()
    m, smp = c.joint, c.sampler
    return (
        f"joint EBM prior on SVHN (configs/svhn.py:get_config('joint'), train_fid.py): {c.data.image_size}²×"
        f"{c.data.channels}, z {'/'.join(map(str, m.latent_dims))}, widths {'/'.join(map(str, m.widths))}, "
        f"EBM {m.ebm_layers}×{m.ebm_hidden} SN, K {smp.prior_steps} (s {smp.prior_step_size}), "
        f"Gfactor {1 / (2 * m.likelihood_sigma**2):.0f}, KL {m.kl_estimator}"
    )


BENCHMARK = harness.StepBenchmark(
    name="joint",
    module="benchmarks.joint_step",
    paper_batch=100,
    settings=_settings_line(),
    build_jax=build_jax,
    build_torch=build_torch,
    model_flops=model_flops,
    chain_steps={"prior": bench_config().sampler.prior_steps},
)

if __name__ == "__main__":
    harness.main(BENCHMARK)
