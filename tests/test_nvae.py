"""NVAE in Flax (backbones/nvae*.py): its pieces against closed forms and PyTorch's conventions written out in
NumPy, the converter on the official parameter names, and the whole network against numbers NVIDIA's
PyTorch implementation computed (``tests/data/nvae_tiny_reference.npz``: a small random NVAE with one flow
and the mixture-of-logistics decoder, its weights under their official names, inputs, noise and outputs)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latentebm_jax.backbones import nvae_ops
from latentebm_jax.backbones.nvae import NVAE, NVAEConfig
from latentebm_jax.backbones.nvae_convert import ConversionError, convert_state_dict, flax_path
from latentebm_jax.backbones.nvae_distributions import DiscMixLogistic, Normal, decoder_output

DATA = os.path.join(os.path.dirname(__file__), "data")
FIXTURE = os.path.join(DATA, "nvae_tiny_reference.npz")


def torch_conv2d(x, w, b, stride, padding, dilation, groups):
    """PyTorch's ``F.conv2d`` (NCHW input, OIHW weight) written out in NumPy."""
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, o, ho, wo))
    per = o // groups
    for oc in range(o):
        g = oc // per
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg : (g + 1) * cg, i * dilation : i * dilation + stride * ho : stride,
                           j * dilation : j * dilation + stride * wo : stride]  # fmt: skip
                out[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, i, j])
        if b is not None:
            out[:, oc] += b[oc]
    return out


@pytest.mark.parametrize(
    "k,stride,padding,dilation,groups",
    [(3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (3, 1, 2, 2, 1), (5, 1, 2, 1, 6), (1, 2, 0, 1, 1)],
)
def test_weight_normalised_conv_is_pytorchs_with_the_converted_weight(k, stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    cin, cout = 6, 6 if groups > 1 else 4
    x = rng.normal(size=(2, cin, 9, 8)).astype(np.float32)
    w = rng.normal(size=(cout, cin // groups, k, k)).astype(np.float32)
    b = rng.normal(size=(cout,)).astype(np.float32)
    log_norm = rng.normal(size=(cout, 1, 1, 1)).astype(np.float32) * 0.3
    w_norm = np.exp(log_norm) * w / (np.sqrt(np.sum(w * w, axis=(1, 2, 3), keepdims=True)) + 1e-5)
    want = torch_conv2d(x.astype(np.float64), w_norm, b, stride, padding, dilation, groups)
    state = {"c.weight": w, "c.bias": b, "c.log_weight_norm": log_norm}
    from latentebm_jax.backbones.nvae_convert import convert_array

    params = {}
    for name, value in state.items():
        _, path, array = convert_array(name, value, set(state))
        params[path[-1]] = array
    conv = nvae_ops.Conv2D(cout, k, stride, padding, dilation, groups, use_bias=True)
    got = conv.apply({"params": params}, jnp.asarray(np.transpose(x, (0, 2, 3, 1))))
    np.testing.assert_allclose(np.transpose(np.asarray(got), (0, 3, 1, 2)), want, rtol=1e-5, atol=1e-5)


def test_bilinear_align_corners_and_nearest_upsampling():
    x = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)[None, :, :, None]
    got = np.asarray(nvae_ops.upsample_bilinear_align_corners(jnp.asarray(x)))[0, :, :, 0]
    # align_corners: output i samples input position i (n − 1) / (2n − 1) = i / 3
    want = np.array([[r * 2 + c for c in (0, 1 / 3, 2 / 3, 1)] for r in (0, 1 / 3, 2 / 3, 1)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    near = np.asarray(nvae_ops.upsample_nearest(jnp.asarray(x)))[0, :, :, 0]
    np.testing.assert_array_equal(near, np.kron(x[0, :, :, 0], np.ones((2, 2))))


def test_batch_norm_is_pytorchs_including_the_unbiased_running_variance():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(4, 5, 3, 2)).astype(np.float32)
    bn = nvae_ops.BatchNorm()
    variables = bn.init(jax.random.key(0), jnp.asarray(x), False)
    y, upd = bn.apply(variables, jnp.asarray(x), True, mutable=["batch_stats"])
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(y), (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    n = 4 * 5 * 3
    np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.05 * mean, rtol=1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["var"], 0.95 + 0.05 * var * n / (n - 1), rtol=1e-5)


def test_normal_clamps_and_kl_closed_form():
    mu, log_sigma = jnp.array([0.0, 30.0, -2.0]), jnp.array([0.0, 30.0, -40.0])
    d = Normal(mu, log_sigma)
    np.testing.assert_allclose(d.mu, [0.0, 5 * np.tanh(6.0), 5 * np.tanh(-0.4)], rtol=1e-6)
    np.testing.assert_allclose(d.sigma, np.exp([0.0, 5 * np.tanh(6.0), 5 * np.tanh(-8.0)]) + 0.01, rtol=1e-6)
    p, q = Normal(jnp.array([0.3]), jnp.array([0.2])), Normal(jnp.array([-0.5]), jnp.array([-0.4]))
    m1, s1, m2, s2 = float(p.mu[0]), float(p.sigma[0]), float(q.mu[0]), float(q.sigma[0])
    closed = np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    np.testing.assert_allclose(float(p.kl(q)[0]), closed, rtol=1e-6)
    z = p.sample_given_eps(jax.random.normal(jax.random.key(0), (200_000,)) * jnp.ones((1,)))
    mc = float(jnp.mean(p.log_p(z) - q.log_p(z)))
    assert abs(mc - closed) < 0.01


def test_mixture_of_logistics_sums_to_its_closed_form_over_the_pixel_grid():
    """Coefficients 0: summing p(r, g, b) over the 256 values of r leaves ``Σ_m π_m S_m p_m(g) p_m(b)``,
    where ``S_m = 2 − F_m(1 − 1/255)``, not 1: NVAE's top-edge rule (``x > 0.99``) gives bins 254 and 255
    both the upper tail (its code comment says only 255 was meant)."""
    rng = np.random.default_rng(2)
    m = 3
    means = rng.uniform(-0.6, 0.6, size=(3, m))
    log_scales = rng.uniform(-3.5, -2.5, size=(3, m))
    logit_probs = rng.normal(size=m)
    block = np.concatenate(
        [means, log_scales, np.zeros((3, m))], axis=1
    )  # per channel: means, scales, coeffs
    logits = np.concatenate([logit_probs, block.reshape(-1)]).astype(np.float32)[None, None, None, :]
    d = DiscMixLogistic(jnp.asarray(logits), m)
    grid = np.arange(256) / 255.0
    g_val, b_val = 0.5, 0.6
    x = np.stack([grid, np.full(256, g_val), np.full(256, b_val)], -1)[:, None, None, :].astype(np.float32)
    lp = np.asarray(jax.vmap(lambda xi: d.log_prob(xi[None])[0, 0, 0])(jnp.asarray(x)))

    sig = lambda t: 1.0 / (1.0 + np.exp(-t))
    s = np.exp(log_scales)

    def bin_prob(c, v):
        u = 2 * v - 1
        return sig((u - means[c] + 1 / 255) / s[c]) - sig((u - means[c] - 1 / 255) / s[c])

    pi = np.exp(logit_probs - logit_probs.max())
    pi /= pi.sum()
    upper = 2.0 - sig(((1 - 1 / 255) - means[0]) / s[0])
    want = np.sum(pi * upper * bin_prob(1, g_val) * bin_prob(2, b_val))
    np.testing.assert_allclose(np.exp(lp).sum(), want, rtol=2e-3)
    assert np.isfinite(lp).all()


def _fixture():
    if not os.path.exists(FIXTURE):
        pytest.fail(f"missing test data {FIXTURE}")
    data = np.load(FIXTURE)
    with open(FIXTURE.replace(".npz", ".json")) as f:
        meta = json.load(f)
    return data, meta


def test_every_official_name_maps_and_a_wrong_checkpoint_is_refused():
    data, meta = _fixture()
    cfg = NVAEConfig.from_args(meta["args"])
    state = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    variables = convert_state_dict(state, cfg)
    assert flax_path("dec_tower.1._ops.0.conv.1.conv.0.weight") == (
        "dec_tower_1",
        "ops_0",
        "conv_1",
        "conv_0",
        "weight",
    )
    assert "batch_stats" in variables and "prior_ftr0" in variables["params"]
    broken = dict(state)
    broken.pop("stem.weight")
    broken["enc_sampler.0.weight"] = np.zeros((3, 3, 3, 3), np.float32)
    with pytest.raises(
        ConversionError, match=r"missing \(1\): stem/kernel.*wrong shape \(1\): enc_sampler_0/kernel"
    ):
        convert_state_dict(broken, cfg)


def test_the_flax_network_computes_what_nvidias_computes():
    """Eval- and train-mode forward passes (posterior from fixed noise, flows, KL per group, the decoder's
    log-likelihood), the BatchNorm running statistics after a train-mode pass, and ancestral sampling."""
    data, meta = _fixture()
    cfg = NVAEConfig.from_args(meta["args"])
    state = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    variables = convert_state_dict(state, cfg)
    model, groups = NVAE(cfg), len(cfg.group_shapes)
    nhwc = lambda a: np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a
    x = jnp.asarray(nhwc(data["x"]))

    def close(got, key, rtol=2e-5):
        want = nhwc(data[key])
        np.testing.assert_allclose(
            np.asarray(got), want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=key
        )

    @jax.jit
    def passes(variables, x, eps_eval, eps_train, eps_sample):
        ev = model.apply(variables, x, eps_eval, False)
        tr, upd = model.apply(variables, x, eps_train, True, mutable=["batch_stats"])
        sa = model.apply(variables, eps_sample, 1.0, False, method="sample")
        recon = lambda out: jnp.sum(decoder_output(cfg, out["logits"]).log_prob(x).reshape(x.shape[0], -1), 1)
        return ev, recon(ev), tr, recon(tr), upd, sa, decoder_output(cfg, sa["logits"]).mean()

    eps = {
        m: [jnp.asarray(nhwc(data[f"eps/{m}/{g}"])) for g in range(groups)]
        for m in ("eval", "train", "sample")
    }
    ev, ev_recon, tr, tr_recon, upd, sa, sa_mean = passes(
        variables, x, eps["eval"], eps["train"], eps["sample"]
    )
    close(ev["logits"][:, :8, :8], "eval/logits_corner")
    for key in ("log_q", "log_p"):
        close(ev[key], f"eval/{key}")
    close(ev_recon, "eval/recon_sum")
    close(tr["logits"][:, :8, :8], "train/logits_corner")
    close(tr_recon, "train/recon_sum")
    for g in range(groups):
        close(ev["kl_all"][g], f"eval/kl_all/{g}")
        close(tr["kl_all"][g], f"train/kl_all/{g}")
        close(ev["z"][g], f"eval/z/{g}")
        close(ev["q"][g].mu, f"eval/q_mu/{g}")
        close(ev["q"][g].sigma, f"eval/q_sigma/{g}")
        close(ev["p"][g].sigma, f"eval/p_sigma/{g}")
        close(sa["z"][g], f"sample/z/{g}")
    close(sa_mean, "sample/mean")
    after = {k[len("post_train_state/") :]: data[k] for k in data.files if k.startswith("post_train_state/")}
    stats = convert_state_dict({**state, **after}, cfg)["batch_stats"]
    for got, want in zip(jax.tree.leaves(upd["batch_stats"]), jax.tree.leaves(stats)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=1e-6)


def test_convert_nvae_reads_a_checkpoint_in_nvidias_format(tmp_path):
    """A ``checkpoint.pt`` laid out as NVAE's train.py saves it (state dict, argparse.Namespace, optimiser,
    scheduler), read with ``weights_only=True``; the orbax output restores to the converted variables."""
    torch = pytest.importorskip("torch")  # the bench extra
    import argparse

    import orbax.checkpoint as ocp

    from experiments.convert_nvae import convert

    data, meta = _fixture()
    state = {
        k[len("param/") :]: torch.from_numpy(np.array(data[k])) for k in data.files if k.startswith("param/")
    }
    path = str(tmp_path / "checkpoint.pt")
    torch.save(
        {"epoch": 3, "state_dict": state, "args": argparse.Namespace(**meta["args"]), "global_step": 7,
         "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]}},
        path,
    )  # fmt: skip
    message = convert(path, str(tmp_path / "out"))
    assert "4 latent groups" in message
    with open(tmp_path / "out" / "nvae_args.json") as f:
        cfg = NVAEConfig.from_args(json.load(f))
    want = convert_state_dict({k: v.numpy() for k, v in state.items()}, cfg)
    got = ocp.StandardCheckpointer().restore(str(tmp_path / "out" / "variables"))
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.slow  # ~15 s of compilation
def test_batchnorm_readjustment_is_training_mode_sampling_passes():
    """``readjust_batchnorm``: ``iters`` train-mode sampling passes on fresh noise (NVAE's --readjust_bn)."""
    from latentebm_jax.backbones.nvae import prior_noise, readjust_batchnorm

    data, meta = _fixture()
    cfg = NVAEConfig.from_args(meta["args"])
    state = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    variables = convert_state_dict(state, cfg)
    key = jax.random.key(3)
    got = readjust_batchnorm(cfg, variables, key, num_samples=2, iters=3)["batch_stats"]
    model, stats = NVAE(cfg), variables["batch_stats"]
    for i in range(3):
        eps = prior_noise(cfg, jax.random.fold_in(key, i), 2)
        _, upd = model.apply(
            {**variables, "batch_stats": stats}, eps, 1.0, True, method="sample", mutable=["batch_stats"]
        )
        stats = upd["batch_stats"]
    from flax.traverse_util import flatten_dict

    before = flatten_dict(variables["batch_stats"])
    for path, value in flatten_dict(got).items():
        np.testing.assert_allclose(
            np.asarray(value), np.asarray(flatten_dict(stats)[path]), rtol=1e-5, atol=1e-6
        )
        decoder = path[0].startswith(("dec_tower", "post_process"))
        assert decoder != np.allclose(value, before[path]), path  # the decoder's moved, the encoder's did not
