"""Small files in the raw formats tfds' builders read (the tfds wheel ships no dummy data), made from the
embedded digits, and the checksum registry entries that make tfds accept them in place of the originals.

Each ``write_<dataset>(folder)`` writes the files a user would download (named as on the dataset's site)
and returns what the prepared dataset must then hold: ``{split: (images uint8 NHWC, labels)}``.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import zipfile

import numpy as np

from latentebm_jax.data.digits import load_digits
from latentebm_jax.data.tfds_sources import CELEBA_ATTRIBUTES


def digit_images(size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 embedded digits as uint8 ``(N, size, size, channels)`` (colour: one tint per class)."""
    src = load_digits("train", size, 1)
    grey = np.round((src.get(np.arange(len(src)))["image"][..., 0] + 1.0) * 127.5).astype(np.uint8)
    labels = src.labels().astype(np.int64)
    if channels == 1:
        return grey[..., None], labels
    tint = np.stack([(labels * 37) % 256, (labels * 91) % 256, 255 - (labels * 53) % 256], -1)
    return (grey[..., None].astype(np.int64) * tint[:, None, None, :] // 255).astype(np.uint8), labels


def _take(images: np.ndarray, labels: np.ndarray, n: int, offset: int = 0):
    idx = (np.arange(n) + offset) % len(images)
    return images[idx], labels[idx]


def write_idx(folder: str, train: int = 60000, test: int = 10000, invert: bool = False) -> dict:
    """MNIST / Fashion-MNIST: gzipped idx files (the builders insist on 60,000 / 10,000 examples)."""
    os.makedirs(folder, exist_ok=True)
    images, labels = digit_images(28, 1)
    if invert:
        images = 255 - images
    out = {}
    for prefix, split, n, offset in (("train", "train", train, 0), ("t10k", "test", test, 7)):
        x, y = _take(images[..., 0], labels, n, offset)
        with gzip.open(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), "wb", compresslevel=1) as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        with gzip.open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">II", 2049, n) + y.astype(np.uint8).tobytes())
        out[split] = (x[..., None], y)
    return out


def write_cifar10(folder: str, per_batch: int = 12) -> dict:
    """CIFAR-10: ``cifar-10-binary.tar.gz``: 5 training batches and a test batch, each record a label byte
    and the image's CHW bytes."""
    os.makedirs(folder, exist_ok=True)
    images, labels = digit_images(32, 3)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    files, out = {}, {"train": ([], []), "test": ([], [])}
    for b, name in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]):
        x, y = _take(images, labels, per_batch, 100 * b)
        files[name] = b"".join(bytes([int(lab)]) + img.transpose(2, 0, 1).tobytes() for img, lab in zip(x, y))
        split = "test" if name == "test_batch.bin" else "train"
        out[split][0].append(x)
        out[split][1].append(y)
    files["batches.meta.txt"] = ("\n".join(names) + "\n\n").encode()
    with tarfile.open(os.path.join(folder, "cifar-10-binary.tar.gz"), "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {s: (np.concatenate(x), np.concatenate(y)) for s, (x, y) in out.items()}


def write_svhn(folder: str, sizes=(("train", 30), ("test", 14), ("extra", 9))) -> dict:
    """SVHN cropped: MATLAB ``{train,test,extra}_32x32.mat`` with ``X`` (32, 32, 3, N) and ``y`` in 1…10."""
    import scipy.io

    os.makedirs(folder, exist_ok=True)
    images, labels = digit_images(32, 3)
    out = {}
    for i, (split, n) in enumerate(sizes):
        x, y = _take(images, labels, n, 300 * i)
        stored = np.where(y == 0, 10, y).astype(np.uint8)[:, None]  # SVHN stores digit 0 as 10
        arrays = {"X": np.moveaxis(x, 0, -1), "y": stored}
        scipy.io.savemat(os.path.join(folder, f"{split}_32x32.mat"), arrays)
        out[split] = (x, y)
    return out


LANDMARKS = " ".join(
    f"{p}_{c}" for p in ("lefteye", "righteye", "nose", "leftmouth", "rightmouth") for c in "xy"
)


def write_celeb_a(folder: str, counts=(("train", 8), ("validation", 3), ("test", 4))) -> dict:
    """CelebA: ``img_align_celeba.zip`` (218×178 JPEGs) and the partition, attribute, landmark and identity
    lists. Returns ``{split: (images before JPEG compression, attributes (N, 40) bool)}``."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    images, _ = digit_images(178, 3)
    rng = np.random.default_rng(0)
    partition, attrs, marks, ids, out = [], [], [], [], {}
    k = 0
    with zipfile.ZipFile(os.path.join(folder, "img_align_celeba.zip"), "w") as zf:
        for split_id, (split, n) in enumerate(counts):
            canvases, table = [], []
            for _ in range(n):
                k += 1
                name = f"{k:06d}.jpg"
                canvas = np.zeros((218, 178, 3), np.uint8)
                canvas[20:198] = images[k % len(images)]
                buf = io.BytesIO()
                Image.fromarray(canvas).save(buf, format="JPEG", quality=95)
                zf.writestr(f"img_align_celeba/{name}", buf.getvalue())
                row = rng.integers(0, 2, len(CELEBA_ATTRIBUTES))
                partition.append(f"{name} {split_id}")
                attrs.append(f"{name} " + " ".join("1" if v else "-1" for v in row))
                marks.append(f"{name} " + " ".join(str(v) for v in rng.integers(0, 178, 10)))
                ids.append(f"{name} {1 + k % 5}")
                canvases.append(canvas)
                table.append(row)
            out[split] = (np.stack(canvases), np.asarray(table).astype(bool))
    total = len(partition)
    with open(os.path.join(folder, "list_eval_partition.txt"), "w") as f:
        f.write("\n".join(partition) + "\n")
    with open(os.path.join(folder, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{total}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n" + "\n".join(attrs) + "\n")
    with open(os.path.join(folder, "list_landmarks_align_celeba.txt"), "w") as f:
        f.write(f"{total}\n{LANDMARKS}\n" + "\n".join(marks) + "\n")
    with open(os.path.join(folder, "identity_CelebA.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    return out


def write_celeb_a_hq(folder: str, resolution: int = 8, n: int = 10) -> dict:
    """CelebA-HQ at one resolution: ``data{R}x{R}.tar`` of PNGs (the progressive-GAN script's output)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    images, _ = digit_images(resolution, 3)
    path = os.path.join(folder, f"data{resolution}x{resolution}.tar")
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, format="PNG")
            info = tarfile.TarInfo(f"imgHQ{i:05d}.png")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    return {"train": (images[:n], None)}


def write_snli(folder: str) -> dict:
    """SNLI: ``snli_1.0.zip`` with the tab-separated ``snli_1.0_{train,dev,test}.txt``. Returns
    ``{tfds split: [(premise, hypothesis), ...]}``."""
    os.makedirs(folder, exist_ok=True)
    columns = "gold_label sentence1_binary_parse sentence2_binary_parse sentence1_parse sentence2_parse " \
        "sentence1 sentence2 captionID pairID label1"  # fmt: skip
    header = "\t".join(columns.split())
    rows = {
        "train": [("A dog runs in the park.", "An animal is outside."), ("Two men play.", "Men sleep.")],
        "dev": [("A woman reads a book.", "Someone is reading.")],
        "test": [("Kids swim in a lake.", "Children are in water."), ("A cat sleeps.", "A cat naps.")],
    }
    with zipfile.ZipFile(os.path.join(folder, "snli_1.0.zip"), "w") as zf:
        for split, pairs in rows.items():
            lines = [header] + [
                f"entailment\t( x )\t( y )\t(ROOT x)\t(ROOT y)\t{p}\t{h}\t{i}\t{i}\tentailment"
                for i, (p, h) in enumerate(pairs)
            ]
            zf.writestr(f"snli_1.0/snli_1.0_{split}.txt", "\n".join(lines) + "\n")
    return {"train": rows["train"], "validation": rows["dev"], "test": rows["test"]}


def accept_as_registered(monkeypatch, name: str, manual_dir: str) -> None:
    """Make tfds' checksum registry of ``name`` describe the generated files in ``manual_dir`` (sizes and
    SHA-256), as the registry describes the real downloads; everything else runs as for a user."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import checksums

    builder_class = type(tfds.builder(name))
    registered = builder_class.url_infos or {}
    ours = {}
    for url, info in registered.items():
        computed = checksums.compute_url_info(os.path.join(manual_dir, info.filename))
        ours[url] = checksums.UrlInfo(size=computed.size, checksum=computed.checksum, filename=info.filename)
    monkeypatch.setattr(builder_class, "url_infos", ours)
