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
