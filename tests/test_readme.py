"""The README's Python example runs as written and does what it says."""

import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # the authors' SVHN-sized networks: compilation takes most of 20 s
def test_readme_python_example_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    images, z_post, trace = namespace["images"], namespace["z_post"], namespace["trace"]
    assert images.shape == (16, 32, 32, 3) and z_post.shape == (16, 100)
    assert trace.log_prob.shape == (60,) and np.all(np.isfinite(np.asarray(trace.log_prob)))
    # the example's pattern reuses the compiled chain with new parameters; a fresh lambda would not
    from jax.tree_util import Partial

    from latentebm_jax.langevin import _langevin_jit

    jax, langevin, log_prior = namespace["jax"], namespace["langevin"], namespace["log_prior"]
    z0, new_params = namespace["z0"], jax.tree.map(lambda p: p * 0.5, namespace["pe"])
    run = dict(step_size=0.4, num_steps=60, trace=True)
    compiled = _langevin_jit._cache_size()
    langevin(Partial(log_prior, new_params), z0, jax.random.key(9), **run)
    assert _langevin_jit._cache_size() == compiled
    langevin(lambda z: log_prior(new_params, z), z0, jax.random.key(9), **run)
    assert _langevin_jit._cache_size() == compiled + 1
