"""Autoregressive LSTM decoder ``p_β(x|z)`` for the text model (LEBM Eq. 4).

``p_β(x|z) = Π_t p_β(x^(t) | x^(1), …, x^(t−1), z)`` (LEBM Sec. 2.1, Eq. 4), parameterised in the usual
text-VAE way (Bowman et al. 2016; He et al. 2019): ``z`` sets the LSTM's initial state through a dense
layer, ``c_0 = W z + b``, ``h_0 = tanh(c_0)``, and is concatenated to the word embedding at every step; the
output layer maps ``h_t`` to logits over the vocabulary.

Rows of ids follow ``latentebm_jax/data/text.py``: ``<bos> w_1 … w_n <eos> <pad>…`` with ``lengths``
counting ``<bos>`` and ``<eos>``. The modelled sequence is ``x = (w_1, …, w_n, <eos>)``; ``<bos>`` is only an
input, so ``<pad>`` and ``<bos>`` get logit ``MASKED_LOGIT`` (probability ≈ 0) — the likelihood and the
sampler then describe the same distribution, and samples never contain them.

The module is one decoding *step*; :func:`log_likelihood` (teacher forcing) and :func:`sample` run it with
``lax.scan`` over time.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import linen as nn

# Special ids; must equal latentebm_jax.data.text.{PAD_ID, BOS_ID, EOS_ID} (checked in tests/test_text.py).
PAD_ID, BOS_ID, EOS_ID = 0, 2, 3
MASKED_LOGIT = -1e9  # finite, so 0·logit stays 0 (no NaN) wherever probabilities multiply logits


def symmetric_uniform(scale: float) -> nn.initializers.Initializer:
    """``U(−scale, scale)`` (text-VAE decoders: 0.1 for embeddings, 0.01 elsewhere)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest by ``1/(1−rate)``; identity
    when ``key`` is None or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return x
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def drop_words(emb: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Word dropout (Bowman et al. 2016): each input word's whole embedding ``emb[..., :]`` zeroed with
    probability ``rate`` (not rescaled), so the decoder must take what it loses from ``z``; identity when
    ``key`` is None or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return emb
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"word dropout rate must be in [0, 1], got {rate}")
    keep = jax.random.bernoulli(jax.random.fold_in(key, _WORD_DROPOUT), 1.0 - rate, emb.shape[:-1])
    return jnp.where(keep[..., None], emb, 0.0)


_WORD_DROPOUT = 7  # the word-dropout mask's stream, apart from the elementwise dropout's


class LSTMDecoder(nn.Module):
    """One step of ``p_β(x^(t) | x^(<t), z)``: ``(carry, token, z) -> (carry, logits)``.

    ``vocab_size`` includes the special tokens; ``embed_dim`` and ``hidden`` are the word-embedding and LSTM
    widths. Weights are ``U(−0.01, 0.01)`` and embeddings ``U(−0.1, 0.1)`` as in the text-VAE code base
    (He et al. 2019); biases zero. ``dropout_in`` (on the word embeddings), ``dropout_out`` (on the LSTM
    outputs) and ``word_dropout`` (whole input words, :func:`drop_words`) apply only where a ``dropout_key``
    is passed (training; the text-VAE setting is 0.5 / 0.5 / 0).
    """

    vocab_size: int
    embed_dim: int = 128
    hidden: int = 512
    dropout_in: float = 0.0
    dropout_out: float = 0.0
    word_dropout: float = 0.0

    def setup(self) -> None:
        w = symmetric_uniform(0.01)
        self.embed = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=symmetric_uniform(0.1))
        self.init_state = nn.Dense(self.hidden, kernel_init=w)
        self.cell = nn.LSTMCell(self.hidden, kernel_init=w, recurrent_kernel_init=w)
        self.out = nn.Dense(self.vocab_size, kernel_init=w)

    def initial_carry(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(c_0, h_0) = (W z + b, tanh(W z + b))``, each ``(B, hidden)``."""
        c = self.init_state(z)
        return c, jnp.tanh(c)

    def inputs(self, tokens: jax.Array, z: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        """``[embed(token), z]`` for tokens ``(B,)`` or ``(B, T)`` (z broadcast over time)."""
        emb = dropout(self.embed(tokens), self.dropout_in, dropout_key)
        emb = drop_words(emb, self.word_dropout, dropout_key)
        z = z.astype(jnp.float32)
        if tokens.ndim == 2:
            z = jnp.broadcast_to(z[:, None, :], (*tokens.shape, z.shape[-1]))
        return jnp.concatenate([emb, z], axis=-1)

    def recur(
        self, carry: tuple[jax.Array, jax.Array], x: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        """One LSTM step on the inputs ``x`` ``(B, embed_dim + d)``: ``(carry, h)``."""
        return self.cell(carry, x)

    def logits(self, h: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        """Next-word logits from LSTM outputs ``h`` ``(..., hidden)``, ``<pad>``/``<bos>`` masked."""
        logits = self.out(dropout(h, self.dropout_out, dropout_key))
        masked = jnp.zeros((self.vocab_size,), bool).at[jnp.array([PAD_ID, BOS_ID])].set(True)
        return jnp.where(masked, MASKED_LOGIT, logits)

    def __call__(
        self, carry: tuple[jax.Array, jax.Array], tokens: jax.Array, z: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        """Feed ``tokens`` ``(B,)`` (the previous words) with ``z`` ``(B, d)``; return the new carry and the
        logits ``(B, vocab_size)`` of the next word (``<pad>``/``<bos>`` masked)."""
        carry, h = self.recur(carry, self.inputs(tokens, z))
        return carry, self.logits(h)

    def init_all(self, z: jax.Array, tokens: jax.Array) -> jax.Array:
        """Touch every parameter (use as ``decoder.init(key, z, tokens, method=LSTMDecoder.init_all)``)."""
        return self(self.initial_carry(z), tokens, z)[1]


def init_decoder(decoder: LSTMDecoder, key: jax.Array, latent_dim: int) -> dict:
    """Parameters of ``decoder`` for latents of width ``latent_dim``."""
    z = jnp.zeros((1, latent_dim), jnp.float32)
    tokens = jnp.full((1,), BOS_ID, jnp.int32)
    return decoder.init(key, z, tokens, method=LSTMDecoder.init_all)


def _check_batch(z: jax.Array, ids: jax.Array, lengths: jax.Array) -> None:
    chex.assert_rank([z, ids, lengths], [2, 2, 1])
    chex.assert_type([ids, lengths], [int, int])
    chex.assert_equal_shape_prefix([z, ids, lengths], 1)
    if ids.shape[1] < 2:
        raise ValueError(f"ids must have at least 2 columns (<bos> and <eos>), got shape {ids.shape}")


def teacher_forced_logits(
    decoder: LSTMDecoder, params: dict, z: jax.Array, ids: jax.Array, dropout_key: jax.Array | None = None
) -> jax.Array:
    """Logits ``(B, T−1, V)``: position ``t`` predicts ``ids[:, t+1]`` from ``ids[:, :t+1]`` and ``z``.

    Embeddings and the output projection run on the whole sequence at once; only the LSTM recurrence is a
    ``lax.scan`` over time. ``dropout_key`` switches the decoder's dropout on (training).
    """
    key_in, key_out = (None, None) if dropout_key is None else jax.random.split(dropout_key)
    carry = decoder.apply(params, z, method=LSTMDecoder.initial_carry)
    x = decoder.apply(params, ids[:, :-1], z, key_in, method=LSTMDecoder.inputs)  # (B, T-1, E + d)

    def step(carry, x_t):
        return decoder.apply(params, carry, x_t, method=LSTMDecoder.recur)

    _, h = jax.lax.scan(step, carry, jnp.swapaxes(x, 0, 1))
    return decoder.apply(params, jnp.swapaxes(h, 0, 1), key_out, method=LSTMDecoder.logits)


def token_log_probs(
    decoder: LSTMDecoder,
    params: dict,
    z: jax.Array,
    ids: jax.Array,
    lengths: jax.Array,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """``log p_β(x^(t) | x^(<t), z)`` for each target ``ids[:, 1:]``, ``(B, T−1)``, zero past ``lengths``."""
    _check_batch(z, ids, lengths)
    logp = jax.nn.log_softmax(teacher_forced_logits(decoder, params, z, ids, dropout_key), axis=-1)
    targets = ids[:, 1:]
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    # target index t+1 is a real token (a word or <eos>) iff t + 1 < length
    valid = jnp.arange(1, ids.shape[1])[None, :] < lengths[:, None]
    return jnp.where(valid, picked, 0.0)


def log_likelihood(
    decoder: LSTMDecoder,
    params: dict,
    z: jax.Array,
    ids: jax.Array,
    lengths: jax.Array,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """``log p_β(x|z) = Σ_t log p_β(x^(t) | x^(<t), z)`` per sentence (LEBM Eq. 4), ``(B,)``.

    Teacher forced; the sum covers the ``lengths − 1`` targets ``w_1 … w_n <eos>``; padding never counts.
    Pass ``dropout_key`` when training with dropout.
    """
    return token_log_probs(decoder, params, z, ids, lengths, dropout_key).sum(axis=-1)


def sample(
    decoder: LSTMDecoder,
    params: dict,
    z: jax.Array,
    key: jax.Array,
    max_len: int,
    temperature: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Ancestral sampling of ``x ~ p_β(x|z)`` for a batch of latents ``z`` ``(B, d)``.

    Returns ``(ids (B, max_len) int32, lengths (B,) int32)`` in the encoder's layout (``<bos>`` first, then
    up to ``max_len − 1`` generated tokens, ``<pad>`` after ``<eos>``). A row that reaches ``max_len``
    without ``<eos>`` is cut there (``lengths = max_len``). ``temperature`` divides the logits;
    ``temperature = 0`` decodes greedily (argmax).
    """
    chex.assert_rank(z, 2)
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2, got {max_len}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    batch = z.shape[0]
    carry = decoder.apply(params, z, method=LSTMDecoder.initial_carry)
    bos = jnp.full((batch,), BOS_ID, jnp.int32)
    done = jnp.zeros((batch,), bool)

    def step(state, step_key):
        carry, prev, done = state
        carry, logits = decoder.apply(params, carry, prev, z)
        if temperature == 0:
            tokens = jnp.argmax(logits, axis=-1)
        else:
            tokens = jax.random.categorical(step_key, logits / temperature, axis=-1)
        tokens = jnp.where(done, PAD_ID, tokens).astype(jnp.int32)
        return (carry, tokens, done | (tokens == EOS_ID)), tokens

    _, generated = jax.lax.scan(step, (carry, bos, done), jax.random.split(key, max_len - 1))
    ids = jnp.concatenate([bos[:, None], generated.T], axis=1)
    lengths = 1 + jnp.sum(generated.T != PAD_ID, axis=1).astype(jnp.int32)
    return ids, lengths
