"""The toy of ICCV 2023 Secs. 2.2 and 5.1: joint hierarchical prior vs single-layer LEBM on digits 0, 1, 2.

Trains ``configs/digits_toy.py:joint`` (two latent layers of one unit) and ``configs/digits_toy.py:lebm``
(one 2-d latent) in ``<workdir>/joint`` and ``<workdir>/lebm`` (resuming if they hold checkpoints), then
writes ``<workdir>/toy_traversal.png``: each model's per-unit traversals side by side (Figs. 6 and 2)::

    python -m experiments.toy_hierarchy --workdir=runs/toy
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for both runs and the side-by-side figure.")
_STEPS = flags.DEFINE_integer("num_steps", -1, "Train steps per model (-1: the config's epochs).")
flags.mark_flags_as_required(["workdir"])


def side_by_side(paths: list[str], titles: list[str], out: str) -> str:
    """Put PNG figures next to each other with a title above each."""
    import numpy as np
    from PIL import Image, ImageDraw

    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    height = max(im.shape[0] for im in images) + 24
    canvas = Image.new("RGB", (sum(im.shape[1] for im in images) + 10 * (len(images) - 1), height), "white")
    draw, left = ImageDraw.Draw(canvas), 0
    for im, title in zip(images, titles):
        canvas.paste(Image.fromarray(im), (left, 24))
        draw.text((left + 8, 4), title, fill="black")
        left += im.shape[1] + 10
    canvas.save(out)
    return out


def main(argv: list[str]) -> int:
    del argv
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    from configs import digits_toy
    from configs.default import validate
    from latentebm_jax.training import loop

    paths, titles = [], []
    for method, title in (
        ("joint", "joint EBM prior: z_1 (bottom) and z_2 (top), one unit each"),
        ("lebm", "LEBM: one 2-d latent"),
    ):
        config = digits_toy.get_config(method)
        if _STEPS.value > 0:
            config.train.num_steps = _STEPS.value
        validate(config)
        workdir = os.path.join(_WORKDIR.value, method)
        summary = loop.train(config, workdir)
        print(f"{method}: probe accuracy per layer {summary.get('probe_accuracy')}", flush=True)
        paths.append(os.path.join(workdir, "traversal.png"))
        titles.append(title)
    out = side_by_side(paths, titles, os.path.join(_WORKDIR.value, "toy_traversal.png"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
