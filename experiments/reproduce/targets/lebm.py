"""The reproduction targets of LEBM (Pang et al., NeurIPS 2020):
every table and figure, with its protocol at each scale."""

from __future__ import annotations

from experiments.reproduce.protocol import Claim, Column, Protocol, Run, Target, higher, lower
from experiments.reproduce.targets.common import (
    ACCEL,
    AUPRC,
    FID,
    LAST_EPOCHS,
    TFDS,
    _anomaly_protocol,
    auprc_protocols,
    published,
)

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


_AUPRC_CPU, _AUPRC_PAPER = auprc_protocols(
    "lebm",
    "LEBM",
    "configs/digits.py:lebm",
    _LEBM,
    2.5,
    "configs/mnist.py:lebm",
    f"{TFDS} (mnist)",
    note="Embedded 8×8 digits in place of MNIST: one run per held-out digit, that digit left out of "
    "training and scored in the test split by −log p(x, z) at posterior samples.",
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
        cpu=_AUPRC_CPU,
        paper_scale=_AUPRC_PAPER,
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
