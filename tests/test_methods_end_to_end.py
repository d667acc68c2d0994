"""Every registered method through the runner at tiny sizes: train two steps, checkpoint, evaluate, and
restore the checkpoint in a fresh setup (into ``Method.state_shapes``, nothing initialised).

The long runs that check learning are behind ``-m slow`` (one per method); this module checks the seams:
config groups, ``make``, the predict functions the evaluators call, checkpoint round trips. (LEBM's tiny run
with every digits evaluator is tests/test_loop.py.)"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import apply_overrides

from configs import default, digits, digits_nvae, text_toy
from latentebm_jax import methods
from latentebm_jax.checkpoint import Checkpointer
from latentebm_jax.training import loop
from latentebm_jax.training.setup import RunSetup

RUN = {
    "train.num_steps": 2,
    "train.batch_size": 10,
    "train.log_every": 1,
    "train.ckpt_every": 2,
    "train.eval_every": 1,
    "eval.batch_size": 40,
    "eval.max_test_examples": 40,
    "eval.num_samples": 4,
}
TINY = {
    "lebm": {"lebm.latent_dim": 2, "lebm.ngf": 4, "lebm.ebm_hidden": 4, "lebm.conv_impl": "xla",
             "sampler.prior_steps": 2, "sampler.posterior_steps": 2,
             "eval.metrics": ("reconstruction", "anomaly", "samples", "chains"), "eval.long_run_steps": (2,),
             "eval.long_run_chains": 2},
    "joint": {"data.image_size": 8, "joint.latent_dims": (2, 2), "joint.widths": (4, 4, 8),
              "joint.ebm_hidden": 4, "joint.conv_impl": "xla", "sampler.prior_steps": 2,
              "eval.metrics": ("reconstruction", "anomaly", "samples")},
    "hvae": {"data.image_size": 8, "backbone.latent_dims": (2, 2), "backbone.widths": (4, 4, 8),
             "backbone.prior_hidden": 4, "backbone.conv_impl": "xla",
             "eval.metrics": ("reconstruction", "anomaly", "samples")},
    "diffusion": {"data.image_size": 8, "backbone.latent_dims": (2, 2), "backbone.widths": (4, 4, 8),
                  "backbone.prior_hidden": 4, "backbone.conv_impl": "xla", "diffusion.langevin_steps": 1,
                  "diffusion.ebm_hidden": 4, "diffusion.ebm_blocks": 1,
                  "eval.metrics": ("reconstruction", "samples")},
    "nvae": {"backbone.num_channels_enc": 4, "backbone.num_channels_dec": 4,
             "backbone.num_latent_per_group": 2, "backbone.num_nf": 1, "nvae.warmup_epochs": 1,
             "eval.metrics": ("reconstruction", "anomaly", "samples")},
    "bidvl": {"bidvl.latent_dim": 2, "bidvl.enc_width": 2, "bidvl.gen_width": 2, "bidvl.ebm_width": 2,
              "bidvl.conv_impl": "xla", "eval.metrics": ("reconstruction", "samples")},
    "lebm_text": {"lebm_text.latent_dim": 2, "lebm_text.ebm_hidden": 4, "lebm_text.embed_dim": 4,
                  "lebm_text.decoder_hidden": 4, "data.max_len": 12, "sampler.prior_steps": 2,
                  "sampler.posterior_steps": 2, "eval.metrics": ("recon_nll", "text_samples")},
}  # fmt: skip
WRITES = {
    "lebm": ("reconstructions.png", "samples.png", "chain_2.png", "samples/samples_0000001.png"),
    "joint": ("reconstructions.png", "samples.png", "reconstructions/recon_0000001.png"),
    "hvae": ("reconstructions.png", "samples.png"),
    "diffusion": ("reconstructions.png", "samples.png"),
    "bidvl": ("reconstructions.png", "samples.png"),
    "nvae": ("reconstructions.png", "samples.png"),
    "lebm_text": ("samples.txt", "samples/samples_0000001.txt"),
}


def test_every_method_has_a_tiny_setting_here():
    assert set(TINY) == set(methods.SPECS)


def _config(method, **extra):
    if method == "lebm_text":
        c = text_toy.get_config()
    elif method == "nvae":
        c = digits_nvae.get_config(method)
    else:
        c = digits.get_config(method)
    apply_overrides(c, {**RUN, **TINY[method], **extra})
    default.validate(c)
    return c


@pytest.fixture(scope="module")
def backbone_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("hvae"))
    loop.train(_config("hvae"), workdir)
    return workdir


# NVAE's train step takes ~20 s to compile: behind -m slow, with stage 2 on it below. BiDVL's and the
# diffusion prior's round trips (with the HVAE backbone they train on, ~50 s of compilation on 2 cores) run
# there too, keeping the default run under 5 minutes; their steps' equations are checked in the default run
# (tests/test_bidvl.py, tests/test_diffusion_method.py).
SLOW_ROUND_TRIPS = ("nvae", "bidvl", "diffusion")
ROUND_TRIP = [
    pytest.param(m, marks=pytest.mark.slow) if m in SLOW_ROUND_TRIPS else m
    for m in sorted(set(TINY) - {"lebm"})
]


@pytest.mark.parametrize("method", ROUND_TRIP)
def test_train_evaluate_and_restore(method, tmp_path, request):
    # only stage 2 needs the trained backbone (a module fixture: trained once, when first asked for)
    extra = (
        {"diffusion.backbone_dir": request.getfixturevalue("backbone_run")} if method == "diffusion" else {}
    )
    config = _config(method, **extra)
    workdir = str(tmp_path / method)
    summary = loop.train(config, workdir)
    assert summary["step"] == 2 and Checkpointer(workdir).all_steps() == [2]
    for name in WRITES[method]:
        assert os.path.isfile(os.path.join(workdir, name)), name
    numbers = {k: v for k, v in summary.items() if isinstance(v, float) and "seconds" not in k}
    assert numbers and all(np.isfinite(v) for v in numbers.values()), numbers
    if method == "diffusion":  # the stage-2 checkpoint alone restores the run
        config = _config(method, **{"diffusion.backbone_dir": str(tmp_path / "gone")})
    # a fresh setup restores the checkpoint into Method.state_shapes (nothing initialised) and verifies every
    # array against the checksums in its manifest
    setup = RunSetup(config, None)
    state = setup.restore_or_init(Checkpointer(workdir))
    assert int(state.step) == 2
    assert Checkpointer(workdir).read_manifest(2)["config"]["method"] == method


@pytest.fixture(scope="module")
def nvae_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("nvae"))
    loop.train(_config("nvae"), workdir)
    return workdir


@pytest.mark.slow
def test_stage2_on_the_nvae_backbone(tmp_path, nvae_run):
    """The diffusion prior on an ``nvae`` run: one conv energy per latent group (spatial), Alg. 1 and 2, with
    ``fd`` beside ``fd_backbone``, OOD AUROC by layer (one per group), the class coupled at the top group
    (Eq. 14: conditional and compositional samples) and long-run chains; the stage-2 checkpoint alone
    restores the run; a backbone of another architecture is refused by key."""
    arch = {k: v for k, v in TINY["nvae"].items() if k.startswith("backbone.")}
    tiny = {**arch, "diffusion.langevin_steps": 1, "diffusion.ebm_hidden": 4, "diffusion.ebm_blocks": 1,
            "eval.metrics": ("reconstruction", "fd", "fd_backbone", "ood_by_layer", "controllable_synthesis",
                             "samples", "chains"),
            "diffusion.label_layers": (4,), "eval.label_samples_per_class": 2, "eval.compose_variations": 2,
            "eval.long_run_steps": (2,), "eval.long_run_chains": 2,
            "eval.fd_num_samples": 20, "eval.fd_classifier_epochs": 1,
            "eval.ood_max_examples": 20}  # fmt: skip

    def config(**extra):
        c = digits_nvae.get_config("diffusion")
        apply_overrides(c, {**RUN, **tiny, **extra})
        default.validate(c)
        return c

    workdir = str(tmp_path / "stage2")
    summary = loop.train(config(**{"diffusion.backbone_dir": nvae_run}), workdir)
    assert summary["step"] == 2
    for key in ("fd", "fd_backbone", "recon_mse"):
        assert np.isfinite(summary[key]), key
    assert len(summary["ood_auroc_inference"]) == 4 == len(summary["ood_auroc_diffusion"])
    assert 0.0 <= summary["label_sampling_accuracy"] <= 1.0
    for name in ("compositional.png", "conditional_samples.png", "chain_2.png", "ood_by_layer.png"):
        assert os.path.isfile(os.path.join(workdir, name)), name
    setup = RunSetup(config(**{"diffusion.backbone_dir": str(tmp_path / "gone")}), None)
    state = setup.restore_or_init(Checkpointer(workdir))
    # the top group's decoder state: 4 channels × 2^(2 pre-processing blocks + 1 more scale) at 4×4
    assert state.model_state["backbone"]["params"]["prior_ftr0"].shape == (4, 4, 32)
    from latentebm_jax.backbones import BackboneError

    with pytest.raises(BackboneError, match=r"--config.backbone.num_latent_per_group=2"):
        loop.train(
            config(**{"diffusion.backbone_dir": nvae_run, "backbone.num_latent_per_group": 3}),
            str(tmp_path / "other"),
        )
