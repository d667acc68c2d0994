"""The MNIST anomaly-detection rows two papers print alike: LEBM Table 4 (Pang et al. 2020) and ICCV Table 3
(Cui, Wu & Han 2023), which takes its baselines and the LEBM row from LEBM's table.

Columns are the held-out digits; cells are AUPRC as printed (mean ± std over the last 10 epochs where
given). VAE, MEG and BiGAN-σ are MEG's numbers (Kumar et al. 2019) as LEBM quotes them.
"""

from __future__ import annotations

COLUMNS: tuple[str, ...] = ("Digit 1", "Digit 4", "Digit 5", "Digit 7", "Digit 9")

VAE = ("0.063", "0.337", "0.325", "0.148", "0.104")
MEG = ("0.281 ± 0.035", "0.401 ± 0.061", "0.402 ± 0.062", "0.290 ± 0.040", "0.342 ± 0.034")
BIGAN_SIGMA = ("0.287 ± 0.023", "0.443 ± 0.029", "0.514 ± 0.029", "0.347 ± 0.017", "0.307 ± 0.028")
LEBM = ("0.336 ± 0.008", "0.630 ± 0.017", "0.619 ± 0.013", "0.463 ± 0.009", "0.413 ± 0.010")
