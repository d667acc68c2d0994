"""Data: tfds loaders on mock data, the embedded digits, deterministic shuffling and per-host sharding."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import celeba64, cifar10, default, fashion_mnist, mnist, svhn
from latentebm_jax.data import (
    DatasetNotFoundError,
    EpochBatcher,
    TfdsSource,
    iterate_once,
    load_digits,
    load_splits,
    open_data_source,
    without_class,
)
from latentebm_jax.data.preprocess import CROPS, resize, to_model_range


@pytest.mark.parametrize(
    "make_config,shape",
    [
        (svhn.get_config, (32, 32, 3)),
        (cifar10.get_config, (32, 32, 3)),
        (celeba64.get_config, (64, 64, 3)),
        (mnist.get_config, (32, 32, 1)),
        (fashion_mnist.get_config, (32, 32, 1)),
    ],
)
def test_tfds_loaders_on_mock_data(make_config, shape):
    config = make_config("lebm")
    with tfds.testing.mock_data(num_examples=12):
        splits = load_splits(config.data)
        batch = splits.train.get(np.arange(5))
    assert batch["image"].shape == (5, *shape) and batch["image"].dtype == np.float32
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
    assert batch["label"].shape == (5,)


def test_celeba_uses_the_authors_crop_then_resize():
    config = celeba64.get_config("lebm")
    assert config.data.crop == "celeba_lebm" and CROPS["celeba_lebm"] == (45, 25, 128, 128)
    with tfds.testing.mock_data(num_examples=3):
        src = TfdsSource("celeb_a", "train", None, 64, 3, crop_name="celeba_lebm")
        raw = np.asarray(open_data_source("celeb_a", "train")[1]["image"])
        got = src.get(np.array([1]))["image"][0]
    want = to_model_range(resize(raw[45:173, 25:153], 64))
    np.testing.assert_allclose(got, want)


def test_celeba_attributes_are_read_per_example_and_checked():
    with tfds.testing.mock_data(num_examples=6):
        src = TfdsSource("celeb_a", "train", None, 8, 3, attributes=("Male", "Smiling", "Blond_Hair"))
        raw = open_data_source("celeb_a", "train")
        want = [
            [int(bool(raw[i]["attributes"][a])) for a in ("Male", "Smiling", "Blond_Hair")] for i in (4, 1)
        ]
        got = src.get(np.array([4, 1]))["attributes"]
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int32 and set(np.unique(got)) <= {0, 1}
    with pytest.raises(ValueError, match="unknown celeb_a attributes"):
        TfdsSource("celeb_a", "train", None, 8, 3, attributes=("Smile",))
    with pytest.raises(ValueError, match="only available for celeb_a"):
        TfdsSource("cifar10", "train", None, 8, 3, attributes=("Male",))


def test_mnist_is_padded_to_32_without_resampling():
    with tfds.testing.mock_data(num_examples=3):
        src = TfdsSource("mnist", "train", None, 32, 1, resize_method="pad")
        raw = np.asarray(open_data_source("mnist", "train")[0]["image"])
        got = src.get(np.array([0]))["image"][0]
    np.testing.assert_allclose(got[2:30, 2:30], to_model_range(raw))
    assert np.all(got[:2] == -1.0)


def test_missing_dataset_error_names_it_and_gives_the_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        open_data_source("cifar10", "train", str(tmp_path))
    msg = str(info.value)
    assert "cifar10" in msg and f"experiments.prepare_data cifar10 --data_dir={tmp_path}" in msg
    assert "Underlying error" not in msg and "TFRECORD" not in msg  # no misleading tfds detail
    with pytest.raises(ValueError, match="no split 'valid'"):
        open_data_source("cifar10", "valid", str(tmp_path))


def test_digits_splits_are_fixed_disjoint_and_in_range():
    train, test = load_digits("train"), load_digits("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.min() == -1.0 and train.images.max() == 1.0
    both = np.concatenate([train.images, test.images]).reshape(1797, -1)
    assert len(np.unique(both, axis=0)) > 1700  # (a few digits are duplicated in the raw data)
    d32 = load_digits("test", 32, 3)
    assert d32.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(d32.labels(), test.labels())


def test_holdout_class_leaves_training_but_stays_in_test():
    c = default.get_config()
    c.data.name, c.data.image_size, c.data.channels, c.data.holdout_class = "digits", 8, 1, 4
    splits = load_splits(c.data)
    assert 4 not in set(splits.train.labels()) and 4 in set(splits.test.labels())
    assert len(splits.train) == 1437 - np.sum(load_digits("train").labels() == 4)
    assert np.all(splits.train.get(np.arange(len(splits.train)))["label"] != 4)
    with pytest.raises(ValueError, match="does not occur"):
        without_class(load_digits("train"), 11)


def test_shuffling_is_deterministic_by_seed_and_epoch():
    src = load_digits("train")
    a, b, c = (EpochBatcher(src, 100, seed) for seed in (3, 3, 4))
    assert a.steps_per_epoch == 14
    np.testing.assert_array_equal(a.indices_at(20), b.indices_at(20))
    assert not np.array_equal(a.indices_at(20), c.indices_at(20))
    epoch0 = np.concatenate([a.indices_at(s) for s in range(14)])
    assert len(np.unique(epoch0)) == 1400  # every example at most once per epoch
    assert not np.array_equal(a.indices_at(0), a.indices_at(14))  # reshuffled next epoch
    batches = list(a.iterate(12, 16, prefetch=2))
    for step, batch in zip(range(12, 16), batches):
        np.testing.assert_array_equal(batch["image"], src.get(a.indices_at(step))["image"])


def test_per_host_sharding_splits_each_global_batch():
    src = load_digits("train")
    full = EpochBatcher(src, 40, seed=1)
    hosts = [EpochBatcher(src, 40, seed=1, process_index=i, process_count=2) for i in range(2)]
    for step in (0, 7, 36):
        parts = [h.indices_at(step) for h in hosts]
        assert len(parts[0]) == 20 and not set(parts[0]) & set(parts[1])
        np.testing.assert_array_equal(np.concatenate(parts), full.indices_at(step))
    with pytest.raises(ValueError, match="not divisible"):
        EpochBatcher(src, 41, seed=1, process_count=2)


def test_iterate_once_pads_the_last_batch():
    src = load_digits("test")
    got = list(iterate_once(src, 100))
    assert [v for _, v in got] == [100, 100, 100, 60]
    assert all(b["image"].shape[0] == 100 for b, _ in got)
    np.testing.assert_array_equal(got[-1][0]["image"][59], got[-1][0]["image"][99])
