"""The PyTorch reference of ``benchmarks/lebm_text_step.py`` computes the library's text-LEBM step, so the
timing compares like with like.

With the same weights (moved Flax → torch, gate blocks and biases remapped), the same deterministic
"noise" (``jax.random.normal`` patched to a fixed pattern, ``randn`` injected into the torch model: the chains
start from that pattern and add it at every Langevin step) and dropout that keeps every unit (``bernoulli``
patched to all-true, ``F.dropout`` to its train-mode rescaling ``x/(1−p)``), two full train steps of
LEBM Algorithm 1 (prior and posterior Langevin through the LSTM decoder, Eqs. 4 and 9; the decoder update,
Eq. 11, with dropout and clipping; the EBM update, Eq. 10; Adam) give the same losses and chain statistics
and the same parameters in both frameworks. Learning rates are raised so that the second step's chains run
on visibly updated weights, and the weights are drawn at a scale where every LSTM gate matters. The test can
fail: a torch step with a different posterior step size, or with the two torch LSTM biases trained
separately, does not match.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import lebm_text_step as bench  # noqa: E402
from benchmarks.torch_lebm_text import TorchLEBMText  # noqa: E402
from latentebm_jax.methods import lebm  # noqa: E402

VOCAB, BATCH, MAX_LEN, LATENT = 30, 3, 9, 4
RTOL, ATOL = 1e-4, 1e-5
METRICS = ("loss_g", "loss_e", "f_pos", "f_neg", "z_pos_norm", "z_neg_norm", "grad_norm_g", "grad_norm_e")


def tiny_config():
    """``configs/ptb.py`` shrunk (widths, chain lengths, row length), its dropout 0.5 kept; lr raised."""
    c = bench.bench_config()
    c.lebm_text.update(latent_dim=LATENT, embed_dim=8, decoder_hidden=16, ebm_hidden=16)
    c.lebm_text.update(lr_gen=1e-2, lr_ebm=1e-2, grad_clip_norm=1.0)
    c.sampler.update(prior_steps=3, posterior_steps=4)
    c.data.max_len = MAX_LEN
    c.train.batch_size = BATCH
    return c


def pattern(n: int) -> np.ndarray:
    """The fixed stand-in for a standard normal draw of ``n`` numbers."""
    return np.cos(0.7 * np.arange(n) + 0.3).astype(np.float32)


def fake_normal(key, shape=(), dtype=jnp.float32, *args, **kwargs):
    """``jax.random.normal`` replaced: the same pattern for every key (each example draws ``(latent,)``)."""
    return jnp.asarray(pattern(math.prod(shape)).reshape(shape), dtype)


def keep_all(key, p=0.5, shape=None, *args, **kwargs):
    """``jax.random.bernoulli`` replaced: every dropout mask keeps every unit (then scaled by ``1/(1−p)``)."""
    return jnp.ones(() if shape is None else shape, bool)


def torch_randn(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(pattern(shape[-1])).expand(*shape).clone()


def keep_all_torch(x, p=0.5, training=True, inplace=False):
    return x / (1 - p) if training else x


@pytest.fixture
def keep_all_dropout(monkeypatch):
    monkeypatch.setattr(torch.nn.functional, "dropout", keep_all_torch)


@pytest.fixture(scope="module")
def library_steps():
    """The library's two steps with noise and dropout fixed, computed once for the module; compiled
    functions traced with the patched samplers dropped before and after (the library's Langevin loop is a
    cached ``jax.jit``)."""
    config = tiny_config()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jax.random, "normal", fake_normal)
        patch.setattr(jax.random, "bernoulli", keep_all)
        jax.clear_caches()
        initial, jx = jax_run(config)
    jax.clear_caches()
    return config, initial, jx


def scaled_params(params, seed: int = 0, scale: float = 0.3):
    """Every weight redrawn as ``N(0, scale²)``: the library's ``U(−0.01, 0.01)`` decoder init would hide a
    swapped gate block inside the tolerance."""
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(
        treedef, [jnp.asarray(scale * rng.standard_normal(x.shape), jnp.float32) for x in leaves]
    )


def jax_run(config, steps: int = 2):
    """The initial parameters, and the library's metrics and parameters after each of ``steps`` steps."""
    hp, tx, state = bench.jax_parts(config, VOCAB)
    state = state.replace(params=scaled_params(state.params))
    initial = jax.device_get(state.params)
    data = {k: jnp.asarray(v) for k, v in bench.random_batch(BATCH, VOCAB, MAX_LEN).items()}
    step = jax.jit(functools.partial(lebm.train_step, hp, tx))
    out = []
    for _ in range(steps):
        state, metrics = step(state, data)
        out.append(({k: float(metrics[k]) for k in METRICS}, jax.device_get(state.params)))
    return initial, out


def torch_run(config, initial, steps: int = 2, **changes):
    settings = dataclasses.replace(bench.torch_settings(config, VOCAB, BATCH), **changes)
    model = TorchLEBMText(settings, randn=torch_randn)
    model.load_flax_params(initial)
    data = bench.random_batch(BATCH, VOCAB, MAX_LEN)
    ids, lengths = torch.from_numpy(data["ids"]).long(), torch.from_numpy(data["lengths"]).long()
    return model, [(model.step(ids, lengths), model.flax_params()) for _ in range(steps)]


def assert_same_step(jx, tc) -> None:
    for (jm, jp), (tm, tp) in zip(jx, tc):
        np.testing.assert_allclose([tm[k] for k in METRICS], [jm[k] for k in METRICS], rtol=RTOL, atol=ATOL)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL), jp, tp)


def test_weight_transfer_round_trips_and_decodes_alike():
    """Flax → torch → Flax is the identity; both give one ``log p_β(x|z)`` (Eq. 4) and one ``f_α``."""
    config = tiny_config()
    hp, _, state = bench.jax_parts(config, VOCAB)
    params = scaled_params(state.params)
    model = TorchLEBMText(bench.torch_settings(config, VOCAB, BATCH))
    model.load_flax_params(jax.device_get(params))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), model.flax_params())

    data = bench.random_batch(BATCH, VOCAB, MAX_LEN, seed=1)
    z = np.random.default_rng(2).standard_normal((BATCH, LATENT)).astype(np.float32)
    batch = {k: jnp.asarray(v) for k, v in data.items()}
    want = hp.likelihood.log_prob(params["decoder"], jnp.asarray(z), batch)
    model.decoder.eval()
    ids, lengths = torch.from_numpy(data["ids"]).long(), torch.from_numpy(data["lengths"]).long()
    got = model.decoder.log_likelihood(torch.from_numpy(z), ids, lengths).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    f = model.f(torch.from_numpy(z)).detach().numpy()
    np.testing.assert_allclose(f, lebm.neg_energy(hp, params["ebm"], jnp.asarray(z)), rtol=RTOL, atol=ATOL)


def test_torch_step_matches_library_step(library_steps, keep_all_dropout):
    config, initial, jx = library_steps
    _, tc = torch_run(config, initial)
    assert_same_step(jx, tc)
    # the comparison has something to compare: clipping is active, and every weight moved (but the EBM's
    # output bias, a constant of f_α that Eq. 10's difference of means cancels)
    assert jx[0][0]["grad_norm_g"] > config.lebm_text.grad_clip_norm
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), initial, jx[-1][1])
    assert moved["ebm"]["TorchDense_2"]["Dense_0"].pop("bias") == 0.0
    assert min(jax.tree.leaves(moved)) > 1e-3, moved


def test_a_different_step_does_not_match(library_steps, keep_all_dropout):
    config, initial, jx = library_steps
    s1 = config.sampler.posterior_step_size
    _, tc = torch_run(config, initial, steps=1, posterior_step_size=1.5 * s1)
    with pytest.raises(AssertionError):
        assert_same_step(jx[:1], tc)
    # two trained torch LSTM biases (bias_ih + bias_hh) take twice Adam's step on the gate biases
    model, _ = torch_run(config, initial, steps=0)
    model.decoder.lstm.bias_ih_l0.requires_grad_(True)
    model.opt_dec.add_param_group({"params": [model.decoder.lstm.bias_ih_l0]})
    data = bench.random_batch(BATCH, VOCAB, MAX_LEN)
    ids, lengths = torch.from_numpy(data["ids"]).long(), torch.from_numpy(data["lengths"]).long()
    with pytest.raises(AssertionError):
        assert_same_step(jx[:1], [(model.step(ids, lengths), model.flax_params())])


def test_benchmark_reads_the_ptb_config():
    config = bench.bench_config()
    assert bench.BENCHMARK.paper_batch == config.train.batch_size
    assert bench.BENCHMARK.chain_steps == {
        "prior": config.sampler.prior_steps,
        "posterior": config.sampler.posterior_steps,
    }
    s = bench.torch_settings(config, bench.PTB_VOCAB_SIZE, bench.PAPER_BATCH)
    assert (s.max_len, s.latent_dim, s.embed_dim, s.hidden) == (82, 32, 256, 512)
    assert bench.step_model_flops(2) == pytest.approx(2 * bench.step_model_flops(1))
