"""Shared test settings: quiet progress bars, tiny configs."""

import os
import tempfile

import pytest

from latentebm_jax import xla_cpu
from latentebm_jax.config_schema import set_keys

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# metric caches (domain classifiers, FID statistics) of the test session stay out of the home directory
os.environ["LATENTEBM_JAX_CACHE"] = tempfile.mkdtemp(prefix="latentebm_jax_cache_")
# Many tests compile the same tiny train steps again (fresh closures, subprocesses, the other xdist
# worker): a persistent compilation cache shared by the whole run turns those recompilations into disk
# reads. xdist gives every worker of one run the same PYTEST_XDIST_TESTRUNUID.
_run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _run_id:
    _xla_cache = os.path.join(tempfile.gettempdir(), f"latentebm_jax_xla_cache_{_run_id}")
    os.makedirs(_xla_cache, exist_ok=True)
else:
    _xla_cache = tempfile.mkdtemp(prefix="latentebm_jax_xla_cache_")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _xla_cache)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# the runner's XLA:CPU kernels (latentebm_jax/xla_cpu.py), so the tests run what users run
xla_cpu.configure()


@pytest.fixture
def one_torch_thread():
    """PyTorch-equivalence tests (tiny shapes, numerics only): one intra-op thread; on busy shared cores two
    spinning threads made PyTorch's many tiny kernels ~50× slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_digits_config(**overrides):
    """LEBM on the embedded digits, shrunk so a step compiles and runs in well under a second."""
    from configs import digits

    c = digits.get_config("lebm")
    c.lebm.latent_dim = 4
    c.lebm.ngf = 8
    c.lebm.ebm_hidden = 16
    c.sampler.prior_steps = 5
    c.sampler.posterior_steps = 5
    c.train.batch_size = 20
    c.train.num_steps = 10
    c.train.log_every = 2
    c.train.ckpt_every = 5
    c.train.eval_every = 0
    c.train.tensorboard = False  # tests/test_loop.py's run writes and reads the event files
    c.eval.batch_size = 60
    c.eval.num_samples = 16
    c.eval.max_test_examples = 120
    c.eval.long_run_steps = (10,)
    c.eval.long_run_chains = 2
    c.eval.long_run_frames = 5
    c.eval.fd_num_samples = 100
    c.eval.fd_classifier_epochs = 3
    c.eval.probe_max_examples = 200
    c.eval.probe_epochs = 5
    return apply_overrides(c, overrides)


def apply_overrides(config, overrides: dict):
    """Set ``{"group.key": value}`` entries on a config (as ``--config.group.key=value`` would)."""
    return set_keys(config, overrides, "test")


@pytest.fixture(scope="session")
def tiny_config():
    return tiny_digits_config
