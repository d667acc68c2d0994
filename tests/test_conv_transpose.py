"""The fast transposed-convolution formulations compute the plain layer's function and gradients."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latentebm_jax.nets import DCGANGenerator, Generator8
from latentebm_jax.nets.conv_transpose import (
    CONV_IMPLS,
    TorchConvTranspose,
    choose_s2_modes,
    conv_transpose_from_1x1,
    conv_transpose_s2,
    conv_transpose_s2_phase_conv,
    conv_transpose_s2_subpixel,
    conv_transpose_s2_winograd,
    conv_transpose_s2_winograd_input_grad,
    conv_transpose_xla,
    winograd_grad_kernel,
)
from latentebm_jax.nets.generator import torch_conv_transpose


def _rand(key, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(key), shape, dtype)


@pytest.mark.parametrize("shape", [(2, 4, 4, 8, 6), (3, 2, 6, 5, 3), (1, 8, 8, 16, 16)])
@pytest.mark.parametrize(
    "form", [conv_transpose_s2_subpixel, conv_transpose_s2_winograd, conv_transpose_s2_phase_conv]
)
def test_stride2_forms_equal_the_dilated_convolution_in_float64(shape, form):
    b, h, w, cin, cout = shape
    with jax.enable_x64(True):
        x = _rand(0, (b, h, w, cin), jnp.float64)
        k = _rand(1, (4, 4, cin, cout), jnp.float64)
        want = conv_transpose_xla(x, k, 2, 1)
        got = form(x, k)
        assert got.shape == want.shape == (b, 2 * h, 2 * w, cout)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_winograd_input_gradient_is_the_adjoint_in_float64():
    with jax.enable_x64(True):
        x = _rand(0, (2, 4, 6, 5), jnp.float64)
        k = _rand(1, (4, 4, 5, 7), jnp.float64)
        dy = _rand(2, (2, 8, 12, 7), jnp.float64)
        _, vjp = jax.vjp(lambda x_: conv_transpose_xla(x_, k, 2, 1), x)
        got = conv_transpose_s2_winograd_input_grad(dy, winograd_grad_kernel(k))
        np.testing.assert_allclose(got, vjp(dy)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "forward,input_grad",
    list(itertools.product(["direct", "winograd", "subpixel", "phase_conv"], ["direct", "winograd"])),
)
def test_custom_vjp_gradients_equal_autodiff_of_the_plain_layer(forward, input_grad):
    x = _rand(0, (3, 4, 4, 6))
    k = 0.3 * _rand(1, (4, 4, 6, 5))
    dy = _rand(2, (3, 8, 8, 5))
    y_ref, vjp_ref = jax.vjp(lambda x_, k_: conv_transpose_xla(x_, k_, 2, 1), x, k)
    y, vjp = jax.vjp(lambda x_, k_: conv_transpose_s2(x_, k_, forward, input_grad), x, k)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(vjp(dy), vjp_ref(dy)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_first_layer_from_1x1_is_the_4x4_transposed_convolution():
    z = _rand(0, (3, 1, 1, 7))
    k = _rand(1, (4, 4, 7, 5))
    np.testing.assert_allclose(
        conv_transpose_from_1x1(z, k), conv_transpose_xla(z, k, 1, 0), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="1×1"):
        conv_transpose_from_1x1(_rand(0, (3, 2, 2, 7)), k)


def test_winograd_needs_fewer_flops_than_the_direct_form():
    """F(2×2, 2×2) does the channel contractions in 9/16 of the direct form's multiplications."""
    x = jnp.zeros((4, 8, 8, 64))
    k = jnp.zeros((4, 4, 64, 64))

    def flops(fn):
        cost = jax.jit(fn).lower(x, k).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return cost["flops"]

    direct_contraction = 2 * 4 * (16 * 16) * 64 * 64 * 4  # every output pixel: 2×2 taps × in channels
    subpixel, winograd = flops(conv_transpose_s2_subpixel), flops(conv_transpose_s2_winograd)
    assert subpixel >= direct_contraction
    assert winograd < 0.6 * direct_contraction


@pytest.mark.parametrize("impl", [i for i in CONV_IMPLS if i != "xla"])
def test_layer_matches_flax_conv_transpose_with_identical_parameters(impl):
    plain = torch_conv_transpose(6, 4, 2, 1)
    fast = TorchConvTranspose(6, 4, 2, 1, impl=impl)
    x = _rand(0, (2, 5, 4, 3))  # odd height: "fast" falls back to the direct form, "winograd" refuses
    x_even = x[:, :4]
    p_plain = plain.init(jax.random.key(1), x_even)
    p_fast = fast.init(jax.random.key(1), x_even)
    assert jax.tree.map(jnp.shape, p_plain) == jax.tree.map(jnp.shape, p_fast)
    for a, b in zip(jax.tree.leaves(p_plain), jax.tree.leaves(p_fast)):
        np.testing.assert_array_equal(a, b)  # same initialisation: checkpoints interchangeable
    if impl == "winograd":
        with pytest.raises(ValueError, match="even"):
            fast.apply(p_fast, x)
        x = x_even
    np.testing.assert_allclose(fast.apply(p_fast, x), plain.apply(p_plain, x), rtol=1e-5, atol=1e-5)


def test_choose_modes_and_unknown_impl():
    assert choose_s2_modes("fast", 512, 256, 4, 4) == ("winograd", "winograd")
    assert choose_s2_modes("fast", 128, 3, 16, 16) == ("direct", "winograd")
    assert choose_s2_modes("fast", 128, 128, 5, 5) == ("direct", "direct")
    layer = TorchConvTranspose(4, 4, 2, 1, impl="fft")
    with pytest.raises(ValueError, match="unknown conv_impl 'fft'"):
        layer.init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))


@pytest.mark.parametrize(
    "make",
    [
        # the 32×32 DCGAN compiles five implementations forward and backward: a long run (-m slow)
        pytest.param(
            lambda impl: DCGANGenerator(image_size=32, channels=3, ngf=8, conv_impl=impl),
            marks=pytest.mark.slow,
        ),
        # the digits' 8×8 generator: five implementations forward and backward (about 11 s on 2 idle cores)
        pytest.param(lambda impl: Generator8(channels=1, ngf=32, conv_impl=impl), marks=pytest.mark.slow),
    ],
)
def test_generators_compute_the_same_function_and_gradients_in_every_impl(make):
    z = _rand(0, (3, 12))
    params = make("xla").init(jax.random.key(2), z)
    x = _rand(1, make("xla").apply(params, z).shape)

    @functools.partial(jax.jit, static_argnums=0)
    def out_and_grads(impl, p, z_):
        net = make(impl)
        loss = lambda z_, p: jnp.sum(jnp.square(net.apply(p, z_) - x))
        return net.apply(p, z_), *jax.grad(loss, argnums=(0, 1))(z_, p)

    ref_out, ref_gz, ref_gp = out_and_grads("xla", params, z)
    # (the per-layer tests above cover "direct" and "subpixel" on their own)
    for impl in ("fast", "winograd"):
        assert jax.tree.map(jnp.shape, make(impl).init(jax.random.key(2), z)) == jax.tree.map(
            jnp.shape, params
        )
        out, gz, gp = out_and_grads(impl, params, z)
        np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gz, ref_gz, rtol=1e-4, atol=1e-4)
        for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(ref_gp)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))
