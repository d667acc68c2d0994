"""The encoders' stride-2 convolution: XLA's function, with the phase-convolution input gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from latentebm_jax.nets import ConvEnergy, ConvGaussianEncoder, strided_conv
from latentebm_jax.nets.conv_transpose import NHWC


def _rand(key, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(key), shape, dtype)


def _xla(x, k):
    return lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC)


@pytest.mark.parametrize("shape", [(2, 8, 6, 5, 7), (1, 4, 4, 3, 2), (3, 2, 10, 4, 4)])
def test_function_and_both_gradients_equal_xlas_convolution_in_float64(shape):
    b, h, w, cin, cout = shape
    with jax.enable_x64(True):
        x = _rand(0, (b, h, w, cin), jnp.float64)
        k = _rand(1, (4, 4, cin, cout), jnp.float64)
        dy = _rand(2, (b, h // 2, w // 2, cout), jnp.float64)
        y_ref, vjp_ref = jax.vjp(_xla, x, k)
        y, vjp = jax.vjp(strided_conv.conv_s2, x, k)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        for got, want in zip(vjp(dy), vjp_ref(dy)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _lhs_dilated_convolutions(fn, *args) -> int:
    """How many convolutions over a zero-dilated input (``lhs_dilation`` ≠ 1) the jaxpr of ``fn`` holds."""
    text = str(jax.make_jaxpr(fn)(*args))
    return text.count("lhs_dilation=(2, 2)")


def test_only_conv_4_2_1_on_even_nhwc_inputs_takes_the_fast_path():
    x, k = _rand(0, (2, 8, 8, 3)), _rand(1, (4, 4, 3, 5))
    base = dict(
        lhs_shape=x.shape,
        rhs_shape=k.shape,
        window_strides=(2, 2),
        padding=((1, 1), (1, 1)),
        lhs_dilation=None,
        rhs_dilation=None,
        dimension_numbers=NHWC,
        feature_group_count=1,
        batch_group_count=1,
    )
    fast = lambda **kw: strided_conv.takes_fast_path(**{**base, **kw})
    assert fast()
    assert fast(lhs_dilation=(1, 1), rhs_dilation=(1, 1))
    assert not fast(lhs_shape=(2, 7, 8, 3))  # odd height
    assert not fast(window_strides=(1, 1))
    assert not fast(padding=((0, 0), (0, 0)))
    assert not fast(padding="SAME")
    assert not fast(rhs_shape=(3, 3, 3, 5))
    assert not fast(rhs_dilation=(2, 2))
    assert not fast(feature_group_count=3, rhs_shape=(4, 4, 1, 6))
    assert not fast(
        dimension_numbers=("NCHW", "OIHW", "NCHW"), lhs_shape=(2, 3, 8, 8), rhs_shape=(5, 3, 4, 4)
    )
    # the fallback is XLA's convolution unchanged
    y = strided_conv.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC)
    np.testing.assert_array_equal(
        y, lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC)
    )
    loss = lambda x_: jnp.sum(
        strided_conv.conv_general_dilated(x_, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC) ** 2
    )
    plain = lambda x_: jnp.sum(_xla(x_, k) ** 2)
    assert _lhs_dilated_convolutions(jax.grad(plain), x) == 1  # what XLA's autodiff writes
    assert _lhs_dilated_convolutions(jax.grad(loss), x) == 0


def test_flax_conv_with_it_has_the_same_parameters_outputs_and_gradients():
    x = _rand(0, (2, 8, 8, 3))
    plain = nn.Conv(6, (4, 4), (2, 2), ((1, 1), (1, 1)))
    fast = nn.Conv(
        6, (4, 4), (2, 2), ((1, 1), (1, 1)), conv_general_dilated=strided_conv.conv_general_dilated
    )
    params = plain.init(jax.random.key(1), x)
    assert jax.tree.structure(fast.init(jax.random.key(1), x)) == jax.tree.structure(params)
    f = lambda m: lambda p, x_: jnp.sum(jnp.sin(m.apply(p, x_)))
    np.testing.assert_allclose(fast.apply(params, x), plain.apply(params, x), rtol=1e-6, atol=1e-6)
    for got, want in zip(jax.grad(f(fast), (0, 1))(params, x), jax.grad(f(plain), (0, 1))(params, x)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "net",
    [ConvGaussianEncoder(latent_dim=4, width=4), ConvEnergy(width=4, spectral_norm=True)],
    ids=["encoder", "sn_energy"],
)
def test_encoder_and_energy_input_gradients_skip_the_dilated_convolution(net):
    x = _rand(0, (2, 16, 16, 3))
    variables = net.init(jax.random.key(0), x)
    out = lambda x_: net.apply(variables, x_, mutable=True)[0]
    loss = lambda x_: sum(jnp.sum(o) for o in jax.tree.leaves(out(x_)))
    assert _lhs_dilated_convolutions(jax.grad(loss), x) == 0
