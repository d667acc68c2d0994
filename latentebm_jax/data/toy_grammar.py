"""A small probabilistic grammar of English-like sentences: the project's own toy text corpus.

The text experiments of LEBM (Sec. 3.2) need PTB/Yahoo/SNLI, which are not shipped. This grammar gives a
corpus we can ship and, unlike real text, a *recogniser*: a generated sentence either is or is not in the
language, so "samples parse far more often than random token strings" is a measurable check.

Grammar (probabilities in brackets; ``AGR`` ∈ {sg, pl} is chosen once per clause and must agree)::

    S        → NP[AGR] VP[AGR] "."                       AGR = sg [0.5] | pl [0.5]
    NP[AGR]  → DET[AGR] ADJ^k N[AGR] (PP)                k = 0 [0.5] | 1 [0.35] | 2 [0.15];  PP [0.2]
    PP       → P NP[sg] | P NP[pl]                       [0.5 each]
    VP[AGR]  → VT[AGR] NP[sg|pl] [0.6] | VI[AGR] (PP) [0.4]   PP after VI [0.5]
    DET[sg]  = the a this every          DET[pl] = the some these many two
    ADJ      = small big red old happy quiet
    N[sg]    = dog cat ball bird girl boy tree house       N[pl] = the same with -s
    VT[sg]   = sees likes chases finds   VT[pl] = see like chase find
    VI[sg]   = sleeps runs sings         VI[pl] = sleep run sing
    P        = near under with

Words are drawn uniformly inside each category. The vocabulary has 47 words plus ".". Subject-verb and
determiner-noun agreement, word order and the final "." are what random strings over the same vocabulary
violate. :func:`parses` is an exact recogniser for this (context-free, here even regular) language.
"""

from __future__ import annotations

import functools

import numpy as np

from latentebm_jax.data.text import SHIPPED_SPLITS, TOY_DIR, write_shipped_corpus

DET = {"sg": ("the", "a", "this", "every"), "pl": ("the", "some", "these", "many", "two")}
ADJ = ("small", "big", "red", "old", "happy", "quiet")
_NOUN_STEMS = ("dog", "cat", "ball", "bird", "girl", "boy", "tree", "house")
NOUN = {"sg": _NOUN_STEMS, "pl": tuple(w + "s" for w in _NOUN_STEMS)}
VT = {"sg": ("sees", "likes", "chases", "finds"), "pl": ("see", "like", "chase", "find")}
VI = {"sg": ("sleeps", "runs", "sings"), "pl": ("sleep", "run", "sing")}
PREP = ("near", "under", "with")
END = "."

ADJ_COUNT_PROBS = (0.5, 0.35, 0.15)  # P(k adjectives), k = 0, 1, 2
P_NP_PP = 0.2  # P(NP takes a prepositional phrase)
P_TRANSITIVE = 0.6  # P(VP is VT NP) vs VI (PP)
P_VI_PP = 0.5  # P(intransitive VP takes a PP)
MAX_PP_DEPTH = 3  # nested PPs beyond this depth are not generated (and not accepted)


def vocabulary() -> tuple[str, ...]:
    """Every terminal of the grammar, sorted (48 words including ".")."""
    words = {END, *ADJ, *PREP}
    for agr in ("sg", "pl"):
        words.update(DET[agr], NOUN[agr], VT[agr], VI[agr])
    return tuple(sorted(words))


class _Sampler:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, words: tuple[str, ...]) -> str:
        return words[self.rng.integers(len(words))]

    def agr(self) -> str:
        return "sg" if self.rng.random() < 0.5 else "pl"

    def np_(self, agr: str, depth: int) -> list[str]:
        out = [self.pick(DET[agr])]
        k = int(self.rng.choice(len(ADJ_COUNT_PROBS), p=ADJ_COUNT_PROBS))
        out += [self.pick(ADJ) for _ in range(k)]
        out.append(self.pick(NOUN[agr]))
        if depth < MAX_PP_DEPTH and self.rng.random() < P_NP_PP:
            out += self.pp(depth + 1)
        return out

    def pp(self, depth: int) -> list[str]:
        return [self.pick(PREP), *self.np_(self.agr(), depth)]

    def vp(self, agr: str) -> list[str]:
        if self.rng.random() < P_TRANSITIVE:
            return [self.pick(VT[agr]), *self.np_(self.agr(), 0)]
        out = [self.pick(VI[agr])]
        if self.rng.random() < P_VI_PP:
            out += self.pp(1)
        return out

    def sentence(self) -> list[str]:
        agr = self.agr()
        return [*self.np_(agr, 0), *self.vp(agr), END]


def sample_sentences(n: int, seed: int) -> list[str]:
    """``n`` sentences (space-separated tokens) drawn from the grammar with ``numpy`` generator ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    sampler = _Sampler(np.random.default_rng(seed))
    return [" ".join(sampler.sentence()) for _ in range(n)]


# ---- recogniser: recursive descent returning the set of positions where a constituent can end ----


def _np_ends(tokens: tuple[str, ...], i: int, agr: str, depth: int) -> frozenset[int]:
    if i >= len(tokens) or tokens[i] not in DET[agr]:
        return frozenset()
    j = i + 1
    k = 0
    ends: set[int] = set()
    while True:
        if j < len(tokens) and tokens[j] in NOUN[agr]:
            ends.add(j + 1)
        if k < len(ADJ_COUNT_PROBS) - 1 and j < len(tokens) and tokens[j] in ADJ:
            j, k = j + 1, k + 1
            continue
        break
    if depth < MAX_PP_DEPTH:
        for e in tuple(ends):
            ends |= _pp_ends(tokens, e, depth + 1)
    return frozenset(ends)


def _pp_ends(tokens: tuple[str, ...], i: int, depth: int) -> frozenset[int]:
    if i >= len(tokens) or tokens[i] not in PREP:
        return frozenset()
    return _np_ends(tokens, i + 1, "sg", depth) | _np_ends(tokens, i + 1, "pl", depth)


def _vp_ends(tokens: tuple[str, ...], i: int, agr: str) -> frozenset[int]:
    if i >= len(tokens):
        return frozenset()
    if tokens[i] in VT[agr]:
        return _np_ends(tokens, i + 1, "sg", 0) | _np_ends(tokens, i + 1, "pl", 0)
    if tokens[i] in VI[agr]:
        return frozenset({i + 1}) | _pp_ends(tokens, i + 1, 1)
    return frozenset()


@functools.lru_cache(maxsize=65536)
def _parses(tokens: tuple[str, ...]) -> bool:
    n = len(tokens)
    if n < 4 or tokens[-1] != END:
        return False
    for agr in ("sg", "pl"):
        for e in _np_ends(tokens, 0, agr, 0):
            if n - 1 in _vp_ends(tokens, e, agr):
                return True
    return False


def parses(tokens: str | list[str] | tuple[str, ...]) -> bool:
    """Whether ``tokens`` (a list of words, or one whitespace-separated string) is a sentence of the grammar.

    Exact: accepts every sentence :func:`sample_sentences` can produce (any number of adjectives ≤ 2, PPs
    nested up to ``MAX_PP_DEPTH``) and nothing else.
    """
    if isinstance(tokens, str):
        tokens = tokens.split()
    return _parses(tuple(tokens))


# ---- exact probability: the same recursion, carrying {end position: probability} -------------------


def _np_probs(tokens: tuple[str, ...], i: int, agr: str, depth: int) -> dict[int, float]:
    if i >= len(tokens) or tokens[i] not in DET[agr]:
        return {}
    out: dict[int, float] = {}
    j, p = i + 1, 1.0 / len(DET[agr])
    for k, p_k in enumerate(ADJ_COUNT_PROBS):
        if k > 0:  # one more adjective
            if j >= len(tokens) or tokens[j] not in ADJ:
                break
            j, p = j + 1, p / len(ADJ)
        if j < len(tokens) and tokens[j] in NOUN[agr]:
            p_noun = p * p_k / len(NOUN[agr])
            if depth < MAX_PP_DEPTH:
                out[j + 1] = out.get(j + 1, 0.0) + p_noun * (1.0 - P_NP_PP)
                for e, q in _pp_probs(tokens, j + 1, depth + 1).items():
                    out[e] = out.get(e, 0.0) + p_noun * P_NP_PP * q
            else:
                out[j + 1] = out.get(j + 1, 0.0) + p_noun
    return out


def _pp_probs(tokens: tuple[str, ...], i: int, depth: int) -> dict[int, float]:
    if i >= len(tokens) or tokens[i] not in PREP:
        return {}
    out: dict[int, float] = {}
    for agr in ("sg", "pl"):
        for e, q in _np_probs(tokens, i + 1, agr, depth).items():
            out[e] = out.get(e, 0.0) + q * 0.5 / len(PREP)
    return out


def _vp_probs(tokens: tuple[str, ...], i: int, agr: str) -> dict[int, float]:
    out: dict[int, float] = {}
    if i >= len(tokens):
        return out
    if tokens[i] in VT[agr]:
        for obj_agr in ("sg", "pl"):
            for e, q in _np_probs(tokens, i + 1, obj_agr, 0).items():
                out[e] = out.get(e, 0.0) + P_TRANSITIVE / len(VT[agr]) * 0.5 * q
    elif tokens[i] in VI[agr]:
        p_vi = (1.0 - P_TRANSITIVE) / len(VI[agr])
        out[i + 1] = p_vi * (1.0 - P_VI_PP)
        for e, q in _pp_probs(tokens, i + 1, 1).items():
            out[e] = out.get(e, 0.0) + p_vi * P_VI_PP * q
    return out


def log_prob(tokens: str | list[str] | tuple[str, ...]) -> float:
    """``log P(sentence)`` under the grammar's generative process (``−inf`` outside the language).

    Sums over every derivation (``"the"`` is a determiner of both numbers, so a phrase's number can be
    ambiguous until its noun). The mean of ``−log_prob`` over sampled sentences is the language's entropy per
    sentence: the floor of any model's NLL on this corpus, used as the real-data baseline of the text metrics.
    """
    if isinstance(tokens, str):
        tokens = tokens.split()
    tokens = tuple(tokens)
    n = len(tokens)
    if n < 4 or tokens[-1] != END:
        return float("-inf")
    total = 0.0
    for agr in ("sg", "pl"):
        for e, q in _np_probs(tokens, 0, agr, 0).items():
            total += 0.5 * q * _vp_probs(tokens, e, agr).get(n - 1, 0.0)
    return float(np.log(total)) if total > 0 else float("-inf")


# The shipped corpus ``latentebm_jax/data/text_toy/{split}.txt``: split -> (number of sentences, seed).
TOY_SPLITS: dict[str, tuple[int, int]] = SHIPPED_SPLITS


def write_toy_corpus(directory: str) -> None:
    """Write ``train.txt``, ``valid.txt``, ``test.txt`` (one sentence per line) as in :data:`TOY_SPLITS`.

    Regenerate the shipped files with ``python -m latentebm_jax.data.toy_grammar``.
    """
    write_shipped_corpus(directory, sample_sentences, TOY_SPLITS)


if __name__ == "__main__":
    write_toy_corpus(TOY_DIR)
