"""The FID Inception-v3 network (pytorch-fid's ``InceptionV3(use_fid_inception=True)``) in Flax.

This is the TensorFlow FID network (``inception-2015-12-05``) as ported by pytorch-fid: torchvision's
Inception-v3 layout with the FID replacements — ``Mixed_5b/5c/5d`` average-pool without counting the zero
padding, as do ``Mixed_6b–6e`` and ``Mixed_7b``; ``Mixed_7c`` max-pools in its pool branch; ``Mixed_6a`` and
``Mixed_7a`` are torchvision's. :class:`FIDInceptionV3` maps NHWC images in ``[0, 1]`` of any size to the
2048-d global-average-pooled features (for FID) and the 1008-way ``fc`` logits (for the Inception Score).
The input is resized to 299×299 as ``F.interpolate(mode='bilinear', align_corners=False)`` does (no
antialiasing) and scaled to ``[−1, 1]``. Every convolution is bias-free, followed by batch norm with running
statistics (eps 0.001) and ReLU; the batch norms are plain parameters, so only a ``params`` collection exists.

Weights file (``.npz``, float32): the keys are exactly pytorch-fid's state-dict names for this network,
in PyTorch layouts; ``num_batches_tracked`` entries are not stored (and are ignored when present)::

    <conv>.conv.weight       (out, in, kh, kw)   OIHW
    <conv>.bn.weight         (out,)              batch-norm scale
    <conv>.bn.bias           (out,)
    <conv>.bn.running_mean   (out,)
    <conv>.bn.running_var    (out,)
    fc.weight                (1008, 2048)
    fc.bias                  (1008,)

for the 94 convolutions ``<conv>`` — ``Conv2d_1a_3x3``, ``Conv2d_2a_3x3``, ``Conv2d_2b_3x3``,
``Conv2d_3b_1x1``, ``Conv2d_4a_3x3``, then ``Mixed_<block>.<branch>`` for the blocks ``5b 5c 5d`` (branches
``branch1x1 branch5x5_1 branch5x5_2 branch3x3dbl_1/2/3 branch_pool``), ``6a`` (``branch3x3
branch3x3dbl_1/2/3``), ``6b 6c 6d 6e`` (``branch1x1 branch7x7_1/2/3 branch7x7dbl_1/2/3/4/5 branch_pool``),
``7a`` (``branch3x3_1/2 branch7x7x3_1/2/3/4``) and ``7b 7c`` (``branch1x1 branch3x3_1 branch3x3_2a/2b
branch3x3dbl_1 branch3x3dbl_2 branch3x3dbl_3a/3b branch_pool``): 472 arrays in all
(:func:`inception_npz_shapes` lists them). ``python -m experiments.convert_fid_inception`` writes this file
from pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``.

In Flax the same names nest (``params['Mixed_5b']['branch1x1']['conv']['kernel']``, HWIO) with batch norm
as ``bn/{scale, bias, mean, var}`` and ``fc/{kernel (2048, 1008), bias}``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util
from jax import lax

from latentebm_jax import device_map

INPUT_SIZE = 299
NUM_LOGITS = 1008
POOL_DIM = 2048
BN_EPS = 1e-3
PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
CONVERT_HINT = (
    "FID and IS need pytorch-fid's Inception weights converted to .npz: "
    f"python -m experiments.convert_fid_inception --pth={PTH_NAME} --out=fid_inception.npz"
)

Params = dict[str, Any]
Padding = tuple[int, int]


class InceptionWeightsError(ValueError):
    """The Inception weights file is missing, unreadable or does not match the documented layout."""


# ----------------------------------------------------------------------------------------------- layers


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Resize NHWC images to ``size = (h, w)`` like ``F.interpolate(mode='bilinear', align_corners=False)``:
    half-pixel centres, a two-tap triangle filter (no antialiasing when shrinking), edges clamped."""
    b, _, _, c = x.shape
    return jax.image.resize(
        x, (b, size[0], size[1], c), method="bilinear", antialias=False, precision=lax.Precision.HIGHEST
    )


def _pool_padding(padding: int) -> tuple[Padding, ...]:
    return ((0, 0), (padding, padding), (padding, padding), (0, 0))


def avg_pool_exclude_pad(x: jax.Array, window: int = 3, stride: int = 1, padding: int = 1) -> jax.Array:
    """Average pooling of NHWC ``x`` over ``window×window`` windows that divides by the number of *real*
    pixels in each window (``F.avg_pool2d(..., count_include_pad=False)``, TensorFlow's ``SAME`` pool)."""
    dims, strides, pads = (1, window, window, 1), (1, stride, stride, 1), _pool_padding(padding)
    total = lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = lax.reduce_window(ones, 0.0, lax.add, dims, strides, pads)
    return total / count


def max_pool(x: jax.Array, window: int = 3, stride: int = 2, padding: int = 0) -> jax.Array:
    """Max pooling of NHWC ``x`` with implicit ``−inf`` padding (``F.max_pool2d``)."""
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, _pool_padding(padding))


class FrozenBatchNorm(nn.Module):
    """Batch norm in inference mode: ``(x − mean) · scale / sqrt(var + eps) + bias`` over the last axis,
    with all four statistics stored as ``params``."""

    eps: float = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (n,))
        bias = self.param("bias", nn.initializers.zeros, (n,))
        mean = self.param("mean", nn.initializers.zeros, (n,))
        var = self.param("var", nn.initializers.ones, (n,))
        mult = scale * lax.rsqrt(var + self.eps)
        return x * mult + (bias - mean * mult)


class BasicConv2d(nn.Module):
    """torchvision's ``BasicConv2d``: bias-free convolution (explicit PyTorch padding), batch norm, ReLU."""

    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: Padding = (0, 0)
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=(self.stride, self.stride),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        return nn.relu(FrozenBatchNorm(name="bn")(x))


def _conv(
    name: str,
    features: int,
    kernel: int | tuple[int, int],
    precision: lax.PrecisionLike,
    stride: int = 1,
    padding: int | Padding = 0,
) -> BasicConv2d:
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (padding, padding) if isinstance(padding, int) else padding
    return BasicConv2d(features, kernel, stride, padding, precision, name=name)


_ROW, _COL = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # 1×7 and 7×1 kernels with their PyTorch padding


def _cat(*branches: jax.Array) -> jax.Array:
    return jnp.concatenate(branches, axis=-1)


class FIDInceptionA(nn.Module):
    """``Mixed_5b/5c/5d``: 1×1, 5×5, double 3×3 and average-pool branches (pool excludes padding)."""

    pool_features: int
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        b1 = _conv("branch1x1", 64, 1, p)(x)
        b5 = _conv("branch5x5_1", 48, 1, p)(x)
        b5 = _conv("branch5x5_2", 64, 5, p, padding=2)(b5)
        b3 = _conv("branch3x3dbl_1", 64, 1, p)(x)
        b3 = _conv("branch3x3dbl_2", 96, 3, p, padding=1)(b3)
        b3 = _conv("branch3x3dbl_3", 96, 3, p, padding=1)(b3)
        bp = _conv("branch_pool", self.pool_features, 1, p)(avg_pool_exclude_pad(x))
        return _cat(b1, b5, b3, bp)


class InceptionB(nn.Module):
    """``Mixed_6a`` (torchvision): stride-2 3×3, stride-2 double 3×3 and max-pool branches (35 → 17)."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        b3 = _conv("branch3x3", 384, 3, p, stride=2)(x)
        bd = _conv("branch3x3dbl_1", 64, 1, p)(x)
        bd = _conv("branch3x3dbl_2", 96, 3, p, padding=1)(bd)
        bd = _conv("branch3x3dbl_3", 96, 3, p, stride=2)(bd)
        return _cat(b3, bd, max_pool(x))


class FIDInceptionC(nn.Module):
    """``Mixed_6b–6e``: 1×1, factorised 7×7, double factorised 7×7 and average-pool (excluding padding)
    branches, ``channels_7x7`` wide inside."""

    channels_7x7: int
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p, c7 = self.precision, self.channels_7x7
        b1 = _conv("branch1x1", 192, 1, p)(x)
        b7 = _conv("branch7x7_1", c7, 1, p)(x)
        b7 = _conv("branch7x7_2", c7, _ROW[0], p, padding=_ROW[1])(b7)
        b7 = _conv("branch7x7_3", 192, _COL[0], p, padding=_COL[1])(b7)
        bd = _conv("branch7x7dbl_1", c7, 1, p)(x)
        for i, (kernel, pad) in enumerate((_COL, _ROW, _COL), start=2):
            bd = _conv(f"branch7x7dbl_{i}", c7, kernel, p, padding=pad)(bd)
        bd = _conv("branch7x7dbl_5", 192, _ROW[0], p, padding=_ROW[1])(bd)
        bp = _conv("branch_pool", 192, 1, p)(avg_pool_exclude_pad(x))
        return _cat(b1, b7, bd, bp)


class InceptionD(nn.Module):
    """``Mixed_7a`` (torchvision): stride-2 3×3, factorised 7×7 then stride-2 3×3, and max-pool (17 → 8)."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        b3 = _conv("branch3x3_1", 192, 1, p)(x)
        b3 = _conv("branch3x3_2", 320, 3, p, stride=2)(b3)
        b7 = _conv("branch7x7x3_1", 192, 1, p)(x)
        b7 = _conv("branch7x7x3_2", 192, _ROW[0], p, padding=_ROW[1])(b7)
        b7 = _conv("branch7x7x3_3", 192, _COL[0], p, padding=_COL[1])(b7)
        b7 = _conv("branch7x7x3_4", 192, 3, p, stride=2)(b7)
        return _cat(b3, b7, max_pool(x))


class FIDInceptionE(nn.Module):
    """``Mixed_7b`` (``pool='avg'``, padding excluded) and ``Mixed_7c`` (``pool='max'``, the FID network's
    quirk): 1×1, split 1×3/3×1, double 3×3 split 1×3/3×1, and a 3×3 stride-1 pool branch."""

    pool: str = "avg"
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
        p = self.precision
        b1 = _conv("branch1x1", 320, 1, p)(x)
        b3 = _conv("branch3x3_1", 384, 1, p)(x)
        b3 = _cat(
            _conv("branch3x3_2a", 384, (1, 3), p, padding=(0, 1))(b3),
            _conv("branch3x3_2b", 384, (3, 1), p, padding=(1, 0))(b3),
        )
        bd = _conv("branch3x3dbl_1", 448, 1, p)(x)
        bd = _conv("branch3x3dbl_2", 384, 3, p, padding=1)(bd)
        bd = _cat(
            _conv("branch3x3dbl_3a", 384, (1, 3), p, padding=(0, 1))(bd),
            _conv("branch3x3dbl_3b", 384, (3, 1), p, padding=(1, 0))(bd),
        )
        pooled = avg_pool_exclude_pad(x) if self.pool == "avg" else max_pool(x, 3, 1, 1)
        bp = _conv("branch_pool", 192, 1, p)(pooled)
        return _cat(b1, b3, bd, bp)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID Inception-v3 (see module docstring). ``__call__(x)`` takes NHWC float images in
    ``[0, 1]`` with 3 channels and any spatial size and returns ``(pool (B, 2048), logits (B, 1008))``.

    ``precision`` is the convolutions' and ``fc``'s matmul precision; the default ``HIGHEST`` keeps TPUs
    and GPUs from computing in bfloat16/TF32, so the features match the float32 reference."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"FIDInceptionV3 expects NHWC images with 3 channels, got shape {x.shape}")
        p = self.precision
        x = resize_bilinear(x.astype(jnp.float32), (INPUT_SIZE, INPUT_SIZE))
        x = 2.0 * x - 1.0
        x = _conv("Conv2d_1a_3x3", 32, 3, p, stride=2)(x)  # 149
        x = _conv("Conv2d_2a_3x3", 32, 3, p)(x)  # 147
        x = _conv("Conv2d_2b_3x3", 64, 3, p, padding=1)(x)
        x = max_pool(x)  # 73
        x = _conv("Conv2d_3b_1x1", 80, 1, p)(x)
        x = _conv("Conv2d_4a_3x3", 192, 3, p)(x)  # 71
        x = max_pool(x)  # 35
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = FIDInceptionA(pool_features, p, name=name)(x)
        x = InceptionB(p, name="Mixed_6a")(x)  # 17
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = FIDInceptionC(c7, p, name=name)(x)
        x = InceptionD(p, name="Mixed_7a")(x)  # 8
        x = FIDInceptionE("avg", p, name="Mixed_7b")(x)
        x = FIDInceptionE("max", p, name="Mixed_7c")(x)
        pool = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(NUM_LOGITS, precision=p, name="fc")(pool)
        return pool, logits


# ------------------------------------------------------------------------------------- weights layout

_LEAF_TO_TORCH = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def _torch_name(path: tuple[str, ...]) -> str:
    return ".".join((*path[:-1], _LEAF_TO_TORCH[path[-1]]))


def _to_torch(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] != "kernel":
        return value
    return (
        np.transpose(value, (3, 2, 0, 1)) if value.ndim == 4 else value.T
    )  # HWIO → OIHW, (in,out) → (out,in)


def _from_torch(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] != "kernel":
        return value
    return np.transpose(value, (2, 3, 1, 0)) if value.ndim == 4 else value.T


@functools.lru_cache(maxsize=1)
def _flax_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    abstract = jax.eval_shape(
        FIDInceptionV3().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    )
    flat = traverse_util.flatten_dict(abstract["params"])
    return {path: tuple(leaf.shape) for path, leaf in flat.items()}


@functools.lru_cache(maxsize=1)
def _torch_paths() -> dict[str, tuple[str, ...]]:
    return {_torch_name(path): path for path in _flax_shapes()}


def inception_npz_shapes() -> dict[str, tuple[int, ...]]:
    """The documented weights layout: every key of the ``.npz`` and its (PyTorch-layout) shape."""
    out = {}
    for path, shape in _flax_shapes().items():
        out[_torch_name(path)] = tuple(_to_torch(path, np.empty(shape, np.uint8)).shape)
    return out


def _examples(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def check_inception_state_dict(arrays: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
    """Validate a pytorch-fid state dict (name → array) against the documented layout and return it as
    float32 NumPy arrays without the ``num_batches_tracked`` entries. Raises :class:`InceptionWeightsError`
    naming ``source`` and the first few missing, unexpected, wrong-shape or non-finite entries."""
    expected = inception_npz_shapes()
    given = {k: v for k, v in arrays.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in given]
    unexpected = sorted(k for k in given if k not in expected)
    wrong = [
        f"{k} (expected {expected[k]}, found {tuple(np.shape(given[k]))})"
        for k in expected
        if k in given and tuple(np.shape(given[k])) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_examples(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_examples(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} wrong shape(s): {_examples(wrong)}")
    if not problems:
        out = {k: np.asarray(given[k], np.float32) for k in expected}
        bad = [k for k, v in out.items() if not np.all(np.isfinite(v))]
        if bad:
            problems.append(f"{len(bad)} array(s) with NaN or inf: {_examples(bad)}")
    if problems:
        raise InceptionWeightsError(
            f"{source} is not a valid FID Inception weights file ({len(expected)} arrays expected): "
            + "; ".join(problems)
            + f". {CONVERT_HINT}"
        )
    return out


def params_from_state_dict(arrays: Mapping[str, Any], source: str = "state dict") -> Params:
    """Validate a pytorch-fid state dict and convert it to :class:`FIDInceptionV3` ``params``."""
    arrays = check_inception_state_dict(arrays, source)
    flat = {path: _from_torch(path, arrays[name]) for name, path in _torch_paths().items()}
    return traverse_util.unflatten_dict(flat)


def state_dict_from_params(params: Params) -> dict[str, np.ndarray]:
    """The documented ``.npz`` arrays (PyTorch names and layouts, float32) of :class:`FIDInceptionV3`
    ``params`` (checked against the layout)."""
    flat = traverse_util.flatten_dict(jax.device_get(params))
    arrays = {_torch_name(path): _to_torch(path, np.asarray(v, np.float32)) for path, v in flat.items()}
    return check_inception_state_dict(arrays, "params")


def load_inception_params(path: str | os.PathLike) -> Params:
    """Read the documented ``.npz`` (see module docstring) and return ``params`` for
    :class:`FIDInceptionV3` (use as ``model.apply({'params': params}, x)``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InceptionWeightsError(f"Inception weights file {path!r} not found. {CONVERT_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:  # not a zip, a bare .npy, pickled or truncated data, ...
        raise InceptionWeightsError(
            f"cannot read Inception weights {path!r} as an .npz archive ({type(err).__name__}: {err}). "
            f"{CONVERT_HINT}"
        ) from err
    return params_from_state_dict(arrays, repr(path))


def _write_npz(arrays: Mapping[str, np.ndarray], path: str | os.PathLike) -> str:
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_inception_npz(params: Params, path: str | os.PathLike) -> str:
    """Write :class:`FIDInceptionV3` ``params`` as the documented ``.npz`` at exactly ``path`` (atomic
    replace); the inverse of :func:`load_inception_params`. Returns the path."""
    return _write_npz(state_dict_from_params(params), path)


def random_inception_npz(path: str | os.PathLike, seed: int = 0) -> str:
    """Write a weights file of the documented layout with random but well-scaled values — He-normal
    convolutions, batch norms near the identity, a small ``fc`` — so activations stay O(1) through the
    network (a stand-in for the real weights in tests). Returns the path."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in inception_npz_shapes().items():
        n = shape[0]
        if name.endswith("conv.weight"):
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif name.endswith("bn.weight"):
            value = rng.uniform(0.8, 1.2, n)
        elif name.endswith("bn.bias") or name.endswith("running_mean"):
            value = rng.normal(0.0, 0.1, n)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, n)
        elif name == "fc.weight":
            value = rng.normal(0.0, 1.0 / np.sqrt(shape[1]), shape)
        else:  # fc.bias
            value = rng.normal(0.0, 0.1, shape)
        arrays[name] = value.astype(np.float32)
    return _write_npz(arrays, path)


# ------------------------------------------------------------------------------------------ extractor


@jax.jit
def _forward(params: Params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return FIDInceptionV3().apply({"params": params}, (images + 1.0) * 0.5)


class InceptionExtractor:
    """Pool features and logits of the FID Inception network for images in the library's convention.

    ``features(images)`` takes NHWC images in ``[−1, 1]`` with 1 (repeated to 3) or 3 channels and any
    size, and returns ``(pool (n, 2048), logits (n, 1008))`` as float32 NumPy arrays. It runs one jitted
    forward of fixed batch size ``batch_size`` (the last batch zero-padded, the padding dropped), so each
    image size compiles once; it shows no progress bar. On several ``devices`` (default: the local devices;
    :mod:`latentebm_jax.device_map`) a pass takes ``per_device × devices`` images with ``per_device =
    min(batch_size, ceil(n / devices))`` for ``n`` images, so a call with fewer than ``batch_size × devices``
    images pads less than one device's batch (a stream of equal calls still compiles once). The features do
    not depend on how the images are split (no randomness, batch norm frozen)."""

    def __init__(self, params: Params, batch_size: int = 50, devices: Sequence[jax.Device] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.devices = device_map.local_devices(devices)
        if len(self.devices) > 1:
            self.params = device_map.replicate(params, self.devices)
        else:
            self.params = jax.device_put(params, None if devices is None else self.devices[0])
        self.batch_size = batch_size

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"expected NHWC images with 1 or 3 channels, got shape {images.shape}")
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        n = len(self.devices)
        step = self.batch_size if n == 1 else n * min(self.batch_size, -(-max(len(images), 1) // n))
        pools, logits = [np.zeros((0, POOL_DIM), np.float32)], [np.zeros((0, NUM_LOGITS), np.float32)]
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            valid = len(chunk)
            if valid < step:
                pad = np.zeros((step - valid, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            pool, logit = device_map.map_batch(_forward, self.params, chunk, devices=self.devices)
            pools.append(np.asarray(pool)[:valid])
            logits.append(np.asarray(logit)[:valid])
        return np.concatenate(pools), np.concatenate(logits)
