"""Text LEBM (Pang et al. 2020, Sec. 2.1 Eq. 4, Algorithm 1): posterior Langevin, one train step against a
reference computation (learning on the toy corpus: tests/test_text_eval.py)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from latentebm_jax import priors
from latentebm_jax.data.text import Vocabulary, load_text_corpus
from latentebm_jax.langevin import langevin
from latentebm_jax.methods import lebm, lebm_text
from latentebm_jax.methods.common import example_keys, fold_keys, normal_per_example
from latentebm_jax.nets import text as text_nets

TRAIN = load_text_corpus("text_toy", "train")
VOCAB = Vocabulary.from_sentences(TRAIN)
MAX_LEN = 16

HP = lebm.LEBMHparams(
    latent_dim=4,
    ebm_hidden=8,
    prior_steps=3,
    prior_step_size=0.4,
    posterior_steps=4,
    posterior_step_size=0.1,
    posterior_unroll=1,
    likelihood=lebm_text.LSTMLikelihood(
        vocab_size=len(VOCAB), max_len=MAX_LEN, embed_dim=8, decoder_hidden=16
    ),
)


def _with_dropout(hp, rate):
    return dataclasses.replace(
        hp, likelihood=dataclasses.replace(hp.likelihood, dropout_in=rate, dropout_out=rate)
    )


def _batch(n, start=0):
    ids, lengths = VOCAB.encode(TRAIN[start : start + n], max_len=MAX_LEN)
    return {"ids": jnp.asarray(ids), "lengths": jnp.asarray(lengths)}


def test_posterior_langevin_raises_log_joint():
    # chains start far out (σ_init = 3) so that they have somewhere to go; at initialisation the decoder
    # barely depends on z, so starting at the prior would leave the chain in equilibrium already
    hp = dataclasses.replace(HP, init_sigma=3.0, posterior_step_size=0.3)
    sgd = {"ebm": optax.sgd(0.0), "decoder": optax.sgd(0.0)}
    state = lebm.init(hp, sgd, jax.random.key(0))
    batch = _batch(16)
    keys = jax.random.split(jax.random.key(1), 16)
    z0 = hp.init_sigma * normal_per_example(fold_keys(keys, lebm._POST_INIT), (hp.latent_dim,))
    z = lebm.sample_posterior(hp, state.params, batch, keys, num_steps=20)
    before = lebm.log_joint(hp, state.params, z0, batch)
    after = lebm.log_joint(hp, state.params, z, batch)
    assert before.shape == (16,)
    # E‖z0‖²/2 = 9·d/2 = 18 versus ≈ d/2 = 2 near equilibrium: the mean log-joint must rise by a margin
    rise = float(jnp.mean(after - before))
    assert rise > 5.0, (rise, before, after)


def test_posterior_log_joint_is_sum_of_terms():
    state = lebm.init(HP, {"ebm": optax.sgd(0.0), "decoder": optax.sgd(0.0)}, jax.random.key(3))
    b = _batch(5)
    z = jax.random.normal(jax.random.key(4), (5, HP.latent_dim))
    got = lebm.log_joint(HP, state.params, z, b)
    dec = HP.likelihood.net()
    ll = text_nets.log_likelihood(dec, {"params": state.params["decoder"]}, z, b["ids"], b["lengths"])
    f = HP.energy_net().apply({"params": state.params["ebm"]}, z)
    gauss = -0.5 * jnp.sum(z**2, -1) - 0.5 * HP.latent_dim * np.log(2 * np.pi)
    np.testing.assert_allclose(got, ll + f + gauss, rtol=1e-5, atol=1e-4)
    assert float(jnp.mean(ll)) < -1.0  # a real likelihood term, not zero


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_train_step_matches_reference_sgd(dropout):
    hp = _with_dropout(HP, dropout)
    lr_e, lr_d = 0.05, 0.3
    tx = {"ebm": optax.sgd(lr_e), "decoder": optax.sgd(lr_d)}
    state = lebm.init(hp, tx, jax.random.key(5))
    batch = _batch(6, start=10)
    new_state, metrics = lebm.train_step(hp, tx, state, batch)

    # reference: Algorithm 1 written out from langevin, log_likelihood and the contrastive loss
    p = state.params
    keys = example_keys(state.step_key(), 6)
    dec = hp.likelihood.net()
    ebm = hp.energy_net()

    def f(ep, z):
        return ebm.apply({"params": ep}, z)

    def ll(dp, z, dropout_key=None):
        return text_nets.log_likelihood(dec, {"params": dp}, z, batch["ids"], batch["lengths"], dropout_key)

    def log_prior(z):
        return f(p["ebm"], z) + priors.gaussian_log_prob(z, hp.prior_sigma)

    z0n = normal_per_example(fold_keys(keys, 0), (hp.latent_dim,))
    z_neg = langevin(log_prior, z0n, fold_keys(keys, 1), step_size=0.4, num_steps=3)
    z0p = normal_per_example(fold_keys(keys, 2), (hp.latent_dim,))
    z_pos = langevin(
        lambda z: ll(p["decoder"], z) + log_prior(z), z0p, fold_keys(keys, 3), step_size=0.1, num_steps=4
    )
    g_e = jax.grad(lambda ep: jnp.mean(f(ep, z_neg)) - jnp.mean(f(ep, z_pos)))(p["ebm"])
    # dropout in the decoder update only (the chains above ran without it), masks from the step key
    drop_key = jax.random.fold_in(state.step_key(), 1 << 20) if dropout else None
    g_d = jax.grad(lambda dp: -jnp.mean(ll(dp, z_pos, drop_key)))(p["decoder"])
    want_e = jax.tree.map(lambda a, g: a - lr_e * g, p["ebm"], g_e)
    want_d = jax.tree.map(lambda a, g: a - lr_d * g, p["decoder"], g_d)

    chex_close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6)
    jax.tree.map(chex_close, new_state.params["ebm"], want_e)
    jax.tree.map(chex_close, new_state.params["decoder"], want_d)
    # the update is not a no-op
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), want_d, p["decoder"]))
    assert max(float(m) for m in moved) > 1e-4
    np.testing.assert_allclose(metrics["loss_g"], -jnp.mean(ll(p["decoder"], z_pos, drop_key)), rtol=1e-5)
    if dropout:  # the masks are really applied: the update differs from the one without dropout
        g_plain = jax.grad(lambda dp: -jnp.mean(ll(dp, z_pos)))(p["decoder"])
        diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), g_plain, g_d)
        assert max(jax.tree.leaves(diff)) > 1e-3 * max(
            float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_d)
        )
    np.testing.assert_allclose(
        metrics["loss_e"], jnp.mean(f(p["ebm"], z_neg)) - jnp.mean(f(p["ebm"], z_pos)), rtol=1e-4, atol=1e-6
    )
    assert int(new_state.step) == 1


def test_generate_and_reconstruct_shapes():
    state = lebm.init(HP, {"ebm": optax.sgd(0.0), "decoder": optax.sgd(0.0)}, jax.random.key(6))
    out = lebm.generate(HP, state.params, jax.random.key(7), 3)
    assert out["ids"].shape == (3, MAX_LEN) and out["lengths"].shape == (3,)
    assert bool(jnp.all(out["ids"][:, 0] == text_nets.BOS_ID))
    b = _batch(2)
    rec = lebm.reconstruct(HP, state.params, b, jax.random.key(8))
    assert rec["ids"].shape == b["ids"].shape and rec["lengths"].shape == (2,)


def test_image_and_text_lebm_share_algorithm_1():
    """One train step: the image and the text LEBM run the same function over their likelihoods."""
    from configs import digits, text_toy
    from latentebm_jax.data import load_splits

    image = lebm.make(digits.get_config("lebm"), None, 1)
    config = text_toy.get_config()
    text = lebm_text.make(config, load_splits(config.data), 1)
    assert image.train_step.func is text.train_step.func is lebm.train_step
