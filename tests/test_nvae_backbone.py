"""NVAE behind the backbone interface (``backbones/nvae_backbone.py``): the ε ↔ z maps of the ICML 2024 code
along NVAE's decoder path, checked against numbers NVIDIA's own code computed (the fixture of
``tests/test_nvae.py``) and against closed forms (the Jacobian's log-determinant, the round trip)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latentebm_jax.backbones.nvae import NVAEConfig
from latentebm_jax.backbones.nvae_backbone import ARCH_KEYS, NVAEBackbone
from latentebm_jax.backbones.nvae_convert import convert_state_dict

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "nvae_tiny_reference.npz")


def _nhwc(a):
    return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


@pytest.fixture(scope="module")
def official():
    data = np.load(FIXTURE)
    with open(FIXTURE.replace(".npz", ".json")) as f:
        meta = json.load(f)
    cfg = NVAEConfig.from_args(meta["args"])
    state = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    bb = NVAEBackbone(image_shape=(32, 32, 3), **{k: getattr(cfg, k) for k in ARCH_KEYS})
    return bb, convert_state_dict(state, cfg), data


def test_the_interface_reproduces_nvidias_posterior_prior_and_ancestral_samples(official):
    """Bottom-first layers; ``posterior_draw`` is NVAE's posterior (with its flow) from the same noise,
    ``prior_log_prob`` at that draw is NVAE's ``log_p``, and ``to_z`` of the sampling noise is NVAE's
    ancestral sample (the ICML 2024 ε → z map)."""
    bb, variables, data = official
    groups = len(bb.latent_shapes)
    top_first = lambda key: [jnp.asarray(_nhwc(data[f"{key}/{g}"])) for g in range(groups)]
    x = 2.0 * jnp.asarray(_nhwc(data["x"])) - 1.0  # the interface takes images in [-1, 1]
    noise = tuple(reversed(top_first("eps/eval")))
    z = jax.jit(bb.posterior_draw)(variables, x, noise)
    for got, want in zip(z, reversed(top_first("eval/z"))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(
        np.asarray(jax.jit(bb.prior_log_prob)(variables, z)), data["eval/log_p"], rtol=2e-5
    )
    samples = jax.jit(bb.to_z)(variables, tuple(reversed(top_first("eps/sample"))))
    for got, want in zip(samples, reversed(top_first("sample/z"))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=2e-5)
    assert [s.shape[1:] for s in z] == list(bb.latent_shapes)
    assert bb.latent_shapes[0][0] > bb.latent_shapes[-1][0]  # bottom (finest) first


@pytest.mark.slow  # a full Jacobian of 160 latent units through a small NVAE (about 11 s on 2 idle cores)
def test_round_trip_conditional_and_the_log_determinant_of_the_jacobian():
    """``to_u(to_z(ũ)) = ũ``; ``conditional(i, z_above)`` is the prior the top-down path uses; and
    ``log_det`` equals ``log|det ∂T/∂ũ|`` of the full Jacobian (a small NVAE: 160 latent units)."""
    bb = NVAEBackbone(
        image_shape=(32, 32, 1),
        dataset="mnist",
        num_channels_enc=4,
        num_channels_dec=4,
        num_preprocess_blocks=2,
        num_preprocess_cells=1,
        num_postprocess_blocks=2,
        num_postprocess_cells=1,
        num_latent_scales=2,
        num_groups_per_scale=2,
        num_latent_per_group=1,
        num_cell_per_cond_enc=1,
        num_cell_per_cond_dec=1,
        num_nf=1,
    )
    v = bb.init(jax.random.key(0))
    # perturb every parameter (biases and BatchNorm too) by a second draw
    other = bb.init(jax.random.key(1))["params"]
    v = {
        **v,
        "params": jax.jit(lambda p, q: jax.tree.map(lambda a, b: a + 0.3 * b, p, q))(v["params"], other),
    }
    u = tuple(jax.random.normal(jax.random.key(2 + i), (1, *s)) for i, s in enumerate(bb.latent_shapes))
    z = jax.jit(bb.to_z)(v, u)
    for a, b in zip(jax.jit(bb.to_u)(v, z), u):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    conditional = jax.jit(bb.conditional, static_argnums=1)  # one program each, not op by op
    mu, sigma = conditional(v, 1, z[2:])
    np.testing.assert_allclose(np.asarray(mu + sigma * u[1]), np.asarray(z[1]), rtol=1e-5, atol=1e-5)
    top_mu, top_sigma = conditional(v, 3, ())
    np.testing.assert_allclose(np.asarray(top_sigma), 1.01, rtol=1e-6)
    assert float(jnp.max(jnp.abs(top_mu))) == 0.0
    sizes = [int(np.prod(s)) for s in bb.latent_shapes]
    assert sum(sizes) == 160

    def flat_to_z(flat):
        parts = jnp.split(flat, np.cumsum(sizes)[:-1])
        out = bb.to_z(v, tuple(p.reshape(1, *s) for p, s in zip(parts, bb.latent_shapes)))
        return jnp.concatenate([a.reshape(-1) for a in out])

    flat = jnp.concatenate([a.reshape(-1) for a in u])
    jac = jax.jit(jax.jacfwd(flat_to_z))(flat)
    sign, logdet = np.linalg.slogdet(np.asarray(jac, np.float64))
    assert sign > 0
    np.testing.assert_allclose(float(jax.jit(bb.log_det)(v, u)[0]), logdet, rtol=1e-4)
    # the Jacobian is block triangular: no layer depends on the layers below it
    lower = np.asarray(jac)[: sizes[0] + sizes[1], sizes[0] + sizes[1] :]
    assert np.abs(lower).max() > 1e-3
    upper = np.asarray(jac)[sizes[0] + sizes[1] :, : sizes[0] + sizes[1]]
    assert np.abs(upper).max() == 0.0


def test_load_reads_a_conversion_and_refuses_another_architecture(official, tmp_path):
    """``load`` on what ``python -m experiments.convert_nvae`` writes (``nvae_args.json`` + orbax
    ``variables``): the variables come back as converted; a config group describing another NVAE is one
    error naming the overrides that match the checkpoint."""
    import ml_collections
    import orbax.checkpoint as ocp

    from latentebm_jax.backbones import BackboneError
    from latentebm_jax.backbones.nvae_backbone import NVAESettings, load
    from latentebm_jax.config_schema import group_of

    bb, variables, _ = official
    with open(FIXTURE.replace(".npz", ".json")) as f:
        args = json.load(f)["args"]
    with open(tmp_path / "nvae_args.json", "w") as f:
        json.dump(args, f)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(str(tmp_path / "variables"), variables)
    checkpointer.wait_until_finished()
    group: ml_collections.ConfigDict = group_of(NVAESettings)
    group.update(**{k: getattr(bb, k) for k in ARCH_KEYS})
    got = load(str(tmp_path), group, (32, 32, 3))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    group.num_latent_per_group, group.use_se = 4, False
    with pytest.raises(
        BackboneError, match=r"--config.backbone.num_latent_per_group=2 --config.backbone.use_se=True"
    ):
        load(str(tmp_path), group, (32, 32, 3))
