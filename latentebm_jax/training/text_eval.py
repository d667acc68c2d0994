"""Evaluation of the text LEBM (Pang et al. 2020, Sec. 3.2–3.3): LEBM Table 2's metrics and Table 3's chains.

:func:`evaluate_text` returns (and the runner writes to ``summary.json``):

* ``recon_nll`` / ``recon_nll_per_token`` / ``recon_ppl``: the reconstruction NLL ``−log p_β(x|z⁺)`` of the
  test sentences at one short-run posterior sample ``z⁺`` each (``eval.posterior_steps``), per sentence
  and per predicted token (words and ``<eos>``), and its exponential per token;
* ``nll`` / ``nll_per_token`` / ``nll_ppl`` (``text.nll_samples > 0``): the marginal NLL ``−log p_θ(x)``
  estimated by importance sampling (``methods.lebm_text.marginal_log_likelihood``, with ``log Z(α)`` by
  Monte Carlo over the reference prior) — the NLL column of Table 2;
* ``fppl``: perplexity of ``text.fppl_samples`` generated sentences under an LSTM language model trained
  on the real training text (cached); ``lm_real_test_ppl``: the same LM on the real test text (Table 2's
  "Real Data" row);
* ``rppl``: perplexity of the real test text under an LSTM LM trained on ``text.rppl_samples`` generated
  sentences (same LM settings and seed);
* on the toy grammar corpus: ``parse_rate`` of generated sentences, ``parse_rate_random`` of random word
  strings with the same lengths, and ``grammar_ppl``/``grammar_nll``: the true per-token perplexity and
  per-sentence NLL of the test text under the grammar (the floor of any model).

Files: ``samples.txt`` (generated sentences), ``reconstructions.txt`` (test sentence / greedy decoding of
its posterior sample), and per long-run length K′ ``chain_<K'>.txt`` (sentences along each chain with the
energy) with ``chain_<K'>_energy.png`` / ``.npy`` (the energy profile ``−log p̃_α(z_k)``, Table 3 / Fig. 3).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from latentebm_jax import viz
from latentebm_jax.data import iterate_once, toy_grammar
from latentebm_jax.data.text import SPECIALS
from latentebm_jax.metrics.language_model import (
    cached_language_model,
    settings_from_config,
    train_language_model,
)
from latentebm_jax.training.setup import RunSetup, is_main_process, say

log = logging.getLogger("latentebm_jax.training")


def _limit(setup: RunSetup) -> int | None:
    m = setup.config.eval.max_test_examples
    return None if m < 0 else m


def generate_sentences(setup: RunSetup, params: Any, key: jax.Array, num: int, desc: str = "sampling"):
    """``num`` generated sentences as ``(ids (num, T), lengths (num,))`` NumPy arrays, in batches of
    ``eval.batch_size`` (one compiled shape)."""
    tools, bs = setup.method.extras, setup.config.eval.batch_size
    ids, lengths, made = [], [], 0
    with tqdm(total=num, desc=desc, unit="sent", leave=False, disable=not is_main_process()) as bar:
        for i in range(-(-num // bs)):
            x, n = jax.device_get(tools.generate(params, jax.random.fold_in(key, i), bs))
            take = min(bs, num - made)
            ids.append(np.asarray(x)[:take])
            lengths.append(np.asarray(n)[:take])
            made += take
            bar.update(take)
    return np.concatenate(ids), np.concatenate(lengths)


def _test_nll(setup: RunSetup, log_lik, desc: str) -> tuple[float, float, int]:
    """``(−Σ log-likelihood, predicted tokens, sentences)`` over the test split (``eval.max_test_examples``)
    with ``log_lik(ids, lengths, batch_index) -> (B,)``."""
    bs, limit = setup.config.eval.batch_size, _limit(setup)
    total, tokens, count = 0.0, 0, 0
    for i, (batch, valid) in enumerate(
        tqdm(iterate_once(setup.splits.test, bs, limit), desc=desc, leave=False)
    ):
        ll = np.asarray(log_lik(batch["ids"], batch["lengths"], i))
        total -= float(np.sum(ll[:valid], dtype=np.float64))
        tokens += int(np.sum(batch["lengths"][:valid] - 1))
        count += valid
    return total, tokens, count


def reconstruction_nll(setup: RunSetup, params: Any, key: jax.Array) -> dict[str, Any]:
    """``−log p_β(x|z⁺)`` over the test split (one posterior sample per sentence)."""
    tools = setup.method.extras
    total, tokens, count = _test_nll(
        setup,
        lambda ids, lengths, i: tools.recon_log_likelihood(params, ids, lengths, jax.random.fold_in(key, i)),
        "reconstruction NLL",
    )
    return {
        "num_test_sentences": count,
        "recon_nll": total / count,
        "recon_nll_per_token": total / tokens,
        "recon_ppl": float(np.exp(total / tokens)),
        "recon_nll_estimate": "-log p(x|z+) at one short-run posterior sample per sentence",
    }


def marginal_nll(setup: RunSetup, params: Any, key: jax.Array) -> dict[str, Any]:
    """Importance-sampled ``−log p_θ(x)`` over the test split (Table 2's NLL)."""
    tools, t = setup.method.extras, setup.config.text
    log_z = tools.log_partition(params, jax.random.fold_in(key, 0))
    total, tokens, count = _test_nll(
        setup,
        lambda ids, lengths, i: tools.marginal_log_likelihood(
            params, ids, lengths, jax.random.fold_in(key, i + 1), log_z
        ),
        "marginal NLL",
    )
    return {
        "nll": total / count,
        "nll_per_token": total / tokens,
        "nll_ppl": float(np.exp(total / tokens)),
        "log_partition": float(log_z),
        "nll_estimate": (
            f"importance sampling, {t.nll_samples} draws from ½ a Gaussian fitted to {t.nll_chains} "
            f"posterior chains per sentence + ½ the reference prior; log Z(alpha) from "
            f"{t.log_partition_samples} reference-prior draws"
        ),
    }


def perplexities(setup: RunSetup, params: Any, key: jax.Array) -> dict[str, Any]:
    """FPPL and RPPL (Table 2) with LSTM language models; the real-data LM's test perplexity beside them."""
    from latentebm_jax.training.evaluation import cache_root

    cfg, t = setup.config, setup.config.text
    train, test, vocab = setup.splits.train, setup.splits.test, setup.splits.vocab
    settings = settings_from_config(t)
    t0 = time.time()
    real_lm = cached_language_model(
        cache_root(cfg), cfg.data.name, train.ids, train.lengths, len(vocab), settings, seed=0
    )
    ids, lengths = generate_sentences(
        setup, params, jax.random.fold_in(key, 0), t.fppl_samples, "FPPL samples"
    )
    out: dict[str, Any] = {
        "fppl": real_lm.perplexity(ids, lengths),
        "lm_real_test_ppl": real_lm.perplexity(test.ids, test.lengths),
        "fppl_num_samples": len(ids),
    }
    gen_ids, gen_lengths = generate_sentences(
        setup, params, jax.random.fold_in(key, 1), t.rppl_samples, "RPPL training samples"
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
    if cfg.data.name == "text_toy":
        out.update(grammar_scores(setup, vocab.decode(ids, lengths), lengths, jax.random.fold_in(key, 2)))
    return out


def grammar_scores(setup: RunSetup, sentences: list[str], lengths: np.ndarray, key: jax.Array) -> dict:
    """Parse rates of generated sentences and of random strings of the same lengths; the grammar's own
    per-token perplexity and per-sentence NLL of the test split (toy corpus only)."""
    vocab, test = setup.splits.vocab, setup.splits.test
    words = [w for w in vocab.words if w not in SPECIALS]
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()[-1:].tolist())
    random_strings = [" ".join(rng.choice(words, size=max(int(n) - 2, 1))) for n in lengths]
    truth = np.array([toy_grammar.log_prob(s) for s in test.sentences])
    return {
        "parse_rate": float(np.mean([toy_grammar.parses(s) for s in sentences])),
        "parse_rate_random": float(np.mean([toy_grammar.parses(s) for s in random_strings])),
        "grammar_nll": float(-np.mean(truth)),
        "grammar_ppl": float(np.exp(-np.sum(truth) / test.num_tokens())),
    }


def write_reconstructions(setup: RunSetup, params: Any, path: str, key: jax.Array, num: int = 20) -> str:
    """Test sentences and the greedy decodings of their posterior samples, one pair per block."""
    tools, vocab = setup.method.extras, setup.splits.vocab
    batch, valid = next(iterate_once(setup.splits.test, setup.config.eval.batch_size))
    ids, lengths = jax.device_get(tools.reconstruct(params, batch["ids"], batch["lengths"], key))
    originals = vocab.decode(batch["ids"][:valid], batch["lengths"][:valid])
    decoded = vocab.decode(np.asarray(ids)[:valid], np.asarray(lengths)[:valid])
    with open(path, "w", encoding="utf-8") as f:
        for x, x_hat in list(zip(originals, decoded))[:num]:
            f.write(f"x : {x}\nx̂ : {x_hat}\n\n")
    return path


def write_samples(setup: RunSetup, params: Any, path: str, key: jax.Array, num: int) -> list[str]:
    """``num`` generated sentences, one per line; returns them."""
    ids, lengths = generate_sentences(setup, params, key, num)
    sentences = setup.splits.vocab.decode(ids, lengths)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in sentences)
    return sentences


def write_chains(setup: RunSetup, params: Any, out_dir: str, key: jax.Array, step: int) -> list[str]:
    """Long-run prior chains decoded along the way with their energy profile (Table 3, Fig. 3 bottom).

    Per K′ in ``eval.long_run_steps``: ``chain_<K'>.txt`` (for every recorded step, the mean energy and the
    greedy decoding of each chain), ``chain_<K'>_energy.png`` and ``.npy``; the first chain is printed.
    """
    cfg, tools, vocab = setup.config, setup.method.extras, setup.splits.vocab
    paths = []
    for steps in cfg.eval.long_run_steps:
        frames = min(cfg.eval.long_run_frames, steps)
        every = max(1, steps // frames)
        run = every * (steps // every)
        chain = jax.device_get(
            tools.long_run_chain(params, jax.random.fold_in(key, steps), cfg.eval.long_run_chains, run, every)
        )
        energy = np.asarray(chain["energy"])
        lines = [
            f"# long-run prior Langevin, K'={run}, {cfg.eval.long_run_chains} chains (checkpoint step {step})"
        ]
        shown = [f"chain 0 of the long-run prior Langevin, K'={run}:"]
        for i, k in enumerate(np.asarray(chain["steps"]).tolist()):
            sentences = vocab.decode(np.asarray(chain["ids"][i]), np.asarray(chain["lengths"][i]))
            lines.append(f"step {k:5d}  energy {energy[k]:9.3f}")
            lines += [f"  [{c}] {s}" for c, s in enumerate(sentences)]
            shown.append(f"  step {k:5d}  energy {energy[k]:8.3f}  {sentences[0]}")
        txt = os.path.join(out_dir, f"chain_{steps}.txt")
        with open(txt, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        np.save(os.path.join(out_dir, f"chain_{steps}_energy.npy"), energy)
        png = viz.save_energy_profile(
            energy,
            os.path.join(out_dir, f"chain_{steps}_energy.png"),
            title=f"{cfg.method}: energy along the long-run prior chain, K'={run}",
        )
        say("\n".join(shown))
        paths += [txt, png]
    return paths


def write_text_outputs(setup: RunSetup, params: Any, out_dir: str, key: jax.Array, step: int) -> list[str]:
    """``samples.txt`` and the long-run chains (``--mode=sample`` and the end of an evaluation)."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "samples.txt")
    sentences = write_samples(setup, params, path, jax.random.fold_in(key, 0), setup.config.eval.num_samples)
    say("samples:\n  " + "\n  ".join(sentences[:10]))
    return [path, *write_chains(setup, params, out_dir, jax.random.fold_in(key, 1), step)]


def evaluate_text(setup: RunSetup, params: Any, workdir: str, key: jax.Array, step: int) -> dict[str, Any]:
    """The text model's numbers (module docstring) and files; returns the summary entries."""
    out = reconstruction_nll(setup, params, jax.random.fold_in(key, 0))
    if setup.config.text.nll_samples > 0:
        t0 = time.time()
        out.update(marginal_nll(setup, params, jax.random.fold_in(key, 1)))
        out["nll_seconds"] = round(time.time() - t0, 2)
    out.update(perplexities(setup, params, jax.random.fold_in(key, 2)))
    if is_main_process():
        write_reconstructions(
            setup, params, os.path.join(workdir, "reconstructions.txt"), jax.random.fold_in(key, 3)
        )
        write_text_outputs(setup, params, workdir, jax.random.fold_in(key, 4), step)
    return out
