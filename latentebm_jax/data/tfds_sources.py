"""Real datasets through ``tfds.data_source`` (random access, no TensorFlow needed to read).

Data must already be prepared in a local tfds ``data_dir`` in the ``array_record`` file format; nothing is
downloaded at run time. When a dataset is missing, :class:`DatasetNotFoundError` says which one and gives the
command that prepares it.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from latentebm_jax.data.preprocess import crop, match_channels, resize, to_model_range

# name -> (splits, label feature or None)
TFDS_DATASETS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "svhn_cropped": (("train", "test", "extra"), "label"),
    "cifar10": (("train", "test"), "label"),
    "celeb_a": (("train", "validation", "test"), None),
    "mnist": (("train", "test"), "label"),
    "fashion_mnist": (("train", "test"), "label"),
}

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
    """The shell command that prepares ``name`` into ``data_dir`` for this library."""
    cmd = f"pip install -e '.[tf]' && tfds build {name} --data_dir={data_dir} --file_format=array_record"
    if name == "celeb_a":
        cmd += "  (CelebA's Google-Drive files may need --manual_dir=DIR with the files downloaded by hand)"
    return cmd


def open_data_source(name: str, split: str, data_dir: str | None = None):
    """``tfds.data_source(name, split)`` from a local ``data_dir``, or an error saying how to prepare it."""
    import tensorflow_datasets as tfds

    if name not in TFDS_DATASETS:
        raise ValueError(f"unknown tfds dataset {name!r}; supported: {sorted(TFDS_DATASETS)}")
    splits = TFDS_DATASETS[name][0]
    base = split.split("[")[0]
    if base not in splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; available: {splits}")
    data_dir = data_dir or default_data_dir()
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:  # tfds raises several types here; all mean "not readable as prepared"
        found = os.path.isdir(os.path.join(data_dir, name))
        why = (
            f"dataset {name!r} is in {data_dir} but cannot be read by random access "
            f"(prepared in another file format?)"
            if found
            else f"dataset {name!r} split {split!r} is not prepared in data_dir {data_dir}"
        )
        raise DatasetNotFoundError(
            f"{why}. Prepare it offline with:\n  {prepare_command(name, data_dir)}\n"
            f"(on a machine with network access, then copy {data_dir}/{name} here), and pass "
            f"--config.data.data_dir={data_dir}. Underlying error: {type(err).__name__}: {err}"
        ) from err


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
        self._ds = open_data_source(name, split, data_dir)
        self._label_key = TFDS_DATASETS[name][1]
        self.image_size = image_size
        self.channels = channels
        self.crop_name = crop_name
        self.resize_method = resize_method
        self.image_shape = (image_size, image_size, channels)
        self._labels: np.ndarray | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ds)

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
        with self._lock:
            if self._labels is None:
                if self._label_key is None:
                    self._labels = np.full((len(self),), -1, np.int64)
                else:
                    self._labels = np.asarray(
                        [int(self._record(i)[self._label_key]) for i in range(len(self))], np.int64
                    )
            return self._labels

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
