"""Text data: whitespace tokenisation, a frequency-cut vocabulary, padded id arrays, and corpus loaders.

Sentences become ``<bos> w_1 … w_n <eos>`` followed by ``<pad>`` (id 0); ``lengths`` counts the tokens
including ``<bos>`` and ``<eos>``. The decoder (``nets/text.py``) models ``x = (w_1, …, w_n, <eos>)`` given
``z`` autoregressively (LEBM Eq. 4), so ``<bos>`` is only ever an input.

Corpora (LEBM Sec. 3.2 uses PTB, Yahoo and SNLI):
- ``text_toy``: the project's grammar corpus (``toy_grammar.py``), in ``latentebm_jax/data/text_toy/``.
- ``text_modes``: the project's corpus of sentences with sentence-level choices, the modes a latent should
  carry (``mode_grammar.py``), in ``latentebm_jax/data/text_modes/``.
- ``ptb`` / ``yahoo``: a local directory with ``{name}.{train,valid,test}.txt``, one sentence per line,
  already tokenised (the layout of the text-VAE repositories); nothing is downloaded.
- ``snli``: premise and hypothesis texts of tfds ``snli`` through ``tfds.data_source`` (lower-cased).
"""

from __future__ import annotations

import collections
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS: tuple[str, ...] = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

TOY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "text_toy")
MODES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "text_modes")
# the corpora the project generates and ships (no data_dir): name -> directory of {split}.txt
SHIPPED_CORPORA = {"text_toy": TOY_DIR, "text_modes": MODES_DIR}
FILE_CORPORA = ("ptb", "yahoo")
TEXT_CORPORA = (*SHIPPED_CORPORA, *FILE_CORPORA, "snli")
SPLITS = ("train", "valid", "test")
# Our split names -> tfds snli split names.
_SNLI_SPLITS = {"train": "train", "valid": "validation", "test": "test"}

# The shipped corpora's splits (``text_toy``, ``text_modes``): split -> (number of sentences, seed).
SHIPPED_SPLITS: dict[str, tuple[int, int]] = {"train": (10_000, 0), "valid": (1_000, 1), "test": (1_000, 2)}


def write_shipped_corpus(
    directory: str,
    sample_sentences: Callable[[int, int], list[str]],
    splits: dict[str, tuple[int, int]] = SHIPPED_SPLITS,
) -> None:
    """Write ``{split}.txt`` (one sentence per line) for each split, its sentences drawn by
    ``sample_sentences(n, seed)`` (a grammar's sampler: ``toy_grammar`` or ``mode_grammar``)."""
    os.makedirs(directory, exist_ok=True)
    for split, (n, seed) in splits.items():
        with open(os.path.join(directory, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.writelines(s + "\n" for s in sample_sentences(n, seed))


_HOW_TO_GET = {
    "ptb": (
        "the Penn Treebank language-modelling files (Mikolov et al.), e.g. 'data/ptb.*.txt' of the "
        "text-VAE repositories, or 'simple-examples/data/ptb.*.txt' of Mikolov's tarball"
    ),
    "yahoo": (
        "the Yahoo Answers corpus of Yang et al. (2017) as distributed with the text-VAE repositories "
        "(e.g. jxhe/vae-lagging-encoder 'prepare_data.py', 'datasets/yahoo_data/yahoo.*.txt')"
    ),
}


class TextCorpusNotFoundError(FileNotFoundError):
    """A local text corpus directory or file is missing."""


def tokenize(sentence: str) -> list[str]:
    """Whitespace tokenisation (the corpora here are already tokenised)."""
    return sentence.split()


class Vocabulary:
    """Word <-> id map with the special tokens ``<pad>=0, <unk>=1, <bos>=2, <eos>=3`` first.

    Build with :meth:`from_sentences`; words seen fewer than ``min_count`` times in the training text map
    to ``<unk>``. Ordinary words follow the specials by decreasing count, ties alphabetical (deterministic).
    """

    def __init__(self, words: Sequence[str]):
        words = tuple(words)
        if words[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {words[: len(SPECIALS)]}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def from_sentences(cls, sentences: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Vocabulary of the words occurring at least ``min_count`` times in ``sentences``."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = collections.Counter(w for s in sentences for w in tokenize(s))
        for special in SPECIALS:
            counts.pop(special, None)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(kept))

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def __hash__(self) -> int:
        return hash(self.words)

    def id(self, word: str) -> int:
        """The id of ``word`` (``<unk>``'s id if it is not in the vocabulary)."""
        return self.index.get(word, UNK_ID)

    def encode(self, sentences: Sequence[str], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (N, T) int32, lengths (N,) int32)`` with rows ``<bos> w… <eos> <pad>…``.

        ``lengths`` includes ``<bos>`` and ``<eos>``. ``T`` is the longest row, or ``max_len`` when given: a
        sentence with more than ``max_len - 2`` words is *truncated* to its first ``max_len - 2`` words and
        still ends in ``<eos>``.
        """
        if max_len is not None and max_len < 2:
            raise ValueError(f"max_len must be >= 2 (room for <bos> and <eos>), got {max_len}")
        rows = []
        for s in sentences:
            words = tokenize(s)
            if max_len is not None:
                words = words[: max_len - 2]
            rows.append([BOS_ID, *(self.id(w) for w in words), EOS_ID])
        lengths = np.array([len(r) for r in rows], dtype=np.int32)
        width = max_len if max_len is not None else int(lengths.max(initial=2))
        ids = np.full((len(rows), width), PAD_ID, dtype=np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        return ids, lengths

    def decode(self, ids: np.ndarray, lengths: np.ndarray | None = None) -> list[str]:
        """Sentences from id rows: drops a leading ``<bos>``, stops at the first ``<eos>`` or ``<pad>`` (or at
        ``lengths``), joins words with spaces."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must be (N, T), got shape {ids.shape}")
        out = []
        for i, row in enumerate(ids.tolist()):
            if lengths is not None:
                row = row[: int(lengths[i])]
            if row and row[0] == BOS_ID:
                row = row[1:]
            words = []
            for t in row:
                if t in (EOS_ID, PAD_ID):
                    break
                words.append(self.words[t])
            out.append(" ".join(words))
        return out

    def save(self, path: str) -> None:
        """Write the vocabulary as JSON ``{"words": [...]}`` (index = id)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"words": list(self.words)}, f, ensure_ascii=False, indent=0)

    @classmethod
    def load(cls, path: str) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f)["words"])


def read_lines(path: str) -> list[str]:
    """Non-empty stripped lines of a UTF-8 text file.

    A line ``label<TAB>sentence`` (the labelled layout of some text-VAE corpus files, e.g. Yahoo with topic
    labels) keeps only the sentence.
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = line.split("\t", 1)[1] if "\t" in line else line
            text = text.strip()
            if text:
                out.append(text)
    return out


def corpus_files(name: str, data_dir: str) -> dict[str, str]:
    """``split -> path`` of a one-sentence-per-line corpus (``ptb``, ``yahoo``) in ``data_dir``."""
    if name not in FILE_CORPORA:
        raise ValueError(f"{name!r} is not a file corpus; file corpora: {FILE_CORPORA}")
    return {split: os.path.join(data_dir, f"{name}.{split}.txt") for split in SPLITS}


def load_text_corpus(name: str, split: str, data_dir: str | None = None) -> list[str]:
    """The sentences of one split (``train``, ``valid``, ``test``) of corpus ``name``.

    ``text_toy`` and ``text_modes`` need no ``data_dir``; ``ptb``/``yahoo`` read
    ``{data_dir}/{name}.{split}.txt``; ``snli`` reads tfds ``snli`` from the tfds ``data_dir`` (default
    ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; available: {SPLITS}")
    if name in SHIPPED_CORPORA:
        return read_lines(os.path.join(SHIPPED_CORPORA[name], f"{split}.txt"))
    if name in FILE_CORPORA:
        return _load_file_corpus(name, split, data_dir)
    if name == "snli":
        return load_snli_sentences(split, data_dir)
    raise ValueError(f"unknown text corpus {name!r}; available: {TEXT_CORPORA}")


def _load_file_corpus(name: str, split: str, data_dir: str | None) -> list[str]:
    expected = ", ".join(f"{name}.{s}.txt" for s in SPLITS)
    if not data_dir or not os.path.isdir(data_dir):
        raise TextCorpusNotFoundError(
            f"text corpus {name!r}: data directory {data_dir!r} does not exist. Expected a directory holding "
            f"{expected} (one tokenised sentence per line): {_HOW_TO_GET[name]}. Pass the directory as "
            f"data_dir (command line: --config.data.data_dir=DIR)."
        )
    path = corpus_files(name, data_dir)[split]
    if not os.path.isfile(path):
        raise TextCorpusNotFoundError(
            f"text corpus {name!r}: file {path} is missing. Expected {expected} in {data_dir} "
            f"(one tokenised sentence per line): {_HOW_TO_GET[name]}."
        )
    return read_lines(path)


def _as_text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_snli_sentences(
    split: str, data_dir: str | None = None, fields: Sequence[str] = ("premise", "hypothesis"), unique=True
) -> list[str]:
    """Lower-cased, whitespace-normalised SNLI ``fields`` texts of one split, in record order.

    Each premise appears in SNLI once per hypothesis (usually three times); ``unique=True`` keeps the first
    occurrence of each sentence only. A missing dataset raises ``DatasetNotFoundError`` saying how to
    prepare it.
    """
    if split not in _SNLI_SPLITS:
        raise ValueError(f"unknown split {split!r}; available: {SPLITS}")
    bad = [f for f in fields if f not in ("premise", "hypothesis")]
    if bad or not fields:
        raise ValueError(f"fields must be a non-empty subset of ('premise', 'hypothesis'), got {fields}")
    source = _open_snli(_SNLI_SPLITS[split], data_dir)
    out: list[str] = []
    seen: set[str] = set()
    for i in range(len(source)):
        record = source[i]
        for field in fields:
            text = " ".join(_as_text(record[field]).lower().split())
            if not text or (unique and text in seen):
                continue
            seen.add(text)
            out.append(text)
    return out


def _open_snli(split: str, data_dir: str | None):
    """``tfds.data_source("snli", split)`` from a local ``data_dir``, or an error saying how to prepare it.

    (Not in ``tfds_sources.TFDS_DATASETS``, which lists the *image* datasets a config may name.)
    """
    from latentebm_jax.data.tfds_sources import open_data_source

    return open_data_source("snli", split, data_dir)


class TextSource:
    """An in-memory source of encoded sentences for the host-side pipeline (``data/pipeline.py``).

    ``get(indices)`` returns ``{"ids": (n, T) int32, "lengths": (n,) int32}`` (the layout of
    :meth:`Vocabulary.encode`); ``labels()`` is all −1 (the text corpora here are unlabelled).
    """

    def __init__(self, ids: np.ndarray, lengths: np.ndarray, sentences: Sequence[str] = ()):
        ids, lengths = np.asarray(ids, np.int32), np.asarray(lengths, np.int32)
        if ids.ndim != 2 or lengths.shape != (ids.shape[0],):
            raise ValueError(f"ids must be (N, T) and lengths (N,), got {ids.shape} and {lengths.shape}")
        if len(ids) and (lengths.min() < 2 or lengths.max() > ids.shape[1]):
            raise ValueError(f"lengths must lie in [2, {ids.shape[1]}] (<bos> and <eos> included)")
        self.ids, self.lengths = ids, lengths
        self.sentences = list(sentences)
        self.max_len = ids.shape[1]

    @classmethod
    def from_sentences(cls, sentences: Sequence[str], vocab: Vocabulary, max_len: int) -> TextSource:
        """Encode ``sentences`` with ``vocab`` into rows of width ``max_len`` (longer ones truncated, with a
        warning giving how many)."""
        too_long = sum(len(tokenize(s)) > max_len - 2 for s in sentences)
        if too_long:
            logging.getLogger("latentebm_jax.data").warning(
                "%d of %d sentences have more than %d words and are truncated (raise data.max_len)",
                too_long,
                len(sentences),
                max_len - 2,
            )
        ids, lengths = vocab.encode(sentences, max_len)
        return cls(ids, lengths, sentences)

    def __len__(self) -> int:
        return len(self.ids)

    def labels(self) -> np.ndarray:
        return np.full((len(self),), -1, np.int64)

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        return {"ids": self.ids[indices], "lengths": self.lengths[indices]}

    def num_tokens(self) -> int:
        """Predicted tokens (words and ``<eos>``, not ``<bos>``): the perplexity denominator."""
        return int(np.sum(self.lengths - 1))


def load_text_sources(
    name: str,
    data_dir: str | None,
    max_len: int,
    min_count: int = 1,
    splits: Sequence[str] = ("train", "test"),
) -> tuple[Vocabulary, dict[str, TextSource]]:
    """The vocabulary built on the ``train`` split (cut at ``min_count``) and the encoded ``splits``."""
    train = load_text_corpus(name, "train", data_dir)
    vocab = Vocabulary.from_sentences(train, min_count)
    sources = {}
    for split in splits:
        sentences = train if split == "train" else load_text_corpus(name, split, data_dir)
        sources[split] = TextSource.from_sentences(sentences, vocab, max_len)
    return vocab, sources
