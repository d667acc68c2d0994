"""The corpus whose sentences need the latent (``mode_grammar.py``): sampler, exact recogniser and
probability, the global choices a sentence exhibits, the shipped files, and the text LEBM's mode scores on
hand-built reconstructions, samples and chains."""

from __future__ import annotations

import itertools
import os
import types

import jax
import numpy as np
import pytest

from configs import text_modes
from latentebm_jax.data import load_splits, load_text_corpus
from latentebm_jax.data import mode_grammar as g
from latentebm_jax.data import text as text_data
from latentebm_jax.methods import lebm_text
from latentebm_jax.methods.base import EvalContext

# one sentence per topic, all four choices different from the one before
KITCHEN = "this happy cook stirs this pot while it boils gladly ."
SEA = "these sad big sailors towed some wet ships near the old gate and then they sank badly ."
FOREST = "one proud wolf beside the road hunted that fox while it grew calmly ."
CITY = "two angry small old drivers park these busy buses and then they honk angrily ."


def test_sampler_sentences_parse_with_the_choices_drawn():
    sentences, modes = g.sample_with_modes(2000, seed=123)
    assert sentences == g.sample_sentences(2000, seed=123)
    assert all(g.modes_of(s) == m for s, m in zip(sentences, modes))
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) == 11 and max(lengths) <= 25
    # every choice is drawn (about uniformly)
    for name, values in zip(g.MODE_NAMES, (g.TOPICS, g.NUMBERS, g.TENSES, g.MOODS)):
        counts = [sum(m[name] == v for m in modes) for v in values]
        assert min(counts) > 0.8 * 2000 / len(values), (name, counts)
    # random strings of the same lengths (final "." forced) never parse
    vocab = g.vocabulary()
    rng = np.random.default_rng(0)
    random_strings = [[*rng.choice(vocab, size=n - 1), "."] for n in lengths]
    assert not any(g.parses(r) for r in random_strings)
    assert all(g.modes_of(r) is None for r in random_strings[:50])


def test_vocabulary_categories_are_disjoint_and_all_used():
    vocab = g.vocabulary()
    assert len(vocab) == 110
    words = {w for s in g.sample_sentences(3000, 1) for w in s.split()}
    assert words == set(vocab)
    # the topics share no word: a topic word names its topic
    by_topic = [
        {
            *g.NOUN[t]["sg"],
            *g.NOUN[t]["pl"],
            *g.TOPIC_ADJ[t],
            *(w for k, ws in g.VT.items() if k[0] == t for w in ws),
        }
        | {w for k, ws in g.VI.items() if k[0] == t for w in ws}
        for t in g.TOPICS
    ]
    assert all(not (a & b) for a, b in itertools.combinations(by_topic, 2))
    assert sum(map(len, by_topic)) == 80


@pytest.mark.parametrize(
    ("sentence", "modes"),
    [
        (KITCHEN, ("kitchen", "sg", "present", "good")),
        (SEA, ("sea", "pl", "past", "bad")),
        (FOREST, ("forest", "sg", "past", "good")),
        (CITY, ("city", "pl", "present", "bad")),
        ("this happy cook stirs this pot while it boils badly .", None),  # mood: happy ... badly
        ("this happy cook stirs these pot while it boils gladly .", None),  # number: this ... these
        ("this happy cook stirs this ship while it boils gladly .", None),  # topic: cook ... ship
        ("this happy cook stirred this pot while it boils gladly .", None),  # tense: stirred ... boils
        ("this happy cook stirs this pot while they boil gladly .", None),  # pronoun's number
        ("this happy cook stirs this pot while it boils gladly", None),  # no final "."
        ("this big happy cook stirs this pot while it boils gladly .", None),  # filler before mood
        ("this happy cook stirs this hot big pot while it boils gladly .", None),  # topic adj before filler
        ("", None),
    ],
)
def test_hand_sentences(sentence, modes):
    got = g.modes_of(sentence)
    assert g.parses(sentence) is (modes is not None)
    assert got == (None if modes is None else dict(zip(g.MODE_NAMES, modes)))
    assert (g.log_prob(sentence) == -np.inf) is (modes is None)


def test_log_prob_by_hand_and_normalised_rule_by_rule():
    # 1/32 (choices) · 1/3 (this) · 1/2 (happy) · .5 (no filler) · 1/3 (cook) · .7 (no PP) · 1/2 (stirs)
    #   · 1/3 (this) · .5 (no filler) · .5 (no topic adjective) · 1/3 (pot) · .7 (no PP) · 1/2 (while)
    #   · 1/2 (boils) · 1/2 (gladly)
    want = (1 / 32) * (1 / 3) * 0.5 * 0.5 * (1 / 3) * 0.7 * 0.5 * (1 / 3) * 0.5 * 0.5 * (1 / 3) * 0.7 * 0.125
    np.testing.assert_allclose(np.exp(g.log_prob(KITCHEN)), want, rtol=1e-12)
    # all 11-token sentences of one choice assignment (the shortest derivation) carry its probability
    n, v = "sg", ("kitchen", "sg", "present")
    slots = (g.DET[n], g.MOOD_ADJ["good"], g.NOUN["kitchen"][n], g.VT[v], g.DET[n], g.NOUN["kitchen"][n])
    shortest = [
        [*w[:6], "while", "it", *w[6:], "."] for w in itertools.product(*slots, g.VI[v], g.ADV["good"])
    ]
    total = sum(np.exp(g.log_prob(s)) for s in shortest)
    np.testing.assert_allclose(total, (1 / 32) * 0.5**2 * 0.7**2 * 0.5 * 0.5, rtol=1e-12)
    # each optional part sums to 1 over its expansions: Σ P(x with the part) = P(x without it) / P(none)
    base = KITCHEN.split()
    pps = [[]] + [[p, "the", *f, w] for p in g.PREP for f in ([], *([a] for a in g.FILL)) for w in g.PLACE]
    fills = [list(f) for k in range(3) for f in itertools.product(g.FILL, repeat=k)]
    variants = {
        "subject PP": ([base[:3] + pp + base[3:] for pp in pps], 1 - g.P_PP),
        "object PP": ([base[:6] + pp + base[6:] for pp in pps], 1 - g.P_PP),
        "subject fillers": ([base[:2] + f + base[2:] for f in fills], g.ADJ_COUNT_PROBS[0]),
        "object fillers": ([base[:5] + f + base[5:] for f in fills], g.ADJ_COUNT_PROBS[0]),
        "topic adjective": ([base[:5] + a + base[5:] for a in ([], ["hot"], ["greasy"])], 1 - g.P_TOPIC_ADJ),
        "conjunction": ([base[:6] + list(c) + base[7:] for c in g.CONJ], 0.5),
    }
    for name, (sentences, p_none) in variants.items():
        mass = sum(np.exp(g.log_prob(s)) for s in sentences)
        np.testing.assert_allclose(mass, np.exp(g.log_prob(base)) / p_none, rtol=1e-12, err_msg=name)


def test_log_prob_matches_sampling_frequencies():
    sentences = g.sample_sentences(10_000, seed=11)
    logp = np.array([g.log_prob(s) for s in sentences])
    assert np.all(np.isfinite(logp))
    p11 = 0.5**2 * 0.7**2 * 0.5 * 0.5  # P(11 tokens): no filler, PP, topic adjective; "while"
    frac = np.mean([len(s.split()) == 11 for s in sentences])
    assert abs(frac - p11) < 4 * np.sqrt(p11 * (1 - p11) / 10_000), frac
    # the entropy per sentence: the global choices are a clear part of it
    assert 3.4 < g.choice_entropy() < 3.5 and 18.0 < -np.mean(logp) < 19.5


def test_shipped_corpus_matches_writer_and_loads():
    for split, (n, seed) in g.MODE_SPLITS.items():
        lines = load_text_corpus("text_modes", split)
        assert len(lines) == n
        assert lines == g.sample_sentences(n, seed)
    total = sum(os.path.getsize(os.path.join(text_data.MODES_DIR, f"{s}.txt")) for s in g.MODE_SPLITS)
    assert total < 1_000_000
    config = text_modes.get_config()
    splits = load_splits(config.data)
    assert len(splits.train) == 10_000 and len(splits.test) == 1_000
    assert len(splits.vocab) == len(g.vocabulary()) + len(text_data.SPECIALS)
    assert splits.vocab.decode(splits.test.ids) == splits.test.sentences  # nothing truncated at max_len


# ---------------------------------------------------------------- the text LEBM's mode scores


def test_mode_statistics_by_hand():
    assert g.mode_agreement([KITCHEN, SEA], [KITCHEN, SEA]) == {
        "mode_accuracy": 1.0,
        "topic_accuracy": 1.0,
        "parse_rate": 1.0,
        "exact_rate": 1.0,
        "num_scored": 2,
    }
    other_mood = KITCHEN.replace("happy", "sad").replace("gladly", "badly")
    scores = g.mode_agreement([KITCHEN, SEA, FOREST, "not a sentence"], [other_mood, "sea .", FOREST, CITY])
    assert scores == {
        "mode_accuracy": 1 / 3,
        "topic_accuracy": 2 / 3,
        "parse_rate": 2 / 3,
        "exact_rate": 1 / 3,
        "num_scored": 3,
    }
    assert g.topic_fractions([KITCHEN, SEA, SEA, "x ."]) == [1 / 3, 2 / 3, 0.0, 0.0]
    assert g.mode_coverage([KITCHEN, SEA, SEA, "x ."]) == 0.5
    assert g.topic_switches([KITCHEN, "x .", KITCHEN, SEA, "", SEA, FOREST, KITCHEN]) == 3


@pytest.fixture(scope="module")
def ctx_factory(tmp_path_factory):
    config = text_modes.get_config()
    config.eval.long_run_steps = (4,)
    config.eval.long_run_frames = 4
    splits = load_splits(config.data)

    def make(**predict):
        method = types.SimpleNamespace(predict=predict)
        out_dir = str(tmp_path_factory.mktemp("eval"))
        return EvalContext(config, method, None, splits, out_dir, 0, jax.random.key(0), out_dir, "text_modes")

    return make


def test_recon_mode_accuracy_is_one_when_reconstructions_are_the_inputs(ctx_factory):
    ctx = ctx_factory(reconstruct=lambda params, batch, key: batch)
    out = lebm_text.text_reconstructions(ctx)
    assert out["recon_mode_sentences"] == lebm_text.RECON_MODE_SENTENCES
    for k in ("recon_mode_accuracy", "recon_topic_accuracy", "recon_parse_rate", "recon_exact_rate"):
        assert out[k] == 1.0, k
    # a reconstruction that keeps the topic only (the first test sentence's number flipped everywhere)
    vocab = ctx.splits.vocab

    def swap_number(params, batch, key):
        sentences = vocab.decode(batch["ids"], batch["lengths"])
        flipped = [" ".join(_flip_number(s.split())) for s in sentences]
        ids, lengths = vocab.encode(flipped, batch["ids"].shape[1])
        return {"ids": ids, "lengths": lengths}

    out = lebm_text.text_reconstructions(ctx_factory(reconstruct=swap_number))
    assert out["recon_mode_accuracy"] == 0.0 and out["recon_topic_accuracy"] == 1.0
    assert out["recon_parse_rate"] == 1.0


def _flip_number(words):
    """The same sentence with singular and plural swapped (the pronoun, determiners, nouns, verbs)."""
    n = "sg" if words[0] in g.DET["sg"] else "pl"
    m = "pl" if n == "sg" else "sg"
    table = {g.PRON[n]: g.PRON[m]}
    table |= dict(zip(g.DET[n], g.DET[m]))
    for t in g.TOPICS:
        table |= dict(zip(g.NOUN[t][n], g.NOUN[t][m]))
        for verbs in (g.VT, g.VI):
            table |= dict(zip(verbs[t, n, "present"], verbs[t, m, "present"]))
    return [table.get(w, w) for w in words]


def test_chain_topic_switches_and_sample_coverage(ctx_factory):
    vocab = ctx_factory().splits.vocab
    # two chains of 5 frames: topics K K S S F (2 switches) and C ? C K ? (1 switch, 2 frames do not parse)
    frames = [[KITCHEN, CITY], [KITCHEN, "sea ."], [SEA, CITY], [SEA, KITCHEN], [FOREST, ""]]

    def chain(params, key, num, steps, every):
        ids = np.stack([vocab.encode(f, 27)[0] for f in frames])
        lengths = np.stack([vocab.encode(f, 27)[1] for f in frames])
        return {"frames": {"ids": ids, "lengths": lengths}, "steps": np.arange(5), "energy": np.zeros(5)}

    ctx = ctx_factory(long_run_chain=chain)
    out = lebm_text.text_chains(ctx)
    assert out["chain_topic_switches_4"] == out["chain_topic_switches"] == 1.5
    assert out["chain_parse_rate"] == 0.8
    samples = [KITCHEN, SEA, SEA, "sea ."]
    lengths = vocab.encode(samples, 27)[1]
    scores = lebm_text.grammar_scores(ctx, samples, lengths, jax.random.key(1))
    assert scores["sample_topic_fractions"] == [1 / 3, 2 / 3, 0.0, 0.0]
    assert scores["mode_coverage"] == 0.5 and scores["parse_rate"] == 0.75
    assert scores["parse_rate_random"] == 0.0
    np.testing.assert_allclose(scores["grammar_nll"], 18.787, atol=1e-3)
