"""Evaluation on every local device (``latentebm_jax.device_map``).

On two simulated CPU devices (a child process), against single-device reference calls on device 0:

* prior samples (``generate_batches`` and ``map_generate``) equal, batch by batch, the concatenation of
  ``generate(params, fold_in(key, d), ceil(batch / 2))`` for ``d = 0, 1``, cut to the count asked for;
* the ``reconstruction`` evaluator's MSE equals the one of single-device reconstructions of each half of
  every test batch (device ``d`` with ``fold_in(key, d)``), an odd batch whose padding is dropped;
* the Inception features (random weights, tiny images) equal the single-device features.

With one device, the mapped calls are the function itself: same arguments, no ``fold_in``, same result.
Two processes with two devices each (slow): each maps over its own devices only, with no collective
between the processes (one of them makes extra calls the other does not).
"""

import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from latentebm_jax import device_map

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile, types
    import jax, numpy as np
    assert jax.local_device_count() == 2, jax.devices()
    from latentebm_jax import device_map
    from latentebm_jax.data import load_digits
    from latentebm_jax.evaluation import reconstruction
    from latentebm_jax.methods import base, lebm
    from latentebm_jax.methods.eval_tools import generate_batches
    from latentebm_jax.metrics import inception, per_example_mse
    from latentebm_jax.optim import torch_adam

    hp = lebm.LEBMHparams(latent_dim=4, ebm_hidden=8, prior_steps=2, posterior_steps=2,
                          likelihood=lebm.GaussianImageLikelihood(image_shape=(8, 8, 1), generator="small8",
                                                                  ngf=4))
    params = lebm.init(hp, {"ebm": torch_adam(1e-3), "gen": torch_adam(1e-3)}, jax.random.key(0)).params
    predict = lebm.predict_functions(hp)
    gen, rec, key = predict["generate"], predict["reconstruct"], jax.random.key(7)

    def same(a, b, what):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            x, y = np.asarray(x), np.asarray(y)
            assert x.shape == y.shape, (what, x.shape, y.shape)
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=what)
        print(what, "ok")

    def gen_reference(k, num):  # device d draws ceil(num / 2) with fold_in(k, d), the first num kept
        per = -(-num // 2)
        return np.concatenate([gen(params, jax.random.fold_in(k, d), per)["image"] for d in range(2)])[:num]

    # prior samples: 7 on two devices (4 each, one dropped); 11 in batches of 7
    placed = device_map.replicate(params)
    with jax.transfer_guard_device_to_device("disallow"):  # replicated parameters are not copied again
        out = device_map.map_generate(gen, placed, key, 7)
    same(out["image"], gen_reference(key, 7), "map_generate")
    out = generate_batches(gen, params, key, 11, 7, show=False)["image"]
    ref = [gen_reference(jax.random.fold_in(key, i), 7) for i in range(2)]
    same(out, np.concatenate(ref)[:11], "generate_batches")

    # the reconstruction evaluator: 11 test images in batches of 7 (the second padded), halves 4 + 3 (+1 pad)
    test = load_digits("test")
    cfg = types.SimpleNamespace(eval=types.SimpleNamespace(max_test_examples=11, batch_size=7))
    ctx = base.EvalContext(cfg, types.SimpleNamespace(predict=predict), params,
                           types.SimpleNamespace(test=test), "", 0, key, "", "", main_process=False)
    result = reconstruction.reconstruction(ctx)
    halves, mses = [np.arange(4), np.array([4, 5, 6, 6])], []
    for i, start in enumerate((0, 7)):
        rows = np.minimum(np.arange(start, start + 7), 10)  # iterate_once repeats the last image
        k = jax.random.fold_in(jax.random.fold_in(key, 0), i)
        x = test.get(rows)
        parts = [rec(params, {"image": x["image"][h]}, jax.random.fold_in(k, d))["image"]
                 for d, h in enumerate(halves)]
        valid = min(7, 11 - start)
        mses.append(per_example_mse(x["image"][:valid], np.concatenate(parts)[:7][:valid]))
    assert result["num_test_examples"] == 11, result
    same(result["recon_mse"], np.mean(np.concatenate(mses)), "reconstruction")
    one_batch = device_map.map_batch(rec, placed, test.get(np.arange(5)), key)
    assert one_batch["image"].shape == (5, 8, 8, 1)  # an odd batch: padding dropped

    # Inception features: 5 tiny images, 2 per device per pass; the network at 75 px (the smallest
    # Inception-v3 input) instead of 299 only to keep the test fast
    inception.INPUT_SIZE = 75
    weights = inception.load_inception_params(
        inception.random_inception_npz(os.path.join(tempfile.mkdtemp(), "w.npz")))
    images = np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
    both = inception.InceptionExtractor(weights, batch_size=2).features(images)
    single = inception.InceptionExtractor(weights, batch_size=2, devices=jax.local_devices()[:1])
    assert both[0].shape == (5, inception.POOL_DIM)
    same(both, single.features(images), "inception")
    """
)


@pytest.mark.slow  # a 2-device child process, ~13 s: CI runs it with -m slow (default run: 4 min 20 s)
def test_evaluation_on_2_devices_equals_single_device_calls():
    # the splitting, keys and padding are under test, not XLA's optimiser: level 0 compiles faster (both
    # sides of every comparison are compiled alike)
    flags = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for what in ("map_generate", "generate_batches", "reconstruction", "inception"):
        assert f"{what} ok" in out.stdout, out.stdout


def test_one_device_calls_the_function_itself():
    """With one local device nothing is mapped: the function gets the arguments as given and its result
    comes back as it is (the numbers of a single-device evaluation are unchanged)."""
    assert jax.local_device_count() == 1
    calls, result = [], {"image": object()}

    def fn(*args):
        calls.append(args)
        return result

    params, batch, key = {"w": np.ones(2)}, {"image": np.zeros((3, 2))}, jax.random.key(1)
    assert device_map.replicate(params) is params
    assert device_map.map_batch(fn, params, batch, key) is result
    assert device_map.map_generate(fn, params, key, 5) is result
    assert device_map.map_batch(fn, params, batch) is result
    assert calls[0][:2] == (params, batch) and calls[0][2] is key
    assert calls[1][0] is params and calls[1][1] is key and calls[1][2] == 5
    assert len(calls[2]) == 2


TWO_HOSTS = textwrap.dedent(
    """
    import functools, sys
    import jax
    jax.distributed.initialize(f"localhost:{sys.argv[2]}", num_processes=2, process_id=int(sys.argv[1]))
    import numpy as np
    from latentebm_jax import device_map
    assert jax.process_count() == 2 and jax.local_device_count() == 2, jax.devices()

    @jax.jit
    def fn(params, batch, key):
        return {"y": batch["x"] * params["w"] + jax.random.normal(key, batch["x"].shape)}

    @functools.partial(jax.jit, static_argnums=2)
    def gen(params, key, num):
        return {"y": params["w"] + jax.random.normal(key, (num, 3))}

    me = int(sys.argv[1])
    params, key = {"w": np.float32(2.0)}, jax.random.key(me)  # the processes' inputs differ
    placed = device_map.replicate(params)
    x = np.arange(15, dtype=np.float32).reshape(5, 3) * (1 + me)
    out = device_map.map_batch(fn, placed, {"x": x}, key)["y"]
    halves = [np.arange(3), np.array([3, 4, 4])]
    ref = [fn(params, {"x": x[h]}, jax.random.fold_in(key, d))["y"] for d, h in enumerate(halves)]
    np.testing.assert_allclose(out, np.concatenate(ref)[:5], rtol=1e-6)
    out = device_map.map_generate(gen, placed, key, 5)["y"]
    ref = [gen(params, jax.random.fold_in(key, d), 3)["y"] for d in range(2)]
    np.testing.assert_allclose(out, np.concatenate(ref)[:5], rtol=1e-6)
    for i in range(3 * me):  # only process 1: nothing waits for the other process
        device_map.map_batch(fn, placed, {"x": x}, jax.random.fold_in(key, i))
    print("host", me, "ok")
    """
)


@pytest.mark.slow
def test_two_hosts_each_map_over_their_own_devices():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_HOSTS, str(i), str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and f"host {i} ok" in out, out[-2000:] + err[-3000:]
