"""Samples in and out, for the FID tools the community compares with.

* :func:`export_samples` (``--mode=sample --num_samples=N``): ``N`` prior samples of a trained model as
  ``samples_<N>.npz`` (key ``arr_0``, uint8, NHWC: the layout of the OpenAI/TF evaluator scripts) and as a
  folder ``samples_<N>/`` of PNG files (what clean-fid, torch-fidelity and the TTUR TF FID script read).
* :func:`score_samples` (``--mode=eval --samples_npz=FILE``): someone else's samples, in the same layout,
  scored with this library's ``fd`` and (given ``eval.inception_weights``) FID and Inception Score against
  the config's dataset; no checkpoint is needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
from typing import Any

import jax
import numpy as np

from latentebm_jax import device_map
from latentebm_jax.config_schema import ConfigError
from latentebm_jax.data import DataSplits
from latentebm_jax.data.preprocess import to_uint8
from latentebm_jax.evaluation import generation
from latentebm_jax.methods import spec
from latentebm_jax.progress import tqdm
from latentebm_jax.training.setup import SAMPLE_STREAM, RunSetup, is_main_process, stream_key

NPZ_KEYS = ("arr_0", "samples", "images", "x")


class SamplesFileError(ValueError):
    """A samples file that cannot be scored (the message names the file, what it holds and what is needed)."""


def export_samples(setup: RunSetup, params: Any, out_dir: str, num: int, step: int) -> list[str]:
    """``num`` samples of ``generate`` as ``<out_dir>/samples_<num>.npz`` and ``<out_dir>/samples_<num>/``
    (PNG files ``000000.png`` …), drawn on every local device; returns both paths."""
    from PIL import Image

    if "generate" not in setup.method.predict or "image" not in spec(setup.config.method).batch_fields:
        raise ConfigError(
            f"--num_samples exports images; method {setup.config.method!r} does not generate any"
        )
    key = jax.random.fold_in(stream_key(setup.config.seed, SAMPLE_STREAM), step)
    generate, batch_size = setup.method.predict["generate"], setup.config.eval.batch_size
    parts, params = [], device_map.replicate(params)  # one compiled batch shape, the last batch cut
    for i in tqdm(range(-(-num // batch_size)), desc="export samples", leave=False):
        sample = device_map.map_generate(generate, params, jax.random.fold_in(key, i), batch_size)
        parts.append(to_uint8(jax.device_get(sample["image"])))
    images = np.concatenate(parts)[:num]
    os.makedirs(out_dir, exist_ok=True)
    npz = os.path.join(out_dir, f"samples_{num}.npz")
    np.savez(npz, arr_0=images)
    folder = os.path.join(out_dir, f"samples_{num}")
    os.makedirs(folder, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(os.path.join(folder, f"{i:06d}.png"))
    return [npz, folder]


def load_samples(path: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """The images of a samples ``.npz`` as float ``[−1, 1]``, after checking they are uint8 NHWC images of
    the dataset's ``image_shape``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--samples_npz file {path} does not exist")
    try:
        with np.load(path) as f:
            key = next((k for k in NPZ_KEYS if k in f.files), f.files[0] if len(f.files) == 1 else None)
            if key is None:
                raise SamplesFileError(
                    f"{path} holds arrays {f.files}; expected one array, or one named {' / '.join(NPZ_KEYS)}"
                )
            images = f[key]
    except (OSError, ValueError) as err:
        if isinstance(err, SamplesFileError):
            raise
        raise SamplesFileError(f"{path} is not a readable .npz file ({err})") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise SamplesFileError(
            f"{path}: array {key!r} has dtype {images.dtype} and shape {images.shape}; expected uint8 images "
            f"(N, H, W, C) in [0, 255], e.g. (N, {', '.join(map(str, image_shape))})"
        )
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise SamplesFileError(
            f"{path}: images of shape {images.shape[1:]} do not match the dataset's {tuple(image_shape)}; "
            f"score them with the config of that image size"
        )
    return images.astype(np.float32) / 127.5 - 1.0


def score_samples(config, npz_path: str, workdir: str, *, splits: DataSplits | None = None) -> dict[str, Any]:
    """``fd`` and, with ``eval.inception_weights``, FID and Inception Score of the samples in ``npz_path``
    against the config's dataset, on at most as many samples as the file holds. Writes
    ``<workdir>/scores_<file name>.json`` and returns the numbers."""
    config = config.copy_and_resolve_references()
    config.eval.metrics = ()
    config.eval.interval_metrics = ()
    setup = RunSetup(config, splits)
    images = load_samples(npz_path, setup.splits.train.image_shape)
    n = len(images)
    ecfg = config.eval
    ecfg.fd_num_samples = min(ecfg.fd_num_samples, n)
    ecfg.fid_num_samples = min(ecfg.fid_num_samples, n)
    served = {"next": 0}

    def serve(params, key, num):  # the file's images in order, as a generator would return them
        start = served["next"]
        served["next"] = start + num
        batch = images[start : start + num]
        if len(batch) < num:  # the last batch of a generator is always full; pad with the first images
            batch = np.concatenate([batch, images[: num - len(batch)]])
        return {"image": batch}

    ctx = setup.context(None, workdir, 0, SAMPLE_STREAM)
    # the evaluators' view with the file in place of a model: only ``generate`` is called
    ctx = dataclasses.replace(ctx, method=types.SimpleNamespace(predict={"generate": serve}))
    out: dict[str, Any] = {"samples_file": os.path.abspath(npz_path), "samples_in_file": n}
    out.update(generation.fd(ctx))
    served["next"] = 0
    out.update(generation.fid(ctx))
    if is_main_process():
        os.makedirs(workdir, exist_ok=True)
        name = os.path.splitext(os.path.basename(npz_path))[0]
        with open(os.path.join(workdir, f"scores_{name}.json"), "w") as f:
            json.dump(out, f, indent=2, sort_keys=True, default=float)
    return out
