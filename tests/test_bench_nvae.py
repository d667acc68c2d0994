"""The PyTorch NVAE step of ``benchmarks/nvae_step.py`` computes the library's ``nvae`` train step, so timing
them side by side compares like with like.

Shared weights: the PyTorch network (``benchmarks/torch_nvae.py``) has NVAE's parameter names, so the
library's own converter (``backbones/nvae_convert.py:convert_state_dict``) moves its weights into the Flax
model, and ``load_flax_variables`` moves Flax variables back (checked as a round trip). BatchNorm scales,
biases and running statistics are perturbed first, so that no two channels tie and the statistics matter;
both start from the same power-iteration vectors. Zero noise: ``jax.random.normal`` returns zeros while the
library's step is traced (the posterior's ε, drawn by ``normal_layers``), and the PyTorch network's noise
function is ``torch.zeros_like``. Then five train steps of each, on a small architecture of the benchmark's
kind (two scales, squeeze-and-excitation, residual posteriors, Bernoulli decoder with NVAE's crop) with
steps in the learning-rate warm-up (lr 0 and lr/2) and in the cosine decay, KL balancing on (β < 1) and
then off (β = 1), and the annealed regulariser weight: the losses of every step, then the parameters, the
BatchNorm running statistics and the power-iteration vectors must agree to float32 accuracy (rtol 1e-4, atol
1e-5; atol 1e-4 for the biases just before a BatchNorm, whose gradient is zero: ``_before_batchnorm``). The
test can fail: the steps must move the parameters, and a PyTorch run with a different KL warm-up does not
match.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import nvae_step  # noqa: E402
from benchmarks.torch_nvae import TorchNVAEStep, load_flax_variables  # noqa: E402
from latentebm_jax.backbones.nvae_convert import convert_state_dict  # noqa: E402
from latentebm_jax.methods import nvae  # noqa: E402
from latentebm_jax.state import new_train_state  # noqa: E402

# two scales of one group, one pre-/post-processing cell, 4 channels: every cell kind of the benchmark
TEST_ARCH = dict(
    num_channels_enc=4,
    num_channels_dec=4,
    num_preprocess_blocks=1,
    num_postprocess_blocks=1,
    num_groups_per_scale=1,
    num_latent_per_group=2,
)
STEPS_PER_EPOCH = 2  # warm-up iterations 2, 8 steps in all: β reaches 1 at step 3
STEPS = 5
BATCH = 4


def test_settings_come_from_the_digits_nvae_config():
    config = nvae_step.bench_config()
    assert nvae_step.BENCHMARK.paper_batch == config.train.batch_size == 100
    s = nvae_step.torch_settings(config)
    assert (s.learning_rate, s.weight_decay_norm, s.warmup_epochs) == (1e-2, 1e-2, 2)
    assert s.num_total_iter == 60 * nvae_step.STEPS_PER_EPOCH


def _config(**nvae_overrides):
    config = nvae_step.bench_config(
        TEST_ARCH, warmup_epochs=1, weight_decay_norm_anneal=True, **nvae_overrides
    )
    config.train.num_epochs = 4
    return config


def _torch_model(config, bb, x, seed=0):
    model = TorchNVAEStep(bb.config, nvae_step.torch_settings(config, STEPS_PER_EPOCH), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for bn in model.net.batchnorms():
            bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g))
            bn.bias.copy_(0.2 * torch.randn(bn.bias.shape, generator=g))
            bn.running_mean.copy_(0.1 * torch.randn(bn.running_mean.shape, generator=g))
            bn.running_var.copy_(0.5 + torch.rand(bn.running_var.shape, generator=g))
    model.init_spectral_state(x)
    model.net.randn = torch.zeros_like
    return model


def _flax(model):
    return convert_state_dict({k: v.numpy().copy() for k, v in model.net.state_dict().items()}, model.config)


def _before_batchnorm(path: str) -> bool:
    """A ``res_bnswish`` cell's first convolution bias: the second operation starts with a BatchNorm, which
    removes it, so its gradient vanishes and its float32 value is rounding noise (up to ~1e-5), which Adamax's
    ``ε = 1e-3`` turns into updates of up to ``lr · noise / ε`` in either framework."""
    return "['ops_0']['conv_0']['bias']" in path


def _close(got, want, what, rtol=1e-4, atol=1e-5, noise_atol=None):
    flat_got, flat_want = jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)
    assert len(flat_got) == len(flat_want), what
    for (path, a), b in zip(flat_got, flat_want):
        name = jax.tree_util.keystr(path)
        tol = noise_atol if noise_atol is not None and _before_batchnorm(name) else atol
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=rtol, atol=tol, err_msg=f"{what} {name}"
        )


@pytest.mark.parametrize("arch", ["res_bnswish", "res_mbconv", "res_bnelu", "res_elu"])
def test_the_pytorch_network_has_nvaes_parameter_names(arch, one_torch_thread):
    """Its state dict converts with the library's converter (every name and shape checked there) and the
    Flax variables load back unchanged, for the cell kinds the reference implements."""
    config = nvae_step.bench_config({**TEST_ARCH, "arch_instance": arch})
    bb, _, _ = nvae_step.jax_parts(config, STEPS_PER_EPOCH)
    model = TorchNVAEStep(bb.config, nvae_step.torch_settings(config, STEPS_PER_EPOCH), seed=0)
    other = TorchNVAEStep(bb.config, model.s, seed=1)
    load_flax_variables(other.net, _flax(model))
    for key, value in model.net.state_dict().items():
        np.testing.assert_array_equal(other.net.state_dict()[key].numpy(), value.numpy(), err_msg=key)


@pytest.mark.slow  # ~30 s of compilation (runs where torch is installed)
def test_the_pytorch_step_is_the_librarys_step(monkeypatch, one_torch_thread):
    config = _config()
    bb, tx, objective = nvae_step.jax_parts(config, STEPS_PER_EPOCH)
    x_np = nvae_step.images(config, BATCH)
    x = nvae_step.torch_input(x_np)
    model = _torch_model(config, bb, x)
    start = _flax(model)

    spectral = jax.tree.map(jnp.asarray, model.spectral_state())
    params = jax.tree.map(jnp.asarray, start["params"])
    state = new_train_state(
        {"backbone": params},
        {"backbone": tx.init(params)},
        jax.random.key(0),
        {"batch_stats": jax.tree.map(jnp.asarray, start["batch_stats"]), "spectral": spectral},
    )
    monkeypatch.setattr(
        jax.random, "normal", lambda key, shape=(), dtype=jnp.float32: jnp.zeros(shape, dtype)
    )
    step = jax.jit(lambda s, b: nvae.train_step(bb, tx, objective, s, b))
    batch = {"image": jnp.asarray(x_np)}

    betas = []
    for i in range(STEPS):
        state, metrics = step(state, batch)
        out = model.step(x)
        betas.append(float(metrics["kl_coeff"]))
        for key in ("loss", "recon", "kl", "nelbo", "spectral", "bn"):
            np.testing.assert_allclose(float(metrics[key]), out[key], rtol=1e-4, err_msg=f"step {i} {key}")
    assert betas[1] < 1.0 and betas[-1] == 1.0  # balanced, then not

    after = _flax(model)
    _close(state.params["backbone"], after["params"], "params", noise_atol=1e-4)
    _close(state.model_state["batch_stats"], after["batch_stats"], "batch_stats")
    _close(state.model_state["spectral"], model.spectral_state(), "power iteration")

    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(start)))
    assert moved > 1e-3

    # a different KL warm-up (otherwise the same weights, noise and steps) is told apart
    wrong = _torch_model(_config(kl_anneal_portion=0.6), bb, x)
    for _ in range(STEPS):
        wrong.step(x)
    with pytest.raises(AssertionError):
        _close(state.params["backbone"], _flax(wrong)["params"], "params", noise_atol=1e-4)
