"""Sample-quality evaluators on images: the domain feature distance ``fd`` (and ``fd_backbone``, of a
two-stage prior's backbone alone; ``fd_recon``, of test reconstructions) and FID / Inception Score."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import numpy as np

from latentebm_jax import device_map
from latentebm_jax.config_schema import ConfigError, Setting, positive
from latentebm_jax.data import iterate_once, load_source, without_class
from latentebm_jax.evaluation.cache import file_digest
from latentebm_jax.methods.base import EvalContext, Evaluator
from latentebm_jax.methods.eval_tools import generate_batches, reference_images
from latentebm_jax.metrics.domain import domain_classifier
from latentebm_jax.metrics.frechet import GaussianStats, frechet_distance_between, gaussian_stats
from latentebm_jax.metrics.inception_score import inception_score
from latentebm_jax.progress import tqdm

log = logging.getLogger("latentebm_jax.evaluation")

_FD_STREAM, _FID_STREAM, _FD_RECON_STREAM = 1, 2, 3

DOMAIN_CLASSIFIER = {
    "fd_classifier_epochs": Setting(30, "epochs of the domain classifier (cached)", check=positive)
}
FD_SETTINGS = {
    "fd_num_samples": Setting(1000, "samples scored by fd", check=lambda x: x >= 2, what="an integer >= 2"),
    "fd_reference_max": Setting(-1, "training images in fd's reference statistics (-1 = all)"),
    **DOMAIN_CLASSIFIER,
}
FID_SETTINGS = {
    "inception_weights": Setting("", "pytorch-fid Inception weights as .npz (FID is skipped without it)"),
    "fid_num_samples": Setting(
        50000, "samples scored by FID (the papers: 50,000)", check=lambda x: x >= 10, what="an integer >= 10"
    ),
    "fid_reference": Setting("train", "split of FID's reference statistics", choices=("train", "test")),
    "fid_reference_max": Setting(-1, "reference images (-1 = the whole split)"),
    "inception_batch_size": Setting(50, "images per Inception forward pass and device", check=positive),
}


def fd(ctx: EvalContext) -> dict[str, Any]:
    """Fréchet distance on the features of a classifier trained on the dataset's labelled training split,
    between ``eval.fd_num_samples`` samples and the training images; ``fd_real_test``, the same for held-out
    real images, is the floor a perfect model reaches."""
    return fd_of(ctx, "generate", "fd")


def fd_backbone(ctx: EvalContext) -> dict[str, Any]:
    """``fd_backbone``: :func:`fd` of a two-stage prior's backbone alone (predict ``generate_backbone``; the
    diffusion prior's ``ũ ~ N(0, I)``, ``z̃ = T(ũ)``, ICML 2024 Table 1's baseline), beside the prior's
    ``fd`` in the same ``summary.json``."""
    return fd_of(ctx, "generate_backbone", "fd_backbone")


def fd_reconstructions(ctx: EvalContext) -> dict[str, Any]:
    """``fd_recon``: :func:`fd` of the reconstructions (posterior sample, decoded) of held-out test images —
    what a prior that matched the aggregated posterior exactly would reach with this generator. ``fd −
    fd_recon`` is the part of the sample-quality gap that lies with the prior (its "holes"); the rest lies
    with the generator."""
    reconstruct, params = ctx.method.predict["reconstruct"], device_map.replicate(ctx.params)
    key = jax.random.fold_in(ctx.key, _FD_RECON_STREAM)

    def images(test) -> np.ndarray:
        n, parts = ctx.config.eval.fd_num_samples, []
        for i, (batch, valid) in enumerate(iterate_once(test, ctx.config.eval.batch_size, n)):
            out = device_map.map_batch(reconstruct, params, batch, jax.random.fold_in(key, i))
            parts.append(np.asarray(out["image"])[:valid])
        return np.concatenate(parts)

    return fd_of(ctx, None, "fd_recon", images=images)


def fd_of(ctx: EvalContext, predict_name: str | None, what: str, images=None) -> dict[str, Any]:
    """:func:`fd` of the samples of predict function ``predict_name`` (``generate``'s signature), or of
    ``images(test split)``, reported as ``<what>``, ``<what>_real_test``, …"""
    cfg, ecfg = ctx.config, ctx.config.eval
    full_train = load_source(cfg.data, cfg.data.train_split)
    if np.any(full_train.labels() < 0):
        ctx.say(f"fd skipped: dataset {cfg.data.name!r} has no labels to train the domain classifier")
        return {"fd_skipped": "no labels"}
    t0 = time.time()
    clf = domain_classifier(
        ctx.cache_dir, ctx.dataset_id, full_train, ctx.splits.test, seed=0, epochs=ecfg.fd_classifier_epochs
    )
    reference = gaussian_stats(clf.features(reference_images(ctx.splits.train, ecfg.fd_reference_max)))
    test = ctx.splits.test
    if ctx.splits.holdout_class in set(test.labels().tolist()):
        test = without_class(test, ctx.splits.holdout_class)  # the distribution the model was trained on
    if images is not None:
        samples = images(test)
    else:
        samples = generate_batches(
            ctx.method.predict[predict_name],
            ctx.params,
            jax.random.fold_in(ctx.key, _FD_STREAM),
            ecfg.fd_num_samples,
            ecfg.batch_size,
            f"{what} samples",
            ctx.main_process,
        )["image"]
    real = reference_images(test, ecfg.fd_num_samples)
    return {
        what: frechet_distance_between(gaussian_stats(clf.features(samples)), reference),
        f"{what}_real_test": frechet_distance_between(gaussian_stats(clf.features(real)), reference),
        f"{what}_classifier_test_accuracy": clf.test_accuracy,
        f"{what}_num_samples": len(samples),
        f"{what}_num_reference": reference.count,
        f"{what}_seconds": round(time.time() - t0, 2),
    }


def fid(ctx: EvalContext) -> dict[str, Any]:
    """FID and Inception Score with pytorch-fid's Inception network (``eval.inception_weights``), samples
    clipped to ``[−1, 1]`` as the papers' FID code; reference statistics cached next to the data. Sampling
    and the Inception features run on every local device (:mod:`latentebm_jax.device_map`)."""
    ecfg = ctx.config.eval
    path = ecfg.inception_weights
    if not path or not os.path.isfile(path):
        why = "eval.inception_weights is not set" if not path else f"no file at {path}"
        ctx.say(
            f"FID skipped: {why} (convert pytorch-fid's weights with python -m "
            f"experiments.convert_fid_inception and pass --config.eval.inception_weights=FILE)"
        )
        return {"fid_skipped": why}
    from latentebm_jax.metrics.inception import InceptionExtractor, load_inception_params

    t0 = time.time()
    extractor = InceptionExtractor(load_inception_params(path), batch_size=ecfg.inception_batch_size)
    reference = ctx.splits.train if ecfg.fid_reference == "train" else ctx.splits.test
    n_ref = len(reference) if ecfg.fid_reference_max < 0 else min(ecfg.fid_reference_max, len(reference))
    holdout = ctx.splits.holdout_class
    stats_path = os.path.join(
        ctx.cache_dir,
        "fid_stats",
        f"{ctx.dataset_id}_{ecfg.fid_reference}_holdout{holdout}_n{n_ref}_w{file_digest(path)}.npz",
    )
    ref_stats = None
    if os.path.exists(stats_path):
        try:
            ref_stats = GaussianStats.load(stats_path)
        except (OSError, ValueError, KeyError) as err:
            log.warning("cached FID statistics %s are unreadable (%s); recomputing them", stats_path, err)
    if ref_stats is None:
        pools, per_pass = [], ecfg.inception_batch_size * len(device_map.local_devices())
        for batch, valid in tqdm(iterate_once(reference, per_pass, n_ref), desc="FID reference", leave=False):
            pools.append(extractor.features(np.clip(batch["image"][:valid], -1.0, 1.0))[0])
        ref_stats = gaussian_stats(np.concatenate(pools))
        if ctx.main_process:
            ref_stats.save(stats_path)
    generate, key = ctx.method.predict["generate"], jax.random.fold_in(ctx.key, _FID_STREAM)
    params = device_map.replicate(ctx.params)
    pools, logits = [], []
    done, chunk, i = 0, max(ecfg.batch_size, 1), 0
    with tqdm(total=ecfg.fid_num_samples, desc="FID samples", leave=False) as bar:
        while done < ecfg.fid_num_samples:
            take = min(chunk, ecfg.fid_num_samples - done)
            images = device_map.map_generate(generate, params, jax.random.fold_in(key, i), chunk)["image"]
            images = np.asarray(images)[:take]
            pool, logit = extractor.features(np.clip(images, -1.0, 1.0))  # the papers' FID code clamps
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


def _check_fid(config) -> None:
    """A weights file that is named and exists must be readable now, not after the whole training."""
    path = config.eval.inception_weights
    if path and os.path.isfile(path):
        from latentebm_jax.metrics.inception import InceptionWeightsError, load_inception_params

        try:
            load_inception_params(path)
        except InceptionWeightsError as err:
            raise ConfigError(f"config key 'eval.inception_weights': {err}") from err


EVALUATORS = (
    Evaluator(
        "fd",
        fd,
        "domain feature distance of samples to the training images (a classifier trained on the data)",
        needs=("generate",),
        reads=("image",),
        settings=FD_SETTINGS,
    ),
    Evaluator(
        "fd_backbone",
        fd_backbone,
        "fd of the backbone alone (a two-stage prior's generator without its EBM): Table 1's baseline",
        needs=("generate_backbone",),
        reads=("image",),
        settings=FD_SETTINGS,
    ),
    Evaluator(
        "fd_recon",
        fd_reconstructions,
        "fd of test reconstructions: what a prior matching the aggregated posterior would reach (fd − "
        "fd_recon: the prior's share of the gap)",
        needs=("reconstruct",),
        reads=("image",),
        settings=FD_SETTINGS,
    ),
    Evaluator(
        "fid",
        fid,
        "FID and Inception Score with a local pytorch-fid Inception weights file",
        needs=("generate",),
        reads=("image",),
        settings=FID_SETTINGS,
        check=_check_fid,
    ),
)
