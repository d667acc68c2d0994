"""LEBM for text (Pang et al. 2020, Secs. 2.1, 3.2–3.3): Algorithm 1 of :mod:`~latentebm_jax.methods.lebm`
over the autoregressive LSTM likelihood ``p_β(x|z) = Π_t p_β(x^(t) | x^(<t), z)`` (Eq. 4,
:mod:`latentebm_jax.nets.text`), and the text evaluations of Table 2 (NLL, FPPL, RPPL) and Table 3 (chains).

Batches are ``{"ids": (B, T) int32, "lengths": (B,) int32}`` in the layout of :mod:`latentebm_jax.data.text`.
``K₀ = 40`` is the paper's text setting (Sec. 3.3, Table 3); the other text settings (latent size, decoder
widths, step sizes, ``K₁``, learning rates) are published neither in the paper nor in the authors' code
(bpucla/latent-space-EBM-prior has no text part): the defaults are the image LEBM's sampler and the
text-VAE decoder conventions (He et al. 2019).

Predict functions beyond the shared ones (for this module's evaluators):

* ``recon_log_likelihood(params, batch, key) -> (B,)``: ``log p_β(x|z⁺)`` at one posterior sample;
* ``log_partition(params, key) -> ()``: Monte Carlo ``log Z(α)``;
* ``marginal_log_likelihood(params, batch, key, log_z) -> (B,)``: importance-sampled ``log p_θ(x)``.

Evaluators (``eval.metrics``): ``recon_nll``, ``nll``, ``perplexity`` (FPPL/RPPL, grammar scores on the
shipped corpora), ``text_reconstructions``, ``text_samples``, ``text_chains``; ``interval_sentences`` at eval
intervals. On ``text_modes`` (:mod:`~latentebm_jax.data.mode_grammar`, sentences with sentence-level choices)
``perplexity`` also reports the topics the samples cover, ``text_reconstructions`` how often a reconstruction
keeps its sentence's choices, and ``text_chains`` how often the long-run chains change topic.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from latentebm_jax import device_map, viz
from latentebm_jax.config_schema import (
    Check,
    ConfigError,
    Setting,
    non_negative,
    non_negative_int,
    positive,
    positive_int,
    setting,
    unit_interval,
    values_of,
)
from latentebm_jax.data import iterate_once, mode_grammar, toy_grammar
from latentebm_jax.data.settings import is_text
from latentebm_jax.data.text import SPECIALS, TEXT_CORPORA
from latentebm_jax.methods import lebm
from latentebm_jax.methods.base import EvalContext, Evaluator, Method, MethodSpec, shapes_of
from latentebm_jax.methods.eval_tools import (
    LONG_RUN,
    MAX_TEST_EXAMPLES,
    NUM_SAMPLES,
    chain_lengths,
    generate_batches,
)
from latentebm_jax.methods.lebm import LEBMHparams, sample_posterior
from latentebm_jax.metrics.language_model import (
    cached_language_model,
    settings_from_config,
    train_language_model,
)
from latentebm_jax.nets import text as text_nets
from latentebm_jax.progress import tqdm

log = logging.getLogger("latentebm_jax.methods")

Params = dict[str, Any]
Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class LSTMLikelihood:
    """``p_β(x|z)`` of Eq. 4: the LSTM decoder, with text-VAE dropout in the generator update."""

    vocab_size: int = 10_000  # from the training split's vocabulary
    max_len: int = 40  # from data.max_len: row width of ids, <bos> and <eos> included
    embed_dim: int = setting(256, "word-embedding width (text-VAE convention)", check=positive)
    decoder_hidden: int = setting(512, "LSTM width (text-VAE convention)", check=positive)
    dropout_in: float = setting(
        0.0,
        "decoder dropout on word embeddings while training (text-VAE: 0.5)",
        check=unit_interval,
    )
    dropout_out: float = setting(
        0.0,
        "decoder dropout on LSTM outputs while training (text-VAE: 0.5)",
        check=unit_interval,
    )
    word_dropout: float = setting(
        0.0,
        "decoder input words dropped (whole embeddings) while training, Bowman et al. 2016 (1 = the decoder "
        "sees no earlier word)",
        check=Check(lambda x: 0 <= x <= 1, "in [0, 1]"),
    )
    temperature: float = setting(
        1.0,
        "sampling temperature of generated sentences (0 = greedy)",
        check=non_negative,
        what="non-negative (0 = greedy)",
    )

    network = "decoder"

    @property
    def uses_dropout(self) -> bool:
        return self.dropout_in > 0 or self.dropout_out > 0 or self.word_dropout > 0

    def net(self) -> text_nets.LSTMDecoder:
        return text_nets.LSTMDecoder(
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            hidden=self.decoder_hidden,
            dropout_in=self.dropout_in,
            dropout_out=self.dropout_out,
            word_dropout=self.word_dropout,
        )

    def init(self, key: jax.Array, latent_dim: int) -> Params:
        return text_nets.init_decoder(self.net(), key, latent_dim)["params"]

    def log_prob(self, params: Params, z: jax.Array, batch: Batch, dropout_key=None) -> jax.Array:
        """``Σ_t log p_β(x^(t) | x^(<t), z)`` per sentence, ``(B,)``; padding masked."""
        return text_nets.log_likelihood(
            self.net(), {"params": params}, z, batch["ids"], batch["lengths"], dropout_key
        )

    def loss(self, params, z, batch, dropout_key=None):
        return -jnp.mean(self.log_prob(params, z, batch, dropout_key)), None

    def metrics(self, batch, loss, aux):
        num_tokens = jnp.maximum(jnp.sum(batch["lengths"] - 1), 1)
        return {"nll_per_token": loss * batch["ids"].shape[0] / num_tokens}

    def decode(self, params: Params, z: jax.Array, key: jax.Array, greedy: bool) -> Batch:
        ids, lengths = text_nets.sample(
            self.net(), {"params": params}, z, key, self.max_len, 0.0 if greedy else self.temperature
        )
        return {"ids": ids, "lengths": lengths}

    def check_batch(self, batch: Batch) -> None:
        chex.assert_rank([batch["ids"], batch["lengths"]], [2, 1])
        chex.assert_equal_shape_prefix([batch["ids"], batch["lengths"]], 1)


# ----------------------------------------------------------------------------- text-only quantities


def recon_log_likelihood(
    hp: LEBMHparams, params: Params, batch: Batch, key: jax.Array, num_steps: int | None = None
) -> jax.Array:
    """``log p_β(x|z⁺)`` at one short-run posterior sample ``z⁺`` per sentence, ``(B,)``: the
    reconstruction log-likelihood (its negative is the reconstruction NLL the evaluation reports)."""
    z = lebm.infer(hp, params, batch, key, num_steps)
    return hp.likelihood.log_prob(params["decoder"], z, batch)


def log_partition(hp: LEBMHparams, ebm_params: Params, key: jax.Array, num_samples: int) -> jax.Array:
    """Monte Carlo ``log Z(α) = log E_{z ~ N(0, σ_p² I)}[exp f_α(z)]`` (Eq. 2's normaliser), a scalar.

    ``logsumexp`` over ``num_samples`` reference draws minus ``log num_samples``: consistent, and biased
    low for finite samples (Jensen), which biases the marginal NLL low as well.
    """
    z = hp.prior_sigma * jax.random.normal(key, (num_samples, hp.latent_dim))
    f = lebm.neg_energy(hp, ebm_params, z)
    return jax.nn.logsumexp(f) - jnp.log(num_samples)


def marginal_log_likelihood(
    hp: LEBMHparams,
    params: Params,
    batch: Batch,
    key: jax.Array,
    log_z: jax.Array,
    *,
    num_chains: int = 8,
    num_samples: int = 64,
    num_steps: int | None = None,
    min_std: float = 0.05,
) -> jax.Array:
    """Importance-sampling estimate of ``log p_θ(x) = log ∫ p_β(x|z) p_α(z) dz`` per sentence, ``(B,)``.

    The proposal is the defensive mixture ``q(z|x) = ½ N(μ, diag s²) + ½ N(0, σ_p² I)``: a Gaussian fitted to
    ``num_chains`` short-run posterior chains per sentence (``s`` floored at ``min_std``), mixed with the
    reference prior, so the weights stay bounded whether the posterior is sharp or (as text decoders often
    make it) close to the prior. Draws alternate between the two components (stratified, still unbiased
    for the mixture). ``num_samples`` draws give
    ``log (1/N) Σ_n p_β(x|z_n) exp(f_α(z_n)) N(z_n; 0, σ_p² I) / (Z(α) q(z_n|x))`` with ``log Z(α) = log_z``
    from :func:`log_partition`. For an exact ``log Z`` this is a stochastic lower bound on ``log p(x)``; the
    Monte Carlo ``log Z`` is itself biased low (Jensen), which biases ``log p(x)`` up, so the estimate is
    neither bound.
    """
    ids, lengths = batch["ids"], batch["lengths"]
    chex.assert_rank([ids, lengths], [2, 1])
    b = ids.shape[0]
    k_chain, k_draw = jax.random.split(key)
    repeated = {
        "ids": jnp.repeat(ids, num_chains, axis=0),
        "lengths": jnp.repeat(lengths, num_chains, axis=0),
    }
    z_post = sample_posterior(
        hp, params, repeated, jax.random.split(k_chain, b * num_chains), num_steps=num_steps
    ).reshape(b, num_chains, hp.latent_dim)
    mu = jnp.mean(z_post, axis=1)
    std = jnp.maximum(jnp.std(z_post, axis=1), min_std)
    sigma_p = jnp.full_like(mu, hp.prior_sigma)

    def log_weight(n_and_key):
        n, k = n_and_key
        eps = jax.random.normal(k, mu.shape)
        z = jnp.where(n % 2 == 0, mu + std * eps, hp.prior_sigma * eps)
        log_fit = jnp.sum(jax.scipy.stats.norm.logpdf(z, mu, std), axis=-1)
        log_ref = jnp.sum(jax.scipy.stats.norm.logpdf(z, 0.0, sigma_p), axis=-1)
        log_q = jnp.logaddexp(log_fit, log_ref) - jnp.log(2.0)
        return lebm.log_joint(hp, params, z, batch) - log_z - log_q

    draws = (jnp.arange(num_samples), jax.random.split(k_draw, num_samples))
    log_w = lax.map(log_weight, draws)  # (N, B)
    return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)


# ----------------------------------------------------------------------------- evaluators

_RECON, _NLL, _PERPLEXITY, _RECONSTRUCTIONS, _OUTPUTS = 0, 1, 2, 3, 4
_LM_SETTINGS = {
    "lm_embed_dim": Setting(128, "language models' word-embedding width", check=positive),
    "lm_hidden": Setting(256, "language models' LSTM width", check=positive),
    "lm_dropout": Setting(0.3, "language models' dropout", check=unit_interval),
    "lm_epochs": Setting(10, "language models' epochs (best held-out epoch kept)", check=positive),
    "lm_batch_size": Setting(64, "language models' batch size", check=positive),
    "lm_learning_rate": Setting(1e-3, "language models' Adam learning rate", check=positive),
}


# The shipped corpora with a known grammar (``parses``, ``log_prob``): corpus name -> grammar module.
GRAMMARS = {"text_toy": toy_grammar, "text_modes": mode_grammar}
# Those whose sentences carry sentence-level choices (``modes_of``): the modes the latent should carry.
MODE_GRAMMARS = {"text_modes": mode_grammar}
RECON_MODE_SENTENCES = 500  # test sentences text_reconstructions scores on a MODE_GRAMMARS corpus


def _limit(ctx: EvalContext) -> int | None:
    m = ctx.config.eval.max_test_examples
    return None if m < 0 else m


def generate_sentences(ctx: EvalContext, key: jax.Array, num: int, desc: str = "sampling"):
    """``num`` generated sentences as ``(ids (num, T), lengths (num,))`` NumPy arrays, in batches of
    ``eval.batch_size`` (one compiled shape)."""
    out = generate_batches(
        ctx.method.predict["generate"],
        ctx.params,
        key,
        num,
        ctx.config.eval.batch_size,
        desc,
        ctx.main_process,
    )
    return out["ids"], out["lengths"]


def _test_nll(ctx: EvalContext, log_lik, desc: str) -> tuple[float, float, int]:
    """``(−Σ log-likelihood, predicted tokens, sentences)`` over the test split (``eval.max_test_examples``)
    with ``log_lik(batch, batch_index) -> (B,)`` (the callers split each batch over the local devices)."""
    total, tokens, count = 0.0, 0, 0
    batches = iterate_once(ctx.splits.test, ctx.config.eval.batch_size, _limit(ctx))
    for i, (batch, valid) in enumerate(tqdm(batches, desc=desc, leave=False)):
        ll = np.asarray(log_lik(batch, i))
        total -= float(np.sum(ll[:valid], dtype=np.float64))
        tokens += int(np.sum(batch["lengths"][:valid] - 1))
        count += valid
    return total, tokens, count


def recon_nll(ctx: EvalContext) -> dict[str, Any]:
    """``−log p_β(x|z⁺)`` over the test split (one posterior sample per sentence): ``recon_nll``, per token,
    and its perplexity."""
    fn, key = ctx.method.predict["recon_log_likelihood"], jax.random.fold_in(ctx.key, _RECON)
    params = device_map.replicate(ctx.params)
    total, tokens, count = _test_nll(
        ctx,
        lambda batch, i: device_map.map_batch(fn, params, batch, jax.random.fold_in(key, i)),
        "reconstruction NLL",
    )
    return {
        "num_test_sentences": count,
        "recon_nll": total / count,
        "recon_nll_per_token": total / tokens,
        "recon_ppl": float(np.exp(total / tokens)),
        "recon_nll_estimate": "-log p(x|z+) at one short-run posterior sample per sentence",
    }


def nll(ctx: EvalContext) -> dict[str, Any]:
    """Importance-sampled ``−log p_θ(x)`` over the test split (Table 2's NLL)."""
    e, predict = ctx.config.eval, ctx.method.predict
    key, t0 = jax.random.fold_in(ctx.key, _NLL), time.time()
    log_z = predict["log_partition"](ctx.params, jax.random.fold_in(key, 0))
    marginal, params = predict["marginal_log_likelihood"], device_map.replicate(ctx.params)
    total, tokens, count = _test_nll(
        ctx,
        lambda batch, i: device_map.map_batch(marginal, params, batch, jax.random.fold_in(key, i + 1), log_z),
        "marginal NLL",
    )
    return {
        "nll": total / count,
        "nll_per_token": total / tokens,
        "nll_ppl": float(np.exp(total / tokens)),
        "log_partition": float(log_z),
        "nll_estimate": (
            f"importance sampling, {e.nll_samples} draws from ½ a Gaussian fitted to {e.nll_chains} "
            f"posterior chains per sentence + ½ the reference prior; log Z(alpha) from "
            f"{e.log_partition_samples} reference-prior draws"
        ),
        "nll_seconds": round(time.time() - t0, 2),
    }


def perplexity(ctx: EvalContext) -> dict[str, Any]:
    """FPPL and RPPL (Table 2) with LSTM language models; the real-data LM's test perplexity beside them;
    on the shipped grammar corpora the parse rates and the grammar's own NLL (:func:`grammar_scores`)."""
    cfg, e = ctx.config, ctx.config.eval
    train, test, vocab = ctx.splits.train, ctx.splits.test, ctx.splits.vocab
    settings = settings_from_config(e)
    key, t0 = jax.random.fold_in(ctx.key, _PERPLEXITY), time.time()
    real_lm = cached_language_model(
        ctx.cache_dir, cfg.data.name, train.ids, train.lengths, len(vocab), settings, seed=0
    )
    ids, lengths = generate_sentences(ctx, jax.random.fold_in(key, 0), e.fppl_samples, "FPPL samples")
    out: dict[str, Any] = {
        "fppl": real_lm.perplexity(ids, lengths),
        "lm_real_test_ppl": real_lm.perplexity(test.ids, test.lengths),
        "fppl_num_samples": len(ids),
    }
    gen_ids, gen_lengths = generate_sentences(
        ctx, jax.random.fold_in(key, 1), e.rppl_samples, "RPPL training samples"
    )
    gen_lm = train_language_model(gen_ids, gen_lengths, len(vocab), settings, seed=0, desc="LM on samples")
    out.update(
        {
            "rppl": gen_lm.perplexity(test.ids, test.lengths),
            "rppl_num_samples": len(gen_ids),
            "lm_train_sentences": len(train),
            "perplexity_seconds": round(time.time() - t0, 2),
        }
    )
    if cfg.data.name in GRAMMARS:
        out.update(grammar_scores(ctx, vocab.decode(ids, lengths), lengths, jax.random.fold_in(key, 2)))
    return out


def grammar_scores(ctx: EvalContext, sentences: list[str], lengths: np.ndarray, key: jax.Array) -> dict:
    """Parse rates of generated sentences and of random strings of the same lengths; the grammar's own
    per-token perplexity and per-sentence NLL of the test split (the corpora of :data:`GRAMMARS`).

    On a corpus with sentence-level choices (:data:`MODE_GRAMMARS`) also ``sample_topic_fractions`` (each
    topic's share of the generated sentences that parse) and ``mode_coverage`` (the fraction of topics that
    occur among them).
    """
    vocab, test = ctx.splits.vocab, ctx.splits.test
    grammar = GRAMMARS[ctx.config.data.name]
    words = [w for w in vocab.words if w not in SPECIALS]
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()[-1:].tolist())
    random_strings = [" ".join(rng.choice(words, size=max(int(n) - 2, 1))) for n in lengths]
    truth = np.array([grammar.log_prob(s) for s in test.sentences])
    out = {
        "parse_rate": float(np.mean([grammar.parses(s) for s in sentences])),
        "parse_rate_random": float(np.mean([grammar.parses(s) for s in random_strings])),
        "grammar_nll": float(-np.mean(truth)),
        "grammar_ppl": float(np.exp(-np.sum(truth) / test.num_tokens())),
    }
    if ctx.config.data.name in MODE_GRAMMARS:
        out["sample_topic_fractions"] = grammar.topic_fractions(sentences)
        out["mode_coverage"] = grammar.mode_coverage(sentences)
    return out


def text_reconstructions(ctx: EvalContext, num: int = 20) -> dict[str, Any]:
    """``reconstructions.txt``: test sentences and the greedy decodings of their posterior samples.

    On a corpus with sentence-level choices (:data:`MODE_GRAMMARS`) the first :data:`RECON_MODE_SENTENCES`
    test sentences (at most ``eval.max_test_examples``) are reconstructed and scored: ``recon_mode_accuracy``
    (the reconstruction parses and keeps the topic, number, tense and mood), ``recon_topic_accuracy``,
    ``recon_parse_rate`` and ``recon_exact_rate`` (:func:`~latentebm_jax.data.mode_grammar.mode_agreement`).
    Elsewhere one test batch is reconstructed.
    """
    vocab, batch_size = ctx.splits.vocab, ctx.config.eval.batch_size
    grammar = MODE_GRAMMARS.get(ctx.config.data.name)
    limit = batch_size
    if grammar is not None:
        limit = min(RECON_MODE_SENTENCES, _limit(ctx) or RECON_MODE_SENTENCES)
    key = jax.random.fold_in(ctx.key, _RECONSTRUCTIONS)
    originals, decoded = [], []
    for i, (batch, valid) in enumerate(iterate_once(ctx.splits.test, batch_size, limit)):
        out = jax.device_get(ctx.method.predict["reconstruct"](ctx.params, batch, jax.random.fold_in(key, i)))
        originals += vocab.decode(batch["ids"][:valid], batch["lengths"][:valid])
        decoded += vocab.decode(np.asarray(out["ids"])[:valid], np.asarray(out["lengths"])[:valid])
    with open(os.path.join(ctx.out_dir, "reconstructions.txt"), "w", encoding="utf-8") as f:
        for x, x_hat in list(zip(originals, decoded))[:num]:
            f.write(f"x : {x}\nx̂ : {x_hat}\n\n")
    if grammar is None:
        return {}
    scores = grammar.mode_agreement(originals, decoded)
    return {
        "recon_mode_accuracy": scores["mode_accuracy"],
        "recon_topic_accuracy": scores["topic_accuracy"],
        "recon_parse_rate": scores["parse_rate"],
        "recon_exact_rate": scores["exact_rate"],
        "recon_mode_sentences": scores["num_scored"],
    }


def write_samples(ctx: EvalContext, path: str, key: jax.Array, num: int) -> list[str]:
    """``num`` generated sentences, one per line; returns them."""
    ids, lengths = generate_sentences(ctx, key, num)
    sentences = ctx.splits.vocab.decode(ids, lengths)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in sentences)
    return sentences


def _outputs_key(ctx: EvalContext, which: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(ctx.key, _OUTPUTS), which)


def text_samples(ctx: EvalContext) -> dict[str, Any]:
    """``samples.txt``: ``eval.num_samples`` generated sentences (the first ten printed)."""
    path = os.path.join(ctx.out_dir, "samples.txt")
    sentences = write_samples(ctx, path, _outputs_key(ctx, 0), ctx.config.eval.num_samples)
    ctx.say("samples:\n  " + "\n  ".join(sentences[:10]))
    return {}


def text_chains(ctx: EvalContext) -> dict[str, Any]:
    """Long-run prior chains decoded along the way with their energy profile (Table 3, Fig. 3 bottom).

    Per K′ in ``eval.long_run_steps``: ``chain_<K'>.txt`` (for every recorded step, the mean energy and the
    greedy decoding of each chain), ``chain_<K'>_energy.png`` and ``.npy``; the first chain is printed.

    On a corpus with sentence-level choices (:data:`MODE_GRAMMARS`) also, per K′,
    ``chain_topic_switches_<K'>`` (the mean over chains of how often the decoded topic changes along the
    recorded frames, frames that do not parse skipped) and ``chain_parse_rate_<K'>`` (the fraction of frames
    that parse); ``chain_topic_switches`` and ``chain_parse_rate`` are those of the longest K′.
    """
    cfg, vocab, key = ctx.config, ctx.splits.vocab, _outputs_key(ctx, 1)
    grammar = MODE_GRAMMARS.get(cfg.data.name)
    scores: dict[str, Any] = {}
    for steps in cfg.eval.long_run_steps:
        run, every = chain_lengths(cfg, steps)
        chain = jax.device_get(
            ctx.method.predict["long_run_chain"](
                ctx.params, jax.random.fold_in(key, steps), cfg.eval.long_run_chains, run, every
            )
        )
        energy, frames = np.asarray(chain["energy"]), chain["frames"]
        lines = [
            f"# long-run prior Langevin, K'={run}, {cfg.eval.long_run_chains} chains "
            f"(checkpoint step {ctx.step})"
        ]
        shown = [f"chain 0 of the long-run prior Langevin, K'={run}:"]
        by_frame = []
        for i, k in enumerate(np.asarray(chain["steps"]).tolist()):
            sentences = vocab.decode(np.asarray(frames["ids"][i]), np.asarray(frames["lengths"][i]))
            by_frame.append(sentences)
            lines.append(f"step {k:5d}  energy {energy[k]:9.3f}")
            lines += [f"  [{c}] {s}" for c, s in enumerate(sentences)]
            shown.append(f"  step {k:5d}  energy {energy[k]:8.3f}  {sentences[0]}")
        with open(os.path.join(ctx.out_dir, f"chain_{steps}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        np.save(os.path.join(ctx.out_dir, f"chain_{steps}_energy.npy"), energy)
        viz.save_energy_profile(
            energy,
            os.path.join(ctx.out_dir, f"chain_{steps}_energy.png"),
            title=f"{cfg.method}: energy along the long-run prior chain, K'={run}",
        )
        ctx.say("\n".join(shown))
        if grammar is not None:
            chains = [list(c) for c in zip(*by_frame)]  # (chains, frames)
            switches = [grammar.topic_switches(c) for c in chains]
            scores[f"chain_topic_switches_{steps}"] = float(np.mean(switches))
            parsed = [grammar.parses(s) for frame in by_frame for s in frame]
            scores[f"chain_parse_rate_{steps}"] = float(np.mean(parsed))
    if grammar is not None:
        longest = max(cfg.eval.long_run_steps)
        scores["chain_topic_switches"] = scores[f"chain_topic_switches_{longest}"]
        scores["chain_parse_rate"] = scores[f"chain_parse_rate_{longest}"]
    return scores


def interval_sentences(ctx: EvalContext) -> dict[str, Any]:
    """At an eval interval: ``samples/samples_<step>.txt`` and the reconstruction NLL per token of one test
    batch (``recon_nll_per_token_batch``)."""
    path = os.path.join(ctx.out_dir, "samples", f"samples_{ctx.step:07d}.txt")
    sentences = write_samples(ctx, path, ctx.key, ctx.config.eval.num_samples)
    log.info("step %d samples:\n  %s", ctx.step, "\n  ".join(sentences[:5]))
    batch, valid = next(iterate_once(ctx.splits.test, ctx.config.eval.batch_size))
    ll = ctx.method.predict["recon_log_likelihood"](ctx.params, batch, jax.random.fold_in(ctx.key, 1))
    tokens = np.sum(batch["lengths"][:valid] - 1)
    return {"recon_nll_per_token_batch": float(-np.sum(np.asarray(ll)[:valid]) / tokens)}


def _check_nll(config) -> None:
    if config.eval.nll_samples < 1:
        raise ConfigError(
            f"config key 'eval.nll_samples' is {config.eval.nll_samples}; evaluator 'nll' needs at least one "
            f"importance sample (or remove 'nll' from eval.metrics)"
        )


_TEXT = ("ids", "lengths")
EVALUATORS = {
    e.name: e
    for e in (
        Evaluator(
            "recon_nll",
            recon_nll,
            "reconstruction NLL of the test split at posterior samples",
            needs=("recon_log_likelihood",),
            reads=_TEXT,
            settings=MAX_TEST_EXAMPLES,
        ),
        Evaluator(
            "nll",
            nll,
            "importance-sampled marginal NLL of the test split (Table 2)",
            needs=("log_partition", "marginal_log_likelihood"),
            reads=_TEXT,
            check=_check_nll,
            settings={
                **MAX_TEST_EXAMPLES,
                "nll_samples": Setting(64, "importance samples per sentence", check=non_negative_int),
                "nll_chains": Setting(
                    8,
                    "posterior chains the proposal is fitted to",
                    check=lambda x: x >= 2,
                    what="an integer >= 2",
                ),
                "log_partition_samples": Setting(
                    100_000, "reference draws of log Z(alpha)", check=positive_int
                ),
            },
        ),
        Evaluator(
            "perplexity",
            perplexity,
            "FPPL / RPPL with LSTM language models (Table 2); grammar scores on the shipped corpora",
            needs=("generate",),
            reads=_TEXT,
            settings={
                "fppl_samples": Setting(
                    1000,
                    "generated sentences scored by the real-data LM",
                    check=positive_int,
                ),
                "rppl_samples": Setting(
                    10000,
                    "generated sentences the RPPL language model trains on",
                    check=lambda x: x >= 10,
                    what="an integer >= 10",
                ),
                **_LM_SETTINGS,
            },
        ),
        Evaluator(
            "text_reconstructions",
            text_reconstructions,
            "reconstructions.txt; on text_modes how often reconstructions keep the sentence-level choices",
            needs=("reconstruct",),
            reads=_TEXT,
            settings=MAX_TEST_EXAMPLES,
            main_only=True,
        ),
        Evaluator(
            "text_samples",
            text_samples,
            "samples.txt",
            needs=("generate",),
            reads=_TEXT,
            settings=NUM_SAMPLES,
            sampling=True,
            main_only=True,
        ),
        Evaluator(
            "text_chains",
            text_chains,
            "chain_<K'>.txt and energy profiles (Table 3); on text_modes the chains' topic switches",
            needs=("long_run_chain",),
            reads=_TEXT,
            sampling=True,
            main_only=True,
            settings=LONG_RUN,
        ),
        Evaluator(
            "interval_sentences",
            interval_sentences,
            "samples/samples_<step>.txt and recon_nll_per_token_batch of one test batch",
            needs=("generate", "recon_log_likelihood"),
            reads=_TEXT,
            settings=NUM_SAMPLES,
            main_only=True,
        ),
    )
}


# ----------------------------------------------------------------------------- config binding


def hparams_from_config(config, vocab_size: int) -> LEBMHparams:
    """The text LEBM's hparams of a validated config and the training split's vocabulary size."""
    likelihood = LSTMLikelihood(
        vocab_size=vocab_size, max_len=config.data.max_len, **values_of(config.lebm_text, LSTMLikelihood)
    )
    return lebm.hparams_from_groups(config, "lebm_text", likelihood)


def _configure(config) -> None:
    """Text LEBM on PTB (Sec. 3.2, Table 2). The paper gives K0 = 40 (Sec. 3.3); the other values are the
    image LEBM's sampler and optimiser and the text-VAE conventions (10k vocabulary from the PTB files,
    latent 32, batch 32, decoder dropout 0.5)."""
    from latentebm_jax.data.settings import data_group

    lebm.configure_lebm_groups(config, "lebm_text", LSTMLikelihood)
    config.data = data_group("ptb", max_len=40, min_count=1)
    g, s = config.lebm_text, config.sampler
    g.latent_dim = 32
    g.dropout_in = 0.5
    g.dropout_out = 0.5
    g.lr_ebm = 2e-5
    g.lr_gen = 1e-3
    g.grad_clip_norm = 5.0
    s.prior_steps = 40
    # The posterior chain through the LSTM runs faster as a loop than unrolled on XLA:CPU (toy corpus,
    # batch 100: 0.57 against 0.75 s per step, compiled in 6.6 against 12.6 s).
    s.posterior_unroll = 1
    t = config.train
    t.batch_size = 32
    t.num_epochs = 40
    t.log_every = 50
    e = config.eval
    e.metrics = ("recon_nll", "nll", "perplexity", "text_reconstructions", "text_samples", "text_chains")
    e.interval_metrics = ("interval_sentences",)
    e.long_run_steps = (40, 100)  # Table 3 decodes the chain every few steps up to K0 = 40
    e.long_run_chains = 4
    e.long_run_frames = 10


def _validate(config) -> None:
    if not is_text(config.data.name):
        raise ConfigError(
            f"config key 'data.name' is {config.data.name!r}, an image dataset; method 'lebm_text' needs a "
            f"text corpus: one of {list(TEXT_CORPORA)}"
        )
    lebm.check_lebm_groups(config, "lebm_text", LSTMLikelihood)


def make(config, splits, steps_per_epoch: int) -> Method:
    """Bind a config and the training split's vocabulary (``splits.vocab``): the :class:`Method`."""
    if splits.vocab is None:
        raise ValueError("method 'lebm_text' needs the vocabulary of a text corpus (splits.vocab)")
    hp = hparams_from_config(config, len(splits.vocab))
    tx = lebm.optimizer_from_config(config, "lebm_text").build("decoder", steps_per_epoch)
    e, steps = config.eval, hp.eval_steps
    pure_init = functools.partial(lebm.init, hp, tx)
    predict = {
        **lebm.predict_functions(hp),
        "recon_log_likelihood": jax.jit(functools.partial(recon_log_likelihood, hp, num_steps=steps)),
    }
    predict["log_partition"] = jax.jit(
        lambda params, key: log_partition(hp, params["ebm"], key, e.log_partition_samples)
    )
    predict["marginal_log_likelihood"] = jax.jit(
        functools.partial(
            marginal_log_likelihood, hp, num_chains=e.nll_chains, num_samples=e.nll_samples, num_steps=steps
        )
    )
    return Method(
        name="lebm_text",
        init=pure_init,
        state_shapes=shapes_of(pure_init),
        train_step=functools.partial(lebm.train_step, hp, tx),
        predict=predict,
        inference_params=lambda state: state.params,
        latents=None,
        watch=lebm.WATCH,
    )


SPEC = MethodSpec(
    name="lebm_text",
    doc="LEBM (Pang et al., NeurIPS 2020) on text: the same Algorithm 1 over an LSTM decoder",
    configure=_configure,
    validate=_validate,
    make=make,
    batch_fields=("ids", "lengths"),
    evaluators=EVALUATORS,
)

__all__ = [
    "EVALUATORS",
    "SPEC",
    "LSTMLikelihood",
    "log_partition",
    "marginal_log_likelihood",
    "recon_log_likelihood",
]
