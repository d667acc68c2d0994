"""FID Inception-v3: layout of the weights file, loading and its errors, the layers against hand and NumPy
computations, and the extractor (one compile of the full network, on random weights of the real layout)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latentebm_jax.metrics.inception import (
    BasicConv2d,
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE,
    FIDInceptionV3,
    InceptionExtractor,
    InceptionWeightsError,
    avg_pool_exclude_pad,
    check_inception_state_dict,
    inception_npz_shapes,
    load_inception_params,
    max_pool,
    params_from_state_dict,
    random_inception_npz,
    resize_bilinear,
    save_inception_npz,
)

SHAPE = (20, 24)  # every full-network call uses batch 2 at this size: one compile for the module


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = random_inception_npz(tmp_path_factory.mktemp("inception") / "random.npz", seed=0)
    with np.load(path) as npz:
        return path, {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def params(weights):
    return load_inception_params(weights[0])


@pytest.fixture(scope="module")
def extractor(params):
    return InceptionExtractor(params, batch_size=2)


def _images(n, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, 0.5, (n, *SHAPE, channels)), -1, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------ layout


def test_layout_is_pytorch_fids_state_dict(weights):
    shapes = inception_npz_shapes()
    assert len(shapes) == 94 * 5 + 2 == 472
    assert sum(k.endswith(".conv.weight") for k in shapes) == 94
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Conv2d_4a_3x3.bn.running_var"] == (192,)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert shapes["Mixed_6e.branch7x7dbl_4.conv.weight"] == (192, 192, 7, 1)
    assert shapes["Mixed_7a.branch7x7x3_4.conv.weight"] == (192, 192, 3, 3)
    assert shapes["Mixed_7b.branch3x3_2b.conv.weight"] == (384, 384, 3, 1)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["fc.weight"] == (1008, 2048) and shapes["fc.bias"] == (1008,)
    arrays = weights[1]
    assert {k: v.shape for k, v in arrays.items()} == shapes
    assert all(v.dtype == np.float32 for v in arrays.values())


def test_network_geometry_follows_torchvision(params):
    def run(p, x):
        return FIDInceptionV3().apply({"params": p}, x, capture_intermediates=True, mutable=["intermediates"])

    x = jax.ShapeDtypeStruct((1, 50, 60, 3), jnp.float32)
    (pool, logits), state = jax.eval_shape(run, params, x)
    inter = state["intermediates"]
    expected = {
        "Conv2d_1a_3x3": (149, 149, 32),
        "Conv2d_2a_3x3": (147, 147, 32),
        "Conv2d_2b_3x3": (147, 147, 64),
        "Conv2d_3b_1x1": (73, 73, 80),
        "Conv2d_4a_3x3": (71, 71, 192),
        "Mixed_5b": (35, 35, 256),
        "Mixed_5d": (35, 35, 288),
        "Mixed_6a": (17, 17, 768),
        "Mixed_6e": (17, 17, 768),
        "Mixed_7a": (8, 8, 1280),
        "Mixed_7b": (8, 8, 2048),
        "Mixed_7c": (8, 8, 2048),
    }
    for name, shape in expected.items():
        assert inter[name]["__call__"][0].shape == (1, *shape), name
    assert pool.shape == (1, 2048) and logits.shape == (1, 1008)


# ------------------------------------------------------------------------------------------ layers


def _torch_bilinear_matrix(n_in, n_out):
    """Interpolation matrix of ``F.interpolate(mode='bilinear', align_corners=False)`` along one axis."""
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = src - i0
        w[i, i0] += 1.0 - frac
        w[i, i1] += frac
    return w


@pytest.mark.parametrize(
    "size_in,size_out", [((5, 7), (12, 9)), ((40, 33), (13, 17)), ((20, 24), (299, 299))]
)
def test_resize_is_half_pixel_bilinear_without_antialiasing(size_in, size_out):
    x = np.random.default_rng(1).normal(size=(2, *size_in, 3)).astype(np.float32)
    wh = _torch_bilinear_matrix(size_in[0], size_out[0])
    ww = _torch_bilinear_matrix(size_in[1], size_out[1])
    want = np.einsum("ah,bw,nhwc->nabc", wh, ww, x.astype(np.float64))
    got = np.asarray(resize_bilinear(jnp.asarray(x), size_out))
    # float32 sample positions (as in PyTorch) are off by ~1e-6 pixels; a wrong filter is off by ~0.1–1
    np.testing.assert_allclose(got, want, atol=3e-5)


def test_resize_hand_values():
    x = jnp.asarray([0.0, 1.0]).reshape(1, 1, 2, 1)
    np.testing.assert_allclose(np.asarray(resize_bilinear(x, (1, 4))).ravel(), [0, 0.25, 0.75, 1], atol=1e-7)
    y = jnp.arange(4.0).reshape(1, 1, 4, 1)  # halving averages neighbour pairs (no wider filter)
    np.testing.assert_allclose(np.asarray(resize_bilinear(y, (1, 2))).ravel(), [0.5, 2.5], atol=1e-7)


def test_average_pool_excludes_padding_from_the_count():
    x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    want = [[3.0, 3.5, 4.0], [4.5, 5.0, 5.5], [6.0, 6.5, 7.0]]
    np.testing.assert_allclose(np.asarray(avg_pool_exclude_pad(x))[0, :, :, 0], want, rtol=1e-6)


def test_max_pool_pads_with_minus_infinity_and_strides():
    x = -jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    want = [[-1.0, -1.0, -2.0], [-1.0, -1.0, -2.0], [-4.0, -4.0, -5.0]]
    np.testing.assert_array_equal(np.asarray(max_pool(x, 3, 1, 1))[0, :, :, 0], want)
    y = jnp.arange(25.0).reshape(1, 5, 5, 1)
    np.testing.assert_array_equal(np.asarray(max_pool(y))[0, :, :, 0], [[12.0, 14.0], [22.0, 24.0]])


def _numpy_basic_conv(x, arrays, name, stride, padding):
    w = arrays[f"{name}.conv.weight"].astype(np.float64)  # OIHW
    (ph, pw), (_, _, kh, kw) = padding, w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    ho, wo = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[0]))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :]
            out += np.einsum("nhwc,oc->nhwo", patch, w[:, :, i, j])
    bn = {k: arrays[f"{name}.bn.{k}"].astype(np.float64) for k in ("weight", "bias", "running_mean")}
    var = arrays[f"{name}.bn.running_var"].astype(np.float64)
    out = (out - bn["running_mean"]) / np.sqrt(var + 1e-3) * bn["weight"] + bn["bias"]
    return np.maximum(out, 0.0)


@pytest.mark.parametrize(
    "path,kernel,stride,padding",
    [
        ("Conv2d_1a_3x3", (3, 3), 2, (0, 0)),
        ("Conv2d_2b_3x3", (3, 3), 1, (1, 1)),
        ("Mixed_6b.branch7x7_2", (1, 7), 1, (0, 3)),
        ("Mixed_6b.branch7x7dbl_2", (7, 1), 1, (3, 0)),
    ],
)
def test_loaded_conv_bn_relu_matches_numpy_on_the_pytorch_arrays(
    weights, params, path, kernel, stride, padding
):
    arrays = weights[1]
    sub = params
    for part in path.split("."):
        sub = sub[part]
    c_in = arrays[f"{path}.conv.weight"].shape[1]
    x = np.random.default_rng(2).normal(size=(2, 9, 8, c_in)).astype(np.float32)
    layer = BasicConv2d(arrays[f"{path}.conv.weight"].shape[0], kernel, stride, padding)
    got = np.asarray(layer.apply({"params": sub}, jnp.asarray(x)))
    want = _numpy_basic_conv(x, arrays, path, stride, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _identity_pool_branch(block, channels, x):
    """Params of ``block`` whose ``branch_pool`` conv+BN is the identity, so its output channels (the last
    ``channels``) are the pooled input itself (the input is positive, so the ReLU does nothing)."""
    p = jax.tree.map(np.asarray, jax.jit(block.init)(jax.random.key(0), x)["params"])
    p["branch_pool"] = {
        "conv": {"kernel": np.eye(channels, dtype=np.float32)[None, None]},
        "bn": {
            "scale": np.ones(channels, np.float32),
            "bias": np.zeros(channels, np.float32),
            "mean": np.zeros(channels, np.float32),
            "var": np.full(channels, 1.0 - 1e-3, np.float32),
        },
    }
    return np.asarray(jax.jit(block.apply)({"params": p}, x))[..., -channels:]


def _pool3_numpy(x, mode):
    h, w = x.shape[1:3]
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            win = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, :]
            out[:, i, j] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return out


@pytest.mark.parametrize(
    "block,channels,mode",
    [
        (FIDInceptionA(pool_features=4), 4, "avg"),
        (FIDInceptionC(channels_7x7=8), 192, "avg"),
        (FIDInceptionE(pool="avg"), 192, "avg"),
        (FIDInceptionE(pool="max"), 192, "max"),
    ],
)
def test_blocks_pool_branch_is_fid_pool(block, channels, mode):
    x = np.random.default_rng(3).uniform(0.1, 1.0, (1, 5, 4, channels)).astype(np.float32)
    got = _identity_pool_branch(block, channels, jnp.asarray(x))
    want = _pool3_numpy(x, mode)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    if mode == "avg":  # the border differs from PyTorch's default count_include_pad=True
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        include_pad_corner = padded[:, :3, :3].sum(axis=(1, 2)) / 9
        assert np.abs(got[:, 0, 0] - include_pad_corner).min() > 1e-3


# --------------------------------------------------------------------------------- network, extractor


def test_extractor_shapes_batching_and_padding(extractor):
    x = _images(3)
    pool, logits = extractor.features(x)
    assert pool.shape == (3, 2048) and logits.shape == (3, 1008)
    assert pool.dtype == np.float32 and logits.dtype == np.float32
    assert np.all(np.isfinite(pool)) and np.all(np.isfinite(logits))
    assert pool.min() >= 0.0 and 0.1 < pool.mean() < 100.0  # post-ReLU averages, O(1) on sane weights
    assert np.abs(pool[0] - pool[1]).max() > 1e-2  # different images, different features
    first, _ = extractor.features(x[:2])  # full batches, no padding
    last, last_logits = extractor.features(x[1:])
    np.testing.assert_allclose(pool[:2], first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pool[1:], last, rtol=1e-5, atol=1e-6)  # x[2] was run beside padding
    np.testing.assert_allclose(logits[1:], last_logits, rtol=1e-5, atol=1e-5)
    empty_pool, empty_logits = extractor.features(x[:0])
    assert empty_pool.shape == (0, 2048) and empty_logits.shape == (0, 1008)


def _select_first_channels(block_params, channels=192):
    """``branch_pool`` of an E block made to pass its first ``channels`` input channels through."""
    c_in = block_params["branch_pool"]["conv"]["kernel"].shape[2]
    kernel = np.zeros((1, 1, c_in, channels), np.float32)
    kernel[0, 0, np.arange(channels), np.arange(channels)] = 1.0
    block_params["branch_pool"] = {
        "conv": {"kernel": kernel},
        "bn": {
            "scale": np.ones(channels, np.float32),
            "bias": np.zeros(channels, np.float32),
            "mean": np.zeros(channels, np.float32),
            "var": np.full(channels, 1.0 - 1e-3, np.float32),
        },
    }


def test_network_end_to_end_pieces(weights, params, extractor):
    """One instrumented run checks the input pipeline (resize, 2x − 1, first conv), that Mixed_7b pools by
    average and Mixed_7c by max (their pool branches made to pass 192 channels through), and the global
    average pool; a run with the original params checks the extractor's [−1, 1] → [0, 1] conversion."""

    @jax.jit
    def run(p, x):
        return FIDInceptionV3().apply({"params": p}, x, capture_intermediates=True, mutable=["intermediates"])

    images = _images(2, seed=9)
    x01 = images * 0.5 + 0.5
    (pool, _), _ = run(params, jnp.asarray(x01))
    np.testing.assert_allclose(extractor.features(images)[0], np.asarray(pool), rtol=1e-5, atol=1e-6)

    p = jax.tree.map(np.asarray, params)
    p = {**p, "Mixed_7b": dict(p["Mixed_7b"]), "Mixed_7c": dict(p["Mixed_7c"])}
    _select_first_channels(p["Mixed_7b"])
    _select_first_channels(p["Mixed_7c"])
    (pool, _), state = run(p, jnp.asarray(x01))
    inter = {
        k: np.asarray(state["intermediates"][k]["__call__"][0], np.float64)
        for k in ("Conv2d_1a_3x3", "Mixed_7a", "Mixed_7b", "Mixed_7c")
    }
    wh, ww = _torch_bilinear_matrix(SHAPE[0], 299), _torch_bilinear_matrix(SHAPE[1], 299)
    resized = np.einsum("ah,bw,nhwc->nabc", wh, ww, x01.astype(np.float64))
    first = _numpy_basic_conv(2 * resized - 1, weights[1], "Conv2d_1a_3x3", 2, (0, 0))
    np.testing.assert_allclose(inter["Conv2d_1a_3x3"], first, rtol=1e-4, atol=1e-4)
    a, b, c = inter["Mixed_7a"][..., :192], inter["Mixed_7b"][..., :192], inter["Mixed_7c"]
    np.testing.assert_allclose(inter["Mixed_7b"][..., -192:], _pool3_numpy(a, "avg"), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c[..., -192:], _pool3_numpy(b, "max"), rtol=1e-4, atol=1e-5)
    assert np.abs(_pool3_numpy(b, "max") - _pool3_numpy(b, "avg")).max() > 0.1
    np.testing.assert_allclose(np.asarray(pool), c.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_logits_are_the_fc_layer_of_the_pool_features(weights, extractor):
    pool, logits = extractor.features(_images(2, seed=4))
    arrays = weights[1]
    want = pool.astype(np.float64) @ arrays["fc.weight"].T.astype(np.float64) + arrays["fc.bias"]
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)


def test_grey_images_equal_their_three_channel_repetition(extractor):
    grey = _images(2, channels=1, seed=5)
    np.testing.assert_array_equal(extractor.features(grey)[0], extractor.features(np.repeat(grey, 3, -1))[0])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        extractor.features(np.zeros((2, *SHAPE, 2), np.float32))


def test_npz_round_trip_and_outputs(weights, params, extractor, tmp_path):
    arrays = weights[1]
    again = save_inception_npz(params, tmp_path / "again.npz")
    with np.load(again) as npz:
        assert sorted(npz.files) == sorted(arrays)
        for k in arrays:
            assert npz[k].dtype == np.float32
            np.testing.assert_array_equal(npz[k], arrays[k], err_msg=k)
    # params that did not come from a file (rescaled) survive save → load and give the same outputs
    rng = np.random.default_rng(6)
    source = jax.tree.map(
        lambda a: np.asarray(a) * rng.uniform(0.9, 1.1, np.shape(a)).astype(np.float32), params
    )
    loaded = load_inception_params(save_inception_npz(source, tmp_path / "scaled.npz"))
    assert jax.tree.structure(loaded) == jax.tree.structure(source)
    for a, b in zip(jax.tree.leaves(source), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)
    x = _images(2, seed=7)
    want, got = InceptionExtractor(source, 2).features(x), InceptionExtractor(loaded, 2).features(x)
    np.testing.assert_array_equal(want[0], got[0])
    np.testing.assert_array_equal(want[1], got[1])
    assert np.abs(want[0] - extractor.features(x)[0]).max() > 1e-3  # the rescaling mattered


# ------------------------------------------------------------------------------------------- errors


def test_bad_weights_file_names_every_kind_of_problem(weights, tmp_path):
    arrays = dict(weights[1])
    del arrays["Mixed_6e.branch7x7dbl_3.bn.running_var"]
    arrays["Mixed_5b.branch_pool.conv.weight"] = np.zeros((64, 192, 1, 1), np.float32)
    arrays["AuxLogits.fc.weight"] = np.zeros((1008, 768), np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(InceptionWeightsError) as err:
        load_inception_params(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert "1 missing key(s): Mixed_6e.branch7x7dbl_3.bn.running_var" in msg
    assert "1 unexpected key(s): AuxLogits.fc.weight" in msg
    assert "Mixed_5b.branch_pool.conv.weight (expected (32, 192, 1, 1), found (64, 192, 1, 1))" in msg
    assert isinstance(err.value, ValueError)


def test_state_dict_checks(weights):
    arrays = dict(weights[1])
    with_counts = {**arrays, "Conv2d_1a_3x3.bn.num_batches_tracked": np.int64(7)}
    p = params_from_state_dict(with_counts)  # num_batches_tracked is ignored
    assert p["Conv2d_1a_3x3"]["conv"]["kernel"].shape == (3, 3, 3, 32)  # HWIO
    np.testing.assert_array_equal(
        p["Conv2d_1a_3x3"]["conv"]["kernel"], arrays["Conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0)
    )
    assert p["fc"]["kernel"].shape == (2048, 1008)
    np.testing.assert_array_equal(
        p["Mixed_7c"]["branch_pool"]["bn"]["var"], arrays["Mixed_7c.branch_pool.bn.running_var"]
    )
    many_missing = {k: v for k, v in arrays.items() if not k.startswith("Mixed_7")}
    with pytest.raises(InceptionWeightsError, match=r"missing key\(s\): Mixed_7a\..*more\)"):
        check_inception_state_dict(many_missing, "somewhere")
    nan = {**arrays, "fc.bias": np.full(1008, np.nan, np.float32)}
    with pytest.raises(InceptionWeightsError, match=r"NaN or inf: fc\.bias"):
        check_inception_state_dict(nan, "somewhere")


def test_unreadable_and_missing_files(tmp_path):
    text = tmp_path / "weights.npz"
    text.write_text("not an archive")
    with pytest.raises(InceptionWeightsError, match="cannot read"):
        load_inception_params(text)
    npy = tmp_path / "array.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(InceptionWeightsError, match=re.escape(str(npy))):
        load_inception_params(npy)
    missing = tmp_path / "nowhere" / "fid_inception.npz"
    with pytest.raises(InceptionWeightsError) as err:
        load_inception_params(missing)
    assert str(missing) in str(err.value) and "not found" in str(err.value)
    assert "python -m experiments.convert_fid_inception" in str(err.value)


# ------------------------------------------------------------------------------ PyTorch (if present)


def test_resize_and_pools_match_pytorch():
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    rng = np.random.default_rng(8)
    for size_in in [(7, 5), (37, 64), (400, 320)]:
        x = rng.normal(size=(2, *size_in, 3)).astype(np.float32)
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)
        want = f.interpolate(xt, size=(299, 299), mode="bilinear", align_corners=False)
        got = np.asarray(resize_bilinear(jnp.asarray(x), (299, 299)))
        np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), atol=2e-6)
    x = rng.normal(size=(2, 9, 7, 4)).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    cases = [
        (avg_pool_exclude_pad(jnp.asarray(x)), f.avg_pool2d(xt, 3, 1, 1, count_include_pad=False)),
        (max_pool(jnp.asarray(x), 3, 1, 1), f.max_pool2d(xt, 3, 1, 1)),
        (max_pool(jnp.asarray(x)), f.max_pool2d(xt, 3, 2)),
    ]
    for got, want in cases:
        np.testing.assert_allclose(np.asarray(got), want.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)
