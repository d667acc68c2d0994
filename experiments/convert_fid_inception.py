"""Convert pytorch-fid's FID Inception weights to the ``.npz`` that ``latentebm_jax`` reads.

    python -m experiments.convert_fid_inception \
        --pth=pt_inception-2015-12-05-6726825d.pth --out=fid_inception.npz

The ``.pth`` is pytorch-fid's release file (``FID_WEIGHTS_URL`` in pytorch-fid's ``inception.py``); download
it once on a machine with network access. Reading it needs PyTorch (``pip install -e '.[bench]'``); the
result needs nothing but NumPy. The ``num_batches_tracked`` counters are dropped, every other array is
checked against the layout documented in ``latentebm_jax/metrics/inception.py`` and written as float32.
"""

from __future__ import annotations

import hashlib
import os
import sys

from absl import app, flags

_PTH = flags.DEFINE_string("pth", None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth.")
_OUT = flags.DEFINE_string("out", "fid_inception.npz", "Where to write the converted weights.")
flags.mark_flags_as_required(["pth"])

SHA256_PREFIX = "6726825d"  # the hash prefix in pytorch-fid's file name


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    pth, out = _PTH.value, _OUT.value
    if not os.path.isfile(pth):
        print(
            f"error: {pth!r} not found (pytorch-fid's pt_inception-2015-12-05-6726825d.pth)", file=sys.stderr
        )
        return 1
    try:
        import torch
    except ImportError:
        print("error: reading the .pth needs PyTorch: pip install -e '.[bench]'", file=sys.stderr)
        return 1

    from latentebm_jax.metrics.inception import (
        InceptionWeightsError,
        load_inception_params,
        params_from_state_dict,
        save_inception_npz,
    )

    sha = _sha256(pth)
    if not sha.startswith(SHA256_PREFIX):
        print(f"warning: sha256 {sha[:16]}… does not start with {SHA256_PREFIX} as pytorch-fid's file does")
    state = torch.load(pth, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        print(f"error: {pth!r} holds a {type(state).__name__}, not a state dict", file=sys.stderr)
        return 1
    arrays = {name: value.detach().cpu().numpy() for name, value in state.items()}
    try:
        params = params_from_state_dict(arrays, repr(pth))
        save_inception_npz(params, out)
        load_inception_params(out)  # the written file reads back
    except InceptionWeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    dropped = sum(name.endswith("num_batches_tracked") for name in arrays)
    kept = len(arrays) - dropped
    print(f"wrote {out}: {kept} arrays ({dropped} num_batches_tracked counters dropped)")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
