"""Datasets: the embedded digits, tfds data sources, preprocessing and host-side batching; text corpora."""

from __future__ import annotations

import dataclasses

import numpy as np

from latentebm_jax.config_schema import ConfigError
from latentebm_jax.data.digits import load_digits
from latentebm_jax.data.pipeline import EpochBatcher, iterate_once
from latentebm_jax.data.sources import ArraySource, ImageSource, SubsetSource, only_classes, without_class
from latentebm_jax.data.text import (
    TEXT_CORPORA,
    TextCorpusNotFoundError,
    TextSource,
    Vocabulary,
    load_text_corpus,
    load_text_sources,
)
from latentebm_jax.data.tfds_sources import (
    CELEBA_ATTRIBUTES,
    TFDS_DATASETS,
    DatasetNotFoundError,
    DatasetReadError,
    TfdsSource,
    open_data_source,
    prepared_info,
)

EMBEDDED_DATASETS = ("digits",)
DATASETS = EMBEDDED_DATASETS + tuple(TFDS_DATASETS)


@dataclasses.dataclass
class DataSplits:
    """The sources a run uses.

    ``train`` excludes a held-out class when the anomaly protocol asks for one; ``test`` always holds every
    class, so anomaly detection scores it with ``label == holdout_class`` as the positive (anomalous) set.
    """

    train: ImageSource
    test: ImageSource
    holdout_class: int = -1
    vocab: Vocabulary | None = None  # text corpora: the vocabulary built on the training split


def load_source(data_config, split: str) -> ImageSource:
    """One split of the dataset a ``config.data`` names, preprocessed to its image size and channels."""
    d = data_config
    if d.name == "digits":
        return load_digits(split, d.image_size, d.channels)
    if d.name in TFDS_DATASETS or prepared_info(d.name, d.data_dir or None) is not None:
        return TfdsSource(
            d.name,
            split,
            d.data_dir or None,
            d.image_size,
            d.channels,
            crop_name=d.crop,
            resize_method=d.resize_method,
            attributes=tuple(d.get("attributes", ())),
        )
    raise ValueError(f"unknown dataset {d.name!r}; available: {DATASETS} or one prepared in data.data_dir")


def load_splits(data_config) -> DataSplits:
    """Train and test sources for a ``config.data`` (train without ``holdout_class`` if one is set; both
    restricted to ``data.classes`` if that is non-empty).

    For a text corpus (``data.name`` in :data:`TEXT_CORPORA`) the sources are :class:`TextSource` rows of
    width ``data.max_len``, with the vocabulary of the training split cut at ``data.min_count``.
    """
    if data_config.name in TEXT_CORPORA:
        d = data_config
        vocab, sources = load_text_sources(
            d.name, d.data_dir or None, d.max_len, d.min_count, (d.train_split, d.test_split)
        )
        return DataSplits(train=sources[d.train_split], test=sources[d.test_split], vocab=vocab)
    train = load_source(data_config, data_config.train_split)
    test = load_source(data_config, data_config.test_split)
    classes = tuple(data_config.get("classes", ()))
    holdout = int(data_config.holdout_class)
    if classes or holdout >= 0:
        present = sorted(int(c) for c in np.unique(test.labels()) if c >= 0)
        missing = [c for c in (*classes, *([holdout] if holdout >= 0 else [])) if c not in present]
        if missing:
            key = "data.holdout_class" if missing == [holdout] and holdout not in classes else "data.classes"
            raise ConfigError(
                f"config key '{key}' names {missing}, which are not classes of {data_config.name!r} "
                f"(classes: {present})"
            )
    if classes:
        train, test = only_classes(train, classes), only_classes(test, classes)
    if holdout >= 0:
        train = without_class(train, holdout)
    return DataSplits(train=train, test=test, holdout_class=holdout)


__all__ = [
    "CELEBA_ATTRIBUTES",
    "DATASETS",
    "TEXT_CORPORA",
    "TFDS_DATASETS",
    "ArraySource",
    "DataSplits",
    "DatasetNotFoundError",
    "DatasetReadError",
    "EpochBatcher",
    "ImageSource",
    "SubsetSource",
    "TextCorpusNotFoundError",
    "TextSource",
    "TfdsSource",
    "Vocabulary",
    "iterate_once",
    "load_digits",
    "load_source",
    "load_splits",
    "load_text_corpus",
    "load_text_sources",
    "only_classes",
    "open_data_source",
    "without_class",
]
