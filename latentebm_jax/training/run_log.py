"""Where a run's numbers and pictures go, and what the terminal shows while it trains.

* ``metrics.jsonl`` always (``metrics_writer.py``): every record with its step, the file the other tools
  read back (the AUPRC protocol, ``experiments.reproduce``, the notebooks).
* TensorBoard event files in ``<workdir>/tensorboard`` (``train.tensorboard``, on by default): the same
  scalars, and every PNG an evaluation writes as an image. Written by ``tensorboardX``, a small writer
  without TensorFlow; ``tensorboard --logdir=<workdir>`` shows them. A resumed run purges the events
  after its checkpoint, as ``metrics.jsonl`` drops its records.
* Weights & Biases (``train.wandb_project``, off by default): the same scalars and images; ``wandb`` is
  imported only when a project is named. The run's id is kept in ``<workdir>/wandb_id.txt`` so a resumed
  run continues the same W&B run.
* ``loss_curves.png``: every training quantity of ``metrics.jsonl`` against the step, drawn at each
  evaluation and at the end (:func:`save_loss_curves`).
* Progress: on a terminal a tqdm bar with the losses and the steps per second after compilation; when
  stderr is not a terminal (a log file, a batch job) one plain line per log window instead
  (:func:`progress_line`), so a log file gets readable lines instead of one ever-growing one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from latentebm_jax.training.metrics_writer import MetricsWriter, read_jsonl

TENSORBOARD_DIR = "tensorboard"
LOSS_CURVES = "loss_curves.png"
_NOT_PLOTTED = ("step", "epoch")


class RunLog:
    """Fans every record out to ``metrics.jsonl``, TensorBoard and W&B (those the config turns on).

    Only the main process writes (``enabled``); the others hold a log that does nothing.
    """

    def __init__(self, workdir: str, config, *, enabled: bool = True, start_step: int | None = None):
        self.workdir = workdir
        self.enabled = enabled
        self.metrics = MetricsWriter(os.path.join(workdir, "metrics.jsonl"), enabled=enabled)
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        tcfg = config.train
        if tcfg.get("tensorboard", False):
            from tensorboardX import SummaryWriter

            kwargs = {"purge_step": start_step} if start_step else {}
            self._tb = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR), flush_secs=30, **kwargs)
        if tcfg.get("wandb_project", ""):
            self._wandb = _start_wandb(workdir, config)

    def write(self, step: int, record: Mapping[str, Any]) -> None:
        """One record: ``metrics.jsonl`` gets it whole, TensorBoard and W&B its numbers."""
        self.metrics.write(step, dict(record))
        numbers = {k: float(v) for k, v in record.items() if _is_number(v)}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=int(step))

    def images(self, step: int, paths: Iterable[str]) -> None:
        """PNG files as images, tagged by file name (``samples``, ``reconstructions``, …)."""
        paths = list(paths)
        if not paths or (self._tb is None and self._wandb is None):
            return
        from PIL import Image

        for path in paths:
            tag = "images/" + os.path.splitext(os.path.relpath(path, self.workdir))[0]
            if self._tb is not None:
                with Image.open(path) as im:
                    array = np.asarray(im.convert("RGB"))
                self._tb.add_image(tag, array, int(step), dataformats="HWC")
            if self._wandb is not None:
                import wandb

                self._wandb.log({tag: wandb.Image(path)}, step=int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value)


def _start_wandb(workdir: str, config):
    """A W&B run for ``workdir``, resumed when the directory already has one."""
    import wandb

    from latentebm_jax.training.workdir import config_json

    id_path = os.path.join(workdir, "wandb_id.txt")
    if os.path.exists(id_path):
        with open(id_path) as f:
            run_id = f.read().strip()
    else:
        run_id = uuid.uuid4().hex[:12]
        with open(id_path, "w") as f:
            f.write(run_id + "\n")
    return wandb.init(
        project=config.train.wandb_project,
        name=os.path.basename(os.path.abspath(workdir)),
        id=run_id,
        resume="allow",
        dir=workdir,
        config=config_json(config),
    )


def png_times(directory: str) -> dict[str, float]:
    """``{path: modification time}`` of the PNG files directly in ``directory``."""
    if not os.path.isdir(directory):
        return {}
    out = {}
    for name in os.listdir(directory):
        if name.endswith(".png"):
            path = os.path.join(directory, name)
            out[path] = os.path.getmtime(path)
    return out


def new_pngs(directory: str, before: Mapping[str, float]) -> list[str]:
    """The PNG files of ``directory`` written (or rewritten) since ``before = png_times(directory)``."""
    return sorted(p for p, t in png_times(directory).items() if before.get(p) != t)


def ordered_quantities(keys: Iterable[str]) -> list[str]:
    """Losses first, then the rest, each group in the order given."""
    keys = [k for k in keys if k not in _NOT_PLOTTED]
    return [k for k in keys if k.startswith("loss")] + [k for k in keys if not k.startswith("loss")]


def progress_line(
    done: int, total: int, steps_per_second: float | None, means: Mapping[str, float], max_items: int = 6
) -> str:
    """One log line: ``step 200/6,000 (3%) · 4.20 steps/s · ETA 23 min · loss_g 20.3 · loss_e -0.0114``."""
    parts = [f"step {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%)"]
    if steps_per_second:
        parts.append(f"{steps_per_second:.2f} steps/s")
        parts.append(f"ETA {format_duration((total - done) / steps_per_second)}")
    keys = ordered_quantities(means)[:max_items]
    parts += [f"{k} {means[k]:.3g}" for k in keys]
    return " · ".join(parts)


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def save_loss_curves(metrics_path: str, path: str, title: str) -> str | None:
    """Every training quantity of ``metrics.jsonl`` against the step (losses first, one panel each, at most
    12) and, below, the evaluation numbers logged during training; returns ``path`` or ``None`` when the
    file has no training records yet."""
    from latentebm_jax import viz

    if not os.path.exists(metrics_path):
        return None
    records = read_jsonl(metrics_path)
    train = [r for r in records if not any(k.startswith("eval/") for k in r)]
    evals = [r for r in records if any(k.startswith("eval/") for k in r)]
    keys = ordered_quantities(dict.fromkeys(k for r in train for k in r if _is_number(r[k])))[:12]
    eval_keys = [
        k for k in dict.fromkeys(k for r in evals for k in r if k.startswith("eval/") and _is_number(r[k]))
    ]
    eval_keys = [k for k in eval_keys if sum(k in r for r in evals) >= 2][:8]  # a curve needs two points
    panels = keys + eval_keys
    if not keys:
        return None
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = viz.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.6 * nrow + 0.6), squeeze=False)
    for ax, key in zip(axes.ravel(), panels):
        rows = train if key in keys else evals
        pts = [(r["step"], r[key]) for r in rows if key in r and _is_number(r[key])]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1, marker="." if len(pts) < 30 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    last = max(r["step"] for r in records)
    fig.suptitle(f"{title} · step {last:,}", fontsize=10)
    fig.tight_layout()
    return viz.save_figure(fig, path)
