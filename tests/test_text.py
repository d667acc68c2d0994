"""Text pieces: toy grammar + recogniser, vocabulary, corpus loaders, LSTM decoder (LEBM Eq. 4)."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from latentebm_jax.data import text as text_data
from latentebm_jax.data import toy_grammar
from latentebm_jax.data.text import TextCorpusNotFoundError, Vocabulary, load_text_corpus
from latentebm_jax.nets import text as text_nets
from latentebm_jax.nets.text import LSTMDecoder, init_decoder, log_likelihood, sample

# ---------------------------------------------------------------- grammar


def test_recogniser_accepts_samples_and_rejects_random_strings():
    sentences = toy_grammar.sample_sentences(2000, seed=123)
    assert all(toy_grammar.parses(s) for s in sentences)
    vocab = toy_grammar.vocabulary()
    rng = np.random.default_rng(0)
    random_strings = [[vocab[i] for i in rng.integers(len(vocab), size=len(s.split()))] for s in sentences]
    rate = np.mean([toy_grammar.parses(r) for r in random_strings])
    assert rate < 0.01, rate
    # even with the final "." forced, random strings of the same lengths almost never parse
    rate_dot = np.mean([toy_grammar.parses([*r[:-1], "."]) for r in random_strings])
    assert rate_dot < 0.01, rate_dot


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("the dog sleeps .", True),
        ("two small red cats chase a ball near the houses .", True),
        ("the dogs sleep under a tree near these big houses .", True),
        ("the dog sleep .", False),  # subject-verb agreement
        ("a dogs sleep .", False),  # determiner-noun agreement
        ("the dog sleeps", False),  # no final "."
        ("the small big red dog sleeps .", False),  # three adjectives
        ("the dog sees .", False),  # transitive verb without object
        ("dog the sleeps .", False),
        ("", False),
    ],
)
def test_recogniser_hand_examples(sentence, ok):
    assert toy_grammar.parses(sentence) is ok


def test_grammar_sampler_is_seeded_and_vocabulary_size():
    assert toy_grammar.sample_sentences(50, 7) == toy_grammar.sample_sentences(50, 7)
    assert toy_grammar.sample_sentences(50, 7) != toy_grammar.sample_sentences(50, 8)
    assert len(toy_grammar.vocabulary()) == 48
    words = {w for s in toy_grammar.sample_sentences(3000, 1) for w in s.split()}
    assert words == set(toy_grammar.vocabulary())


def test_shipped_toy_corpus_matches_seeded_sampler():
    total = 0
    for split, (n, seed) in toy_grammar.TOY_SPLITS.items():
        path = os.path.join(text_data.TOY_DIR, f"{split}.txt")
        total += os.path.getsize(path)
        lines = load_text_corpus("text_toy", split)
        assert len(lines) == n
        assert lines == toy_grammar.sample_sentences(n, seed)
    assert total < 1_000_000


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_cutoff_unk_and_order():
    sents = ["a b b c", "b c d", "c"]  # counts: c 3, b 3, a 1, d 1
    v = Vocabulary.from_sentences(sents, min_count=2)
    assert v.words == ("<pad>", "<unk>", "<bos>", "<eos>", "b", "c")
    ids, lengths = v.encode(["a b", "c zz d"])
    np.testing.assert_array_equal(ids, [[2, 1, 4, 3, 0], [2, 5, 1, 1, 3]])
    np.testing.assert_array_equal(lengths, [4, 5])
    assert ids.dtype == np.int32 and lengths.dtype == np.int32
    assert v.decode(ids) == ["<unk> b", "c <unk> <unk>"]
    assert len(Vocabulary.from_sentences(sents, min_count=1)) == 8


def test_vocabulary_round_trip_truncation_and_json(tmp_path):
    train = load_text_corpus("text_toy", "train")[:500]
    v = Vocabulary.from_sentences(train)
    ids, lengths = v.encode(train)
    assert v.decode(ids) == train
    assert v.decode(ids, lengths) == train
    np.testing.assert_array_equal(lengths, [len(s.split()) + 2 for s in train])
    # truncation: at most max_len - 2 words, still ends in <eos>
    ids5, len5 = v.encode(train, max_len=5)
    assert ids5.shape == (500, 5)
    assert v.decode(ids5) == [" ".join(s.split()[:3]) for s in train]
    assert np.all(ids5[np.arange(500), len5 - 1] == text_data.EOS_ID)
    path = tmp_path / "vocab.json"
    v.save(str(path))
    assert Vocabulary.load(str(path)) == v
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(["a", "<pad>"])
    with pytest.raises(ValueError, match="max_len"):
        v.encode(train, max_len=1)


# ---------------------------------------------------------------- loaders


def test_missing_ptb_directory_names_expected_files(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(TextCorpusNotFoundError) as err:
        load_text_corpus("ptb", "train", missing)
    msg = str(err.value)
    assert missing in msg
    for f in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        assert f in msg
    (tmp_path / "yahoo.train.txt").write_text("hello world\n\n  a b  \n7\tlabelled line .\n")
    assert load_text_corpus("yahoo", "train", str(tmp_path)) == ["hello world", "a b", "labelled line ."]
    with pytest.raises(TextCorpusNotFoundError, match=r"yahoo\.valid\.txt is missing"):
        load_text_corpus("yahoo", "valid", str(tmp_path))
    with pytest.raises(ValueError, match="unknown text corpus"):
        load_text_corpus("wiki", "train")


def test_snli_loader_on_mock_data():
    with tfds.testing.mock_data(num_examples=6):
        source = tfds.data_source("snli", split="validation", download=False)
        texts = []
        for i in range(len(source)):
            for f in ("premise", "hypothesis"):
                t = source[i][f]
                t = t.decode() if isinstance(t, bytes) else str(t)
                texts.append(" ".join(t.lower().split()))
        expected = [t for i, t in enumerate(texts) if t and t not in texts[:i]]
        got = load_text_corpus("snli", "valid")
        premises = text_data.load_snli_sentences("valid", fields=("premise",), unique=False)
    assert got == expected
    assert len(premises) == 6


# ---------------------------------------------------------------- decoder

V, E, H, D = 9, 3, 4, 2


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hand_step(p, c, h, token, z):
    """One LSTM-decoder step written from the parameter dict (gates i, f, g, o)."""
    x = np.concatenate([p["embed"]["embedding"][token], z], axis=-1)
    cell = p["cell"]

    def gate(name):
        return x @ cell["i" + name]["kernel"] + h @ cell["h" + name]["kernel"] + cell["h" + name]["bias"]

    i, f, g, o = _sig(gate("i")), _sig(gate("f")), np.tanh(gate("g")), _sig(gate("o"))
    c = f * c + i * g
    h = o * np.tanh(c)
    logits = h @ p["out"]["kernel"] + p["out"]["bias"]
    logits[..., [text_nets.PAD_ID, text_nets.BOS_ID]] = text_nets.MASKED_LOGIT
    return c, h, logits


def _hand_init(p, z):
    c = z @ p["init_state"]["kernel"] + p["init_state"]["bias"]
    return c, np.tanh(c)


def _log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def model():
    decoder = LSTMDecoder(vocab_size=V, embed_dim=E, hidden=H)
    params = init_decoder(decoder, jax.random.key(0), D)
    # inflate the tiny text-VAE init so that the distributions are far from uniform
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)["params"]
    return decoder, params, np_params


def test_special_ids_agree_with_vocabulary():
    assert (text_nets.PAD_ID, text_nets.BOS_ID, text_nets.EOS_ID) == (
        text_data.PAD_ID,
        text_data.BOS_ID,
        text_data.EOS_ID,
    )


def test_log_likelihood_equals_hand_computation(model):
    decoder, params, p = model
    ids = np.array([[2, 5, 6, 3, 0, 0], [2, 4, 3, 0, 0, 0], [2, 7, 8, 4, 5, 3]], np.int32)
    lengths = np.array([4, 3, 6], np.int32)
    z = np.asarray(jax.random.normal(jax.random.key(2), (3, D)))
    got = jax.jit(functools.partial(log_likelihood, decoder))(params, z, ids, lengths)
    want = np.zeros(3)
    for b in range(3):
        c, h = _hand_init(p, z[b])
        for t in range(lengths[b] - 1):
            c, h, logits = _hand_step(p, c, h, ids[b, t], z[b])
            want[b] += _log_softmax(logits)[ids[b, t + 1]]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.all(want < -1.0)  # not trivially near zero


def test_padding_never_changes_likelihood(model):
    decoder, params, _ = model
    ids = np.array([[2, 5, 6, 3, 0], [2, 4, 3, 0, 0]], np.int32)
    lengths = np.array([4, 3], np.int32)
    z = np.asarray(jax.random.normal(jax.random.key(3), (2, D)))
    base = log_likelihood(decoder, params, z, ids, lengths)
    wider = np.pad(ids, ((0, 0), (0, 3)))
    garbage = wider.copy()
    garbage[0, 4:] = [7, 8, 1, 4]
    garbage[1, 3:] = [5, 5, 6, 3, 2]
    for variant in (wider, garbage):
        np.testing.assert_allclose(log_likelihood(decoder, params, z, variant, lengths), base, rtol=1e-6)
    # but the content inside the length does count
    changed = ids.copy()
    changed[0, 2] = 7
    assert abs(float(log_likelihood(decoder, params, z, changed, lengths)[0] - base[0])) > 1e-3


def test_low_temperature_sampling_equals_hand_greedy_decoding(model):
    decoder, params, p = model
    z = np.asarray(jax.random.normal(jax.random.key(4), (16, D)) * 2.0)
    max_len = 7
    want = np.zeros((16, max_len), np.int32)
    want_len = np.zeros(16, np.int32)
    for b in range(16):
        c, h = _hand_init(p, z[b])
        tok, row = text_nets.BOS_ID, [text_nets.BOS_ID]
        while len(row) < max_len:
            c, h, logits = _hand_step(p, c, h, tok, z[b])
            tok = int(np.argmax(logits))
            row.append(tok)
            if tok == text_nets.EOS_ID:
                break
        want[b, : len(row)] = row
        want_len[b] = len(row)
    for temperature in (0.0, 1e-6):
        ids, lengths = sample(decoder, params, z, jax.random.key(5), max_len, temperature)
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_array_equal(lengths, want_len)
    assert len(set(map(tuple, want.tolist()))) > 1  # different z give different sentences


def test_sampling_matches_model_distribution(model):
    """First token ~ softmax(logits) (chi-square check); rows are <bos> … <eos> <pad>… with no <pad>/<bos>
    inside, and their likelihood is finite."""
    decoder, params, p = model
    n = 4000
    z1 = np.array([[0.3, -0.7]])
    ids, lengths = sample(decoder, params, np.repeat(z1, n, 0), jax.random.key(6), 6, 1.0)
    ids, lengths = np.asarray(ids), np.asarray(lengths)
    c, h = _hand_init(p, z1[0])
    probs = np.exp(_log_softmax(_hand_step(p, c, h, text_nets.BOS_ID, z1[0])[2]))
    counts = np.bincount(ids[:, 1], minlength=V)
    assert counts[text_nets.PAD_ID] == 0 and counts[text_nets.BOS_ID] == 0
    keep = probs > 0
    chi2 = np.sum((counts[keep] - n * probs[keep]) ** 2 / (n * probs[keep]))
    assert chi2 < 26.1, chi2  # chi-square, 6 dof, p = 0.9998
    for row, length in zip(ids, lengths):
        assert row[0] == text_nets.BOS_ID
        assert np.all(row[1:length] != text_nets.PAD_ID)
        assert np.all(row[length:] == text_nets.PAD_ID)
        assert row[length - 1] == text_nets.EOS_ID or length == 6
        assert np.sum(row[1:length] == text_nets.EOS_ID) <= 1
    assert np.all(np.isfinite(log_likelihood(decoder, params, np.repeat(z1, n, 0), ids, lengths)))


def test_dropout_only_with_a_key(model):
    _, params, _ = model
    ids = np.array([[2, 5, 6, 3, 0], [2, 4, 3, 0, 0]], np.int32)
    lengths = np.array([4, 3], np.int32)
    z = np.asarray(jax.random.normal(jax.random.key(7), (2, D)))
    plain = LSTMDecoder(vocab_size=V, embed_dim=E, hidden=H)
    drop = LSTMDecoder(vocab_size=V, embed_dim=E, hidden=H, dropout_in=0.5, dropout_out=0.5)
    base = log_likelihood(plain, params, z, ids, lengths)
    np.testing.assert_allclose(log_likelihood(drop, params, z, ids, lengths), base, rtol=1e-6)
    np.testing.assert_allclose(
        log_likelihood(plain, params, z, ids, lengths, jax.random.key(1)), base, rtol=1e-6
    )
    a = log_likelihood(drop, params, z, ids, lengths, jax.random.key(1))
    np.testing.assert_allclose(log_likelihood(drop, params, z, ids, lengths, jax.random.key(1)), a)
    assert np.all(np.abs(np.asarray(a) - np.asarray(base)) > 1e-4)
    # word dropout zeroes whole words (every unit of a dropped embedding, none of a kept one, no rescaling)
    emb = jnp.asarray(np.random.default_rng(0).normal(size=(400, 50, 8)) + 3.0, jnp.float32)
    dropped = np.asarray(text_nets.drop_words(emb, 0.25, jax.random.key(3)))
    zero = np.all(dropped == 0.0, axis=-1)
    assert abs(zero.mean() - 0.25) < 0.01
    np.testing.assert_array_equal(dropped[~zero], np.asarray(emb)[~zero])
    assert text_nets.drop_words(emb, 0.25, None) is emb
    words = LSTMDecoder(vocab_size=V, embed_dim=E, hidden=H, word_dropout=1.0)
    blind = log_likelihood(words, params, z, ids, lengths, jax.random.key(1))
    zeros = LSTMDecoder(vocab_size=V, embed_dim=E, hidden=H).clone()
    zero_params = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if "embed" in jax.tree_util.keystr(path) else v, params
    )
    np.testing.assert_allclose(blind, log_likelihood(zeros, zero_params, z, ids, lengths), rtol=1e-5)
    # inverted dropout keeps the mean: E[dropout(x)] = x
    x = jnp.ones((200_000,))
    y = text_nets.dropout(x, 0.3, jax.random.key(2))
    assert abs(float(jnp.mean(y == 0.0)) - 0.3) < 0.005
    assert abs(float(jnp.mean(y)) - 1.0) < 0.01


def test_gradients_reach_every_parameter_and_z(model):
    decoder, params, _ = model
    ids = np.array([[2, 5, 6, 3, 0], [2, 4, 3, 0, 0]], np.int32)
    lengths = np.array([4, 3], np.int32)
    z = np.asarray(jax.random.normal(jax.random.key(8), (2, D)))
    loss = lambda p, z: -log_likelihood(decoder, p, z, ids, lengths).sum()
    gp, gz = jax.grad(loss, argnums=(0, 1))(params, z)
    for path, g in jax.tree_util.tree_leaves_with_path(gp):
        assert np.all(np.isfinite(g)) and np.any(g != 0), jax.tree_util.keystr(path)
    assert np.all(np.abs(gz) > 0)
    # z enters both the initial state and every step's input: each path alone still moves the likelihood
    p_no_init = jax.tree.map(lambda a: a, params)
    p_no_init["params"]["init_state"] = jax.tree.map(jnp.zeros_like, params["params"]["init_state"])
    assert np.all(np.abs(jax.grad(loss, argnums=1)(p_no_init, z)) > 0)


def test_decoder_rejects_bad_shapes(model):
    decoder, params, _ = model
    ids = jnp.array([[2, 4, 3]], jnp.int32)
    with pytest.raises(AssertionError):
        log_likelihood(decoder, params, jnp.zeros((2, D)), ids, jnp.array([3], jnp.int32))
    with pytest.raises(AssertionError):
        log_likelihood(decoder, params, jnp.zeros((1, D)), ids.astype(jnp.float32), jnp.array([3]))
    with pytest.raises(ValueError, match="temperature"):
        sample(decoder, params, jnp.zeros((1, D)), jax.random.key(0), 5, -1.0)
