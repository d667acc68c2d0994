"""Real datasets through ``tfds.data_source`` (random access, no TensorFlow needed to read).

Data must already be prepared in a local tfds ``data_dir`` in the ``array_record`` file format
(``python -m experiments.prepare_data``, :mod:`latentebm_jax.data.prepare`); nothing is downloaded at run
time. Besides :data:`TFDS_DATASETS`, any dataset prepared there is read by its name (your own folder of
images or arrays, ``celeb_a_hq/256``). When a dataset is missing, :class:`DatasetNotFoundError` says which
one and gives the command that prepares it.
"""

from __future__ import annotations

import json
import logging
import os
import threading

import numpy as np

from latentebm_jax.config_schema import ConfigError
from latentebm_jax.data.preprocess import CROPS, crop, match_channels, resize, to_model_range

# name -> (splits, label feature or None)
TFDS_DATASETS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "svhn_cropped": (("train", "test", "extra"), "label"),
    "cifar10": (("train", "test"), "label"),
    "celeb_a": (("train", "validation", "test"), None),
    "mnist": (("train", "test"), "label"),
    "fashion_mnist": (("train", "test"), "label"),
}

# Every tfds dataset whose builder this library runs (python -m experiments.prepare_data): the image
# datasets above, CelebA-HQ at a resolution (``celeb_a_hq/256``; read by name) and the SNLI text corpus.
TFDS_BUILDERS: tuple[str, ...] = (*TFDS_DATASETS, "celeb_a_hq", "snli")

# The 40 binary attributes of tfds ``celeb_a`` (``record["attributes"][name]``), for attribute coupling.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip


class DatasetReadError(RuntimeError):
    """A prepared dataset's files cannot be read (e.g. a corrupted array_record shard)."""


class DatasetNotFoundError(FileNotFoundError):
    """A tfds dataset is not prepared (for random access) in the configured ``data_dir``."""


def default_data_dir() -> str:
    """``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` (tfds' own default)."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def prepare_command(name: str, data_dir: str) -> str:
    """The shell command that prepares tfds dataset ``name`` into ``data_dir`` for this library."""
    return (
        f"pip install -e '.[tf]' && python -m experiments.prepare_data {name} --data_dir={data_dir} "
        f"--manual_dir=FOLDER_WITH_ITS_DOWNLOADED_FILES  (--list names the files)"
    )


def prepared_info(name: str, data_dir: str | None = None) -> dict | None:
    """The ``dataset_info.json`` of the newest prepared version of ``name`` in ``data_dir`` (read without
    tfds, so configs can be checked before anything loads), with ``"label_key"`` added (``"label"`` if the
    features have one, else ``None``) and ``"file_format"``; ``None`` if nothing is prepared there."""
    root = os.path.join(data_dir or default_data_dir(), name)
    if not os.path.isdir(root):
        return None
    versions = []
    for v in os.listdir(root):
        parts = v.split(".")
        complete = os.path.isfile(os.path.join(root, v, "dataset_info.json"))
        if len(parts) == 3 and all(p.isdigit() for p in parts) and complete:
            versions.append((tuple(int(p) for p in parts), v))
    if not versions:
        return None
    folder = os.path.join(root, max(versions)[1])
    try:
        with open(os.path.join(folder, "dataset_info.json")) as f:
            info = json.load(f)
        with open(os.path.join(folder, "features.json")) as f:
            features = f.read()
    except (OSError, ValueError):
        return None
    info["label_key"] = "label" if '"label"' in features else None
    info["folder"] = folder
    return info


def prepared_splits(info: dict) -> tuple[str, ...]:
    """Split names of a :func:`prepared_info`."""
    return tuple(s["name"] for s in info.get("splits", ()))


def open_data_source(name: str, split: str, data_dir: str | None = None, decoders=None):
    """``tfds.data_source(name, split)`` from a local ``data_dir``, or an error saying how to prepare it.

    ``name`` is one of :data:`TFDS_DATASETS` or any dataset prepared in ``data_dir`` (your own, by
    ``python -m experiments.prepare_data images|arrays``; ``celeb_a_hq/256``).
    """
    import tensorflow_datasets as tfds

    data_dir = data_dir or default_data_dir()
    base = split.split("[")[0]
    info = prepared_info(name, data_dir)
    known = TFDS_DATASETS[name][0] if name in TFDS_DATASETS else (prepared_splits(info) if info else ())
    if known and base not in known:
        raise ValueError(f"dataset {name!r} has no split {split!r}; available: {known}")
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    if info is None:  # tfds would warn about version folders that do not exist
        absl_logger.setLevel(logging.ERROR)
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False, decoders=decoders)
    except Exception as err:  # tfds raises several types here; all mean "not readable as prepared"
        raise DatasetNotFoundError(_not_readable(name, split, data_dir, info, err)) from err
    finally:
        absl_logger.setLevel(level)


def _not_readable(name: str, split: str, data_dir: str, info: dict | None, err: Exception) -> str:
    folder = os.path.join(data_dir, name)
    fix = f"Prepare it offline with:\n  {prepare_command(name, data_dir)}"
    if name.split("/")[0] not in TFDS_BUILDERS:
        fix = (
            "Prepare your own data with: python -m experiments.prepare_data images|arrays --source=... "
            f"--name={name} --data_dir={data_dir}"
        )
    if not os.path.isdir(folder):
        return f"dataset {name!r} is not prepared in data_dir {data_dir} (no folder {folder}). {fix}"
    if info is None:
        return (
            f"{folder} holds no complete prepared version of {name!r} (an interrupted preparation?). {fix} "
            f"--overwrite"
        )
    file_format = info.get("fileFormat", "tfrecord")
    if file_format != "array_record":
        return (
            f"dataset {name!r} in {info['folder']} is in the {file_format} format, which has no random "
            f"access. {fix} --overwrite (it writes array_record)"
        )
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return (
        f"dataset {name!r} split {split!r} cannot be read from {info['folder']} "
        f"({type(err).__name__}: {first})"
    )


class TfdsSource:
    """Images of one tfds split, cropped, resized and scaled to ``[−1, 1]`` on the host; with
    ``attributes`` (``celeb_a`` only), batches also carry ``attributes`` ``(B, len(attributes))``, 0 or 1."""

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | None,
        image_size: int,
        channels: int,
        crop_name: str = "none",
        resize_method: str = "bilinear",
        attributes: tuple[str, ...] = (),
    ):
        unknown = [a for a in attributes if a not in CELEBA_ATTRIBUTES]
        if attributes and name != "celeb_a":
            raise ValueError(f"attributes {tuple(attributes)} are only available for celeb_a, not {name!r}")
        if unknown:
            raise ValueError(f"unknown celeb_a attributes {unknown}; available: {list(CELEBA_ATTRIBUTES)}")
        self.attributes = tuple(attributes)
        self.name, self.split = name, split
        self._data_dir = data_dir
        self._ds = open_data_source(name, split, data_dir)
        if name in TFDS_DATASETS:
            self._label_key = TFDS_DATASETS[name][1]
        else:
            info = prepared_info(name, data_dir)
            self._label_key = info["label_key"] if info else None
        self.image_size = image_size
        self.channels = channels
        self.crop_name = crop_name
        self.resize_method = resize_method
        self.image_shape = (image_size, image_size, channels)
        self._check_crop()
        self._labels: np.ndarray | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ds)

    def _check_crop(self) -> None:
        """The crop box fits the stored images (when their size is fixed), before anything loads."""
        box = CROPS.get(self.crop_name)
        try:
            stored = tuple(self._ds.dataset_info.features["image"].shape)
        except (AttributeError, KeyError, TypeError):
            return
        if box is None or len(stored) < 2 or None in stored[:2]:
            return
        top, left, h, w = box
        if stored[0] < top + h or stored[1] < left + w:
            raise ConfigError(
                f"config key 'data.crop' = {self.crop_name!r} needs images of at least {top + h}×{left + w}; "
                f"{self.name!r} has {stored[0]}×{stored[1]}: use --config.data.crop=none"
            )

    def _record(self, i: int) -> dict:
        try:
            return self._ds[int(i)]
        except Exception as err:
            raise DatasetReadError(
                f"cannot read example {int(i)} of {self.name}:{self.split} ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200] if str(err) else ''}); its prepared files may be "
                f"corrupted: prepare the dataset again (see the README's 'Preparing real datasets')"
            ) from err

    def _image(self, record: dict) -> np.ndarray:
        image = np.asarray(record["image"])
        if image.ndim == 2:
            image = image[..., None]
        image = crop(image, self.crop_name)
        image = resize(image, self.image_size, self.resize_method)
        return match_channels(image, self.channels)

    def labels(self) -> np.ndarray:
        """Every label, read without decoding a single image (the image bytes are skipped)."""
        with self._lock:
            if self._labels is None:
                if self._label_key is None:
                    self._labels = np.full((len(self),), -1, np.int64)
                else:
                    self._labels = self._read_labels()
            return self._labels

    def _read_labels(self, chunk: int = 8192) -> np.ndarray:
        import tensorflow_datasets as tfds

        skip = {"image": tfds.decode.SkipDecoding()}
        source = open_data_source(self.name, self.split, self._data_dir, decoders=skip)
        out = np.empty((len(source),), np.int64)
        for start in range(0, len(source), chunk):
            idx = list(range(start, min(start + chunk, len(source))))
            try:
                records = source.__getitems__(idx)
            except (TypeError, ImportError):
                # tfds.testing.mock_data's sources read one record at a time and need TensorFlow to skip
                # decoding: read them whole
                records = [self._record(i) for i in idx]
            except Exception as err:
                raise DatasetReadError(
                    f"cannot read the labels of {self.name}:{self.split} examples {idx[0]}…{idx[-1]} "
                    f"({type(err).__name__}); its prepared files may be corrupted: prepare the dataset again "
                    f"(see the README's 'Preparing real datasets')"
                ) from err
            out[start : start + len(idx)] = [int(r[self._label_key]) for r in records]
        return out

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        records = [self._record(i) for i in np.asarray(indices)]
        images = np.stack([self._image(r) for r in records])
        if self._label_key is None:
            labels = np.full((len(records),), -1, np.int32)
        else:
            labels = np.asarray([int(r[self._label_key]) for r in records], np.int32)
        batch = {"image": to_model_range(images), "label": labels}
        if self.attributes:
            batch["attributes"] = np.asarray(
                [[int(bool(r["attributes"][a])) for a in self.attributes] for r in records], np.int32
            ).reshape(len(records), len(self.attributes))
        return batch
