"""Evaluation and sampling of a trained model: the numbers of the papers' tables and the pictures.

:func:`evaluate` writes ``summary.json`` with whatever the config asks for:

* always: reconstruction error on the test split (``recon_mse`` per pixel, ``recon_rmse``, value range);
* ``eval.anomaly``: AUPRC with the held-out class as anomalies, score ``−log p(x, z)`` (LEBM Sec. 3.4);
* ``eval.fd``: the domain feature distance ``fd`` with its classifier's held-out accuracy;
* ``eval.fid``: FID and Inception Score, given a local Inception weights file (else skipped, and said so);
* ``eval.probe``: per-layer latent probe accuracies (ICCV 2023 Table 1);
* ``eval.hierarchy``: latent-space figures and latent-attack numbers (``training/representation.py``).
* ``eval.ood``: the diffusion prior's OOD by layer; BiDVL's OOD AUROC of ``−E(v)`` (bidvl_eval.py).

Pictures: ``samples.png``, ``reconstructions.png`` and long-run chains ``chain_<K'>.png``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from latentebm_jax import viz
from latentebm_jax.data import (
    TFDS_DATASETS,
    DataSplits,
    ImageSource,
    iterate_once,
    load_source,
    only_classes,
    without_class,
)
from latentebm_jax.data.tfds_sources import default_data_dir
from latentebm_jax.methods import Method
from latentebm_jax.metrics import auprc, per_example_mse
from latentebm_jax.metrics.domain import domain_classifier
from latentebm_jax.metrics.frechet import GaussianStats, frechet_distance_between, gaussian_stats
from latentebm_jax.metrics.inception_score import inception_score
from latentebm_jax.metrics.probe import layer_probe_accuracies
from latentebm_jax.metrics.reconstruction import reconstruction_errors
from latentebm_jax.training.checkpoint import Checkpointer
from latentebm_jax.training.metrics_writer import MetricsWriter, write_json
from latentebm_jax.training.representation import write_representation_figures
from latentebm_jax.training.setup import (
    EVAL_STREAM,
    SAMPLE_STREAM,
    RunSetup,
    is_main_process,
    restore_latest,
    say,
    stream_key,
)
from latentebm_jax.training.state import TrainState

log = logging.getLogger("latentebm_jax.training")


def cache_root(config) -> str:
    """Where metric caches live: ``eval.cache_dir``; else next to the data (``<data_dir>/latentebm_jax_cache``
    for tfds datasets); else ``$LATENTEBM_JAX_CACHE`` or ``~/.cache/latentebm_jax`` (embedded data)."""
    if config.eval.cache_dir:
        return config.eval.cache_dir
    if config.data.name in TFDS_DATASETS:
        return os.path.join(config.data.data_dir or default_data_dir(), "latentebm_jax_cache")
    return os.environ.get("LATENTEBM_JAX_CACHE") or os.path.expanduser("~/.cache/latentebm_jax")


def dataset_id(config) -> str:
    """A file-name-safe identity of the preprocessed dataset (name, size, channels, crop, resizing)."""
    d = config.data
    return f"{d.name}_{d.image_size}x{d.image_size}x{d.channels}_{d.crop}_{d.resize_method}"


def generate_many(
    method: Method, params: Any, key: jax.Array, num: int, batch_size: int, desc: str = "sampling"
) -> np.ndarray:
    """``num`` samples in batches of ``batch_size`` (one compiled shape), as a NumPy array."""
    out, made = [], 0
    with tqdm(total=num, desc=desc, unit="img", leave=False, disable=not is_main_process()) as bar:
        for i in range((num + batch_size - 1) // batch_size):
            images = np.asarray(method.generate(params, jax.random.fold_in(key, i), batch_size))
            take = min(batch_size, num - made)
            out.append(images[:take])
            made += take
            bar.update(take)
    return np.concatenate(out)


def _reference_images(source: ImageSource, limit: int) -> np.ndarray:
    n = len(source) if limit < 0 else min(limit, len(source))
    return np.concatenate([b["image"][:v] for b, v in iterate_once(source, 500, n)])


def _reconstruction_and_anomaly(setup: RunSetup, params, key) -> tuple[dict, tuple]:
    cfg, method = setup.config, setup.method
    ecfg, test = cfg.eval, setup.splits.test
    limit = None if ecfg.max_test_examples < 0 else ecfg.max_test_examples
    want_anomaly = bool(ecfg.anomaly) and method.log_joint is not None
    mses, scores, labels, shown = [], [], [], None
    n_batches = -(-min(len(test), limit or len(test)) // ecfg.batch_size)
    batches = iterate_once(test, ecfg.batch_size, limit)
    for i, (batch, valid) in enumerate(tqdm(batches, total=n_batches, desc="reconstruct", leave=False)):
        x, k = batch["image"], jax.random.fold_in(key, i)
        if want_anomaly and method.reconstruct_and_log_joint is not None:
            # one posterior inference serves both the reconstruction and the anomaly score
            x_hat, log_joint = method.reconstruct_and_log_joint(params, x, k)
        else:
            x_hat = method.reconstruct(params, x, k)
            log_joint = method.log_joint(params, x, jax.random.fold_in(k, 1)) if want_anomaly else None
        x_hat = np.asarray(x_hat)
        mses.append(per_example_mse(x[:valid], x_hat[:valid]))
        if shown is None:
            shown = (x[: min(valid, 50)], x_hat[: min(valid, 50)])
        if want_anomaly:
            scores.append(-np.asarray(log_joint)[:valid])
            labels.append((batch["label"][:valid] == setup.splits.holdout_class).astype(np.int64))
    mse = np.concatenate(mses)
    out: dict[str, Any] = {"num_test_examples": len(mse), **reconstruction_errors(mse)}
    if want_anomaly:
        s, y = np.concatenate(scores), np.concatenate(labels)
        out.update(
            {
                "auprc": auprc(s, y),
                "anomaly_class": setup.splits.holdout_class,
                "anomaly_fraction": float(np.mean(y)),
                "anomaly_score": "-log p(x, z) at posterior samples",
            }
        )
    return out, shown


def _domain_distance(setup: RunSetup, params, key) -> dict:
    cfg, ecfg = setup.config, setup.config.eval
    full_train = load_source(cfg.data, cfg.data.train_split)
    if np.any(full_train.labels() < 0):
        say(f"fd skipped: dataset {cfg.data.name!r} has no labels to train the domain classifier")
        return {"fd_skipped": "no labels"}
    t0 = time.time()
    clf = domain_classifier(
        cache_root(cfg),
        dataset_id(cfg),
        full_train,
        setup.splits.test,
        seed=0,
        epochs=ecfg.fd_classifier_epochs,
    )
    reference = gaussian_stats(clf.features(_reference_images(setup.splits.train, ecfg.fd_reference_max)))
    samples = generate_many(setup.method, params, key, ecfg.fd_num_samples, ecfg.batch_size, "fd samples")
    test = setup.splits.test
    if setup.splits.holdout_class in set(test.labels().tolist()):
        test = without_class(test, setup.splits.holdout_class)  # the distribution the model was trained on
    real = _reference_images(test, ecfg.fd_num_samples)
    return {
        "fd": frechet_distance_between(gaussian_stats(clf.features(samples)), reference),
        # the same distance for real held-out images: the floor a perfect model would reach
        "fd_real_test": frechet_distance_between(gaussian_stats(clf.features(real)), reference),
        "fd_classifier_test_accuracy": clf.test_accuracy,
        "fd_num_samples": len(samples),
        "fd_num_reference": reference.count,
        "fd_seconds": round(time.time() - t0, 2),
    }


def _file_digest(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def _inception_metrics(setup: RunSetup, params, key) -> dict:
    cfg, ecfg = setup.config, setup.config.eval
    path = ecfg.inception_weights
    if not path or not os.path.isfile(path):
        why = "eval.inception_weights is not set" if not path else f"no file at {path}"
        say(
            f"FID skipped: {why} (convert pytorch-fid's weights with python -m "
            f"experiments.convert_fid_inception and pass --config.eval.inception_weights=FILE)"
        )
        return {"fid_skipped": why}
    from latentebm_jax.metrics.inception import InceptionExtractor, load_inception_params

    t0 = time.time()
    extractor = InceptionExtractor(load_inception_params(path), batch_size=ecfg.inception_batch_size)
    reference = setup.splits.train if ecfg.fid_reference == "train" else setup.splits.test
    n_ref = len(reference) if ecfg.fid_reference_max < 0 else min(ecfg.fid_reference_max, len(reference))
    holdout = setup.splits.holdout_class
    stats_path = os.path.join(
        cache_root(cfg),
        "fid_stats",
        f"{dataset_id(cfg)}_{ecfg.fid_reference}_holdout{holdout}_n{n_ref}_w{_file_digest(path)}.npz",
    )
    ref_stats = None
    if os.path.exists(stats_path):
        try:
            ref_stats = GaussianStats.load(stats_path)
        except (OSError, ValueError, KeyError) as err:
            log.warning("cached FID statistics %s are unreadable (%s); recomputing them", stats_path, err)
    if ref_stats is None:
        pools = []
        for batch, valid in tqdm(
            iterate_once(reference, ecfg.inception_batch_size, n_ref), desc="FID reference", leave=False
        ):
            pools.append(extractor.features(np.clip(batch["image"][:valid], -1.0, 1.0))[0])
        ref_stats = gaussian_stats(np.concatenate(pools))
        if is_main_process():
            ref_stats.save(stats_path)
    pools, logits = [], []
    done, chunk = 0, max(ecfg.batch_size, 1)
    with tqdm(total=ecfg.fid_num_samples, desc="FID samples", leave=False) as bar:
        i = 0
        while done < ecfg.fid_num_samples:
            take = min(chunk, ecfg.fid_num_samples - done)
            images = np.asarray(setup.method.generate(params, jax.random.fold_in(key, i), chunk))[:take]
            images = np.clip(images, -1.0, 1.0)  # as the papers' FID code: map to [0, 1] and clamp
            pool, logit = extractor.features(images)
            pools.append(pool)
            logits.append(logit)
            done, i = done + take, i + 1
            bar.update(take)
    pools, logits = np.concatenate(pools), np.concatenate(logits)
    is_mean, is_std = inception_score(logits, splits=min(10, len(logits)))
    return {
        "fid": frechet_distance_between(gaussian_stats(pools), ref_stats),
        "inception_score": is_mean,
        "inception_score_std": is_std,
        "fid_num_samples": len(pools),
        "fid_reference": f"{ecfg.fid_reference} split, {ref_stats.count} images",
        "fid_seconds": round(time.time() - t0, 2),
    }


def _latents(setup: RunSetup, params, source: ImageSource, limit: int, key) -> tuple[list, np.ndarray]:
    """Inferred latents of ``source`` as one ``(n, ...)`` array per layer, and the labels."""
    per_batch, labels = [], []
    ecfg = setup.config.eval
    for i, (batch, valid) in enumerate(iterate_once(source, ecfg.batch_size, limit)):
        z = setup.method.infer_latents(params, batch["image"], jax.random.fold_in(key, i))
        per_batch.append([np.asarray(leaf)[:valid] for leaf in jax.tree.leaves(z)])
        labels.append(batch["label"][:valid])
    layers = [np.concatenate(parts) for parts in zip(*per_batch)]
    return layers, np.concatenate(labels)


def _probes(setup: RunSetup, params, key) -> dict:
    cfg, ecfg = setup.config, setup.config.eval
    if setup.method.infer_latents is None:
        return {"probe_skipped": f"method {cfg.method} infers no latents"}
    full_train = load_source(cfg.data, cfg.data.train_split)
    if cfg.data.classes:
        full_train = only_classes(full_train, tuple(cfg.data.classes))
    if np.any(full_train.labels() < 0):
        say(f"latent probes skipped: dataset {cfg.data.name!r} has no labels")
        return {"probe_skipped": "no labels"}
    t0 = time.time()
    limit = ecfg.probe_max_examples if ecfg.probe_max_examples > 0 else None
    z_train, y_train = _latents(setup, params, full_train, limit, jax.random.fold_in(key, 0))
    z_test, y_test = _latents(setup, params, setup.splits.test, limit, jax.random.fold_in(key, 1))
    accs = layer_probe_accuracies(z_train, y_train, z_test, y_test, epochs=ecfg.probe_epochs)
    return {
        "probe_accuracy": accs,  # one per latent layer, bottom first
        "probe_train_examples": len(y_train),
        "probe_seconds": round(time.time() - t0, 2),
    }


def _method_specific(setup: RunSetup, params, workdir: str, key) -> dict:
    """The diffusion prior's OOD-by-layer and controllable-synthesis evaluations (stage 2); BiDVL's OOD
    detection by the negative marginal energy (``training/bidvl_eval.py``)."""
    from latentebm_jax.methods.bidvl import BiDVLTools
    from latentebm_jax.methods.diffusion import DiffusionTools

    tools, ecfg = setup.method.extras, setup.config.eval
    if isinstance(tools, BiDVLTools):
        if not (ecfg.ood and is_main_process()):
            return {}
        from latentebm_jax.training import bidvl_eval

        t0 = time.time()
        out = bidvl_eval.ood_detection(setup, params, workdir, key)
        return {**out, "ood_seconds": round(time.time() - t0, 2)}
    if not isinstance(tools, DiffusionTools) or not is_main_process():
        return {}
    from latentebm_jax.training import diffusion_eval

    out: dict[str, Any] = {}
    if ecfg.ood:
        t0 = time.time()
        out.update(diffusion_eval.ood_by_layer(setup, params, workdir, jax.random.fold_in(key, 0)))
        out["ood_seconds"] = round(time.time() - t0, 2)
    if tools.class_logits is not None:
        if np.any(setup.splits.train.labels() < 0) and not tuple(setup.config.data.attributes):
            say("controllable synthesis skipped: the dataset has no labels (or data.attributes)")
        else:
            key_labels = jax.random.fold_in(key, 1)
            out.update(diffusion_eval.controllable_synthesis(setup, params, workdir, key_labels))
    return out


def evaluate(
    config,
    workdir: str,
    *,
    splits: DataSplits | None = None,
    state: TrainState | None = None,
    setup: RunSetup | None = None,
) -> dict[str, Any]:
    """Evaluate the newest checkpoint in ``workdir`` (or ``state``) and write ``summary.json``."""
    t0 = time.time()
    setup = setup or RunSetup(config, splits)
    if state is None:
        state = restore_latest(Checkpointer(workdir, config.train.keep_checkpoints), setup.initial_state())
        if int(state.step) == 0:
            log.warning("no checkpoint in %s: evaluating the untrained initial model", workdir)
    params = jax.device_put(setup.method.inference_params(state))
    step = int(state.step)
    key = jax.random.fold_in(stream_key(config.seed, EVAL_STREAM), step)
    ecfg = config.eval
    summary: dict[str, Any] = {"method": config.method, "dataset": config.data.name, "step": step}
    if setup.method.modality == "text":
        from latentebm_jax.training import text_eval

        summary.update(text_eval.evaluate_text(setup, params, workdir, key, step))
        return _finish(summary, workdir, step, t0)
    recon, shown = _reconstruction_and_anomaly(setup, params, jax.random.fold_in(key, 0))
    summary.update(recon)
    if ecfg.fd:
        summary.update(_domain_distance(setup, params, jax.random.fold_in(key, 1)))
    if ecfg.fid:
        summary.update(_inception_metrics(setup, params, jax.random.fold_in(key, 2)))
    if ecfg.probe:
        summary.update(_probes(setup, params, jax.random.fold_in(key, 3)))
    if ecfg.hierarchy and is_main_process():
        summary.update(write_representation_figures(setup, params, workdir, jax.random.fold_in(key, 4)))
    summary.update(_method_specific(setup, params, workdir, jax.random.fold_in(key, 5)))
    if is_main_process():
        viz.save_reconstructions(*shown, os.path.join(workdir, "reconstructions.png"))
        write_samples_and_chains(setup, params, workdir, step, EVAL_STREAM)
    return _finish(summary, workdir, step, t0)


def _finish(summary: dict[str, Any], workdir: str, step: int, t0: float) -> dict[str, Any]:
    """Add the evaluation time; write ``summary.json`` and the ``eval/`` numbers to ``metrics.jsonl``."""
    summary["eval_seconds"] = round(time.time() - t0, 2)
    if is_main_process():
        write_json(os.path.join(workdir, "summary.json"), summary)
        numbers = {f"eval/{k}": v for k, v in summary.items() if isinstance(v, float)}
        MetricsWriter(os.path.join(workdir, "metrics.jsonl")).write(step, numbers)
    return summary


def write_samples_and_chains(
    setup: RunSetup, params: Any, workdir: str, step: int, stream: int, subdir: str = ""
) -> list[str]:
    """``samples.png`` and one ``chain_<K'>.png`` (+ ``_energy.npy``) per long-run length; returns paths.

    Text models write ``samples.txt`` and ``chain_<K'>.txt`` / ``_energy.png`` instead (``text_eval.py``).
    """
    cfg, method = setup.config, setup.method
    key = jax.random.fold_in(stream_key(cfg.seed, stream), step)
    out = os.path.join(workdir, subdir)
    if method.modality == "text":
        from latentebm_jax.training import text_eval

        return text_eval.write_text_outputs(setup, params, out, key, step)
    samples = np.asarray(method.generate(params, jax.random.fold_in(key, 0), cfg.eval.num_samples))
    paths = [viz.save_image_grid(samples, os.path.join(out, "samples.png"))]
    if method.long_run_chain is None:
        return paths
    for steps in cfg.eval.long_run_steps:
        frames = min(cfg.eval.long_run_frames, steps)
        record_every = max(1, steps // frames)
        steps_run = record_every * (steps // record_every)
        chain = jax.device_get(
            method.long_run_chain(
                params, jax.random.fold_in(key, steps), cfg.eval.long_run_chains, steps_run, record_every
            )
        )
        paths.append(
            viz.save_chain_figure(
                chain["images"],
                chain["steps"],
                chain["energy"],
                os.path.join(out, f"chain_{steps}.png"),
                title=f"{cfg.method}: long-run prior Langevin, K'={steps_run} (checkpoint step {step})",
            )
        )
        np.save(os.path.join(out, f"chain_{steps}_energy.npy"), np.asarray(chain["energy"]))
    return paths


def sample(config, workdir: str, *, splits: DataSplits | None = None) -> list[str]:
    """Write samples and long-run chains of the newest checkpoint to ``<workdir>/samples_final``."""
    setup = RunSetup(config, splits)
    ckpt = Checkpointer(workdir, config.train.keep_checkpoints)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt.directory}: train first (--mode=train)")
    state = restore_latest(ckpt, setup.initial_state())
    params = jax.device_put(setup.method.inference_params(state))
    return write_samples_and_chains(
        setup, params, workdir, int(state.step), SAMPLE_STREAM, subdir="samples_final"
    )
