"""Multi-device: a pmap step over 4 simulated CPU devices equals the single-device step on the same batch."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import functools, sys
    import jax, jax.numpy as jnp, numpy as np
    assert jax.local_device_count() == 4, jax.devices()
    from latentebm_jax.data import load_digits
    from latentebm_jax.methods import lebm
    from latentebm_jax.training import parallel
    from latentebm_jax.optim import torch_adam

    hp = lebm.LEBMHparams(latent_dim=4, ebm_hidden=16, prior_steps=6, posterior_steps=6,
                          likelihood=lebm.GaussianImageLikelihood(image_shape=(8, 8, 1), generator="small8",
                                                                  ngf=8))
    tx = {"ebm": torch_adam(1e-3, b1=0.5), "gen": torch_adam(1e-3, b1=0.5, weight_decay=1e-4)}
    step = functools.partial(lebm.train_step, hp, tx)
    state = lebm.init(hp, tx, jax.random.key(0))
    src = load_digits("train")
    batches = [src.get(np.arange(i * 8, i * 8 + 8)) for i in range(3)]

    single, pstate = state, parallel.replicate(state)
    one, many = parallel.jit_train_step(step), parallel.pmap_train_step(step)
    for batch in batches:
        single, m1 = one(single, {"image": jnp.asarray(batch["image"])})
        pstate, m4 = many(pstate, parallel.shard_batch({"image": batch["image"]}))
    multi = parallel.unreplicate(pstate)
    worst = 0.0
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(multi.params)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=2e-5, atol=2e-6)
        worst = max(worst, float(np.max(np.abs(np.asarray(a) - b))))
    for k in m1:
        np.testing.assert_allclose(float(m1[k]), float(m4[k][0]), rtol=1e-4, atol=1e-6)
        assert np.ptp(np.asarray(m4[k])) == 0  # metrics are pmean-ed: identical on every device
    # the copies on the four devices stay identical
    for leaf in jax.tree.leaves(pstate.params):
        leaf = np.asarray(leaf)
        assert np.all(leaf == leaf[:1])

    # the joint hierarchical prior (ICCV 2023): spectral-norm state stays identical across devices too
    from latentebm_jax.methods import joint
    jhp = joint.JointHparams(image_shape=(8, 8, 1), latent_dims=(2, 2, 3), widths=(4, 4, 8, 8),
                             ebm_hidden=8, prior_steps=3)
    import optax  # SGD: Adam turns rounding noise in near-zero gradients into lr-sized steps
    jtx = {"ebm": optax.sgd(0.1), "gen_enc": optax.sgd(0.01)}
    jstep = functools.partial(joint.train_step, jhp, jtx)
    jsingle = joint.init(jhp, jtx, jax.random.key(1))
    jp = parallel.replicate(jsingle)
    one, many = parallel.jit_train_step(jstep), parallel.pmap_train_step(jstep)
    for batch in batches[:2]:
        jsingle, _ = one(jsingle, {"image": jnp.asarray(batch["image"])})
        jp, _ = many(jp, parallel.shard_batch({"image": batch["image"]}))
    jmulti = parallel.unreplicate(jp)
    for a, b in zip(jax.tree.leaves((jsingle.params, jsingle.model_state)),
                    jax.tree.leaves((jmulti.params, jmulti.model_state))):
        np.testing.assert_allclose(np.asarray(a), b, rtol=2e-5, atol=2e-6)
    print("max abs difference", worst)
    """
)


@pytest.mark.slow
def test_pmap_step_on_4_devices_equals_single_device_step():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    worst = float(out.stdout.strip().split()[-1])
    assert np.isfinite(worst)
