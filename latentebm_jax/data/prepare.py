"""Offline preparation: datasets written once into a local tfds ``data_dir`` in the ``array_record`` format,
which :mod:`latentebm_jax.data.tfds_sources` then reads by random access without TensorFlow.

Three routes (``python -m experiments.prepare_data`` is the command line):

* :func:`prepare_tfds` — a tfds dataset (``mnist``, ``fashion_mnist``, ``svhn_cropped``, ``cifar10``,
  ``celeb_a``, ``celeb_a_hq/<resolution>``, ``snli``) by tfds' own builder. With ``manual_dir`` the builder
  reads the files the user already downloaded (named as on the dataset's site, :func:`raw_files`; tfds
  checks their SHA-256 against its registry), so nothing is fetched; without it tfds downloads them.
* :func:`prepare_image_folder` — a folder of images, optionally in class subfolders and in ``train`` /
  ``test`` split folders, becomes the tfds dataset ``name`` (``image`` and, with classes, ``label``).
* :func:`prepare_arrays` — an ``.npz`` of image arrays (and optional labels) likewise.

Every route needs TensorFlow (the tfds writers serialise ``tf.train.Example``): ``pip install -e '.[tf]'``.
A prepared custom dataset is trained on by name: ``--config.data.name=NAME --config.data.data_dir=DIR``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from latentebm_jax.data.tfds_sources import TFDS_BUILDERS

TFDS_PREPARABLE: tuple[str, ...] = TFDS_BUILDERS
CELEBA_HQ_RESOLUTIONS = (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS = ("train", "validation", "test")
VERSION = "1.0.0"  # of datasets made from a folder or arrays
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PrepareError(RuntimeError):
    """Preparing a dataset cannot go ahead as asked (the message names the file or option and the fix)."""


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What was written: the dataset's tfds name, its directory, examples per split, class names."""

    name: str
    directory: str
    splits: dict[str, int]
    label_names: tuple[str, ...] = ()
    already: bool = False  # found prepared, nothing written

    def describe(self) -> str:
        counts = ", ".join(f"{split} {n}" for split, n in self.splits.items())
        classes = f"; {len(self.label_names)} classes" if self.label_names else "; no labels"
        verb = "already prepared in" if self.already else "prepared in"
        return f"{self.name} {verb} {self.directory} ({counts}{classes})"


def require_tensorflow() -> None:
    """TensorFlow and the modules tfds' builders import without declaring them, or a one-line fix."""
    missing = []
    for module in ("tensorflow", "importlib_resources"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise PrepareError(
            f"preparing datasets needs {', '.join(missing)} (not installed): pip install -e '.[tf]'"
        )


# ----------------------------------------------------------------------------- tfds datasets


def _tfds_name(name: str) -> str:
    base, _, config = name.partition("/")
    if base not in TFDS_PREPARABLE:
        raise PrepareError(
            f"unknown dataset {name!r}; tfds datasets: {', '.join(TFDS_PREPARABLE)}; your own data: 'images' "
            f"(a folder) or 'arrays' (an .npz)"
        )
    if base == "celeb_a_hq":
        if not config or not config.isdigit() or int(config) not in CELEBA_HQ_RESOLUTIONS:
            raise PrepareError(
                f"celeb_a_hq needs a resolution: celeb_a_hq/R with R in {CELEBA_HQ_RESOLUTIONS}, "
                f"e.g. celeb_a_hq/256"
            )
    elif config:
        raise PrepareError(f"dataset {base!r} has no configurations; use {base!r}")
    return name


def raw_files(name: str) -> dict[str, str]:
    """``{file name: where to download it}`` — what :func:`prepare_tfds` reads from ``manual_dir``."""
    import tensorflow_datasets as tfds

    name = _tfds_name(name)
    if name.startswith("celeb_a_hq/"):
        r = int(name.split("/")[1])
        return {
            f"data{r}x{r}.tar": "a tar of the PNG images made by the progressive-GAN script "
            "(github.com/tkarras/progressive_growing_of_gans, 'Preparing datasets for training')"
        }
    infos = tfds.builder(name).url_infos or {}
    return {info.filename: url for url, info in sorted(infos.items(), key=lambda kv: kv[1].filename)}


def _missing_raw_files(name: str, manual_dir: str) -> list[str]:
    return [f for f in raw_files(name) if not os.path.isfile(os.path.join(manual_dir, f))]


def prepare_tfds(
    name: str,
    data_dir: str,
    manual_dir: str | None = None,
    download_dir: str | None = None,
    overwrite: bool = False,
) -> Prepared:
    """Run tfds' builder for ``name`` into ``data_dir`` (array_record).

    Args:
      name: a tfds dataset of :data:`TFDS_PREPARABLE` (``celeb_a_hq/256`` style for CelebA-HQ).
      data_dir: the tfds data_dir to write (``data.data_dir`` of the runs).
      manual_dir: a folder holding the downloaded files (:func:`raw_files`); nothing is fetched then.
      download_dir: where tfds keeps downloads and extractions (default ``<data_dir>/downloads``).
      overwrite: prepare again even if ``data_dir`` already holds the dataset.

    Raises:
      PrepareError naming a missing or wrong file and where to get it.
    """
    require_tensorflow()
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import download_manager

    name = _tfds_name(name)
    data_dir = _writable_dir(data_dir, "--data_dir")
    if manual_dir is not None:
        manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
        if not os.path.isdir(manual_dir):
            raise PrepareError(f"--manual_dir {manual_dir} is not a folder")
        missing = _missing_raw_files(name, manual_dir)
        if missing:
            wanted = raw_files(name)
            listing = "; ".join(f"{f} ({wanted[f]})" for f in missing)
            raise PrepareError(f"{name}: --manual_dir {manual_dir} lacks {listing}")
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared() and manual_dir is None:
        _check_reachable(name)
    if builder.is_prepared():
        if not overwrite:
            return _describe(name, builder, already=True)
        shutil.rmtree(builder.data_dir)
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    try:
        builder.download_and_prepare(download_dir=download_dir, download_config=config)
    except download_manager.NonMatchingChecksumError as err:
        raise PrepareError(_checksum_message(name, err)) from err
    except Exception as err:
        if manual_dir is None and _looks_like_network(err):
            files = ", ".join(raw_files(name))
            raise PrepareError(
                f"{name}: could not download its files ({type(err).__name__}); download {files} by hand "
                f"(python -m experiments.prepare_data --list shows where) into a folder and pass "
                f"--manual_dir=FOLDER"
            ) from err
        raise
    return _describe(name, builder)


def _check_reachable(name: str, timeout_s: float = 5.0) -> None:
    """Without ``manual_dir`` tfds downloads: fail at once (not after minutes of retries) when the first
    file's host cannot be reached (skipped behind an HTTP proxy, which only tfds' requests would use)."""
    import socket
    import urllib.parse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return
    urls = [u for u in raw_files(name).values() if u.startswith("http")]
    if not urls:  # files only obtainable by hand (celeb_a_hq)
        raise PrepareError(
            f"{name} cannot be downloaded by tfds: put {', '.join(raw_files(name))} in a folder and pass "
            f"--manual_dir=FOLDER"
        )
    url = urllib.parse.urlsplit(urls[0])
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as err:
        raise PrepareError(
            f"{name}: {url.hostname} is not reachable ({err.__class__.__name__}); download "
            f"{', '.join(raw_files(name))} by hand (--list shows where) into a folder and pass "
            f"--manual_dir=FOLDER"
        ) from err


def _checksum_message(name: str, err: Exception) -> str:
    text = str(err)
    path = re.search(r"downloaded to (\S+), has wrong checksum", text)
    expected = re.search(r"Expected: UrlInfo\(size=([^,]+)", text)
    got = re.search(r"Got: UrlInfo\(size=([^,]+)", text)
    url = re.search(r"Artifact (\S+),", text)
    where = path.group(1) if path else "a downloaded file"
    sizes = f" (size {got.group(1)}, expected {expected.group(1)})" if expected and got else ""
    source = f" from {url.group(1)}" if url else ""
    return (
        f"{name}: {where} is not the file tfds expects{sizes}: its SHA-256 differs; download it again{source}"
    )


def _looks_like_network(err: BaseException) -> bool:
    while err is not None:
        text = f"{type(err).__name__} {err}".lower()
        if any(k in text for k in ("connection", "resolve", "network", "urlopen", "timed out", "download")):
            return True
        err = err.__cause__ or err.__context__
    return False


def _describe(name: str, builder, already: bool = False) -> Prepared:
    info = builder.info
    label = info.features["label"] if "label" in info.features.keys() else None  # noqa: SIM118
    names = tuple(label.names) if label is not None and hasattr(label, "names") else ()
    splits = {split: int(s.num_examples) for split, s in info.splits.items()}
    return Prepared(name, str(builder.data_dir), splits, names, already)


# ----------------------------------------------------------------------------- your own data


def _writable_dir(path: str, flag: str) -> str:
    if "://" in path:  # a bucket (gs://...): tfds writes it through its own file system layer
        return path
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise PrepareError(f"{flag} {path} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise PrepareError(f"{flag} {path} cannot be created ({err.strerror})") from err
    if not os.access(path, os.W_OK):
        raise PrepareError(f"{flag} {path} is not writable")
    return path


def _check_name(name: str | None) -> str:
    import tensorflow_datasets as tfds

    if not name or not _NAME.match(name):
        raise PrepareError(
            f"--name {name!r} must be lower-case letters, digits and underscores, starting with a letter "
            f"(e.g. my_faces)"
        )
    if name in tfds.list_builders(with_community_datasets=False) or name in ("digits",):
        raise PrepareError(
            f"--name {name!r} is taken by a dataset tfds or this library knows; choose another"
        )
    return name


def _split_indices(n: int, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    if not 0.0 <= test_fraction < 1.0:
        raise PrepareError(f"--test_fraction = {test_fraction} must be in [0, 1)")
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_fraction)
    if test_fraction > 0 and (n_test == 0 or n_test == n):
        raise PrepareError(
            f"--test_fraction = {test_fraction} of {n} examples leaves an empty split; use more examples "
            f"or another fraction"
        )
    out = {"train": np.sort(order[n_test:])}
    if n_test:
        out["test"] = np.sort(order[:n_test])
    return out


def _write(
    name: str,
    data_dir: str,
    splits: dict[str, Sequence[Any]],
    example: Any,
    image_shape: tuple[Any, ...],
    label_names: Sequence[str],
    overwrite: bool,
    description: str,
) -> Prepared:
    """Write ``splits`` (``{split: items}``; ``example(item)`` → ``(image uint8, label or None)``) as tfds
    dataset ``name`` with tfds' ad-hoc builder."""
    import tensorflow_datasets as tfds

    target = os.path.join(data_dir, name)
    if os.path.exists(target):
        if not overwrite:
            raise PrepareError(
                f"{target} exists already; pass --overwrite to replace it, or choose another --name"
            )
        shutil.rmtree(target)
    features: dict[str, Any] = {"image": tfds.features.Image(shape=image_shape)}
    if label_names:
        features["label"] = tfds.features.ClassLabel(names=list(label_names))

    def records(items: Sequence[Any], split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for i, item in enumerate(items):
            image, label = example(item)
            record = {"image": image}
            if label_names:
                record["label"] = int(label)
            yield f"{split}_{i:08d}", record

    builder = tfds.dataset_builders.store_as_tfds_dataset(
        name=name,
        version=VERSION,
        features=tfds.features.FeaturesDict(features),
        split_datasets={split: records(items, split) for split, items in splits.items()},
        data_dir=data_dir,
        description=description,
        file_format="array_record",
        disable_shuffling=True,
    )
    return Prepared(name, str(builder.data_dir), {s: len(v) for s, v in splits.items()}, tuple(label_names))


def _images_in(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
    )


def _subfolders(folder: str) -> list[str]:
    return sorted(
        f for f in os.listdir(folder) if os.path.isdir(os.path.join(folder, f)) and not f.startswith(".")
    )


def _scan(folder: str) -> tuple[list[tuple[str, int]], list[str]]:
    """``[(path, class index)]`` of a folder (images, or class subfolders of images) and the class names."""
    images, classes = _images_in(folder), _subfolders(folder)
    if images and classes:
        raise PrepareError(
            f"{folder} holds both images and subfolders ({', '.join(classes[:3])}); put every image in a "
            f"class subfolder, or none"
        )
    if images:
        return [(p, -1) for p in images], []
    items = []
    for index, cls in enumerate(classes):
        found = _images_in(os.path.join(folder, cls))
        if not found:
            raise PrepareError(
                f"class folder {os.path.join(folder, cls)} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        items += [(p, index) for p in found]
    if not items:
        raise PrepareError(
            f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}) and no class subfolders"
        )
    return items, classes


def _load_image(path: str, channels: int, image_size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if image_size:
                w, h = img.size
                side = min(w, h)
                left, top = (w - side) // 2, (h - side) // 2
                img = img.crop((left, top, left + side, top + side))
                if side != image_size:
                    img = img.resize((image_size, image_size), Image.BICUBIC)
            array = np.asarray(img, np.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise PrepareError(f"cannot read image {path} ({err}); remove or replace it") from err
    return array[..., None] if array.ndim == 2 else array


def prepare_image_folder(
    source: str,
    name: str,
    data_dir: str,
    image_size: int | None = None,
    channels: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
) -> Prepared:
    """A folder of images as the tfds dataset ``name`` in ``data_dir``.

    Layout: ``source/*.png`` (no labels) or ``source/<class>/*.png`` (labels = sorted class folder names);
    either of them may sit in split folders ``source/train``, ``source/test`` (``validation`` too). Without
    split folders a seeded ``test_fraction`` of the images becomes ``test``.

    Args:
      image_size: centre-crop to a square and resize (bicubic) to this side; ``None`` keeps the images as
        they are (then they must all have one size).
      channels: 1 (grey) or 3 (RGB); ``None``: 1 if the first image is grey, else 3.
    """
    require_tensorflow()
    name, data_dir = _check_name(name), _writable_dir(data_dir, "--data_dir")
    source = os.path.abspath(os.path.expanduser(source))
    if not os.path.isdir(source):
        raise PrepareError(f"--source {source} is not a folder of images")
    if channels not in (None, 1, 3):
        raise PrepareError(f"--channels = {channels} must be 1 or 3")
    if image_size is not None and image_size < 1:
        raise PrepareError(f"--image_size = {image_size} must be positive")
    present = [s for s in SPLIT_FOLDERS if os.path.isdir(os.path.join(source, s))]
    if present:
        scanned = {s: _scan(os.path.join(source, s)) for s in present}
        names = {tuple(c) for _, c in scanned.values()}
        if len(names) > 1:
            raise PrepareError(f"the split folders of {source} have different class folders: {sorted(names)}")
        label_names = next(iter(names))
        splits = {s: items for s, (items, _) in scanned.items()}
    else:
        items, label_names = _scan(source)
        splits = {
            s: [items[i] for i in idx] for s, idx in _split_indices(len(items), test_fraction, seed).items()
        }
    first = next(iter(splits.values()))[0][0]
    if channels is None:
        from PIL import Image

        with Image.open(first) as img:
            channels = 1 if img.mode in ("1", "L", "I;16", "I", "F") else 3
    shape = _load_image(first, channels, image_size).shape

    def example(item: tuple[str, int]) -> tuple[np.ndarray, int]:
        path, label = item
        image = _load_image(path, channels, image_size)
        if image.shape != shape:
            raise PrepareError(
                f"image {path} is {image.shape[1]}x{image.shape[0]}, the first one {shape[1]}x{shape[0]}; "
                f"pass --image_size=N to crop and resize every image to NxN"
            )
        return image, label

    return _write(name, data_dir, splits, example, shape, label_names, overwrite, f"images of {source}")


def _as_uint8(images: np.ndarray, key: str, path: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise PrepareError(
            f"{path}: array {key!r} has shape {images.shape}; images must be (N, H, W) or (N, H, W, 1 or 3)"
        )
    if images.dtype == np.uint8:
        return images
    if (
        np.issubdtype(images.dtype, np.floating)
        and images.size
        and images.min() >= 0.0
        and images.max() <= 1.0
    ):
        return np.round(images * 255.0).astype(np.uint8)
    raise PrepareError(
        f"{path}: array {key!r} is {images.dtype}; store images as uint8 in [0, 255] or floats in [0, 1]"
    )


def prepare_arrays(
    source: str, name: str, data_dir: str, test_fraction: float = 0.1, seed: int = 0, overwrite: bool = False
) -> Prepared:
    """An ``.npz`` of images as the tfds dataset ``name`` in ``data_dir``.

    Keys: ``x_train`` and ``x_test`` (with optional ``y_train``, ``y_test``), or ``images`` (with optional
    ``labels``; a seeded ``test_fraction`` becomes ``test``); optional ``label_names``. Images are uint8 in
    [0, 255] or floats in [0, 1], shaped ``(N, H, W)`` or ``(N, H, W, C)`` with C = 1 or 3; labels are class
    indices 0 … K−1.
    """
    require_tensorflow()
    name, data_dir = _check_name(name), _writable_dir(data_dir, "--data_dir")
    path = os.path.abspath(os.path.expanduser(source))
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as err:
        raise PrepareError(f"--source {path} is not a readable .npz ({err})") from err
    if "x_train" in arrays:
        pairs = {s: (f"x_{s}", f"y_{s}") for s in ("train", "test", "validation") if f"x_{s}" in arrays}
        data = {s: (_as_uint8(arrays[x], x, path), arrays.get(y)) for s, (x, y) in pairs.items()}
    elif "images" in arrays:
        images, labels = _as_uint8(arrays["images"], "images", path), arrays.get("labels")
        idx = _split_indices(len(images), test_fraction, seed)
        data = {s: (images[i], None if labels is None else np.asarray(labels)[i]) for s, i in idx.items()}
    else:
        raise PrepareError(
            f"{path} has arrays {sorted(arrays)}; expected x_train/x_test (y_train/y_test) or images (labels)"
        )
    shapes = {s: x.shape[1:] for s, (x, _) in data.items()}
    if len(set(shapes.values())) > 1:
        raise PrepareError(f"{path}: the splits' images differ in shape: {shapes}")
    has_labels = {s: y is not None for s, (_, y) in data.items()}
    if len(set(has_labels.values())) > 1:
        raise PrepareError(
            f"{path}: labels for some splits only ({has_labels}); give every split labels, or none"
        )
    label_names: tuple[str, ...] = ()
    if all(has_labels.values()):
        for s, (x, y) in data.items():
            y = np.asarray(y)
            if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
                raise PrepareError(
                    f"{path}: labels of split {s!r} must be {len(x)} integers >= 0, got {y.dtype} {y.shape}"
                )
        k = 1 + max(int(np.max(y)) for _, y in data.values() if len(y))
        if "label_names" in arrays:
            label_names = tuple(str(n) for n in arrays["label_names"])
            if len(label_names) < k:
                raise PrepareError(f"{path}: {len(label_names)} label_names for labels up to {k - 1}")
        else:
            label_names = tuple(str(i) for i in range(k))

    def example(item: tuple[str, int]) -> tuple[np.ndarray, int]:
        split, i = item
        x, y = data[split]
        return x[i], (-1 if y is None else int(y[i]))

    keyed = {s: [(s, i) for i in range(len(x))] for s, (x, _) in data.items()}
    shape = next(iter(shapes.values()))
    return _write(name, data_dir, keyed, example, shape, label_names, overwrite, f"arrays of {path}")
