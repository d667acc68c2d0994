"""Networks: the authors' shapes and sizes, PyTorch conv-transpose geometry, PyTorch-default init."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from scipy.special import erf

from latentebm_jax.nets import DCGANGenerator, Generator8, MLPEnergy
from latentebm_jax.nets.generator import torch_conv_transpose


def n_params(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def test_svhn_generator_and_energy_match_the_authors_sizes():
    # 100→512@4 →256@8 →128@16 →3@32 with biases; MLP 100→200→200→1.
    g = DCGANGenerator(image_size=32, channels=3, ngf=64)
    z = jnp.zeros((2, 100))
    pg = jax.eval_shape(g.init, jax.random.key(0), z)
    expected = sum(i * o * 16 + o for i, o in [(100, 512), (512, 256), (256, 128), (128, 3)])
    assert n_params(pg) == expected == 3_447_683
    pe = jax.eval_shape(MLPEnergy(200, 2).init, jax.random.key(0), z)
    assert n_params(pe) == 100 * 200 + 200 + 200 * 200 + 200 + 200 + 1


@pytest.mark.parametrize(
    "size,ngf,widths",
    [
        (32, 64, [512, 256, 128]),
        (64, 128, [1024, 512, 256, 128]),
        (128, 128, [2048, 1024, 512, 256, 128]),
    ],
)
def test_dcgan_resolutions_and_channel_pattern(size, ngf, widths):
    g = DCGANGenerator(image_size=size, channels=3, ngf=ngf)
    shapes = jax.eval_shape(g.init, jax.random.key(0), jnp.zeros((1, 100)))["params"]
    got = [shapes[f"ConvTranspose_{i}"]["kernel"].shape[-1] for i in range(len(widths) + 1)]
    assert got == [*widths, 3]
    out = jax.eval_shape(g.apply, shapes and {"params": shapes}, jnp.zeros((2, 100)))
    assert out.shape == (2, size, size, 3)


def test_small_generator_outputs_8x8_in_range():
    g = Generator8(channels=1, ngf=8)
    z = jax.random.normal(jax.random.key(0), (5, 16)) * 10
    p = g.init(jax.random.key(1), z)
    x = g.apply(p, z)
    assert x.shape == (5, 8, 8, 1) and float(jnp.max(jnp.abs(x))) <= 1.0


@pytest.mark.parametrize("k,s,p,size", [(4, 2, 1, 5), (4, 1, 0, 1), (3, 1, 1, 6)])
def test_conv_transpose_is_the_adjoint_of_the_pytorch_strided_conv(k, s, p, size):
    """PyTorch's ConvTranspose2d(k, s, p) is the gradient of Conv2d(k, s, p) w.r.t. its input. Our layer,
    with its kernel flipped spatially and its channels swapped, must be that adjoint (bias set to 0)."""
    layer = torch_conv_transpose(3, k, s, p)
    y = jax.random.normal(jax.random.key(0), (2, size, size, 4))
    params = layer.init(jax.random.key(1), y)
    params = jax.tree.map(lambda a: a, params)
    params["params"]["bias"] = jnp.zeros_like(params["params"]["bias"])
    out = layer.apply(params, y)
    assert out.shape[1] == (size - 1) * s - 2 * p + k
    w = params["params"]["kernel"]  # (k, k, in=4, out=3), not flipped
    w_conv = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)  # HWIO for the forward conv: in=3, out=4
    conv = lambda x: lax.conv_general_dilated(
        x, w_conv, (s, s), [(p, p), (p, p)], dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    x0 = jnp.zeros(out.shape)
    _, vjp = jax.vjp(conv, x0)
    np.testing.assert_allclose(out, vjp(y)[0], rtol=1e-5, atol=1e-5)


def test_energy_uses_exact_gelu_and_pytorch_default_init():
    e = MLPEnergy(hidden=50, num_hidden=1)
    z = jax.random.normal(jax.random.key(0), (3, 7))
    p = e.init(jax.random.key(1), z)["params"]
    for layer, fan_in in (("TorchDense_0", 7), ("TorchDense_1", 50)):
        bound = 1 / math.sqrt(fan_in)
        for name in ("kernel", "bias"):
            w = np.asarray(p[layer]["Dense_0"][name])
            assert np.abs(w).max() <= bound
    # U(−b, b) has standard deviation b/√3
    w = np.asarray(p["TorchDense_1"]["Dense_0"]["kernel"])  # 50 values, fan_in 50
    big = MLPEnergy(hidden=400, num_hidden=1).init(jax.random.key(2), jnp.zeros((1, 300)))["params"]
    k = np.asarray(big["TorchDense_0"]["Dense_0"]["kernel"])  # 120,000 values, fan_in 300
    np.testing.assert_allclose(k.std(), 1 / math.sqrt(300) / math.sqrt(3), rtol=0.01)
    assert np.abs(w).max() <= 1 / math.sqrt(50)
    h = np.asarray(z) @ np.asarray(p["TorchDense_0"]["Dense_0"]["kernel"]) + np.asarray(
        p["TorchDense_0"]["Dense_0"]["bias"]
    )
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    want = (
        h @ np.asarray(p["TorchDense_1"]["Dense_0"]["kernel"])[:, 0]
        + np.asarray(p["TorchDense_1"]["Dense_0"]["bias"])[0]
    )
    np.testing.assert_allclose(e.apply({"params": p}, z), want, rtol=1e-5)
    # pytree latents are concatenated
    two = e.apply({"params": p}, (z[:, :3], z[:, 3:]))
    np.testing.assert_allclose(two, e.apply({"params": p}, z), rtol=1e-6)


@pytest.mark.parametrize("k, stride, size", [(3, 1, 2), (3, 1, 4), (4, 2, 4), (4, 2, 2), (3, 1, 5)])
def test_small_map_convolution_is_xlas_convolution_with_the_same_gradients_and_parameters(k, stride, size):
    """``SmallMapConv`` (one matrix product per tap on maps ≤ TAPS_MAX_SIZE) computes ``nn.Conv``'s function
    with ``nn.Conv``'s parameters: outputs and both gradients agree with ``lax.conv_general_dilated``."""
    from flax import linen as nn

    from latentebm_jax.nets.small_conv import TAPS_MAX_SIZE, SmallMapConv, conv_taps

    rng = np.random.default_rng(k + 10 * size)
    x = jnp.asarray(rng.normal(size=(3, size, size, 5)).astype(np.float32))
    fast = SmallMapConv(7, k, stride, 1)
    plain = nn.Conv(7, (k, k), (stride, stride), ((1, 1), (1, 1)), use_bias=False,
                    kernel_init=nn.initializers.xavier_normal())  # fmt: skip
    params = fast.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, plain.init(jax.random.key(0), x))
    np.testing.assert_array_equal(
        params["params"]["kernel"], plain.init(jax.random.key(0), x)["params"]["kernel"]
    )
    kernel = params["params"]["kernel"]
    dn = ("NHWC", "HWIO", "NHWC")
    ref = lambda x, w: lax.conv_general_dilated(
        x, w, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=dn
    )
    taps = lambda x, w: conv_taps(x, w, stride, 1)
    y = ref(x, kernel)
    np.testing.assert_allclose(fast.apply(params, x), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(taps(x, kernel), y, rtol=1e-5, atol=1e-5)
    dy = jnp.asarray(rng.normal(size=y.shape).astype(np.float32))
    for got, want in zip(jax.vjp(taps, x, kernel)[1](dy), jax.vjp(ref, x, kernel)[1](dy)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert (size <= TAPS_MAX_SIZE) == (size < 5)  # the last case takes XLA's convolution
