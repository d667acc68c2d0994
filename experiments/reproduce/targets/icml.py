"""The reproduction targets of the diffusion hierarchical EBM prior (Cui & Han, ICML 2024):
every table and figure, with its protocol at each scale."""

from __future__ import annotations

from experiments.reproduce.protocol import Claim, Column, Protocol, Run, Target, higher, lower
from experiments.reproduce.targets.common import (
    ACCEL,
    FID,
    TFDS,
    published,
)

_HVAE = Run("hvae", "backbone alone (HVAE, N(0, I) prior)", "configs/digits.py:hvae", minutes=8)
_DIFF = Run(
    "diffusion",
    "diffusion EBM prior (T = 3, K = 50)",
    "configs/digits.py:diffusion",
    run_dirs={"diffusion.backbone_dir": "hvae"},
    minutes=20,
)
_MARGINAL = Run(
    "marginal",
    "marginal ũ-space EBM (Eq. 8)",
    "configs/digits.py:diffusion",
    {"diffusion.scheme": "marginal"},
    run_dirs={"diffusion.backbone_dir": "hvae"},
    minutes=12,
)


def _diffusion_variant(name: str, label: str, minutes: float, **overrides) -> Run:
    return Run(
        name,
        label,
        "configs/digits.py:diffusion",
        overrides,
        run_dirs={"diffusion.backbone_dir": "hvae"},
        minutes=minutes,
    )


_ICML_FD = (
    Column("fd", "fd", "FID", True),
    Column("OOD AUROC (all layers)", "ood_auroc_inference[0]", None, False),
)
_ICML_NOTE = (
    "3-layer HVAE backbone (2, 2, 10 units) on 32×32 digits in place of NVAE on CIFAR-10; `fd` stands in "
    "for FID. The backbone row is the backbone's own samples (`fd` of the hvae run)."
)

ICML_TARGETS = (
    Target(
        "icml",
        "table1",
        "sample quality of the diffusion EBM prior against the marginal ũ-space EBM and the backbone alone",
        published("icml", "table1"),
        cpu=Protocol(
            runs=(_HVAE, _MARGINAL, _DIFF),
            columns=_ICML_FD,
            paper_rows={_DIFF.label: "Ours (T = 3)", _HVAE.label: "HVAE (Sønderby et al., 2016)"},
            claims=(
                lower(_DIFF.label, _MARGINAL.label, "fd"),
                lower(_DIFF.label, _HVAE.label, "fd"),
            ),
            seeds=3,
            figures=(("diffusion", "samples.png"), ("marginal", "samples.png"), ("hvae", "samples.png")),
            note=_ICML_NOTE,
        ),
        paper_scale=Protocol(
            runs=(
                Run(
                    "cifar10",
                    "Ours (T = 3), NVAE backbone",
                    "configs/cifar10.py:diffusion",
                ),
            ),
            columns=(
                Column("IS", "inception_score", "IS", False),
                Column("FID", "fid", "FID", True),
                Column("FID backbone", "fid_backbone", None, True),
            ),
            paper_rows={"Ours (T = 3), NVAE backbone": "Ours (T = 3)"},
            needs="NVIDIA's CIFAR-10 NVAE checkpoint converted with experiments.convert_nvae, named by "
            f"--set diffusion.backbone_dir=DIR; {TFDS} (cifar10); {FID}; {ACCEL}",
        ),
    ),
    Target(
        "icml",
        "table2",
        "FID on CelebA-HQ-256 and LSUN-Church-64",
        published("icml", "table2"),
        paper_scale=Protocol(
            runs=(Run("celeba_hq256", "Ours (T = 3), CelebA-HQ-256", "configs/celeba_hq256.py:diffusion"),),
            columns=(Column("FID", "fid", None, True),),
            paper_cells={("Ours (T = 3), CelebA-HQ-256", "FID"): ("Ours (T = 3)", "CelebA-HQ-256")},
            needs="NVIDIA's CelebA-HQ-256 NVAE checkpoint converted (--set diffusion.backbone_dir=DIR); "
            f"{TFDS} (celeb_a_hq/256); {FID}; {ACCEL}. LSUN-Church-64 has no config here",
        ),
        why_not="needs the NVAE checkpoints and 256×256 data",
    ),
    Target(
        "icml",
        "table3",
        "sample quality and cost against the Langevin steps K and diffusion steps T",
        published("icml", "table3"),
        cpu=Protocol(
            runs=(
                _HVAE,
                _diffusion_variant("diffusion_k30", "K = 30", 14, **{"diffusion.langevin_steps": 30}),
                _diffusion_variant("diffusion_k100", "K = 100", 38, **{"diffusion.langevin_steps": 100}),
                _DIFF,
                _diffusion_variant("diffusion_t6", "T = 6", 38, **{"diffusion.num_diffusion_steps": 6}),
            ),
            columns=(
                Column("fd", "fd", "FID", True),
                Column("train seconds", "train_loop_seconds", None, True, digits=3),
            ),
            paper_rows={
                "K = 30": "K = 30",
                "K = 100": "K = 100",
                _DIFF.label: "K = 50, T = 3",
                "T = 6": "T = 6",
            },
            note="The paper's Time is the sampling time; ours is the whole training loop (same chains).",
        ),
    ),
    Target(
        "icml",
        "fig2",
        "hierarchical sampling: each layer resampled with the others fixed",
        published("icml", "fig2"),
        cpu=Protocol(runs=(_HVAE, _DIFF), figures=(("diffusion", "hierarchical_sampling.png"),)),
    ),
    Target(
        "icml",
        "fig3",
        "OOD AUROC of energy scores from the top layers down, diffusion against inference scheme",
        published("icml", "fig3"),
        cpu=Protocol(
            runs=(_HVAE, _DIFF),
            columns=tuple(
                Column(f"AUROC {scheme}, layers ≥ z_{k + 1}", f"ood_auroc_{scheme}[{k}]", None, False)
                for scheme in ("inference", "diffusion")
                for k in range(3)
            ),
            claims=(
                Claim(
                    "diffusion scheme above the inference scheme (all layers)",
                    lambda m: (
                        m[_DIFF.label, "AUROC diffusion, layers ≥ z_1"]
                        > m[_DIFF.label, "AUROC inference, layers ≥ z_1"]
                    ),
                ),
                Claim(
                    "the top layer alone above all layers (inference scheme)",
                    lambda m: (
                        m[_DIFF.label, "AUROC inference, layers ≥ z_3"]
                        > m[_DIFF.label, "AUROC inference, layers ≥ z_1"]
                    ),
                ),
            ),
            figures=(("diffusion", "ood_by_layer.png"),),
            note="Digit 9 (held out of training) is the out-of-distribution set.",
        ),
    ),
    Target(
        "icml",
        "fig5",
        "controllable synthesis: the class label coupled at the top layer (Eq. 14)",
        published("icml", "fig5"),
        cpu=Protocol(
            runs=(
                _HVAE,
                _diffusion_variant(
                    "diffusion_label",
                    "label at t = 0, w = 1 (Eq. 14)",
                    10,
                    **{"diffusion.label_layers": (3,)},
                ),
                _diffusion_variant(
                    "diffusion_label_all",
                    "label at every t, w = 1",
                    10,
                    **{"diffusion.label_layers": (3,), "diffusion.label_steps": "all"},
                ),
                _diffusion_variant(
                    "diffusion_label_all_w30",
                    "label at every t, w = 30",
                    10,
                    **{
                        "diffusion.label_layers": (3,),
                        "diffusion.label_steps": "all",
                        "diffusion.label_guidance": 30.0,
                    },
                ),
            ),
            columns=(
                Column("sampling accuracy", "label_sampling_accuracy", None, False),
                Column("chance", "label_sampling_chance", None, None),
                Column("logits on test latents", "label_logits_test_accuracy", None, False),
                Column("fd", "fd", None, True),
            ),
            claims=(
                higher("label at every t, w = 30", "label at t = 0, w = 1 (Eq. 14)", "sampling accuracy"),
            ),
            figures=(
                ("diffusion_label", "conditional_samples.png"),
                ("diffusion_label_all_w30", "conditional_samples.png"),
            ),
            note="The class coupled at the top layer z_3 (`diffusion.label_layers=(3,)`); 50 samples per "
            "class scored by the domain classifier (digit 9 held out: chance 1/9). `label_steps=all` (the "
            "cross-entropy at every diffusion step) and the guidance weight w are options beside the paper's "
            "form (w = 1 at t = 0 only).",
        ),
    ),
    Target(
        "icml",
        "fig6",
        "long-run Langevin transition of the prior",
        published("icml", "fig6"),
        cpu=Protocol(runs=(_HVAE, _DIFF), figures=(("diffusion", "chain_2500.png"),)),
    ),
    Target(
        "icml",
        "fig8",
        "samples on two backbones: NVAE and the small HVAE",
        published("icml", "fig8"),
        cpu=Protocol(
            runs=(
                _HVAE,
                _DIFF,
                Run("nvae", "NVAE backbone alone", "configs/digits_nvae.py:nvae", minutes=5),
                Run(
                    "nvae_diffusion",
                    "diffusion EBM prior on NVAE",
                    "configs/digits_nvae.py:diffusion",
                    run_dirs={"diffusion.backbone_dir": "nvae"},
                    minutes=40,
                ),
            ),
            columns=(Column("fd", "fd", None, True),),
            figures=(("diffusion", "samples.png"), ("nvae_diffusion", "samples.png")),
        ),
    ),
)

_CIFAR_NVAE = Run("cifar10", "Ours (T = 3), NVAE backbone", "configs/cifar10.py:diffusion")
_NVAE_NEEDS = (
    "NVIDIA's NVAE checkpoint converted with experiments.convert_nvae (--set diffusion.backbone_dir=DIR); "
    f"{TFDS}; {ACCEL}"
)
_CELEBA_ATTRS = Run(
    "celeba64_attributes",
    "CelebA-64, Male / Smiling / Blond_Hair at z_3 / z_2 / z_1",
    "configs/celeba64.py:diffusion",
    {
        "data.attributes": ("Male", "Smiling", "Blond_Hair"),
        "diffusion.label_layers": (3, 2, 1),
        "diffusion.num_classes": 2,
    },
    run_dirs={"diffusion.backbone_dir": "celeba64_hvae"},
)
ICML_TARGETS = (
    *ICML_TARGETS,
    Target(
        "icml",
        "fig1",
        "image synthesis",
        published("icml", "fig1"),
        paper_scale=Protocol(runs=(_CIFAR_NVAE,), figures=(("cifar10", "samples.png"),), needs=_NVAE_NEEDS),
        why_not="samples at the paper's scale; the CPU-scale samples are table1's figures",
    ),
    Target(
        "icml",
        "fig4",
        "synthesis with several attributes coupled at different layers (compositional)",
        published("icml", "fig4"),
        paper_scale=Protocol(
            runs=(
                Run("celeba64_hvae", "HVAE backbone, CelebA-64", "configs/celeba64.py:hvae"),
                _CELEBA_ATTRS,
            ),
            columns=tuple(
                Column(f"attribute accuracy z_{i}", f"attribute_logits_test_accuracy[{j}]", None, False)
                for j, i in enumerate((3, 2, 1))
            ),
            figures=(("celeba64_attributes", "compositional.png"),),
            needs=f"{TFDS} (celeb_a with attributes); {ACCEL}",
        ),
        why_not="the digits have no attributes; the CPU-scale class coupling is fig5",
    ),
    Target(
        "icml",
        "fig7",
        "short-run Langevin transitions within diffusion steps",
        published("icml", "fig7"),
        cpu=Protocol(runs=(_HVAE, _DIFF), figures=(("diffusion", "chain_100.png"),)),
    ),
    Target(
        "icml",
        "fig9",
        "image synthesis on CIFAR-10",
        published("icml", "fig9"),
        paper_scale=Protocol(runs=(_CIFAR_NVAE,), figures=(("cifar10", "samples.png"),), needs=_NVAE_NEEDS),
        why_not="samples at the paper's scale (LSUN-Church-64 has no config here)",
    ),
    Target(
        "icml",
        "fig10",
        "CelebA-HQ-256 synthesis at temperatures 1.0 and 0.7",
        published("icml", "fig10"),
        paper_scale=Protocol(
            runs=(
                Run("celeba_hq256", "Ours (T = 3), CelebA-HQ-256", "configs/celeba_hq256.py:diffusion"),
                Run(
                    "celeba_hq256_t07",
                    "τ = 0.7",
                    "configs/celeba_hq256.py:diffusion",
                    {"diffusion.temperature": 0.7},
                ),
            ),
            figures=(("celeba_hq256", "samples.png"), ("celeba_hq256_t07", "samples.png")),
            needs=_NVAE_NEEDS,
        ),
        why_not="needs the CelebA-HQ-256 NVAE",
    ),
)
