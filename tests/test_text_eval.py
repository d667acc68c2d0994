"""Text LEBM evaluation: grammar probabilities, language-model perplexities, the marginal NLL estimate
against quadrature, config checks, and the text run end to end through the runner."""

from __future__ import annotations

import collections
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import text_toy
from configs.default import validate
from latentebm_jax.config_schema import ConfigError
from latentebm_jax.data import DataSplits, TextSource, load_text_sources, toy_grammar
from latentebm_jax.data.settings import data_group
from latentebm_jax.methods import lebm, lebm_text
from latentebm_jax.metrics.language_model import LanguageModel, LMSettings
from latentebm_jax.nets import text as text_nets
from latentebm_jax.training import loop

VOCAB, SOURCES = load_text_sources("text_toy", None, 32)


# ----------------------------------------------------------------------------- the grammar's probabilities


def test_grammar_log_prob_by_hand():
    # S -> NP[sg] VP[sg] ".": 1/2 (sg) · 1/4 (the) · 1/2 (no adjective) · 1/8 (dog) · 0.8 (no PP)
    #                         · 0.4 (intransitive) · 1/3 (sleeps) · 0.5 (no PP)
    want = 0.5 * 0.25 * 0.5 * (1 / 8) * 0.8 * 0.4 * (1 / 3) * 0.5
    np.testing.assert_allclose(np.exp(toy_grammar.log_prob("the dog sleeps .")), want, rtol=1e-12)
    # "two" is plural only: 1/5 for the determiner, and the plural verb
    want_pl = 0.5 * 0.2 * 0.5 * (1 / 8) * 0.8 * 0.4 * (1 / 3) * 0.5
    np.testing.assert_allclose(np.exp(toy_grammar.log_prob("two dogs sleep .")), want_pl, rtol=1e-12)
    assert toy_grammar.log_prob("the dog sleep .") == -np.inf  # agreement violated
    assert toy_grammar.log_prob("the dog sleeps") == -np.inf  # no final "."


def test_grammar_log_prob_matches_sampling_frequencies():
    sentences = toy_grammar.sample_sentences(20000, seed=11)
    logp = np.array([toy_grammar.log_prob(s) for s in sentences])
    assert np.all(np.isfinite(logp))
    # P(4-word sentence) = P(DET N VI .) = Σ_agr 1/2 · 1/2 · 0.8 · 0.4 · 0.5 = 0.08 in closed form
    frac = np.mean([len(s.split()) == 4 for s in sentences])
    assert abs(frac - 0.08) < 4 * np.sqrt(0.08 * 0.92 / 20000), frac
    # the most frequent sentence type "DET N VI ." appears with the frequency its log_prob predicts
    counts = collections.Counter(sentences)
    four = [s for s in counts if len(s.split()) == 4]
    mass = sum(np.exp(toy_grammar.log_prob(s)) for s in four)
    assert mass <= 0.08 + 1e-12
    random = [" ".join(np.random.default_rng(i).choice(toy_grammar.vocabulary(), 8)) for i in range(200)]
    assert all(toy_grammar.log_prob(s) == -np.inf for s in random if not toy_grammar.parses(s))


# ----------------------------------------------------------------------------- language models


def test_uniform_language_model_has_perplexity_of_the_allowed_vocabulary():
    settings = LMSettings(embed_dim=4, hidden=8)
    decoder = settings.decoder(len(VOCAB))
    params = text_nets.init_decoder(decoder, jax.random.key(0), 0)
    params = jax.tree.map(jnp.zeros_like, params)  # zero logits: uniform over all but <pad>, <bos>
    lm = LanguageModel(params, len(VOCAB), settings)
    test = SOURCES["test"]
    np.testing.assert_allclose(lm.perplexity(test.ids[:50], test.lengths[:50]), len(VOCAB) - 2, rtol=1e-5)


# ----------------------------------------------------------------------------- marginal NLL by quadrature


def _one_dim_model():
    hp = lebm.LEBMHparams(
        latent_dim=1,
        ebm_hidden=16,
        posterior_steps=30,
        posterior_step_size=0.2,
        posterior_unroll=1,
        likelihood=lebm_text.LSTMLikelihood(
            vocab_size=len(VOCAB), max_len=16, embed_dim=8, decoder_hidden=16
        ),
    )
    import optax

    state = lebm.init(hp, {"ebm": optax.sgd(0.0), "decoder": optax.sgd(0.0)}, jax.random.key(1))
    # a non-trivial energy (log Z != 0), and a decoder whose initial state z sets sharply enough that the
    # likelihood varies by nats over the prior's range (a real integral, posterior narrower than the prior)
    ebm = jax.tree.map(lambda a: 2.0 * a, state.params["ebm"])
    dec = dict(state.params["decoder"])
    dec["init_state"] = jax.tree.map(lambda a: 1000.0 * a, dec["init_state"])
    dec["out"] = jax.tree.map(lambda a: 100.0 * a, dec["out"])
    params = {"ebm": ebm, "decoder": dec}
    return hp, params


def test_log_partition_and_marginal_likelihood_match_quadrature():
    hp, params = _one_dim_model()
    grid = jnp.linspace(-8.0, 8.0, 2001)[:, None]
    dz = float(grid[1, 0] - grid[0, 0])
    f = lebm.neg_energy(hp, params["ebm"], grid)
    log_n = -0.5 * grid[:, 0] ** 2 - 0.5 * np.log(2 * np.pi)
    log_z = jax.nn.logsumexp(f + log_n) + np.log(dz)
    est_z = jax.jit(functools.partial(lebm_text.log_partition, hp), static_argnums=2)(
        params["ebm"], jax.random.key(2), 200_000
    )
    assert abs(float(log_z)) > 0.05  # the energy tilts the prior: log Z is not trivially 0
    np.testing.assert_allclose(est_z, log_z, atol=0.01)

    ids, lengths = VOCAB.encode(SOURCES["test"].sentences[:4], 16)
    ids, lengths = jnp.asarray(ids), jnp.asarray(lengths)
    batch = {"ids": ids, "lengths": lengths}
    ll = jax.vmap(lambda z: hp.likelihood.log_prob(params["decoder"], jnp.broadcast_to(z, (4, 1)), batch))(
        grid
    )  # (G, 4)
    want = jax.nn.logsumexp(ll + (f + log_n - log_z)[:, None], axis=0) + np.log(dz)
    posterior_spread = ll.max(0) - jnp.median(ll, 0)
    assert float(jnp.min(posterior_spread)) > 1.0  # the likelihood varies with z: a real integral
    marginal = jax.jit(
        functools.partial(lebm_text.marginal_log_likelihood, hp, num_chains=8, num_samples=1024)
    )
    got = marginal(params, batch, jax.random.key(3), log_z)
    np.testing.assert_allclose(got, want, atol=0.05)


# ----------------------------------------------------------------------------- config and runner


def test_text_config_checks():
    c = text_toy.get_config()
    validate(c)
    bad = text_toy.get_config()
    bad.eval.metrics = ("recon_nll", "fd")  # an image evaluator
    with pytest.raises(ConfigError, match=r"names evaluator 'fd', which method 'lebm_text' does not have"):
        validate(bad)
    bad = text_toy.get_config()
    bad.data = data_group("digits")
    with pytest.raises(ConfigError, match="text corpus"):
        validate(bad)
    bad = text_toy.get_config()
    bad.eval.nll_samples = 0
    with pytest.raises(ConfigError, match=r"'eval.nll_samples' is 0; evaluator 'nll' needs"):
        validate(bad)
    with pytest.raises(ValueError, match="lebm_text"):
        text_toy.get_config("lebm")


def _tiny_config():
    c = text_toy.get_config()
    c.lebm_text.update(latent_dim=4, ebm_hidden=32, embed_dim=16, decoder_hidden=32, lr_gen=1e-2, lr_ebm=1e-3)
    c.sampler.prior_steps = 5
    c.sampler.posterior_steps = 5
    c.train.batch_size = 50
    c.train.num_steps = 150
    c.train.log_every = 10
    c.train.eval_every = 100
    c.train.ckpt_every = 100
    c.data.max_len = 20  # 18 words: all but ~3% of the toy sentences fit
    c.eval.batch_size = 50
    c.eval.max_test_examples = 50
    c.eval.long_run_steps = (10,)
    c.eval.long_run_chains = 2
    c.eval.long_run_frames = 5
    c.eval.fppl_samples = 100
    c.eval.rppl_samples = 200
    c.eval.lm_embed_dim = 16
    c.eval.lm_hidden = 32
    c.eval.lm_epochs = 4
    c.eval.lm_learning_rate = 1e-2
    # without "nll" (marginal_log_likelihood is checked against quadrature above)
    c.eval.metrics = tuple(m for m in c.eval.metrics if m != "nll")
    validate(c)
    return c


@pytest.mark.slow
def test_text_run_trains_and_reports_table2_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTEBM_JAX_CACHE", str(tmp_path / "cache"))
    workdir = str(tmp_path / "run")
    config = _tiny_config()
    vocab, full = load_text_sources("text_toy", None, config.data.max_len)
    # a 2,000-sentence training split keeps the real-text language model quick to train
    train = TextSource(full["train"].ids[:2000], full["train"].lengths[:2000], full["train"].sentences[:2000])
    splits = DataSplits(train=train, test=full["test"], vocab=vocab)
    summary = loop.train(config, workdir, splits=splits)
    for key in ("recon_nll", "recon_nll_per_token", "fppl", "rppl", "lm_real_test_ppl"):
        assert np.isfinite(summary[key]), key
    assert "nll" not in summary  # not among eval.metrics
    # the real-text language model learns the language: far below uniform guessing (50), above the
    # grammar's own perplexity (the floor, ≈ 6.9 at this length cut)
    assert summary["grammar_ppl"] < summary["lm_real_test_ppl"] < 25.0, summary
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    nll = [r["nll_per_token"] for r in records if "nll_per_token" in r]
    assert nll[-1] < nll[0] - 0.5, nll  # NLL falls (uniform guessing: log 50 ≈ 3.9)
    # generated sentences parse under the grammar far more often than random strings of the same lengths
    assert summary["parse_rate"] > summary["parse_rate_random"] + 0.05, summary
    for name in ("samples.txt", "reconstructions.txt", "chain_10.txt", "chain_10_energy.png", "summary.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert os.path.exists(os.path.join(workdir, "samples", "samples_0000100.txt"))
    with open(os.path.join(workdir, "chain_10.txt")) as f:
        chain = f.read()
    assert chain.count("energy") == 6  # steps 0, 2, …, 10
