"""Optimiser pieces: the per-epoch schedule conventions and PyTorch Adam with coupled weight decay."""

import jax.numpy as jnp
import numpy as np

from latentebm_jax.optim import per_epoch_exponential_decay, torch_adam


def test_epoch_end_decay_runs_epochs_zero_and_one_at_the_base_rate():
    spe, lr, g = 7, 0.1, 0.9
    end = per_epoch_exponential_decay(lr, g, spe, "epoch_end")
    start = per_epoch_exponential_decay(lr, g, spe, "epoch_start")
    for epoch in range(6):
        for count in (epoch * spe, epoch * spe + spe - 1):
            np.testing.assert_allclose(end(count), lr * g ** max(epoch - 1, 0), rtol=1e-6)
            np.testing.assert_allclose(start(count), lr * g**epoch, rtol=1e-6)


def test_torch_adam_matches_the_pytorch_update_rule():
    """PyTorch Adam: g ← g + λθ; m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
    θ ← θ − lr·(m/(1−β₁ᵗ)) / (sqrt(v/(1−β₂ᵗ)) + ε)."""
    lr, b1, b2, eps, wd = 0.01, 0.5, 0.999, 1e-8, 0.1
    tx = torch_adam(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, lr_decay=0.5, steps_per_epoch=100)
    theta = jnp.array([1.0, -2.0, 0.5])
    state = tx.init(theta)
    ref, m, v = np.asarray(theta, np.float64), 0.0, 0.0
    for t in range(1, 4):
        grad = jnp.array([0.3, -0.1, 2.0]) * t
        updates, state = tx.update(grad, state, theta)
        theta = theta + updates
        g = np.asarray(grad, np.float64) + wd * ref
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        ref = ref - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(theta, ref, rtol=1e-5)


def test_gradient_clipping_by_global_norm_comes_first():
    tx = torch_adam(1.0, grad_clip_norm=1.0, b1=0.0, b2=0.0, eps=0.0)
    state = tx.init(jnp.zeros(2))
    updates, _ = tx.update(jnp.array([30.0, 40.0]), state, jnp.zeros(2))
    # with b1 = b2 = 0 Adam returns sign(g); clipping keeps the direction
    np.testing.assert_allclose(updates, [-1.0, -1.0], rtol=1e-6)
