"""A probabilistic grammar whose sentences share sentence-level choices: the project's corpus where the latent
is needed.

On the toy grammar (``toy_grammar.py``) every dependency is local (determiner-noun, subject-verb), so an LSTM
models the corpus without looking at ``z`` and the text LEBM's reconstruction NLL equals its marginal NLL.
Here four *global* choices are drawn once per sentence and each one shows in words far apart, with filler
of variable length between them: a decoder that knows ``z`` (a posterior sample carrying the choices)
predicts the sentence better than one that must guess them, and the 4 topics are the modes a long-run prior
chain can move between (LEBM Table 3).

Global choices (uniform, independent; ``H = log 4 + 3 log 2 ≈ 3.47`` nats per sentence)::

    TOPIC  ∈ {kitchen, sea, forest, city}   its own nouns, verbs and adjectives (disjoint between topics)
    NUM    ∈ {sg, pl}                       both determiners and nouns, the present-tense verbs, the pronoun
    TENSE  ∈ {present, past}                the main verb and the verb of the trailing clause
    MOOD   ∈ {good, bad}                    an adjective near the start and the adverb at the end

Grammar (probabilities in brackets; words uniform inside each category)::

    S          → SUBJ VT[TOPIC,NUM,TENSE] OBJ CLAUSE "."
    SUBJ       → DET[NUM] MOOD_ADJ[MOOD] FILL^k N[TOPIC,NUM] (PP)      k = 0 [.5] | 1 [.35] | 2 [.15]; PP [.3]
    OBJ        → DET[NUM] FILL^k (TOPIC_ADJ[TOPIC]) N[TOPIC,NUM] (PP)  same k; TOPIC_ADJ [.5]; PP [.3]
    PP         → P "the" (FILL) PLACE                                  FILL [.3]
    CLAUSE     → CONJ PRON[NUM] VI[TOPIC,NUM,TENSE] ADV[MOOD]
    DET[sg]    = this that one         DET[pl] = these some two
    MOOD_ADJ   = good: happy proud     bad: sad angry
    ADV        = good: gladly calmly   bad: badly angrily
    FILL       = small big old         P = near behind beside      PLACE = gate wall road
    CONJ       = "and then" | "while"                                   [.5 each]
    PRON[sg]   = it                    PRON[pl] = they

    topic    N (sg / pl)                         VT                       VI                       TOPIC_ADJ
    kitchen  cook pot spoon (+s)                 stir wash                boil bake                hot greasy
    sea      sailor ship whale (+s)              row tow                  float sink (sank)        salty wet
    forest   wolf fox owl (wolves foxes owls)    hunt chase               howl grow (grew)         green wild
    city     driver bus taxi (+s, buses)         drive (drove) park       honk rush                busy noisy

Verbs are listed by stem: present sg ``stem + s`` (``washes``, ``rushes``), present pl the stem, past
``stem + ed`` or the irregular form in brackets, the same for both numbers.

Sentences have 11 to 25 tokens (the final "." included, 15.3 on average); the vocabulary has 110 words.
The entropy is about 18.8 nats per sentence (the shipped test split's grammar NLL: 18.79 nats, per-token
perplexity 3.19 counting ``<eos>``), of which the global choices are 3.47. The subject noun and the
clause's verb (both topic words) are 6 to 20 tokens apart; the mood adjective and the final adverb 8 to 22.
Every sentence has exactly one derivation and so one assignment of the global choices (:func:`modes_of`);
:func:`parses` and :func:`log_prob` are exact all the same, summing over every choice assignment and
derivation.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from latentebm_jax.data.text import MODES_DIR, SHIPPED_SPLITS, write_shipped_corpus

TOPICS = ("kitchen", "sea", "forest", "city")
NUMBERS = ("sg", "pl")
TENSES = ("present", "past")
MOODS = ("good", "bad")
# the global choices of a sentence, in the order of the keys of :func:`modes_of`
MODE_NAMES = ("topic", "number", "tense", "mood")

DET = {"sg": ("this", "that", "one"), "pl": ("these", "some", "two")}
MOOD_ADJ = {"good": ("happy", "proud"), "bad": ("sad", "angry")}
ADV = {"good": ("gladly", "calmly"), "bad": ("badly", "angrily")}
FILL = ("small", "big", "old")
PREP = ("near", "behind", "beside")
PP_DET = "the"
PLACE = ("gate", "wall", "road")
CONJ = (("and", "then"), ("while",))
PRON = {"sg": "it", "pl": "they"}
END = "."

# topic -> number -> nouns
NOUN = {
    "kitchen": {"sg": ("cook", "pot", "spoon"), "pl": ("cooks", "pots", "spoons")},
    "sea": {"sg": ("sailor", "ship", "whale"), "pl": ("sailors", "ships", "whales")},
    "forest": {"sg": ("wolf", "fox", "owl"), "pl": ("wolves", "foxes", "owls")},
    "city": {"sg": ("driver", "bus", "taxi"), "pl": ("drivers", "buses", "taxis")},
}
# topic -> verbs as (present sg, present pl, past)
_VT_FORMS = {
    "kitchen": (("stirs", "stir", "stirred"), ("washes", "wash", "washed")),
    "sea": (("rows", "row", "rowed"), ("tows", "tow", "towed")),
    "forest": (("hunts", "hunt", "hunted"), ("chases", "chase", "chased")),
    "city": (("drives", "drive", "drove"), ("parks", "park", "parked")),
}
_VI_FORMS = {
    "kitchen": (("boils", "boil", "boiled"), ("bakes", "bake", "baked")),
    "sea": (("floats", "float", "floated"), ("sinks", "sink", "sank")),
    "forest": (("howls", "howl", "howled"), ("grows", "grow", "grew")),
    "city": (("honks", "honk", "honked"), ("rushes", "rush", "rushed")),
}
TOPIC_ADJ = {
    "kitchen": ("hot", "greasy"),
    "sea": ("salty", "wet"),
    "forest": ("green", "wild"),
    "city": ("busy", "noisy"),
}


def _verb_table(forms) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """``(topic, number, tense) -> verbs`` from the ``(present sg, present pl, past)`` forms."""
    out = {}
    for topic, verbs in forms.items():
        for number in NUMBERS:
            out[topic, number, "present"] = tuple(v[0 if number == "sg" else 1] for v in verbs)
            out[topic, number, "past"] = tuple(v[2] for v in verbs)
    return out


VT = _verb_table(_VT_FORMS)
VI = _verb_table(_VI_FORMS)

ADJ_COUNT_PROBS = (0.5, 0.35, 0.15)  # P(k filler adjectives in a noun phrase), k = 0, 1, 2
P_PP = 0.3  # P(a noun phrase takes a prepositional phrase)
P_PP_FILL = 0.3  # P(the prepositional phrase's noun takes a filler adjective)
P_TOPIC_ADJ = 0.5  # P(the object takes a topic adjective)


def vocabulary() -> tuple[str, ...]:
    """Every terminal of the grammar, sorted (110 words including ".")."""
    words = {END, PP_DET, *FILL, *PREP, *PLACE, *PRON.values(), *(w for c in CONJ for w in c)}
    for table in (DET, MOOD_ADJ, ADV, TOPIC_ADJ, VT, VI):
        for ws in table.values():
            words.update(ws)
    for by_number in NOUN.values():
        for ws in by_number.values():
            words.update(ws)
    return tuple(sorted(words))


def all_modes() -> list[dict[str, str]]:
    """The 32 assignments of the global choices, each ``{"topic", "number", "tense", "mood"}``."""
    return [dict(zip(MODE_NAMES, c)) for c in itertools.product(TOPICS, NUMBERS, TENSES, MOODS)]


# ---- sampler ----------------------------------------------------------------------------------------------


class _Sampler:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, words):
        return words[self.rng.integers(len(words))]

    def fill(self) -> list[str]:
        k = int(self.rng.choice(len(ADJ_COUNT_PROBS), p=ADJ_COUNT_PROBS))
        return [self.pick(FILL) for _ in range(k)]

    def pp(self) -> list[str]:
        if self.rng.random() >= P_PP:
            return []
        out = [self.pick(PREP), PP_DET]
        if self.rng.random() < P_PP_FILL:
            out.append(self.pick(FILL))
        return [*out, self.pick(PLACE)]

    def sentence(self) -> tuple[list[str], dict[str, str]]:
        m = {
            "topic": self.pick(TOPICS),
            "number": self.pick(NUMBERS),
            "tense": self.pick(TENSES),
            "mood": self.pick(MOODS),
        }
        t, n, v = m["topic"], m["number"], (m["topic"], m["number"], m["tense"])
        out = [self.pick(DET[n]), self.pick(MOOD_ADJ[m["mood"]]), *self.fill(), self.pick(NOUN[t][n])]
        out += self.pp()
        out.append(self.pick(VT[v]))
        out += [self.pick(DET[n]), *self.fill()]
        if self.rng.random() < P_TOPIC_ADJ:
            out.append(self.pick(TOPIC_ADJ[t]))
        out.append(self.pick(NOUN[t][n]))
        out += self.pp()
        out += [*self.pick(CONJ), PRON[n], self.pick(VI[v]), self.pick(ADV[m["mood"]]), END]
        return out, m


def sample_with_modes(n: int, seed: int) -> tuple[list[str], list[dict[str, str]]]:
    """``n`` sentences and the global choices each was drawn with (``{"topic", "number", "tense", "mood"}``),
    from ``numpy`` generator ``seed``; the sentences are those of :func:`sample_sentences`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    sampler = _Sampler(np.random.default_rng(seed))
    sentences, modes = [], []
    for _ in range(n):
        words, m = sampler.sentence()
        sentences.append(" ".join(words))
        modes.append(m)
    return sentences, modes


def sample_sentences(n: int, seed: int) -> list[str]:
    """``n`` sentences (space-separated tokens) drawn from the grammar with ``numpy`` generator ``seed``."""
    return sample_with_modes(n, seed)[0]


# ---- exact probability: {end position: probability} of each constituent under one choice assignment -------


def _add(out: dict[int, float], end: int, p: float) -> None:
    out[end] = out.get(end, 0.0) + p


def _word(tokens, i: int, words) -> float:
    """``P(word)`` of a uniform pick from ``words`` if ``tokens[i]`` is among them, else 0."""
    return 1.0 / len(words) if i < len(tokens) and tokens[i] in words else 0.0


def _fill_probs(tokens, i: int) -> dict[int, float]:
    out: dict[int, float] = {}
    p = 1.0
    for k, p_k in enumerate(ADJ_COUNT_PROBS):
        if k > 0:
            p *= _word(tokens, i + k - 1, FILL)
            if p == 0.0:
                break
        _add(out, i + k, p * p_k)
    return out


def _pp_probs(tokens, i: int) -> dict[int, float]:
    out = {i: 1.0 - P_PP}
    p = P_PP * _word(tokens, i, PREP) * (i + 1 < len(tokens) and tokens[i + 1] == PP_DET)
    if p == 0.0:
        return out
    j = i + 2
    for fill, p_fill in ((0, 1.0 - P_PP_FILL), (1, P_PP_FILL)):
        q = p * p_fill * (_word(tokens, j, FILL) if fill else 1.0) * _word(tokens, j + fill, PLACE)
        if q > 0.0:
            _add(out, j + fill + 1, q)
    return out


def _then(first: dict[int, float], rest) -> dict[int, float]:
    """Concatenation: ``{end: Σ p(first ends at e) p(rest from e ends at end)}``."""
    out: dict[int, float] = {}
    for e, p in first.items():
        for e2, q in rest(e).items():
            _add(out, e2, p * q)
    return out


def _np_probs(tokens, i: int, m: dict[str, str], subject: bool) -> dict[int, float]:
    t, n = m["topic"], m["number"]
    p = _word(tokens, i, DET[n])
    i += 1
    if subject:
        p *= _word(tokens, i, MOOD_ADJ[m["mood"]])
        i += 1
    if p == 0.0:
        return {}
    out = {e: p * q for e, q in _fill_probs(tokens, i).items()}
    if not subject:  # optional topic adjective
        topic_adj: dict[int, float] = {}
        for e, q in out.items():
            _add(topic_adj, e, q * (1.0 - P_TOPIC_ADJ))
            r = q * P_TOPIC_ADJ * _word(tokens, e, TOPIC_ADJ[t])
            if r > 0.0:
                _add(topic_adj, e + 1, r)
        out = topic_adj
    out = {e + 1: q * _word(tokens, e, NOUN[t][n]) for e, q in out.items()}
    out = {e: q for e, q in out.items() if q > 0.0}
    return _then(out, lambda e: _pp_probs(tokens, e))


def _clause_prob(tokens, i: int, m: dict[str, str]) -> float:
    """``P(CLAUSE ".")`` spanning ``tokens[i:]`` exactly."""
    v = (m["topic"], m["number"], m["tense"])
    total = 0.0
    for conj in CONJ:
        if tuple(tokens[i : i + len(conj)]) != conj:
            continue
        j = i + len(conj)
        if len(tokens) != j + 4 or tokens[j] != PRON[m["number"]] or tokens[-1] != END:
            continue
        total += _word(tokens, j + 1, VI[v]) * _word(tokens, j + 2, ADV[m["mood"]]) / len(CONJ)
    return total


def _sentence_prob(tokens: tuple[str, ...], m: dict[str, str]) -> float:
    """``P(sentence | global choices m)``, summed over derivations."""
    v = (m["topic"], m["number"], m["tense"])
    subj = _np_probs(tokens, 0, m, True)
    verb = {e + 1: p * _word(tokens, e, VT[v]) for e, p in subj.items()}
    obj = _then({e: p for e, p in verb.items() if p > 0.0}, lambda e: _np_probs(tokens, e, m, False))
    return sum(p * _clause_prob(tokens, e, m) for e, p in obj.items())


_MODES = all_modes()
_P_MODES = 1.0 / len(_MODES)


@functools.lru_cache(maxsize=65536)
def _mode_probs(tokens: tuple[str, ...]) -> tuple[float, ...]:
    """``P(sentence, choices)`` for each assignment of :func:`all_modes` (in its order)."""
    if len(tokens) < 2 or tokens[-1] != END:
        return (0.0,) * len(_MODES)
    return tuple(_P_MODES * _sentence_prob(tokens, m) for m in _MODES)


def _as_tuple(tokens: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(tokens.split() if isinstance(tokens, str) else tokens)


def log_prob(tokens: str | list[str] | tuple[str, ...]) -> float:
    """``log P(sentence)`` under the grammar's generative process (``−inf`` outside the language).

    Sums over the 32 assignments of the global choices and every derivation under each (exactly one of each
    for a sentence of the language). The mean of ``−log_prob`` over sampled sentences is the language's
    entropy per sentence: the floor of any model's NLL on this corpus.
    """
    total = sum(_mode_probs(_as_tuple(tokens)))
    return float(np.log(total)) if total > 0 else float("-inf")


def parses(tokens: str | list[str] | tuple[str, ...]) -> bool:
    """Whether ``tokens`` (a list of words, or one whitespace-separated string) is a sentence of the grammar
    (exact: every sentence :func:`sample_sentences` can produce, nothing else)."""
    return any(p > 0.0 for p in _mode_probs(_as_tuple(tokens)))


def modes_of(tokens: str | list[str] | tuple[str, ...]) -> dict[str, str] | None:
    """The global choices ``{"topic", "number", "tense", "mood"}`` a sentence exhibits, or ``None`` if it does
    not parse (the most probable assignment; a sentence of this grammar has only one)."""
    probs = _mode_probs(_as_tuple(tokens))
    best = int(np.argmax(probs))
    return dict(_MODES[best]) if probs[best] > 0.0 else None


def choice_entropy() -> float:
    """Entropy of the global choices, ``log 32 ≈ 3.47`` nats: what a latent that carries them can save."""
    return float(np.log(len(_MODES)))


# ---- mode statistics of generated, reconstructed and chain sentences (the text LEBM's evaluation) ----------


def topic_fractions(sentences) -> list[float]:
    """The fraction of each topic (in :data:`TOPICS` order) among the sentences that parse (zeros if none)."""
    topics = [m["topic"] for m in map(modes_of, sentences) if m is not None]
    if not topics:
        return [0.0] * len(TOPICS)
    return [topics.count(t) / len(topics) for t in TOPICS]


def mode_coverage(sentences) -> float:
    """The fraction of the 4 topics that occur among the sentences that parse."""
    return float(np.mean([f > 0 for f in topic_fractions(sentences)]))


def mode_agreement(originals, reconstructions) -> dict[str, float]:
    """How well reconstructions keep the global choices of their originals, over the pairs whose original
    parses (``num_scored`` of them; an original cut by ``data.max_len`` does not): ``mode_accuracy``, the
    fraction whose reconstruction parses and has the original's topic, number, tense and mood;
    ``topic_accuracy``, the same for the topic alone; ``parse_rate`` and ``exact_rate``, the fractions of
    reconstructions that parse and that equal their original."""
    if len(originals) != len(reconstructions):
        raise ValueError(f"{len(originals)} originals but {len(reconstructions)} reconstructions")
    same, same_topic, parsed, exact = [], [], [], []
    for x, x_hat in zip(originals, reconstructions):
        m = modes_of(x)
        if m is None:
            continue
        m_hat = modes_of(x_hat)
        same.append(m == m_hat)
        same_topic.append(m_hat is not None and m["topic"] == m_hat["topic"])
        parsed.append(m_hat is not None)
        exact.append(x.split() == x_hat.split())
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    return {
        "mode_accuracy": mean(same),
        "topic_accuracy": mean(same_topic),
        "parse_rate": mean(parsed),
        "exact_rate": mean(exact),
        "num_scored": len(same),
    }


def topic_switches(chain) -> int:
    """How often the topic changes along one chain of sentences (frames that do not parse are skipped)."""
    topics = [m["topic"] for m in map(modes_of, chain) if m is not None]
    return sum(a != b for a, b in itertools.pairwise(topics))


# The shipped corpus ``latentebm_jax/data/text_modes/{split}.txt``: split -> (number of sentences, seed).
MODE_SPLITS: dict[str, tuple[int, int]] = SHIPPED_SPLITS


def write_corpus(directory: str) -> None:
    """Write ``train.txt``, ``valid.txt``, ``test.txt`` (one sentence per line) as in :data:`MODE_SPLITS`.

    Regenerate the shipped files with ``python -m latentebm_jax.data.mode_grammar``.
    """
    write_shipped_corpus(directory, sample_sentences, MODE_SPLITS)


if __name__ == "__main__":
    write_corpus(MODES_DIR)
