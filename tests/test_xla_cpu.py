"""XLA:CPU kernel selection (latentebm_jax/xla_cpu.py): when the flag is set, that it takes effect, and that
the convolution it reroutes computes the same numbers."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from latentebm_jax import xla_cpu

_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from latentebm_jax import xla_cpu
    decision = xla_cpu.configure()
    import jax, jax.numpy as jnp
    from jax import lax
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((100, 16, 16, 64)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 64, 128)) / 24, jnp.float32)
    conv = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                          dimension_numbers=("NHWC", "HWIO", "NHWC")))
    hlo = conv.lower(x, w).compile().as_text()
    np.save(sys.argv[1], np.asarray(conv(x, w)))
    print(decision.apply, "ynn_fusion" in hlo)
    """
)


def _child(tmp_path, name: str, **env: str) -> tuple[str, np.ndarray]:
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_cpu.OPT_OUT_ENV)}
    out = tmp_path / f"{name}.npy"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(out)],
        env={**clean, "JAX_PLATFORMS": "cpu", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split("\n")[-2], np.load(out)


@pytest.mark.skipif(
    not xla_cpu._jaxlib_version().startswith(xla_cpu.VERIFIED_JAXLIB), reason="flag verified on jaxlib 0.10"
)
def test_configure_reroutes_convolutions_to_xla_and_computes_the_same(tmp_path):
    # XLA's default: the 3×3 convolution is a YNNPACK fusion; after configure() it is XLA's own convolution
    default_line, default = _child(tmp_path, "default", **{xla_cpu.OPT_OUT_ENV: "default"})
    fast_line, fast = _child(tmp_path, "fast")
    assert default_line == "False True"
    assert fast_line == "True False"
    # the same function, up to float rounding (576-term sums of unit-scale products)
    np.testing.assert_allclose(fast, default, rtol=0, atol=2e-5 * float(np.abs(default).max()))


def test_decide_covers_every_case():
    base = dict(jaxlib_version="0.10.2", accelerator_plugin=False, backends_running=False)
    assert xla_cpu.decide({}, **base).apply
    assert xla_cpu.decide({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, **base).apply
    user = {"XLA_FLAGS": f"--{xla_cpu.FLAG_NAME}=INDIVIDUAL_CONVOLUTION"}
    assert not xla_cpu.decide(user, **base).apply
    assert not xla_cpu.decide({xla_cpu.OPT_OUT_ENV: "default"}, **base).apply
    plugin = dict(base, accelerator_plugin=True)
    assert not xla_cpu.decide({}, **plugin).apply
    assert xla_cpu.decide({"JAX_PLATFORMS": "cpu"}, **plugin).apply
    assert not xla_cpu.decide({"JAX_PLATFORMS": "tpu,cpu"}, **plugin).apply
    assert not xla_cpu.decide({}, **dict(base, jaxlib_version="0.11.0")).apply
    running = xla_cpu.decide({}, **dict(base, backends_running=True))
    assert not running.apply and "already running" in running.reason


def test_configure_appends_to_existing_flags(monkeypatch):
    monkeypatch.setattr(xla_cpu, "_backends_running", lambda: False)
    monkeypatch.setattr(xla_cpu, "_accelerator_plugin_installed", lambda: False)
    monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: "0.10.2")
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert xla_cpu.configure(env).apply
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {xla_cpu.FLAG}"
    assert not xla_cpu.configure(env).apply  # idempotent
    assert env["XLA_FLAGS"].count(xla_cpu.FLAG_NAME) == 1
