"""LSTM language models for the text metrics of LEBM Table 2: forward and reverse perplexity.

* **FPPL** (forward perplexity): the perplexity of *generated* sentences under a language model trained on
  the real training text; it measures fluency.
* **RPPL** (reverse perplexity): the perplexity of the *real test* sentences under a language model trained
  on generated sentences; it measures coverage (a mode-collapsed generator gives a high RPPL).

The language model is the text decoder of :mod:`latentebm_jax.nets.text` with a zero-width latent: an
LSTM whose initial state is a learned bias, fed the previous word at every step. Training is seeded and
deterministic: Adam with gradient clipping, dropout on embeddings and outputs, a held-out tenth of the
training sentences choosing the best epoch (early stopping). Perplexity is ``exp(−Σ log p(w_t | w_<t) /
number of predicted tokens)``, the tokens being the words and ``<eos>`` (not ``<bos>``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from latentebm_jax.metrics.tree_io import load_tree, save_tree
from latentebm_jax.nets import text as text_nets
from latentebm_jax.progress import tqdm

log = logging.getLogger("latentebm_jax.metrics")

ARCH_VERSION = 1


@dataclasses.dataclass(frozen=True)
class LMSettings:
    """Size and training of a language model (static: hashed into compiled functions and cache names)."""

    embed_dim: int = 128
    hidden: int = 256
    dropout: float = 0.3  # on word embeddings and LSTM outputs while training
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    grad_clip: float = 5.0
    valid_fraction: float = 0.1  # of the training sentences, held out to pick the best epoch

    def decoder(self, vocab_size: int) -> text_nets.LSTMDecoder:
        return text_nets.LSTMDecoder(
            vocab_size=vocab_size,
            embed_dim=self.embed_dim,
            hidden=self.hidden,
            dropout_in=self.dropout,
            dropout_out=self.dropout,
        )


@dataclasses.dataclass
class LanguageModel:
    """A trained LSTM language model over a vocabulary of ``vocab_size`` ids (``params``: its Flax
    variables ``{"params": ...}``)."""

    params: dict
    vocab_size: int
    settings: LMSettings
    valid_perplexity: float = float("nan")  # on its held-out training sentences

    def sentence_log_probs(self, ids: np.ndarray, lengths: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """``log p(x)`` per sentence ``(N,)`` (padded batches of one shape; padding never counts)."""
        fn = _compiled(self.settings, self.vocab_size)[1]
        return _batched_log_probs(fn, self.params, ids, lengths, batch_size)

    def perplexity(self, ids: np.ndarray, lengths: np.ndarray, batch_size: int = 256) -> float:
        """``exp(−Σ log p / Σ (lengths − 1))``: perplexity per predicted token of the given sentences."""
        lengths = np.asarray(lengths)
        if len(lengths) == 0:
            raise ValueError("perplexity of an empty set of sentences")
        total = float(np.sum(self.sentence_log_probs(ids, lengths, batch_size), dtype=np.float64))
        return float(np.exp(-total / np.sum(lengths - 1)))


@functools.lru_cache(maxsize=16)
def _compiled(settings: LMSettings, vocab_size: int):
    """``(tx, sum_log_probs, train_step)`` of one model size, compiled once and shared by every model."""
    decoder = settings.decoder(vocab_size)
    tx = optax.chain(optax.clip_by_global_norm(settings.grad_clip), optax.adam(settings.learning_rate))

    @jax.jit
    def sum_log_probs(params, ids, lengths):
        z = jnp.zeros((ids.shape[0], 0), jnp.float32)
        return text_nets.log_likelihood(decoder, params, z, ids, lengths)

    @jax.jit
    def train_step(params, opt_state, ids_b, lengths_b, dropout_key):
        def loss_fn(p):
            z = jnp.zeros((ids_b.shape[0], 0), jnp.float32)
            ll = text_nets.log_likelihood(decoder, p, z, ids_b, lengths_b, dropout_key)
            return -jnp.sum(ll) / jnp.sum(lengths_b - 1)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return tx, sum_log_probs, train_step


def _batched_log_probs(fn, params, ids, lengths, batch_size: int) -> np.ndarray:
    """``fn`` on batches of exactly ``batch_size`` rows (the last one padded): one compiled shape."""
    ids, lengths = np.asarray(ids, np.int32), np.asarray(lengths, np.int32)
    n = len(ids)
    out = []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        valid = len(idx)
        idx = np.concatenate([idx, np.full(batch_size - valid, idx[-1])])
        out.append(np.asarray(fn(params, ids[idx], lengths[idx]))[:valid])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def train_language_model(
    ids: np.ndarray,
    lengths: np.ndarray,
    vocab_size: int,
    settings: LMSettings = LMSettings(),
    seed: int = 0,
    desc: str = "language model",
) -> LanguageModel:
    """Train an LSTM language model on encoded sentences ``(ids (N, T), lengths (N,))``.

    A seeded tenth of the sentences (at least one) is held out; the parameters of the epoch with the lowest
    held-out perplexity are returned.
    """
    ids, lengths = np.asarray(ids, np.int32), np.asarray(lengths, np.int32)
    if ids.ndim != 2 or lengths.shape != (len(ids),):
        raise ValueError(f"ids must be (N, T) and lengths (N,), got {ids.shape} and {lengths.shape}")
    if len(ids) < 2:
        raise ValueError(f"a language model needs at least 2 training sentences, got {len(ids)}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    n_valid = max(1, round(settings.valid_fraction * len(ids)))
    valid_idx, train_idx = perm[:n_valid], perm[n_valid:]
    batch_size = min(settings.batch_size, len(train_idx))
    steps_per_epoch = max(1, len(train_idx) // batch_size)

    key = jax.random.key(seed)
    params = text_nets.init_decoder(settings.decoder(vocab_size), jax.random.fold_in(key, 0), 0)
    tx, _, step = _compiled(settings, vocab_size)
    opt_state = tx.init(params)

    model = LanguageModel(params, vocab_size, settings)
    best_ppl, best_params = float("inf"), params
    with tqdm(total=settings.epochs * steps_per_epoch, desc=desc, unit="step", leave=False) as bar:
        for epoch in range(settings.epochs):
            order = train_idx[rng.permutation(len(train_idx))]
            for i in range(steps_per_epoch):
                b = order[i * batch_size : (i + 1) * batch_size]
                k = jax.random.fold_in(key, 1 + epoch * steps_per_epoch + i)
                params, opt_state, loss = step(params, opt_state, ids[b], lengths[b], k)
                bar.update(1)
            model.params = params
            ppl = model.perplexity(ids[valid_idx], lengths[valid_idx])
            bar.set_postfix(loss=f"{float(loss):.3f}", valid_ppl=f"{ppl:.2f}")
            if ppl < best_ppl:
                best_ppl, best_params = ppl, params
    return LanguageModel(best_params, vocab_size, settings, valid_perplexity=best_ppl)


def cached_language_model(
    cache_dir: str,
    name: str,
    ids: np.ndarray,
    lengths: np.ndarray,
    vocab_size: int,
    settings: LMSettings = LMSettings(),
    seed: int = 0,
) -> LanguageModel:
    """:func:`train_language_model` on real text, cached in ``cache_dir/text_lm/`` under a name that
    hashes the data, the vocabulary size, the settings and the seed (an unreadable cache is retrained)."""
    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(np.asarray(ids, np.int32)).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(lengths, np.int32)).tobytes())
    meta_key = {
        "version": ARCH_VERSION,
        "vocab_size": vocab_size,
        "seed": seed,
        "settings": dataclasses.asdict(settings),
    }
    digest.update(json.dumps(meta_key, sort_keys=True).encode())
    path = os.path.join(cache_dir, "text_lm", f"{name}_{digest.hexdigest()[:16]}.npz")
    if os.path.exists(path):
        try:
            params, meta = load_tree(path)
            return LanguageModel(params, vocab_size, settings, float(meta["valid_perplexity"]))
        except (OSError, ValueError, KeyError) as err:
            log.warning("cached language model %s is unreadable (%s); retraining it", path, err)
    model = train_language_model(ids, lengths, vocab_size, settings, seed, desc=f"LM on {name}")
    save_tree(path, model.params, {**meta_key, "valid_perplexity": model.valid_perplexity})
    return model


def settings_from_config(eval_config: Any) -> LMSettings:
    """The ``eval.lm_*`` keys of a config as :class:`LMSettings`."""
    t = eval_config
    return LMSettings(
        embed_dim=t.lm_embed_dim,
        hidden=t.lm_hidden,
        dropout=t.lm_dropout,
        epochs=t.lm_epochs,
        batch_size=t.lm_batch_size,
        learning_rate=t.lm_learning_rate,
    )
