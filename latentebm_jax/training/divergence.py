"""Stopping a run that diverges, beyond NaN and inf: energies out of bounds, generator gradients that vanish.

A method names the metrics to watch (``Method.watch``: ``"energy"`` and ``"generator_grad"``). Each logged
window's mean is checked: an energy with ``|value| > train.max_abs_energy`` or generator gradient norms all
below ``train.min_grad_norm`` is a warning; ``train.divergence_patience`` warned windows in a row stop the
run with :class:`DivergenceError`. The last good checkpoint is the last one written before the first
warning of that streak (checkpoints after it exist but are suspect, and the error says so).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger("latentebm_jax.training")


class DivergenceError(FloatingPointError):
    """Training diverged: an energy out of bounds, or generator gradients gone, for too long."""


class DivergenceGuard:
    """Checks window means against the limits of a config's ``train`` group (0 switches a limit off)."""

    def __init__(self, train_config, watch: Mapping[str, tuple[str, ...]]):
        self.max_abs_energy = float(train_config.max_abs_energy)
        self.min_grad_norm = float(train_config.min_grad_norm)
        self.patience = int(train_config.divergence_patience)
        self.energy = tuple(watch.get("energy", ()))
        self.grads = tuple(watch.get("generator_grad", ()))
        self.streak = 0
        self.first_warning: int | None = None

    def problems(self, means: Mapping[str, float]) -> list[str]:
        """What is wrong with one window's means (empty when nothing is)."""
        out = []
        if self.max_abs_energy > 0:
            out += [
                f"|{k}| = {abs(means[k]):.3g} > train.max_abs_energy = {self.max_abs_energy:.3g}"
                for k in self.energy
                if k in means and abs(means[k]) > self.max_abs_energy
            ]
        grads = [means[k] for k in self.grads if k in means]
        if self.min_grad_norm > 0 and grads and all(g < self.min_grad_norm for g in grads):
            out.append(
                ", ".join(f"{k} = {means[k]:.3g}" for k in self.grads if k in means)
                + f" < train.min_grad_norm = {self.min_grad_norm:.3g} (the generator stopped learning)"
            )
        return out

    def check(self, step: int, means: Mapping[str, float]) -> list[str] | None:
        """Record one window ending at ``step``; the problems when the run must stop, else ``None``."""
        problems = self.problems(means)
        if not problems:
            self.streak, self.first_warning = 0, None
            return None
        self.streak += 1
        if self.first_warning is None:
            self.first_warning = step
        log.warning("step %d: %s (%d of %d windows)", step, "; ".join(problems), self.streak, self.patience)
        return problems if self.streak >= self.patience else None
