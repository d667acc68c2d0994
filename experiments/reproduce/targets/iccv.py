"""The reproduction targets of the joint hierarchical EBM prior (Cui, Wu, Han, ICCV 2023):
every table and figure, with its protocol at each scale."""

from __future__ import annotations

from experiments.reproduce.protocol import Column, Protocol, Run, Target, higher, increasing, lower
from experiments.reproduce.targets.common import (
    ACCEL,
    FID,
    LAST_EPOCHS,
    TFDS,
    _anomaly_protocol,
    auprc_protocols,
    published,
    sweep_protocol,
)

_JOINT = Run("joint", "joint EBM prior", "configs/digits.py:joint", _anomaly_protocol({}), minutes=8)
_NEF0 = Run(
    "joint_nef0",
    "Gaussian prior (nef = 0)",
    "configs/digits.py:joint",
    _anomaly_protocol({"joint.ebm_hidden": 0}),
    minutes=7,
)
_PROBES = tuple(
    Column(f"probe z_{i + 1}", f"probe_accuracy[{i}]", f"MNIST L = {i + 1}", False, scale=100)
    for i in range(3)
)


def _joint_variant(name: str, label: str, **overrides) -> Run:
    return Run(name, label, "configs/digits.py:joint", _anomaly_protocol(overrides), minutes=8)


_NEF = {0: _NEF0, 20: _joint_variant("joint_nef20", "nef = 20", **{"joint.ebm_hidden": 20}), 100: _JOINT}
_K = {
    15: _joint_variant("joint_k15", "k = 15", **{"sampler.prior_steps": 15}),
    30: _joint_variant("joint_k30", "k = 30", **{"sampler.prior_steps": 30}),
    60: _JOINT,
}
_AUPRC_CPU, _AUPRC_PAPER = auprc_protocols(
    "joint",
    "joint",
    "configs/digits.py:joint",
    _JOINT,
    8,
    "configs/mnist.py:joint",
    f"{TFDS} (mnist); {ACCEL}",
)
_JOINT_FIGURE = "digits.py:joint (3 layers of 2, 2, 10 units on 32×32 digits)"


def _joint_figure(name: str, what: str, filename: str) -> Target:
    return Target(
        "iccv",
        name,
        what,
        published("iccv", name),
        cpu=Protocol(runs=(_JOINT,), figures=(("joint", filename),), note=_JOINT_FIGURE),
    )


ICCV_TARGETS = (
    Target(
        "iccv",
        "table1",
        "test accuracy of a classifier on each layer's inferred latent: rising toward the top layer",
        published("iccv", "table1"),
        cpu=Protocol(
            runs=(_JOINT, _NEF0),
            columns=_PROBES,
            paper_rows={"joint EBM prior": "Ours"},
            claims=(
                increasing("joint EBM prior", tuple(c.label for c in _PROBES)),
                higher("joint EBM prior", "Gaussian prior (nef = 0)", "probe z_3"),
            ),
            seeds=3,
            note="Embedded digits at 32×32 with the paper's MNIST layer sizes (2, 2, 10); percentages.",
        ),
        paper_scale=Protocol(
            runs=(
                Run("mnist", "Ours, MNIST", "configs/mnist.py:joint"),
                Run("svhn", "Ours, SVHN", "configs/svhn.py:joint"),
            ),
            columns=tuple(
                Column(f"probe z_{i + 1}", f"probe_accuracy[{i}]", None, False, scale=100) for i in range(4)
            ),
            needs=f"{TFDS}; {ACCEL}",
        ),
    ),
    Target(
        "iccv",
        "table2",
        "test reconstruction MSE and sample quality against the same hierarchical generator with a "
        "Gaussian prior (nef = 0)",
        published("iccv", "table2"),
        cpu=Protocol(
            runs=(_JOINT, _NEF0),
            columns=(
                Column("recon MSE", "recon_mse", "SVHN MSE", True),
                Column("fd", "fd", "SVHN FID", True),
                Column("fd of reconstructions", "fd_recon", None, True),
            ),
            paper_rows={"joint EBM prior": "Ours"},
            claims=(lower("joint EBM prior", "Gaussian prior (nef = 0)", "fd"),),
            seeds=3,
            figures=(("joint", "samples.png"),),
            note="`fd` (domain features) stands in for FID; digits, not SVHN.",
        ),
        paper_scale=Protocol(
            runs=(
                Run("svhn", "Ours, SVHN", "configs/svhn.py:joint"),
                Run("celeba64", "Ours, CelebA-64", "configs/celeba64.py:joint"),
            ),
            columns=(Column("MSE", "recon_mse", None, True), Column("FID", "fid", None, True)),
            needs=f"{TFDS}; {FID}; {ACCEL}",
        ),
    ),
    Target(
        "iccv",
        "table3",
        f"anomaly detection AUPRC per held-out digit, averaged over the last {LAST_EPOCHS} epochs, "
        "mean ± std over seeds",
        published("iccv", "table3"),
        cpu=_AUPRC_CPU,
        paper_scale=_AUPRC_PAPER,
    ),
    Target(
        "iccv",
        "table4",
        "sample quality against the number k of prior Langevin steps",
        published("iccv", "table4"),
        cpu=Protocol(
            runs=tuple(_K.values()),
            columns=(Column("fd", "fd", "FID", True),),
            paper_rows={run.label: f"k = {k}" for k, run in _K.items() if k != 60}
            | {"joint EBM prior": "k = 60"},
            note="The joint EBM prior row is k = 60 (the config's default).",
        ),
        paper_scale=sweep_protocol(
            "celeba64_k",
            "configs/celeba64.py:joint",
            "sampler.prior_steps",
            "k = {}",
            (15, 30, 60, 150, 300),
            Column("FID", "fid", "FID", True),
            f"{TFDS} (celeb_a); {FID}; {ACCEL}",
        ),
    ),
    Target(
        "iccv",
        "table5",
        "sample quality against the EBM's width nef (0: no EBM)",
        published("iccv", "table5"),
        cpu=Protocol(
            runs=tuple(_NEF.values()),
            columns=(Column("fd", "fd", "FID", True),),
            paper_rows={
                "Gaussian prior (nef = 0)": "nef = 0",
                "nef = 20": "nef = 20",
                "joint EBM prior": "nef = 100",
            },
            claims=(lower("joint EBM prior", "Gaussian prior (nef = 0)", "fd"),),
            note="The joint EBM prior row is nef = 100 (the config's default).",
        ),
        paper_scale=sweep_protocol(
            "svhn_nef",
            "configs/svhn.py:joint",
            "joint.ebm_hidden",
            "nef = {}",
            (0, 10, 20, 50, 100),
            Column("FID", "fid", "FID", True),
            f"{TFDS} (svhn_cropped); {FID}; {ACCEL}",
        ),
    ),
    Target(
        "iccv",
        "table6",
        "FID on CIFAR-10",
        published("iccv", "table6"),
        paper_scale=Protocol(
            runs=(Run("cifar10", "Ours", "configs/cifar10.py:joint"),),
            columns=(Column("FID", "fid", "FID", True),),
            paper_rows={"Ours": "Ours"},
            needs=f"{TFDS} (cifar10); {FID}; {ACCEL}",
        ),
        why_not="FID on CIFAR-10 only: no CPU-scale analogue beyond table2's fd",
    ),
    _joint_figure(
        "fig4", "hierarchical sampling: each panel resamples one layer", "hierarchical_sampling.png"
    ),
    _joint_figure(
        "fig5", "hierarchical sampling: each panel resamples one layer", "hierarchical_sampling.png"
    ),
    _joint_figure("fig6", "one latent unit swept over [−3, 3] per layer", "traversal.png"),
    _joint_figure("fig7", "prior chain against inferred latents in the 2-d layers", "latent_scatter.png"),
    _joint_figure("fig8", "a 2,500-step prior chain and its energy profile", "chain_2500.png"),
    _joint_figure("fig9", "adversarial latent attack per layer", "latent_attack.png"),
    Target(
        "iccv",
        "fig2",
        "LEBM with a 2-d latent on digits 0–2: each unit's effect",
        published("iccv", "fig2"),
        why_not="drawn by `python -m experiments.toy_hierarchy` (LEBM and the joint prior with 2-d latents "
        "on digits 0–2), a script rather than a training protocol",
    ),
    Target("iccv", "fig3", "the model's illustration", published("iccv", "fig3"), why_not="a diagram"),
    Target(
        "iccv",
        "fig1",
        "BIVA's hierarchical representations",
        published("iccv", "fig1"),
        why_not="BIVA is another paper's model; the library does not implement it",
    ),
    Target(
        "iccv",
        "fig10",
        "CelebA-128 samples",
        published("iccv", "fig10"),
        why_not="no 128×128 config",
    ),
)
