"""Prepare a dataset offline into a tfds data_dir (array_record), where the runs read it by random access.

    pip install -e '.[tf]'
    python -m experiments.prepare_data --list
    python -m experiments.prepare_data mnist --data_dir=/data/tfds --manual_dir=~/Downloads/mnist
    python -m experiments.prepare_data cifar10 --data_dir=/data/tfds            # downloads (needs network)
    python -m experiments.prepare_data images --source=~/faces --name=faces --data_dir=/data/tfds \
        --image_size=64
    python -m experiments.prepare_data arrays --source=faces.npz --name=faces --data_dir=/data/tfds

``--manual_dir`` holds the files as downloaded from the dataset's site (``--list`` names them and where to get
them); tfds checks them against its registered SHA-256 and nothing is fetched. A prepared dataset is used
with ``--config.data.data_dir=DIR`` (and, for your own data, ``--config.data.name=NAME``).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter

from absl import app, flags

_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data_dir to write (default $TFDS_DATA_DIR, else ~/tensorflow_datasets)."
)
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder with the dataset's downloaded files.")
_DOWNLOAD_DIR = flags.DEFINE_string("download_dir", None, "tfds download cache (default DATA_DIR/downloads).")
_SOURCE = flags.DEFINE_string("source", None, "images: a folder; arrays: an .npz file.")
_NAME = flags.DEFINE_string("name", None, "images/arrays: the dataset's name (then --config.data.name=NAME).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "images: centre-crop and resize to this side.")
_CHANNELS = flags.DEFINE_integer(
    "channels", None, "images: 1 (grey) or 3 (RGB); default from the first image."
)
_TEST_FRACTION = flags.DEFINE_float(
    "test_fraction", 0.1, "images/arrays without a test split: the share of examples held out as 'test'."
)
_SEED = flags.DEFINE_integer("seed", 0, "images/arrays: seed of the train/test division.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Prepare again over an existing dataset.")
_LIST = flags.DEFINE_bool("list", False, "List the datasets and the files each one needs, then exit.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show the Python traceback of an error instead of one line.")

USAGE = (
    "usage: python -m experiments.prepare_data DATASET --data_dir=DIR [...]  (--list shows DATASET values)"
)


def _list() -> None:
    from latentebm_jax.data import prepare

    prepare.require_tensorflow()
    for name in prepare.TFDS_PREPARABLE:
        shown = "celeb_a_hq/256" if name == "celeb_a_hq" else name
        print(f"{name}{' (celeb_a_hq/R, R = resolution)' if name == 'celeb_a_hq' else ''}:")
        for filename, url in prepare.raw_files(shown).items():
            print(f"  {filename:34s} {url}")
    print("images: --source=FOLDER --name=NAME  (FOLDER/[train|test/][class/]*.png|jpg|...)")
    print("arrays: --source=FILE.npz --name=NAME  (x_train, x_test[, y_train, y_test] or images[, labels])")


def main(argv: list[str]) -> int:
    from absl import logging as absl_logging

    from latentebm_jax.data import prepare
    from latentebm_jax.data.tfds_sources import default_data_dir

    absl_logging.set_verbosity(absl_logging.ERROR)  # tfds' notes; its progress bars stay

    try:
        if _LIST.value:
            _list()
            return 0
        if len(argv) != 2:
            print(USAGE, file=sys.stderr)
            return 2
        dataset = argv[1]
        data_dir = _DATA_DIR.value or default_data_dir()
        if "://" not in data_dir:
            data_dir = os.path.abspath(os.path.expanduser(data_dir))
        if dataset in ("images", "arrays"):
            if not _SOURCE.value or not _NAME.value:
                print(f"error: {dataset} needs --source and --name", file=sys.stderr)
                return 2
            common = dict(test_fraction=_TEST_FRACTION.value, seed=_SEED.value, overwrite=_OVERWRITE.value)
            if dataset == "images":
                done = prepare.prepare_image_folder(
                    _SOURCE.value, _NAME.value, data_dir, _IMAGE_SIZE.value, _CHANNELS.value, **common
                )
            else:
                done = prepare.prepare_arrays(_SOURCE.value, _NAME.value, data_dir, **common)
        else:
            done = prepare.prepare_tfds(
                dataset, data_dir, _MANUAL_DIR.value, _DOWNLOAD_DIR.value, overwrite=_OVERWRITE.value
            )
    except prepare.PrepareError as err:
        if _DEBUG.value:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(done.describe())
    if done.already:
        print("(nothing written; --overwrite prepares it again)")
    name_flag = f" --config.data.name={done.name}" if dataset in ("images", "arrays") else ""
    print(f"use it with: --config.data.data_dir={data_dir}{name_flag}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
