"""Offline preparation (``pytest -m prepare``; needs ``pip install -e '.[tf]'``): tfds' own builders run on
files in the raw formats they read (``tests/raw_datasets.py``), placed in ``--manual_dir`` as a user who
downloaded them would; the prepared array_record data is then read back by the runner's sources, without
decoding images for the labels, and equals what the raw files hold. Your own data (a folder of images, an
.npz) becomes a dataset the runner trains on by name."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.prepare

try:
    import tensorflow
except ImportError:
    tensorflow = None


@pytest.fixture(autouse=True)
def _needs_tensorflow():
    """Fail (not skip: CI's step must not pass by skipping) when the tf extra is missing."""
    if tensorflow is None:
        pytest.fail("pytest -m prepare needs TensorFlow: pip install -e '.[tf]'")


import tensorflow_datasets as tfds  # noqa: E402
from raw_datasets import (  # noqa: E402
    accept_as_registered,
    digit_images,
    write_celeb_a,
    write_celeb_a_hq,
    write_cifar10,
    write_idx,
    write_snli,
    write_svhn,
)

from latentebm_jax.config_schema import ConfigError  # noqa: E402
from latentebm_jax.data import CELEBA_ATTRIBUTES, TfdsSource, load_text_corpus, open_data_source, prepare  # noqa: E402
from latentebm_jax.data.text import load_snli_sentences  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prepared(tmp_path, monkeypatch, name, write, **kwargs):
    manual, data_dir = str(tmp_path / "downloads"), str(tmp_path / "tfds")
    expected = write(manual, **kwargs)
    accept_as_registered(monkeypatch, name, manual)
    done = prepare.prepare_tfds(name, data_dir, manual_dir=manual)
    return expected, done, data_dir


def _all_images(name, split, data_dir):
    source = open_data_source(name, split, data_dir)
    return np.stack([np.asarray(r["image"]) for r in source.__getitems__(list(range(len(source))))])


def _labels_without_decoding(monkeypatch, name, split, data_dir):
    """The runner's labels, with every image decoder made to fail: none may run."""

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded to read labels")

    with monkeypatch.context() as m:
        m.setattr(tfds.features.Image, "decode_example_np", refuse)
        m.setattr(tfds.features.Image, "decode_example", refuse)
        return TfdsSource(name, split, data_dir, 32, 1).labels()


@pytest.mark.parametrize("name,invert", [("mnist", False), ("fashion_mnist", True)])
def test_mnist_style_idx_files(tmp_path, monkeypatch, name, invert):
    expected, done, data_dir = _prepared(tmp_path, monkeypatch, name, write_idx, invert=invert)
    assert done.splits == {"train": 60000, "test": 10000} and len(done.label_names) == 10
    for split in ("train", "test"):
        images, labels = expected[split]
        got = _labels_without_decoding(monkeypatch, name, split, data_dir)
        _same_multiset(_all_images(name, split, data_dir), got, images, labels)
    again = prepare.prepare_tfds(name, data_dir, manual_dir=str(tmp_path / "downloads"))
    assert again.already  # nothing rewritten without --overwrite


def _same_multiset(got_images, got_labels, images, labels):
    """tfds shuffles records by key: compare as sets of (label, image bytes)."""
    key = lambda imgs, labs: sorted((int(y), x.tobytes()) for x, y in zip(imgs, labs))
    assert key(got_images, got_labels) == key(images, labels)


def test_cifar10_binary_batches(tmp_path, monkeypatch):
    expected, done, data_dir = _prepared(tmp_path, monkeypatch, "cifar10", write_cifar10)
    assert done.splits == {"train": 60, "test": 12} and done.label_names[0] == "airplane"
    for split, (images, labels) in expected.items():
        got = _labels_without_decoding(monkeypatch, "cifar10", split, data_dir)
        _same_multiset(_all_images("cifar10", split, data_dir), got, images, labels)


def test_svhn_mat_files_with_ten_for_zero(tmp_path, monkeypatch):
    expected, done, data_dir = _prepared(tmp_path, monkeypatch, "svhn_cropped", write_svhn)
    assert done.splits == {"train": 30, "test": 14, "extra": 9}
    for split, (images, labels) in expected.items():
        got = _labels_without_decoding(monkeypatch, "svhn_cropped", split, data_dir)
        assert 0 in got and got.max() <= 9  # SVHN's 10 is digit 0
        _same_multiset(_all_images("svhn_cropped", split, data_dir), got, images, labels)


def test_celeb_a_zip_and_lists_with_attributes(tmp_path, monkeypatch):
    expected, done, data_dir = _prepared(tmp_path, monkeypatch, "celeb_a", write_celeb_a)
    assert done.splits == {"train": 8, "validation": 3, "test": 4}
    for split, (images, table) in expected.items():
        src = TfdsSource(
            "celeb_a", split, data_dir, 64, 3, crop_name="celeba_lebm", attributes=CELEBA_ATTRIBUTES
        )
        batch = src.get(np.arange(len(src)))
        assert batch["image"].shape == (len(table), 64, 64, 3) and np.all(src.labels() == -1)
        by_row = {row.tobytes(): image for row, image in zip(table.astype(np.int32), images)}
        assert sorted(by_row) == sorted(row.tobytes() for row in batch["attributes"])  # 40 random bits each
        raw = open_data_source("celeb_a", split, data_dir)
        for i in range(len(raw)):
            record = raw[i]
            row = np.asarray([int(record["attributes"][a]) for a in CELEBA_ATTRIBUTES], np.int32)
            jpeg_error = np.abs(np.asarray(record["image"], float) - by_row[row.tobytes()])
            assert jpeg_error.mean() < 3.0  # the image stored with these attributes (JPEG quality 95)


def test_celeb_a_hq_tar_of_pngs_read_by_name(tmp_path, monkeypatch):
    manual, data_dir = str(tmp_path / "manual"), str(tmp_path / "tfds")
    images = write_celeb_a_hq(manual, resolution=8)["train"][0]
    done = prepare.prepare_tfds("celeb_a_hq/8", data_dir, manual_dir=manual)
    assert done.splits == {"train": 10}
    got = _all_images("celeb_a_hq/8", "train", data_dir)
    assert sorted(x.tobytes() for x in got) == sorted(x.tobytes() for x in images)


def test_snli_zip_feeds_the_text_corpus(tmp_path, monkeypatch):
    expected, done, data_dir = _prepared(tmp_path, monkeypatch, "snli", write_snli)
    assert done.splits == {"test": 2, "validation": 1, "train": 2}
    got = load_snli_sentences("test", data_dir)
    want = [s.lower() for pair in expected["test"] for s in pair]
    assert sorted(got) == sorted(want)
    valid = load_text_corpus("snli", "valid", data_dir)  # our 'valid' is tfds' 'validation'
    assert sorted(valid) == sorted(s.lower() for pair in expected["validation"] for s in pair)


def test_wrong_or_missing_downloads_are_named_with_their_source(tmp_path):
    manual, data_dir = str(tmp_path / "downloads"), str(tmp_path / "tfds")
    write_cifar10(manual)  # not the real file: its SHA-256 differs from tfds' registry
    with pytest.raises(prepare.PrepareError) as info:
        prepare.prepare_tfds("cifar10", data_dir, manual_dir=manual)
    message = str(info.value)
    assert "cifar-10-binary.tar.gz" in message and "SHA-256" in message and "kriz/cifar" in message
    assert "\n" not in message
    with pytest.raises(prepare.PrepareError, match=r"lacks extra_32x32.mat \(http://ufldl"):
        prepare.prepare_tfds("svhn_cropped", data_dir, manual_dir=manual)
    with pytest.raises(prepare.PrepareError, match="celeb_a_hq/R with R in"):
        prepare.prepare_tfds("celeb_a_hq", data_dir, manual_dir=manual)


def _write_folder(root, with_classes: bool, size=(20, 24)):
    from PIL import Image

    images, labels = digit_images(max(size), 3)
    for i in range(30):
        folder = os.path.join(root, f"class_{labels[i]}" if with_classes else "")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(images[i][: size[0], : size[1]]).save(os.path.join(folder, f"img{i:03d}.png"))
    return images[:30, : size[0], : size[1]], labels[:30]


def test_image_folder_with_class_subfolders(tmp_path):
    images, labels = _write_folder(str(tmp_path / "faces"), with_classes=True)
    done = prepare.prepare_image_folder(str(tmp_path / "faces"), "my_faces", str(tmp_path / "tfds"))
    assert done.splits == {"train": 27, "test": 3}
    assert done.label_names == tuple(sorted({f"class_{y}" for y in labels}))
    got, got_labels = [], []
    for split in ("train", "test"):
        src = open_data_source("my_faces", split, str(tmp_path / "tfds"))
        got += [np.asarray(src[i]["image"]) for i in range(len(src))]
        got_labels += [int(src[i]["label"]) for i in range(len(src))]
    names = [done.label_names[y] for y in got_labels]
    assert sorted(zip(names, (x.tobytes() for x in got))) == sorted(
        zip((f"class_{y}" for y in labels), (x.tobytes() for x in images))
    )
    with pytest.raises(ConfigError, match=r"'data.crop' = 'celeba_lebm' needs images of at least 173×153"):
        TfdsSource("my_faces", "train", str(tmp_path / "tfds"), 16, 3, crop_name="celeba_lebm")
    with pytest.raises(prepare.PrepareError, match="exists already; pass --overwrite"):
        prepare.prepare_image_folder(str(tmp_path / "faces"), "my_faces", str(tmp_path / "tfds"))


def test_image_folder_errors_name_the_file_and_the_fix(tmp_path):
    from PIL import Image

    root = tmp_path / "mixed"
    _write_folder(str(root), with_classes=False)
    Image.new("RGB", (7, 5)).save(root / "odd.png")
    with pytest.raises(prepare.PrepareError, match=r"odd.png is 7x5, the first one 24x20; pass --image_size"):
        prepare.prepare_image_folder(str(root), "mixed", str(tmp_path / "tfds"))
    (root / "odd.png").write_bytes(b"not a png")
    with pytest.raises(prepare.PrepareError, match=r"cannot read image .*odd.png"):
        prepare.prepare_image_folder(str(root), "mixed2", str(tmp_path / "tfds"), image_size=16)
    with pytest.raises(prepare.PrepareError, match="'mnist' is taken"):
        prepare.prepare_image_folder(str(root), "mnist", str(tmp_path / "tfds"))


def test_npz_arrays_with_labels_and_splits(tmp_path):
    images, labels = digit_images(16, 1)
    path = str(tmp_path / "arrays.npz")
    np.savez(
        path,
        x_train=images[:40, ..., 0],
        y_train=labels[:40],
        x_test=images[40:52] / 255.0,
        y_test=labels[40:52],
    )
    done = prepare.prepare_arrays(path, "my_digits", str(tmp_path / "tfds"))
    assert done.splits == {"train": 40, "test": 12} and done.label_names == tuple(str(i) for i in range(10))
    src = TfdsSource("my_digits", "test", str(tmp_path / "tfds"), 16, 1)
    np.testing.assert_array_equal(src.labels(), labels[40:52])
    raw = open_data_source("my_digits", "test", str(tmp_path / "tfds"))
    np.testing.assert_array_equal(np.stack([raw[i]["image"] for i in range(12)]), images[40:52])
    np.savez(path, images=images[:10].astype(np.int32))
    with pytest.raises(prepare.PrepareError, match="'images' is int32; store images as uint8"):
        prepare.prepare_arrays(path, "bad", str(tmp_path / "tfds"))


def test_readme_commands_prepare_a_folder_and_train_on_it_by_name(tmp_path):
    """The README's route for your own data, through the command lines, in a fresh process."""
    _write_folder(str(tmp_path / "pictures"), with_classes=True, size=(24, 24))
    data_dir = str(tmp_path / "tfds")
    env = dict(os.environ, TQDM_DISABLE="1")
    made = subprocess.run(
        [sys.executable, "-m", "experiments.prepare_data", "images", f"--source={tmp_path / 'pictures'}",
         "--name=pictures", f"--data_dir={data_dir}", "--image_size=16"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    assert "pictures prepared in" in made.stdout and "--config.data.name=pictures" in made.stdout
    run = subprocess.run(
        [sys.executable, "-m", "experiments.main", "--config=configs/cifar10.py:lebm",
         f"--workdir={tmp_path / 'run'}", "--config.data.name=pictures", f"--config.data.data_dir={data_dir}",
         "--config.data.image_size=16", "--config.train.batch_size=9", "--config.train.num_steps=3",
         "--config.lebm.ngf=8", "--config.lebm.ebm_hidden=8", "--config.sampler.prior_steps=2",
         "--config.sampler.posterior_steps=2", "--config.train.eval_every=0",
         "--config.eval.metrics=('reconstruction',)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "dataset=pictures" in run.stdout and "recon_mse=" in run.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "experiments.main", "--config=configs/cifar10.py:lebm",
         f"--workdir={tmp_path / 'x'}", "--config.data.name=picturez", f"--config.data.data_dir={data_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert wrong.returncode == 2 and "'picturez'" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not os.path.exists(tmp_path / "x")


def test_a_corrupted_array_record_shard_is_named_not_a_traceback(tmp_path):
    import glob

    from latentebm_jax.data import DatasetReadError

    images, labels = digit_images(16, 1)
    path = str(tmp_path / "arrays.npz")
    np.savez(path, images=images[:200], labels=labels[:200])
    prepare.prepare_arrays(path, "to_break", str(tmp_path / "tfds"), test_fraction=0.0)
    (shard,) = glob.glob(str(tmp_path / "tfds" / "to_break" / "1.0.0" / "*train.array_record*"))
    with open(shard, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)  # a zeroed stretch inside the records
    with open(shard, "wb") as f:
        f.write(data)
    src = TfdsSource("to_break", "train", str(tmp_path / "tfds"), 16, 1)
    with pytest.raises(DatasetReadError, match=r"to_break:train .*prepare the dataset again"):
        src.labels()
        src.get(np.arange(len(src)))
