"""Time the library's jitted text-LEBM train step against a PyTorch eager step, side by side in one process.

    python -m benchmarks.lebm_text_step              # PTB, batch 32; last line: ratio_jax_over_torch
    python -m benchmarks.lebm_text_step --batch 4 --repeats 3 --no-memory

Settings are the text LEBM's PTB ones (``configs/ptb.py``: rows of 82 tokens, ``n_z = 32``, embeddings 256,
LSTM 512, EBM 200×2 GELU, ``K₀ = 40``, ``s₀ = 0.4``, ``K₁ = 20``, ``s₁ = 0.1``, decoder dropout 0.5/0.5,
gradients clipped to norm 5, Adam lr ``2e-5`` / ``1e-3``). The vocabulary size is not a config key (the
library takes it from the training split): it is PTB's, :data:`PTB_VOCAB_SIZE`. No PTB text is needed: the
batch is random token rows of the config's shape and random lengths, the same rows for both steps (both
frameworks compute every padded position anyway). The PyTorch step (:mod:`benchmarks.torch_lebm_text`) has
the same decoder (``torch.nn.LSTM``), energy network and update equations; prior-only and posterior-only
Langevin chains are timed as well and reported per Langevin step.

Model FLOPs are an analytic count (:func:`step_model_flops`), not XLA's cost analysis: the decoder's
recurrence is a ``lax.scan``, whose body XLA counts once whatever the number of time steps.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from benchmarks import harness

# The vocabulary the library builds from the Mikolov PTB files (``ptb.train.txt``): their 10,000 word types,
# ``<unk>`` among them, become ``<pad> <unk> <bos> <eos>`` + 9,999 words.
PTB_VOCAB_SIZE = 10_003
PAPER_BATCH = (
    32  # configs/ptb.py train.batch_size (the text-VAE batch; the LEBM authors published no text code)
)
PTB_TRAIN_SENTENCES = 42_068  # lines of ptb.train.txt: only the per-epoch lr decay reads the epoch length


def bench_config():
    """``configs/ptb.py``: the one source of both steps' hyperparameters."""
    from configs import ptb

    return ptb.get_config("lebm_text")


def random_batch(batch: int, vocab_size: int, max_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows ``<bos> w_1 … w_n <eos> <pad>…`` of random words (ids ≥ 4) and random lengths in ``[2, max_len]``
    (``<bos>`` and ``<eos>`` counted), the layout of :mod:`latentebm_jax.data.text`."""
    from latentebm_jax.data.text import BOS_ID, EOS_ID, PAD_ID, SPECIALS

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, max_len + 1, size=batch).astype(np.int32)
    ids = rng.integers(len(SPECIALS), vocab_size, size=(batch, max_len)).astype(np.int32)
    ids[:, 0] = BOS_ID
    cols = np.arange(max_len)[None, :]
    ids[cols == lengths[:, None] - 1] = EOS_ID
    ids[cols >= lengths[:, None]] = PAD_ID
    return {"ids": ids, "lengths": lengths}


# ----------------------------------------------------------------------------- FLOP model


def decoder_macs(vocab_size: int, max_len: int, latent_dim: int, embed_dim: int, hidden: int) -> int:
    """Multiply-accumulates of one teacher-forced decoder pass over one row: ``c₀ = W z``, then per position
    (``max_len − 1`` of them, padding included) the LSTM's four gates on ``[embed, z]`` and ``h``, and the
    output layer over the vocabulary."""
    per_token = 4 * hidden * (embed_dim + latent_dim + hidden) + hidden * vocab_size
    return latent_dim * hidden + (max_len - 1) * per_token


def energy_macs(latent_dim: int, hidden: int) -> int:
    return latent_dim * hidden + hidden * hidden + hidden


def step_model_flops(batch: int, config=None, vocab_size: int = PTB_VOCAB_SIZE) -> float:
    """FLOPs of one step: a Langevin step is a forward and an input-gradient pass (2× forward); the update is
    the decoder forward with input and weight gradients (3×) and the EBM on both batches (3× each). Softmax
    exponentials and elementwise gate arithmetic are not counted."""
    c = config or bench_config()
    g, smp = c.lebm_text, c.sampler
    dec = decoder_macs(vocab_size, c.data.max_len, g.latent_dim, g.embed_dim, g.decoder_hidden)
    e = energy_macs(g.latent_dim, g.ebm_hidden)
    macs = smp.prior_steps * 2 * e + smp.posterior_steps * 2 * (dec + e) + 3 * dec + 2 * 3 * e
    return 2.0 * macs * batch


# ----------------------------------------------------------------------------- the two steps


def jax_parts(config, vocab_size: int, seed: int = 0) -> tuple[Any, Any, Any]:
    """``(hparams, optimisers, initial TrainState)`` of the library's text LEBM at ``config``."""
    import jax

    from latentebm_jax.methods import lebm, lebm_text

    hp = lebm_text.hparams_from_config(config, vocab_size)
    steps_per_epoch = max(PTB_TRAIN_SENTENCES // config.train.batch_size, 1)
    tx = lebm.optimizer_from_config(config, "lebm_text").build("decoder", steps_per_epoch)
    return (
        hp,
        tx,
        jax.jit(functools.partial(lebm.init, hp, tx))(jax.random.key(seed)),
    )  # jit: faster than eager


def build_jax(batch: int, config=None, vocab_size: int = PTB_VOCAB_SIZE) -> harness.Built:
    """The library's jitted train step (state donated) and its two chains alone."""
    import jax
    import jax.numpy as jnp

    from latentebm_jax.methods import lebm
    from latentebm_jax.methods.common import example_keys

    config = config or bench_config()
    hp, tx, state = jax_parts(config, vocab_size)
    data = {k: jnp.asarray(v) for k, v in random_batch(batch, vocab_size, config.data.max_len).items()}
    step = jax.jit(functools.partial(lebm.train_step, hp, tx), donate_argnums=0)
    compiled, compile_s, buffer_bytes = harness.compile_jax_step(step, state, data)
    built = harness.jax_train_step(compiled, state, data)
    built.compile_s, built.buffer_bytes = compile_s, buffer_bytes
    holder = built.live

    keys = example_keys(jax.random.key(1), batch)
    prior = jax.jit(lambda p, k: lebm.sample_prior(hp, p["ebm"], k))
    post = jax.jit(lambda p, k: lebm.sample_posterior(hp, p, data, k))
    built.chains = {
        "prior": lambda: prior(holder["state"].params, keys).block_until_ready(),
        "posterior": lambda: post(holder["state"].params, keys).block_until_ready(),
    }
    return built


def torch_settings(config, vocab_size: int, batch: int):
    """The PyTorch step's settings, read from the same config as the JAX step."""
    from benchmarks.torch_lebm_text import TextStepSettings

    g, smp = config.lebm_text, config.sampler
    unsupported = {
        "ebm_layers": (g.ebm_layers, 2),
        "ebm_activation": (g.ebm_activation, "gelu"),
        "word_dropout": (g.word_dropout, 0.0),
        "weight_decay_gen": (g.weight_decay_gen, 0.0),
        "weight_decay_ebm": (g.weight_decay_ebm, 0.0),
    }
    for key, (value, supported) in unsupported.items():
        if value != supported:
            raise ValueError(
                f"the PyTorch reference implements lebm_text.{key} = {supported!r} only, not {value!r}"
            )
    return TextStepSettings(
        batch=batch,
        vocab_size=vocab_size,
        max_len=config.data.max_len,
        latent_dim=g.latent_dim,
        embed_dim=g.embed_dim,
        hidden=g.decoder_hidden,
        ebm_hidden=g.ebm_hidden,
        prior_steps=smp.prior_steps,
        prior_step_size=smp.prior_step_size,
        posterior_steps=smp.posterior_steps,
        posterior_step_size=smp.posterior_step_size,
        sigma_p=g.prior_sigma,
        init_sigma=smp.init_sigma,
        dropout_in=g.dropout_in,
        dropout_out=g.dropout_out,
        lr_gen=g.lr_gen,
        lr_ebm=g.lr_ebm,
        beta1=g.beta1,
        beta2=g.beta2,
        grad_clip_norm=g.grad_clip_norm,
    )


def build_torch(batch: int, config=None, vocab_size: int = PTB_VOCAB_SIZE) -> harness.Built:
    """The PyTorch eager step on the same random rows, and its two chains alone."""
    import torch

    from benchmarks.torch_lebm_text import TorchLEBMText

    config = config or bench_config()
    model = TorchLEBMText(torch_settings(config, vocab_size, batch))
    data = random_batch(batch, vocab_size, config.data.max_len)
    ids, lengths = torch.from_numpy(data["ids"]).long(), torch.from_numpy(data["lengths"]).long()
    return harness.Built(
        step=lambda: model.step(ids, lengths),
        chains={
            "prior": lambda: model.sample_prior(batch),
            "posterior": lambda: model.sample_posterior(ids, lengths),
        },
    )


# ----------------------------------------------------------------------------- the benchmark

BENCHMARK = harness.StepBenchmark(
    name="lebm_text",
    module="benchmarks.lebm_text_step",
    paper_batch=PAPER_BATCH,
    settings=(
        f"Text LEBM on PTB (configs/ptb.py, vocab {PTB_VOCAB_SIZE:,}, random tokens): rows of 82, n_z 32, "
        "embed 256, LSTM 512, EBM 200×2, K₀ 40 (s₀ 0.4), K₁ 20 (s₁ 0.1), dropout .5/.5, clip 5"
    ),
    build_jax=build_jax,
    build_torch=build_torch,
    model_flops=step_model_flops,
    chain_steps={"prior": 40, "posterior": 20},
)

if __name__ == "__main__":
    harness.main(BENCHMARK)
