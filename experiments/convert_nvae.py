"""Convert an NVlabs/NVAE checkpoint into this library's Flax NVAE.

    pip install -e '.[bench]'     # PyTorch, only to read the .pt file
    python -m experiments.convert_nvae --ckpt=/path/to/checkpoint.pt --out=backbones/nvae_cifar10

writes ``OUT/nvae_args.json`` (the checkpoint's argument namespace, from which the architecture is built)
and ``OUT/variables`` (an orbax checkpoint of ``{"params", "batch_stats"}`` in the layout of
``latentebm_jax.backbones.nvae.NVAE``). The file is read with ``torch.load(weights_only=True)``: tensors,
containers and ``argparse.Namespace`` only.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

_CKPT = flags.DEFINE_string("ckpt", None, "NVIDIA's checkpoint.pt.")
_OUT = flags.DEFINE_string("out", None, "Output directory (created).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing conversion in --out.")
flags.mark_flags_as_required(["ckpt", "out"])


def convert(ckpt: str, out: str, overwrite: bool = False) -> str:
    """Convert ``ckpt`` into ``out``; returns a one-line description."""
    import numpy as np
    import orbax.checkpoint as ocp

    from latentebm_jax.backbones.nvae import NVAEConfig
    from latentebm_jax.backbones.nvae_convert import (
        ConversionError,
        convert_state_dict,
        load_torch_checkpoint,
    )

    if not os.path.isfile(ckpt):
        raise ConversionError(f"--ckpt {ckpt} does not exist")
    target = os.path.abspath(os.path.join(out, "variables"))
    if os.path.exists(target) and not overwrite:
        raise ConversionError(f"{target} exists already; pass --overwrite to replace it")
    state, args = load_torch_checkpoint(ckpt)
    config = NVAEConfig.from_args(args)
    variables = convert_state_dict(state, config)
    os.makedirs(out, exist_ok=True)
    serialisable = {k: v for k, v in args.items() if isinstance(v, (str, int, float, bool, type(None), list))}
    with open(os.path.join(out, "nvae_args.json"), "w") as f:
        json.dump(serialisable, f, indent=1, sort_keys=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, variables, force=overwrite)
    checkpointer.wait_until_finished()
    count = sum(int(np.prod(np.shape(v))) for v in _leaves(variables["params"]))
    return (
        f"converted {ckpt}: {len(config.group_shapes)} latent groups {sorted(set(config.group_shapes))}, "
        f"{count:,} parameters → {out}"
    )


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def main(argv: list[str]) -> int:
    from absl import logging as absl_logging

    from latentebm_jax.backbones.nvae_convert import ConversionError

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save step at INFO
    try:
        print(convert(_CKPT.value, _OUT.value, _OVERWRITE.value))
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
