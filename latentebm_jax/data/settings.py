"""The ``data`` config group: its keys by kind of dataset (images or text corpora), defaults and checks.

Image datasets (the embedded digits and the tfds datasets) read the image keys, text corpora the text
keys; a key the dataset's loader does not read is not in its group (``configs/default.py`` builds the
group with :func:`data_group`).
"""

from __future__ import annotations

import ml_collections

from latentebm_jax.config_schema import ConfigError, Setting, check_group, group_of, positive_int
from latentebm_jax.data.preprocess import CROPS
from latentebm_jax.data.text import SPLITS as TEXT_SPLITS
from latentebm_jax.data.text import TEXT_CORPORA
from latentebm_jax.data.tfds_sources import (
    CELEBA_ATTRIBUTES,
    TFDS_DATASETS,
    default_data_dir,
    prepared_info,
    prepared_splits,
)

IMAGE_DATASETS = ("digits", *TFDS_DATASETS)

_COMMON = {
    "data_dir": Setting("", 'tfds data_dir or corpus folder; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets'),
    "train_split": Setting("train", "split trained on"),
    "test_split": Setting("test", "split evaluated on"),
}
IMAGE_SETTINGS = {
    "name": Setting(
        "svhn_cropped", f"dataset: {', '.join(IMAGE_DATASETS)}, or one prepared in data_dir (your own)"
    ),
    **_COMMON,
    "image_size": Setting(32, "side of the square images", choices=(8, 16, 32, 64, 128)),
    "channels": Setting(3, "1 (grey) or 3 (RGB)", choices=(1, 3)),
    "crop": Setting("none", "crop box before resizing", choices=tuple(CROPS)),
    "resize_method": Setting(
        "bilinear", "resizing: bilinear, or pad (MNIST's 28 to 32)", choices=("bilinear", "pad")
    ),
    "holdout_class": Setting(
        -1,
        ">= 0: this class is left out of training (anomaly protocol)",
        check=lambda x: x >= -1,
        what="-1 (none) or a class index",
    ),
    "classes": Setting(
        (),
        "non-empty: keep only these classes in both splits",
        check=lambda x: all(isinstance(k, int) and k >= 0 for k in x),
        what="a tuple of class indices",
    ),
    "attributes": Setting((), "celeb_a attribute names read into batch['attributes']"),
}
TEXT_SETTINGS = {
    "name": Setting("ptb", "text corpus", choices=TEXT_CORPORA),
    **_COMMON,
    "max_len": Setting(
        40,
        "tokens per row, <bos> and <eos> included (longer sentences are truncated)",
        check=lambda x: x >= 3,
        what="an integer >= 3 (<bos>, a word, <eos>)",
    ),
    "min_count": Setting(
        1,
        "words seen fewer times in the training split map to <unk>",
        check=positive_int,
    ),
}


def is_text(name: str) -> bool:
    """Whether ``name`` is a text corpus (else an image dataset)."""
    return name in TEXT_CORPORA


def data_group(name: str, **values) -> ml_collections.ConfigDict:
    """The ``data`` group for dataset ``name`` with the keys its kind reads, at their defaults, then
    ``values``."""
    group = group_of(TEXT_SETTINGS if is_text(name) else IMAGE_SETTINGS)
    group.name = name
    for key, value in values.items():
        if key not in group:
            raise KeyError(f"data key {key!r} is not read for {name!r}; keys: {sorted(group)}")
        group[key] = value
    return group


def check_dataset_name(name: str, data_dir: str) -> None:
    """``name`` is a built-in image dataset, a text corpus, or a dataset prepared in ``data_dir`` (your own
    data, ``celeb_a_hq/256``); checked on the filesystem before anything loads."""
    if name in IMAGE_DATASETS or name in TEXT_CORPORA:
        return
    directory = data_dir or default_data_dir()
    if not isinstance(name, str) or not name or prepared_info(name, directory) is None:
        raise ConfigError(
            f"config key 'data.name' has value {name!r}, which is no built-in dataset "
            f"({', '.join(IMAGE_DATASETS)}; text: {', '.join(TEXT_CORPORA)}) and not prepared in data_dir "
            f"{directory}; prepare your own with python -m experiments.prepare_data images|arrays "
            f"--name={name} --data_dir={directory}"
        )


def validate_data(data: ml_collections.ConfigDict) -> None:
    """Values of the ``data`` group (keys and types are checked against :func:`data_group`)."""
    check_dataset_name(data.name, data.data_dir)
    check_group(data, TEXT_SETTINGS if is_text(data.name) else IMAGE_SETTINGS, "data")
    if is_text(data.name):
        for key in ("train_split", "test_split"):
            if data[key] not in TEXT_SPLITS:
                raise ConfigError(
                    f"config key 'data.{key}' has value {data[key]!r}; text splits: {list(TEXT_SPLITS)}"
                )
        return
    if data.name not in IMAGE_DATASETS:  # prepared in data_dir: its splits are on disk
        info = prepared_info(data.name, data.data_dir or default_data_dir())
        splits = prepared_splits(info)
        for key in ("train_split", "test_split"):
            if data[key].split("[")[0] not in splits:
                raise ConfigError(
                    f"config key 'data.{key}' has value {data[key]!r}; {data.name!r} has splits "
                    f"{list(splits)} (a slice like 'train[:90%]' works too)"
                )
    if data.classes and data.holdout_class >= 0 and data.holdout_class not in data.classes:
        raise ConfigError(
            f"config key 'data.holdout_class' = {data.holdout_class} is not among "
            f"'data.classes' = {tuple(data.classes)}"
        )
    attrs = tuple(data.attributes)
    if attrs:
        unknown = [a for a in attrs if a not in CELEBA_ATTRIBUTES]
        if data.name != "celeb_a" or unknown:
            raise ConfigError(
                f"config key 'data.attributes' = {attrs}: attributes exist for celeb_a only, named from "
                f"{list(CELEBA_ATTRIBUTES)}" + (f"; unknown: {unknown}" if unknown else "")
            )
