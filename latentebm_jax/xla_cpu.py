"""XLA:CPU kernel selection: the convolutions of every method's step on XLA's own kernels.

jaxlib 0.10's XLA:CPU hands convolutions to YNNPACK by default. At the sizes of the papers' networks
(3×3 and 4×4/2 convolutions, 8–32 pixel maps, 64–512 channels, batch 100) XLA's own convolution kernels run
them about twice as fast, forward and both gradients: a 3×3 convolution 64 → 128 at 16×16, batch 100, went
from 16.0 / 18.1 / 21.0 ms (forward / input gradient / kernel gradient) to 8.8 / 10.1 / 11.3 ms on the
project's 2-core CPU, PyTorch's oneDNN taking 8.8 / 9.2 / 9.4 ms. The HVAE backbone's step went 1.38 → 1.06 ×
PyTorch eager, the joint prior's 1.21 → 0.91 × and the Inception features of FID 10 → 26 images/s
(README, Performance). The setting is XLA's
``--xla_cpu_experimental_ynn_fusion_type=DOT``: YNNPACK keeps the matrix products, where it is the fast one,
and convolutions go back to XLA. It chooses kernels only: every function is the same, up to float rounding
(every test suite passes under it unchanged).

XLA reads ``XLA_FLAGS`` once, when JAX starts its backends, so :func:`configure` must run before the first
computation. The experiment runner, the benchmarks and the tests call it first thing; code importing the
library calls ``latentebm_jax.xla_cpu.configure()`` after ``import jax``. It leaves everything alone

* when ``XLA_FLAGS`` already sets ``--xla_cpu_experimental_ynn_fusion_type`` (the user's choice wins),
* when ``LATENTEBM_JAX_XLA_CPU=default`` (XLA's default kernels, e.g. to compare),
* when an accelerator plugin (TPU, CUDA, ROCm) is installed and ``JAX_PLATFORMS`` is not ``cpu``,
* when the installed jaxlib is not one this setting was measured with (:data:`VERIFIED_JAXLIB`): XLA aborts
  on flags it does not know, and the flag is experimental,
* when JAX's backends are already running (the flag could not take effect any more).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping, MutableMapping

FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
FLAG = f"--{FLAG_NAME}=DOT"
OPT_OUT_ENV = "LATENTEBM_JAX_XLA_CPU"
VERIFIED_JAXLIB = ("0.10.",)
"""jaxlib versions (prefixes) with which :data:`FLAG` was measured and the test suites pass."""
_ACCELERATOR_MODULES = ("libtpu", "jax_plugins", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin")


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether :func:`configure` sets :data:`FLAG`, and why (one line, for logs)."""

    apply: bool
    reason: str


def decide(
    environ: Mapping[str, str], jaxlib_version: str, accelerator_plugin: bool, backends_running: bool
) -> Decision:
    """The pure rule behind :func:`configure` (see the module docstring for the cases)."""
    if FLAG_NAME in environ.get("XLA_FLAGS", ""):
        return Decision(False, f"XLA_FLAGS already sets --{FLAG_NAME}")
    if environ.get(OPT_OUT_ENV, "").strip().lower() == "default":
        return Decision(False, f"{OPT_OUT_ENV}=default: XLA's default CPU kernels")
    platforms = {p.strip() for p in environ.get("JAX_PLATFORMS", "").split(",") if p.strip()}
    if accelerator_plugin and platforms != {"cpu"}:
        return Decision(False, "an accelerator plugin is installed; XLA:CPU settings left alone")
    if not jaxlib_version.startswith(VERIFIED_JAXLIB):
        return Decision(False, f"jaxlib {jaxlib_version}: {FLAG} was measured with {VERIFIED_JAXLIB} only")
    if backends_running:
        return Decision(False, "JAX's backends are already running; XLA_FLAGS can no longer take effect")
    return Decision(True, f"XLA_FLAGS += {FLAG} (convolutions on XLA's kernels)")


def _accelerator_plugin_installed() -> bool:
    if any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_MODULES):
        return True
    return bool(importlib.metadata.entry_points(group="jax_plugins"))


def _jaxlib_version() -> str:
    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _backends_running() -> bool:
    from jax._src import xla_bridge  # no public query; importing JAX does not start its backends

    return xla_bridge.backends_are_initialized()


def configure(environ: MutableMapping[str, str] | None = None) -> Decision:
    """Add :data:`FLAG` to ``XLA_FLAGS`` when :func:`decide` says so; the decision is returned either way."""
    environ = os.environ if environ is None else environ
    decision = decide(environ, _jaxlib_version(), _accelerator_plugin_installed(), _backends_running())
    if decision.apply:
        environ["XLA_FLAGS"] = f"{environ.get('XLA_FLAGS', '')} {FLAG}".strip()
    return decision
