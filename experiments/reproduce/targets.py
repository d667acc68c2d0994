"""Every table and figure of the four papers, with the protocol that reproduces it at each scale.

CPU scale uses the embedded digits (and the shipped text corpora) with budgets that fit 2 cores; the columns
are the library's numbers for what the paper measures there (``fd``, the domain feature distance, where the
paper reports FID: FID's Inception network is not available offline). Paper scale uses the paper's configs
and datasets (``--set data.data_dir=...``, ``--set eval.inception_weights=...``) and needs an accelerator.
Targets that need something no config here provides (another paper's model, a dataset without a config)
say so in ``why_not``.
"""

from __future__ import annotations

from experiments.reproduce.paper_tables import PaperFigure, PaperTable
from experiments.reproduce.protocol import (
    PAPERS,
    Claim,
    Column,
    Protocol,
    Run,
    Target,
    higher,
    increasing,
    lower,
)
from experiments.reproduce.published import bidvl, iccv, icml, lebm

_PUBLISHED = {"lebm": lebm, "iccv": iccv, "icml": icml, "bidvl": bidvl}

HOLDOUT_DIGITS = (1, 4, 5, 7, 9)  # LEBM Table 4, ICCV Table 3
LAST_EPOCHS = 10  # "averaged over the last 10 epochs"
TFDS = "tfds datasets in --set data.data_dir=DIR (see 'Preparing real datasets')"
FID = "FID weights: --set eval.inception_weights=FILE (see 'Evaluation')"
ACCEL = "an accelerator (days of GPU time at the paper's budgets)"


def published(paper: str, name: str) -> PaperTable | PaperFigure:
    module = _PUBLISHED[paper]
    for item in (*module.TABLES, *module.FIGURES):
        if item.name == name:
            return item
    raise KeyError(f"{paper} has no published {name}")


def _anomaly_protocol(overrides: dict) -> dict:
    """AUPRC after each of the last 10 epochs, averaged (``auprc_last_10_epochs``)."""
    return {
        **overrides,
        "train.eval_last_epochs": LAST_EPOCHS,
        "eval.interval_metrics": ("anomaly",),
    }


AUPRC = f"auprc_last_{LAST_EPOCHS}_epochs"

# ----------------------------------------------------------------------------- LEBM (NeurIPS 2020)

_LEBM = Run("lebm", "LEBM", "configs/digits.py:lebm", _anomaly_protocol({}), minutes=2.5)
_SRI = Run(
    "sri",
    "Gaussian prior (SRI)",
    "configs/digits.py:lebm",
    _anomaly_protocol({"lebm.ebm_hidden": 0}),
    minutes=2.5,
)
_TEXT_TOY = Run("text_toy", "LEBM, text_toy", "configs/text_toy.py", minutes=38)
_TEXT_MODES = Run("text_modes", "LEBM, text_modes", "configs/text_modes.py", minutes=32)
_TEXT_MODES_SRI = Run(
    "text_modes_sri",
    "Gaussian prior, text_modes",
    "configs/text_modes.py",
    {"lebm_text.ebm_hidden": 0},
    minutes=30,
)


def _recon_below_nll(run: str, nats: float) -> Claim:
    """The posterior sample's reconstruction NLL at least ``nats`` below the marginal NLL: ``z`` is used."""
    return Claim(
        f"{run}: recon NLL at least {nats:g} nat below NLL (the latent carries the sentence)",
        lambda m: m[run, "recon NLL"] <= m[run, "NLL"] - nats,
    )


_LEBM_MSE_FD = (
    Column("recon MSE", "recon_mse", "SVHN MSE", True),
    Column("fd", "fd", "SVHN FID", True),
    Column("fd of reconstructions", "fd_recon", None, True),
    Column("AUPRC (digit 9)", AUPRC, None, False),
)


def _lebm_holdout(digit: int) -> Run:
    if digit == 9:
        return _LEBM
    return Run(
        f"lebm_holdout{digit}",
        f"LEBM, digit {digit} held out",
        "configs/digits.py:lebm",
        _anomaly_protocol({"data.holdout_class": digit}),
        minutes=2.5,
    )


LEBM_TARGETS = (
    Target(
        "lebm",
        "table1",
        "test reconstruction MSE and sample quality, LEBM against the same generator with a Gaussian prior",
        published("lebm", "table1"),
        cpu=Protocol(
            runs=(_LEBM, _SRI),
            columns=_LEBM_MSE_FD,
            paper_rows={"LEBM": "Ours", "Gaussian prior (SRI)": "SRI"},
            claims=(lower("LEBM", "Gaussian prior (SRI)", "fd"),),
            seeds=3,
            figures=(("lebm", "samples.png"), ("sri", "samples.png")),
            note="SRI (short-run inference, Nijkamp et al. 2020) is the paper's Gaussian-prior row: the same "
            "generator and posterior Langevin with f_α ≡ 0 (`lebm.ebm_hidden=0`). `fd` stands in for FID "
            "(no Inception network offline); digits 8×8, not the paper's data. `fd of reconstructions` "
            "decodes posterior samples of test images: what a prior matching the aggregated posterior would "
            "reach with that generator, so `fd − fd of reconstructions` is the prior's share.",
        ),
        paper_scale=Protocol(
            runs=(
                Run("svhn", "Ours, SVHN", "configs/svhn.py:lebm"),
                Run("cifar10", "Ours, CIFAR-10", "configs/cifar10.py:lebm"),
                Run("celeba64", "Ours, CelebA", "configs/celeba64.py:lebm"),
            ),
            columns=(Column("MSE", "recon_mse", None, True), Column("FID", "fid", None, True)),
            needs=f"{TFDS}; {FID}; {ACCEL}",
        ),
    ),
    Target(
        "lebm",
        "table2",
        "text: forward / reverse perplexity and marginal NLL (Sec. 3.3); with the latent needed, the "
        "reconstruction NLL below the marginal NLL",
        published("lebm", "table2"),
        cpu=Protocol(
            runs=(_TEXT_TOY, _TEXT_MODES, _TEXT_MODES_SRI),
            columns=(
                Column("FPPL", "fppl", None, True),
                Column("RPPL", "rppl", None, True),
                Column("NLL", "nll", None, True),
                Column("recon NLL", "recon_nll", None, True),
                Column("grammar NLL", "grammar_nll", None, True),
                Column("recon keeps the choices", "recon_mode_accuracy", None, False),
                Column("parse rate", "parse_rate", None, False),
            ),
            claims=(
                _recon_below_nll(_TEXT_MODES.label, 1.0),
                _recon_below_nll(_TEXT_TOY.label, 1.0),
                higher(_TEXT_MODES.label, _TEXT_MODES_SRI.label, "recon keeps the choices"),
            ),
            note="Shipped corpora, not the paper's: `text_toy` (local agreement only: an LSTM needs no z) "
            "and `text_modes` (four sentence-level choices — topic, number, tense, mood, 3.47 nats — each "
            "shown in words far apart; `latentebm_jax/data/mode_grammar.py`). `grammar NLL` is the grammar's "
            "own NLL "
            "of the test sentences (the floor); `recon keeps the choices` the fraction of greedy "
            "reconstructions from the posterior sample that keep all four choices.",
        ),
        paper_scale=Protocol(
            runs=(
                Run("snli", "Ours, SNLI", "configs/snli.py"),
                Run("ptb", "Ours, PTB", "configs/ptb.py"),
                Run("yahoo", "Ours, Yahoo", "configs/yahoo.py"),
            ),
            columns=(
                Column("FPPL", "fppl", None, True),
                Column("RPPL", "rppl", None, True),
                Column("NLL", "nll", None, True),
            ),
            paper_cells={
                (f"Ours, {name}", col): ("Ours", f"{name} {col}")
                for name in ("SNLI", "PTB", "Yahoo")
                for col in ("FPPL", "RPPL", "NLL")
            },
            needs="the corpora in --set data.data_dir=DIR (PTB/Yahoo text files, SNLI via tfds); "
            "an accelerator",
        ),
    ),
    Target(
        "lebm",
        "table3",
        "a long-run prior chain decoded to sentences, with its energy profile: chains moving between modes",
        published("lebm", "table3"),
        cpu=Protocol(
            runs=(_TEXT_MODES,),
            columns=(
                Column("topic switches per 200-step chain", "chain_topic_switches_200", None, None),
                Column("chain sentences that parse", "chain_parse_rate_200", None, False),
                Column("topics covered by samples", "mode_coverage", None, False),
            ),
            claims=(
                Claim(
                    f"{_TEXT_MODES.label}: long-run chains move between topics",
                    lambda m: m[_TEXT_MODES.label, "topic switches per 200-step chain"] > 0,
                ),
            ),
            figures=(("text_modes", "chain_200.txt"), ("text_modes", "chain_200_energy.png")),
        ),
    ),
    Target(
        "lebm",
        "table4",
        f"anomaly detection AUPRC per held-out digit, averaged over the last {LAST_EPOCHS} epochs, "
        "mean ± std over seeds",
        published("lebm", "table4"),
        cpu=Protocol(
            runs=tuple(_lebm_holdout(d) for d in HOLDOUT_DIGITS),
            columns=(Column("AUPRC", AUPRC, None, False),),
            paper_cells={(_lebm_holdout(d).label, "AUPRC"): ("Ours", f"Digit {d}") for d in HOLDOUT_DIGITS},
            seeds=3,
            note="Embedded 8×8 digits in place of MNIST: one run per held-out digit, that digit left out of "
            "training and scored in the test split by −log p(x, z) at posterior samples.",
        ),
        paper_scale=Protocol(
            runs=tuple(
                Run(
                    f"mnist_holdout{d}",
                    f"Ours, digit {d}",
                    "configs/mnist.py:lebm",
                    _anomaly_protocol({"data.holdout_class": d}),
                )
                for d in HOLDOUT_DIGITS
            ),
            columns=(Column("AUPRC", AUPRC, None, False),),
            paper_cells={(f"Ours, digit {d}", "AUPRC"): ("Ours", f"Digit {d}") for d in HOLDOUT_DIGITS},
            seeds=3,
            needs=f"{TFDS} (mnist)",
        ),
    ),
    Target(
        "lebm",
        "fig2",
        "generated samples",
        published("lebm", "fig2"),
        cpu=Protocol(runs=(_LEBM,), figures=(("lebm", "samples.png"),)),
    ),
    Target(
        "lebm",
        "fig3",
        "prior chains over K'₀ = 100 steps with their energy profile",
        published("lebm", "fig3"),
        cpu=Protocol(runs=(_LEBM,), figures=(("lebm", "chain_100.png"),)),
    ),
    Target(
        "lebm",
        "fig4",
        "long-run prior chains over 2,500 steps with their energy profile",
        published("lebm", "fig4"),
        cpu=Protocol(runs=(_LEBM,), figures=(("lebm", "chain_2500.png"),)),
    ),
    Target(
        "lebm",
        "fig1",
        "CelebA 128×128 samples from a larger generator",
        published("lebm", "fig1"),
        why_not="no 128×128 generator config; the library's CelebA configs are 32 and 64",
    ),
)

# ----------------------------------------------------------------------------- ICCV 2023 (joint prior)

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


def _joint_holdout(digit: int) -> Run:
    if digit == 9:
        return _JOINT
    return Run(
        f"joint_holdout{digit}",
        f"joint, digit {digit} held out",
        "configs/digits.py:joint",
        _anomaly_protocol({"data.holdout_class": digit}),
        minutes=8,
    )


def _joint_variant(name: str, label: str, **overrides) -> Run:
    return Run(name, label, "configs/digits.py:joint", _anomaly_protocol(overrides), minutes=8)


_NEF = {0: _NEF0, 20: _joint_variant("joint_nef20", "nef = 20", **{"joint.ebm_hidden": 20}), 100: _JOINT}
_K = {
    15: _joint_variant("joint_k15", "k = 15", **{"sampler.prior_steps": 15}),
    30: _joint_variant("joint_k30", "k = 30", **{"sampler.prior_steps": 30}),
    60: _JOINT,
}
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
        cpu=Protocol(
            runs=tuple(_joint_holdout(d) for d in HOLDOUT_DIGITS),
            columns=(Column("AUPRC", AUPRC, None, False),),
            paper_cells={(_joint_holdout(d).label, "AUPRC"): ("Ours", f"Digit {d}") for d in HOLDOUT_DIGITS},
            seeds=3,
        ),
        paper_scale=Protocol(
            runs=tuple(
                Run(
                    f"mnist_holdout{d}",
                    f"Ours, digit {d}",
                    "configs/mnist.py:joint",
                    _anomaly_protocol({"data.holdout_class": d}),
                )
                for d in HOLDOUT_DIGITS
            ),
            columns=(Column("AUPRC", AUPRC, None, False),),
            paper_cells={(f"Ours, digit {d}", "AUPRC"): ("Ours", f"Digit {d}") for d in HOLDOUT_DIGITS},
            seeds=3,
            needs=f"{TFDS} (mnist); {ACCEL}",
        ),
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
        paper_scale=Protocol(
            runs=tuple(
                Run(f"celeba64_k{k}", f"k = {k}", "configs/celeba64.py:joint", {"sampler.prior_steps": k})
                for k in (15, 30, 60, 150, 300)
            ),
            columns=(Column("FID", "fid", "FID", True),),
            paper_rows={f"k = {k}": f"k = {k}" for k in (15, 30, 60, 150, 300)},
            needs=f"{TFDS} (celeb_a); {FID}; {ACCEL}",
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
        paper_scale=Protocol(
            runs=tuple(
                Run(f"svhn_nef{n}", f"nef = {n}", "configs/svhn.py:joint", {"joint.ebm_hidden": n})
                for n in (0, 10, 20, 50, 100)
            ),
            columns=(Column("FID", "fid", "FID", True),),
            paper_rows={f"nef = {n}": f"nef = {n}" for n in (0, 10, 20, 50, 100)},
            needs=f"{TFDS} (svhn_cropped); {FID}; {ACCEL}",
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

# ----------------------------------------------------------------------------- ICML 2024 (diffusion prior)

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
                _diffusion_variant("diffusion_label", "label at z_3", 20, **{"diffusion.label_layers": (3,)}),
            ),
            figures=(("diffusion_label", "conditional_samples.png"),),
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

# ----------------------------------------------------------------------------- BiDVL (CVPR 2022)


def _bidvl_run(name: str, label: str, **overrides) -> Run:
    return Run(name, label, "configs/digits32.py:bidvl", overrides, minutes=4.5)


_BIDVL = _bidvl_run("bidvl", "BiDVL (r′ = 0.05, offset)")
_BIDVL_OOD = Run("bidvl_ood", "BiDVL, 8×8 digits (digit 9 held out)", "configs/digits.py:bidvl", minutes=4)
_RATIOS = {0.01: None, 0.05: _BIDVL, 0.1: None, 0.5: None, 1.0: None}
_RATIOS = {
    r: run or _bidvl_run(f"bidvl_r{r:g}".replace(".", "p"), f"r′ = {r:g}", **{"bidvl.basic_ratio": r})
    for r, run in _RATIOS.items()
}
_OFFSETS = {
    "w/o": _bidvl_run("bidvl_without", "without latent terms (w/o)", **{"bidvl.offset": "without"}),
    "offset": _BIDVL,
    "not offset": _bidvl_run("bidvl_not_offset", "not offset", **{"bidvl.offset": "not_offset"}),
}
_BIDVL_NOTE = (
    "configs/digits32.py:bidvl: the 32×32 architectures at a quarter width on digits, 600 steps; `fd` "
    "stands in for FID, RMSE on [−1, 1]."
)

BIDVL_TARGETS = (
    Target(
        "bidvl",
        "table1",
        "sample quality (FID) of BiDVL",
        published("bidvl", "table1"),
        cpu=Protocol(
            runs=(_BIDVL,),
            columns=(Column("fd", "fd", "CIFAR-10", True),),
            paper_rows={_BIDVL.label: "BiDVL (ours)"},
            seeds=3,
            figures=(("bidvl", "samples.png"),),
            note=_BIDVL_NOTE,
        ),
        paper_scale=Protocol(
            runs=(
                Run("cifar10", "BiDVL, CIFAR-10", "configs/cifar10.py:bidvl"),
                Run("celeba64", "BiDVL, CelebA-64", "configs/celeba64.py:bidvl"),
            ),
            columns=(Column("FID", "fid", None, True),),
            paper_cells={
                ("BiDVL, CIFAR-10", "FID"): ("BiDVL (ours)", "CIFAR-10"),
                ("BiDVL, CelebA-64", "FID"): ("BiDVL (ours)", "CelebA-64"),
            },
            needs=f"{TFDS}; {FID}; {ACCEL}",
        ),
    ),
    Target(
        "bidvl",
        "table2",
        "FID on CelebA-32",
        published("bidvl", "table2"),
        paper_scale=Protocol(
            runs=(Run("celeba32", "BiDVL, CelebA-32", "configs/celeba32.py:bidvl"),),
            columns=(Column("FID", "fid", "CelebA-32", True),),
            paper_rows={"BiDVL, CelebA-32": "BiDVL (ours)"},
            needs=f"{TFDS} (celeb_a); {FID}; {ACCEL}",
        ),
        why_not="the CPU-scale sample quality is table1's",
    ),
    Target(
        "bidvl",
        "table3",
        "test reconstruction RMSE",
        published("bidvl", "table3"),
        cpu=Protocol(
            runs=(_BIDVL,),
            columns=(Column("RMSE", "recon_rmse", "CIFAR-10", True),),
            paper_rows={_BIDVL.label: "BiDVL (ours)"},
            seeds=3,
            figures=(("bidvl", "reconstructions.png"),),
            note=_BIDVL_NOTE,
        ),
        paper_scale=Protocol(
            runs=(
                Run("cifar10", "BiDVL, CIFAR-10", "configs/cifar10.py:bidvl"),
                Run("celeba64", "BiDVL, CelebA-64", "configs/celeba64.py:bidvl"),
            ),
            columns=(Column("RMSE", "recon_rmse", None, True),),
            paper_cells={
                ("BiDVL, CIFAR-10", "RMSE"): ("BiDVL (ours)", "CIFAR-10"),
                ("BiDVL, CelebA-64", "RMSE"): ("BiDVL (ours)", "CelebA-64"),
            },
            needs=f"{TFDS}; {ACCEL}",
        ),
    ),
    Target(
        "bidvl",
        "table4",
        "out-of-distribution detection: AUROC of the negative free energy −E(v)",
        published("bidvl", "table4"),
        cpu=Protocol(
            runs=(_BIDVL_OOD,),
            columns=(
                Column("AUROC uniform noise", "ood_auroc_uniform", "Random", False),
                Column("AUROC held-out digit 9", "ood_auroc_holdout", None, False),
            ),
            paper_rows={_BIDVL_OOD.label: "BiDVL (ours)"},
            seeds=3,
            figures=(("bidvl_ood", "ood_energy.png"),),
            note="In-distribution: the digits test split without 9; out: uniform noise and digit 9.",
        ),
        paper_scale=Protocol(
            runs=(Run("cifar10", "BiDVL, CIFAR-10", "configs/cifar10.py:bidvl"),),
            columns=(
                Column("AUROC uniform", "ood_auroc_uniform", "Random", False),
                Column("AUROC SVHN", "ood_auroc_svhn_cropped", "SVHN", False),
                Column("AUROC CelebA", "ood_auroc_celeb_a", "CelebA", False),
            ),
            paper_rows={"BiDVL, CIFAR-10": "BiDVL (ours)"},
            needs=f"{TFDS} (cifar10, svhn_cropped, celeb_a); {ACCEL}",
        ),
    ),
    Target(
        "bidvl",
        "table5",
        "sample quality against the basic ratio r′ of the importance weights (Eq. 15)",
        published("bidvl", "table5"),
        cpu=Protocol(
            runs=tuple(_RATIOS.values()),
            columns=(Column("fd", "fd", "FID", True), Column("RMSE", "recon_rmse", None, True)),
            paper_rows={run.label: f"r' = {r:g}" if r != 1.0 else "r' = 1.0" for r, run in _RATIOS.items()},
            claims=(lower(_RATIOS[0.05].label, _RATIOS[1.0].label, "fd"),),
            note=_BIDVL_NOTE,
        ),
    ),
    Target(
        "bidvl",
        "table6",
        "offsetting the latent terms (Eqs. 13–14) against not offsetting and against dropping them",
        published("bidvl", "table6"),
        cpu=Protocol(
            runs=tuple(_OFFSETS.values()),
            columns=(Column("fd", "fd", "FID", True), Column("RMSE", "recon_rmse", "RMSE", True)),
            paper_rows={run.label: row for row, run in _OFFSETS.items()},
            # the paper: offsetting gives the lowest RMSE and beats not offsetting on both; dropping the
            # latent terms has a slightly lower FID (20.24 against 20.75) but the highest RMSE
            claims=(
                lower(_OFFSETS["offset"].label, _OFFSETS["w/o"].label, "RMSE"),
                lower(_OFFSETS["offset"].label, _OFFSETS["not offset"].label, "RMSE"),
                lower(_OFFSETS["offset"].label, _OFFSETS["not offset"].label, "fd"),
            ),
            note=_BIDVL_NOTE,
        ),
    ),
    Target(
        "bidvl",
        "fig2",
        "random samples",
        published("bidvl", "fig2"),
        cpu=Protocol(runs=(_BIDVL,), figures=(("bidvl", "samples.png"),)),
    ),
    Target(
        "bidvl",
        "fig3",
        "random samples on CelebA-64",
        published("bidvl", "fig3"),
        paper_scale=Protocol(
            runs=(Run("celeba64", "BiDVL, CelebA-64", "configs/celeba64.py:bidvl"),),
            figures=(("celeba64", "samples.png"),),
            needs=f"{TFDS} (celeb_a); {ACCEL}",
        ),
        why_not="CelebA-64 only; the CPU-scale samples are fig2",
    ),
    Target("bidvl", "fig1", "the motivation diagram", published("bidvl", "fig1"), why_not="a diagram"),
    Target(
        "bidvl",
        "fig4",
        "test reconstructions",
        published("bidvl", "fig4"),
        cpu=Protocol(runs=(_BIDVL,), figures=(("bidvl", "reconstructions.png"),)),
    ),
)

TARGETS: dict[str, Target] = {t.key: t for t in (*LEBM_TARGETS, *ICCV_TARGETS, *ICML_TARGETS, *BIDVL_TARGETS)}


def _check_registry() -> None:
    """Equal run names within a paper and scale mean equal runs; published names exist."""
    seen: dict[tuple[str, str, str], Run] = {}
    for t in TARGETS.values():
        for scale in ("cpu", "paper"):
            protocol = t.protocol(scale)
            for run in protocol.runs if protocol else ():
                other = seen.setdefault((t.paper, scale, run.name), run)
                if other != run:
                    raise ValueError(
                        f"{t.key}: run {run.name!r} differs from another target's run of that name"
                    )


_check_registry()


def _minutes(protocol: Protocol) -> str:
    known = [r.minutes for r in protocol.runs if r.minutes is not None]
    if len(known) < len(protocol.runs):
        return ""
    return f", ~{sum(known) * protocol.seeds:.0f} min on 2 cores"


def listing(paper: str | None = None) -> str:
    """Every target: what it measures, and at each scale the runs, seeds and what is needed."""
    lines = []
    for name, title in PAPERS.items():
        if paper is not None and name != paper:
            continue
        lines.append(f"{name}: {title}")
        for t in (t for t in TARGETS.values() if t.paper == name):
            lines.append(f"  {t.name:<8} {t.what}")
            for scale in ("cpu", "paper"):
                p = t.protocol(scale)
                if p is None:
                    continue
                runs = ", ".join(r.name for r in p.runs)
                extra = f"; needs {p.needs}" if p.needs else _minutes(p)
                lines.append(f"           {scale}: {len(p.runs)} run(s) × {p.seeds} seed(s) [{runs}]{extra}")
            if t.cpu is None:
                lines.append(f"           cpu: not here: {t.why_not}")
    return "\n".join(lines)
