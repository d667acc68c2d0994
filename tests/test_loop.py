"""The runner: outputs of a digits run, exact resume after a kill, NaN stops, checkpoint errors."""

import glob
import json
import os

import numpy as np
import pytest

from configs import default
from latentebm_jax.checkpoint import Checkpointer, CheckpointError
from latentebm_jax.data import DataSplits, load_splits
from latentebm_jax.training import loop
from latentebm_jax.training.metrics_writer import read_jsonl
from latentebm_jax.training.setup import RunSetup
from latentebm_jax.training.workdir import WorkdirError


def _params_at(workdir, config, step=None):
    setup = RunSetup(config, None)
    state = Checkpointer(workdir).restore(setup.initial_state(), step)
    return state


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_config):
    workdir = str(tmp_path_factory.mktemp("digits"))
    config = tiny_config(**{"train.tensorboard": True})
    default.validate(config)
    summary = loop.train(config, workdir)
    return workdir, config, summary


def test_digits_run_writes_samples_reconstructions_checkpoints_metrics_and_summary(finished_run):
    workdir, config, _ = finished_run
    for name in (
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "samples.png",
        "reconstructions.png",
        "chain_10.png",
        "chain_10_energy.npy",
    ):
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert Checkpointer(workdir).all_steps() == [5, 10]
    records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    train_steps = [r["step"] for r in records if "loss_g" in r]
    assert train_steps == [2, 4, 6, 8, 10]
    assert all(np.isfinite(r["loss_g"]) and np.isfinite(r["loss_e"]) for r in records if "loss_g" in r)
    with open(os.path.join(workdir, "summary.json")) as f:
        saved = json.load(f)
    assert saved["step"] == 10 and saved["train_steps"] == 10
    assert 0 < saved["recon_mse"] < 4 and saved["num_test_examples"] == 120
    assert saved["recon_rmse"] == pytest.approx(np.sqrt(saved["recon_mse"]))
    assert saved["recon_value_range"] == "[-1, 1]"
    # the digits configs ask for the domain feature distance and the latent probe
    assert saved["fd"] > 0 and saved["fd_real_test"] > 0 and saved["fd_num_samples"] == 100
    assert 0 < saved["fd_classifier_test_accuracy"] <= 1
    assert len(saved["probe_accuracy"]) == 1 and 0 <= saved["probe_accuracy"][0] <= 1
    assert "fid" not in saved
    assert 0 <= saved["auprc"] <= 1 and saved["anomaly_class"] == 9
    assert saved["anomaly_fraction"] == pytest.approx(
        np.mean(load_splits(config.data).test.labels()[:120] == 9)
    )
    energy = np.load(os.path.join(workdir, "chain_10_energy.npy"))
    assert energy.shape == (11,) and np.all(np.isfinite(energy))


def test_tensorboard_events_hold_the_metrics_and_the_pictures_of_the_run(finished_run):
    """TensorBoard's own reader finds every scalar of metrics.jsonl (same values) and the run's PNGs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    workdir, _, _ = finished_run
    events = EventAccumulator(os.path.join(workdir, "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    for key in ("loss_g", "loss_e", "f_pos", "f_neg", "eval/recon_mse", "eval/fd"):
        assert key in tags["scalars"], key
        expected = [(r["step"], r[key]) for r in records if key in r]
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in expected]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)
    for name in ("samples", "reconstructions", "chain_10", "loss_curves"):
        assert f"images/{name}" in tags["images"], (name, tags["images"])
    assert os.path.isfile(os.path.join(workdir, "loss_curves.png"))


def test_eval_and_sample_modes_reuse_the_checkpoint(finished_run):
    workdir, config, summary = finished_run
    again = loop.evaluate(config, workdir)
    assert again["step"] == 10
    assert again["recon_mse"] == pytest.approx(summary["recon_mse"], rel=1e-5)  # same keys, same result
    paths = loop.sample(config, workdir)
    assert all(os.path.isfile(p) for p in paths) and any(p.endswith("chain_10.png") for p in paths)


def test_exported_samples_are_uint8_nhwc_and_scoring_real_images_gives_the_real_floor(finished_run, tmp_path):
    """--num_samples writes an .npz + PNG folder; --samples_npz scores a file: the dataset's own test images
    score the ``fd_real_test`` the model's evaluation reported (same images, same statistics)."""
    from PIL import Image

    from latentebm_jax.data import without_class
    from latentebm_jax.data.preprocess import to_uint8
    from latentebm_jax.methods.eval_tools import reference_images
    from latentebm_jax.training.samples_io import SamplesFileError, score_samples

    workdir, config, summary = finished_run
    paths = loop.sample(config, workdir, num_samples=30)
    npz = next(p for p in paths if p.endswith("samples_30.npz"))
    with np.load(npz) as f:
        exported = f["arr_0"]
    assert exported.dtype == np.uint8 and exported.shape == (30, 8, 8, 1)
    folder = npz[: -len(".npz")]
    assert sorted(os.listdir(folder))[:2] == ["000000.png", "000001.png"] and len(os.listdir(folder)) == 30
    with Image.open(os.path.join(folder, "000007.png")) as im:
        np.testing.assert_array_equal(np.asarray(im), exported[7, ..., 0])
    splits = load_splits(config.data)
    test = without_class(splits.test, splits.holdout_class)
    real = to_uint8(reference_images(test, config.eval.fd_num_samples))
    np.savez(tmp_path / "real.npz", arr_0=real)
    scores = score_samples(config, str(tmp_path / "real.npz"), str(tmp_path))
    assert scores["fd_num_samples"] == min(len(real), config.eval.fd_num_samples)
    assert scores["fd"] == pytest.approx(summary["fd_real_test"], rel=0.02)  # uint8 rounding only
    assert os.path.isfile(tmp_path / "scores_real.json")
    np.savez(tmp_path / "wrong.npz", arr_0=real[:, :4])
    with pytest.raises(
        SamplesFileError, match=r"images of shape \(4, 8, 1\) do not match the dataset's \(8, 8, 1\)"
    ):
        score_samples(config, str(tmp_path / "wrong.npz"), str(tmp_path))


class KilledError(Exception):
    pass


def test_killed_and_resumed_run_ends_with_the_same_parameters(tmp_path, finished_run):
    ref_dir, config, _ = finished_run

    def kill_at_7(step):
        if step == 7:
            raise KilledError

    workdir = str(tmp_path / "resumed")
    with pytest.raises(KilledError):
        loop.train(config, workdir, hooks=[kill_at_7])
    assert Checkpointer(workdir).all_steps() == [5]
    loop.train(config, workdir)
    a, b = _params_at(ref_dir, config), _params_at(workdir, config)
    assert int(a.step) == int(b.step) == 10
    for x, y in zip(
        __import__("jax").tree.leaves((a.params, a.opt_state)),
        __import__("jax").tree.leaves((b.params, b.opt_state)),
    ):
        np.testing.assert_array_equal(x, y)
    # the metrics of the replayed steps are not duplicated
    steps = [r["step"] for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "loss_g" in r]
    assert steps == [2, 4, 6, 8, 10]


class PoisonAfter:
    """A training source that returns NaN images from its ``n``-th batch on."""

    def __init__(self, source, n):
        self.source, self.n, self.calls = source, n, 0
        self.image_shape = source.image_shape

    def __len__(self):
        return len(self.source)

    def labels(self):
        return self.source.labels()

    def get(self, indices):
        self.calls += 1
        batch = self.source.get(indices)
        if self.calls >= self.n:
            batch["image"] = np.full_like(batch["image"], np.nan)
        return batch


def test_nan_stops_with_step_and_quantity_and_keeps_the_last_good_checkpoint(tmp_path, tiny_config):
    config = tiny_config()
    splits = load_splits(config.data)
    poisoned = DataSplits(PoisonAfter(splits.train, 8), splits.test, splits.holdout_class)
    workdir = str(tmp_path / "nan")
    with pytest.raises(loop.NonFiniteError) as info:
        loop.train(config, workdir, splits=poisoned)
    msg = str(info.value)
    assert "at step 8" in msg and "'loss_g' = nan" in msg and "last good checkpoint is step 5" in msg
    ckpt = Checkpointer(workdir)
    assert ckpt.all_steps() == [5]
    state = _params_at(workdir, config)
    assert int(state.step) == 5
    assert not os.path.exists(os.path.join(workdir, "summary.json"))


def test_corrupted_checkpoint_gives_a_clear_error(tmp_path, finished_run):
    src, config, _ = finished_run
    import shutil

    workdir = str(tmp_path / "corrupt")
    shutil.copytree(src, workdir)
    for path in glob.glob(os.path.join(workdir, "checkpoints", "10", "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "wb") as f:
                f.write(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"checkpoint at step 10 .* (unreadable|corrupted)") as info:
        loop.evaluate(config, workdir)
    assert "Earlier checkpoints there: [5]" in str(info.value)


def test_incompatible_checkpoint_names_the_mismatch(finished_run, tiny_config):
    workdir, _, _ = finished_run
    other = tiny_config(**{"lebm.latent_dim": 6})
    # the config that wrote the checkpoint is in its manifest: the change is named before any array is read
    with pytest.raises(WorkdirError, match=r"(?s)written with another config:\n  lebm\.latent_dim: 4 → 6"):
        loop.evaluate(other, workdir)
    # allowed anyway, the stored arrays do not fit the new model: named by shape
    with pytest.raises(
        CheckpointError, match=r"(?s)does not fit.*shape of params\.ebm.*\(4, 16\).*\(6, 16\)"
    ):
        loop.evaluate(other, workdir, allow_config_change=True)


@pytest.mark.slow
def test_mnist_anomaly_protocol_runs_end_to_end_on_mock_tfds_data(tmp_path):
    """configs/mnist.py (tfds loader, 28→32 padding, digit 1 held out, AUPRC) on tfds mock data."""
    import tensorflow_datasets as tfds

    from configs import mnist

    c = mnist.get_config("lebm")
    c.lebm.update(latent_dim=4, ngf=4, ebm_hidden=8)
    c.sampler.prior_steps = c.sampler.posterior_steps = 2
    c.train.batch_size, c.train.num_steps, c.train.log_every, c.train.ckpt_every = 8, 2, 1, 2
    c.eval.batch_size, c.eval.num_samples, c.eval.long_run_steps = 16, 4, (4,)
    c.eval.long_run_chains, c.eval.long_run_frames = 2, 2
    default.validate(c)
    with tfds.testing.mock_data(num_examples=48):
        summary = loop.train(c, str(tmp_path))
        test_labels = load_splits(c.data).test.labels()
    assert summary["anomaly_class"] == 1 and summary["num_test_examples"] == 48
    assert summary["anomaly_fraction"] == pytest.approx(np.mean(test_labels == 1))
    assert 0 <= summary["auprc"] <= 1 and np.isfinite(summary["recon_mse"])


@pytest.mark.slow
def test_fid_and_inception_score_end_to_end_with_generated_weights(finished_run, tmp_path):
    """--mode=eval with eval.fid: FID against cached training-set statistics, IS; skipped without weights."""
    from latentebm_jax.metrics.inception import random_inception_npz

    workdir, config, _ = finished_run
    c = config.copy_and_resolve_references()
    c.eval.metrics = ("fid",)
    c.eval.fid_num_samples, c.eval.fid_reference_max, c.eval.inception_batch_size = 12, 24, 12
    c.eval.cache_dir = str(tmp_path / "cache")
    skipped = loop.evaluate(c, workdir)
    assert "fid" not in skipped and "not set" in skipped["fid_skipped"]
    c.eval.inception_weights = random_inception_npz(str(tmp_path / "inception.npz"), seed=0)
    first = loop.evaluate(c, workdir)
    assert np.isfinite(first["fid"]) and first["fid"] > 0
    assert first["fid_num_samples"] == 12 and first["fid_reference"] == "train split, 24 images"
    assert 1.0 <= first["inception_score"] <= 1008
    (stats,) = glob.glob(os.path.join(c.eval.cache_dir, "fid_stats", "*.npz"))
    again = loop.evaluate(c, workdir)  # reference statistics now come from the cache
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-6)
    with open(stats, "wb") as f:
        f.write(b"not an npz")
    recomputed = loop.evaluate(c, workdir)  # an unreadable cache is recomputed, not trusted
    assert recomputed["fid"] == pytest.approx(first["fid"], rel=1e-6)
    c.eval.inception_weights = str(tmp_path / "missing.npz")
    assert "no file at" in loop.evaluate(c, workdir)["fid_skipped"]
