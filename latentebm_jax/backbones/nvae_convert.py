"""NVIDIA's NVAE checkpoints → the Flax :class:`~latentebm_jax.backbones.nvae.NVAE`'s variables.

An NVlabs/NVAE checkpoint (``checkpoint.pt``) holds ``state_dict`` (PyTorch names and NCHW/OIHW layouts) and
``args`` (the ``argparse.Namespace`` the architecture is built from). The Flax modules keep the official
names, so the mapping is mechanical (:func:`flax_path`):

* split the name at dots; an index joins the part before it (``pre_process.0`` → ``pre_process_0``,
  ``enc0.1`` → ``enc0_1``, ``conv.1.conv.0`` → ``conv_1/conv_0``); the cells' ``_ops`` list is ``ops``;
* convolution ``weight`` (O, I, kh, kw) → ``kernel`` (kh, kw, I, O); ``log_weight_norm`` (O, 1, 1, 1) →
  (O,); linear ``weight`` (out, in) → ``kernel`` (in, out); ``prior_ftr0`` (C, H, W) → (H, W, C);
* batch norm ``weight``/``bias`` → ``scale``/``bias`` (params), ``running_mean``/``running_var`` →
  ``mean``/``var`` (``batch_stats``); ``num_batches_tracked`` is dropped, and so is ``weight_normalized``:
  an official convolution without weight normalisation assigns its ``weight`` Parameter to that attribute
  too, so the state dict holds it twice.

Every official array must land on a Flax variable of the same size and every Flax variable must be filled;
anything else is an error naming the arrays. Reading a ``.pt`` file needs PyTorch (the ``bench`` extra) and
uses ``torch.load(weights_only=True)``, which admits only tensors, containers and primitive values, with
``argparse.Namespace`` added as the one allowed class: never a general unpickler.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from latentebm_jax.backbones.nvae import NVAE, NVAEConfig

_INDEX = re.compile(r"^\d+$")
_BN_STATS = {"running_mean": "mean", "running_var": "var"}


class ConversionError(ValueError):
    """A checkpoint's arrays do not fit the architecture its arguments describe."""


def flax_path(name: str) -> tuple[str, ...]:
    """The Flax path of an official parameter name, its leaf last (see the module docstring)."""
    parts: list[str] = []
    for part in name.split("."):
        if _INDEX.match(part) and parts:
            parts[-1] = f"{parts[-1]}_{part}"
        else:
            parts.append("ops" if part == "_ops" else part)
    return tuple(parts)


def convert_array(
    name: str, value: np.ndarray, names: set[str]
) -> tuple[str, tuple[str, ...], np.ndarray] | None:
    """``(collection, path, array)`` of one official array in Flax layout (``None``: not a variable)."""
    path = flax_path(name)
    leaf, where = path[-1], path[:-1]
    v = np.asarray(value, np.float32)
    if leaf == "num_batches_tracked":
        return None
    if leaf == "weight_normalized":  # a convolution without weight norm registers its weight twice
        return None
    if name == "prior_ftr0":
        return "params", ("prior_ftr0",), np.transpose(v, (1, 2, 0))
    if leaf in _BN_STATS:
        return "batch_stats", (*where, _BN_STATS[leaf]), v
    if f"{name.rsplit('.', 1)[0]}.running_mean" in names:  # a batch norm's weight and bias
        return "params", (*where, "scale" if leaf == "weight" else leaf), v
    if leaf == "weight" and v.ndim == 4:
        return "params", (*where, "kernel"), np.transpose(v, (2, 3, 1, 0))
    if leaf == "weight" and v.ndim == 2:
        return "params", (*where, "kernel"), v.T
    if leaf == "log_weight_norm":
        return "params", (*where, "log_weight_norm"), v.reshape(-1)
    if leaf == "bias":
        return "params", (*where, "bias"), v
    raise ConversionError(f"unexpected array {name} of shape {v.shape}")


def target_shapes(config: NVAEConfig) -> dict[str, dict[tuple[str, ...], tuple[int, ...]]]:
    """The Flax variables of ``config`` and their shapes (no computation: ``jax.eval_shape``)."""
    model = NVAE(config)
    x = np.zeros((1, config.image_size, config.image_size, config.channels), np.float32)
    eps = [np.zeros((1, *s), np.float32) for s in config.group_shapes]
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, eps, False))
    return {col: {k: tuple(v.shape) for k, v in flatten_dict(tree).items()} for col, tree in shapes.items()}


def convert_state_dict(state_dict: dict[str, Any], config: NVAEConfig) -> dict[str, Any]:
    """``{"params": …, "batch_stats": …}`` for :class:`NVAE` from an official ``state_dict`` (arrays as
    NumPy or anything ``np.asarray`` reads)."""
    names = set(state_dict)
    out: dict[str, dict[tuple[str, ...], np.ndarray]] = {"params": {}, "batch_stats": {}}
    for name, value in state_dict.items():
        converted = convert_array(name, value, names)
        if converted is not None:
            col, path, array = converted
            out[col][path] = array
    expected = target_shapes(config)
    problems = []
    for col in ("params", "batch_stats"):
        want, got = expected.get(col, {}), out[col]
        missing = sorted("/".join(k) for k in want if k not in got)
        extra = sorted("/".join(k) for k in got if k not in want)
        wrong = sorted(
            f"{'/'.join(k)} {got[k].shape} ≠ {want[k]}" for k in want if k in got and got[k].shape != want[k]
        )
        for what, items in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)):
            if items:
                problems.append(
                    f"{col} {what} ({len(items)}): {', '.join(items[:6])}{' …' if len(items) > 6 else ''}"
                )
    if problems:
        raise ConversionError("the checkpoint does not fit its NVAE arguments: " + "; ".join(problems))
    return {col: unflatten_dict(tree) for col, tree in out.items() if tree}


def load_torch_checkpoint(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(state_dict as NumPy, vars(args))`` of an NVlabs/NVAE ``checkpoint.pt`` (needs PyTorch)."""
    import argparse

    try:
        import torch
    except ImportError as err:
        raise ConversionError(
            "reading NVIDIA's .pt checkpoints needs PyTorch: pip install -e '.[bench]'"
        ) from err
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConversionError(
            f"cannot read {path} as an NVAE checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "args" not in ckpt:
        raise ConversionError(f"{path} is not an NVlabs/NVAE checkpoint (no 'state_dict' and 'args')")
    args = ckpt["args"]
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    state = {k: v.detach().cpu().numpy() for k, v in ckpt["state_dict"].items()}
    return state, args
