"""Metrics: Fréchet distance against closed forms, Inception Score, detection scores, probes, the domain
classifier, reconstruction summaries."""

import numpy as np
import pytest
from scipy import linalg

from latentebm_jax.data import load_digits
from latentebm_jax.metrics import auprc, auroc, ood_auprc, ood_auroc
from latentebm_jax.metrics.domain import domain_classifier
from latentebm_jax.metrics.frechet import frechet_distance, gaussian_stats, trace_sqrt_product
from latentebm_jax.metrics.inception_score import inception_score
from latentebm_jax.metrics.probe import probe_accuracy
from latentebm_jax.metrics.reconstruction import reconstruction_errors
from latentebm_jax.metrics.tree_io import load_tree, save_tree


def _random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    np.testing.assert_allclose(frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), want, rtol=1e-10)


def test_frechet_distance_equals_direct_sqrtm_computation_for_general_covariances():
    rng = np.random.default_rng(1)
    s1, s2 = _random_spd(rng, 8), _random_spd(rng, 8, 2.0)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    np.testing.assert_allclose(frechet_distance(mu1, s1, mu2, s2), direct, rtol=1e-8)


def test_frechet_distance_of_sampled_gaussian_features_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    n, d = 200_000, 4
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    sd1, sd2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.5, 1.0, 0.5, 2.0])
    x = rng.normal(size=(n, d)) * sd1 + mu1
    y = rng.normal(size=(n, d)) * sd2 + mu2
    a, b = gaussian_stats(x), gaussian_stats(y)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((sd1 - sd2) ** 2)
    np.testing.assert_allclose(frechet_distance(a.mu, a.sigma, b.mu, b.sigma), want, rtol=0.02)


def test_frechet_distance_of_a_set_with_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(20, 64))  # 20 samples in 64-d: covariance of rank 19
    s = gaussian_stats(features)
    assert np.linalg.matrix_rank(s.sigma) < 64
    assert abs(frechet_distance(s.mu, s.sigma, s.mu, s.sigma)) < 1e-8


def test_near_singular_covariances_follow_the_closed_form():
    # Σ₁ = c² Σ₂ with Σ₂ of rank 3 in 10-d: tr((Σ₁Σ₂)^½) = c·tr Σ₂, so d² = ‖Δμ‖² + (1 − c)² tr Σ₂.
    rng = np.random.default_rng(4)
    b = rng.normal(size=(10, 3))
    s2 = b @ b.T + 1e-12 * np.eye(10)
    c = 1.7
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    want = np.sum((mu1 - mu2) ** 2) + (1 - c) ** 2 * np.trace(s2)
    got = frechet_distance(mu1, c * c * s2, mu2, s2)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(trace_sqrt_product(c * c * s2, s2), c * np.trace(s2), rtol=1e-6)
    with pytest.raises(ValueError, match="incompatible"):
        frechet_distance(mu1, s2, mu2[:5], s2)


def test_inception_score_extremes():
    k = 5
    confident = np.full((100, k), -50.0)
    confident[np.arange(100), np.arange(100) % k] = 50.0
    mean, std = inception_score(confident, splits=4)
    np.testing.assert_allclose(mean, k, rtol=1e-6)
    assert std < 1e-6
    uniform = np.zeros((100, k))
    np.testing.assert_allclose(inception_score(uniform, splits=4)[0], 1.0, rtol=1e-9)
    one_class = np.tile(confident[:1], (100, 1))  # every sample the same class: no diversity
    np.testing.assert_allclose(inception_score(one_class, splits=4)[0], 1.0, rtol=1e-6)


def test_auroc_and_auprc_on_hand_computed_cases():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    # positive/negative pairs ranked correctly: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4
    assert auroc(scores, labels) == pytest.approx(0.75)
    # ranked by score: 0.8(+) 0.4(−) 0.35(+) 0.1(−): precision at the positives 1/1 and 2/3
    assert auprc(scores, labels) == pytest.approx((1.0 + 2.0 / 3.0) / 2.0)
    assert auroc(-scores, labels) == pytest.approx(0.25)
    # OOD convention: higher = more in-distribution, in-distribution positive
    assert ood_auroc(np.array([0.35, 0.8]), np.array([0.1, 0.4])) == pytest.approx(0.75)
    assert ood_auprc(np.array([0.35, 0.8]), np.array([0.1, 0.4])) == pytest.approx(auprc(scores, labels))
    with pytest.raises(ValueError, match="both 0 and 1"):
        auroc(scores, np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        auprc(np.array([0.1, np.nan, 0.3, 0.2]), labels)


def test_probe_learns_a_linearly_separable_toy_set_and_not_random_labels():
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(3, 6)) * 4
    y = rng.integers(0, 3, 600)
    z = centers[y] + rng.normal(size=(600, 6))
    acc = probe_accuracy(z[:400], y[:400], z[400:], y[400:], epochs=30)
    assert acc > 0.97
    y_random = rng.integers(0, 3, 600)
    assert probe_accuracy(z[:400], y_random[:400], z[400:], y_random[400:], epochs=30) < 0.6


def test_domain_classifier_is_accurate_on_digits_and_cached(tmp_path):
    train, test = load_digits("train"), load_digits("test")
    clf = domain_classifier(str(tmp_path), "digits", train, test, seed=0, epochs=30)
    assert clf.test_accuracy >= 0.95
    again = domain_classifier(str(tmp_path), "digits", train, test, seed=0, epochs=30)
    assert again.test_accuracy == clf.test_accuracy
    np.testing.assert_allclose(again.features(test.images[:10]), clf.features(test.images[:10]), rtol=1e-6)
    # real test digits are much closer to the training digits than noise is
    ref = gaussian_stats(clf.features(train.images))
    real = gaussian_stats(clf.features(test.images))
    noise = gaussian_stats(clf.features(np.random.default_rng(0).uniform(-1, 1, test.images.shape)))
    fd_real = frechet_distance(real.mu, real.sigma, ref.mu, ref.sigma)
    fd_noise = frechet_distance(noise.mu, noise.sigma, ref.mu, ref.sigma)
    assert fd_real < 0.2 * fd_noise


def test_reconstruction_summary_and_tree_files(tmp_path):
    r = reconstruction_errors(np.array([0.04, 0.16]))
    assert r["recon_mse"] == pytest.approx(0.1) and r["recon_rmse"] == pytest.approx(np.sqrt(0.1))
    assert r["recon_mse_01"] == pytest.approx(0.025) and r["recon_value_range"] == "[-1, 1]"
    tree = {"a": {"w": np.arange(6.0).reshape(2, 3)}, "b": np.ones(2, np.int32)}
    save_tree(str(tmp_path / "t.npz"), tree, {"x": 1})
    back, meta = load_tree(str(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back["a"]["w"], tree["a"]["w"])
    assert meta == {"x": 1} and back["b"].dtype == np.int32


@pytest.mark.slow  # the domain classifier's compilation: ~10 s
def test_fd_of_reconstructions_is_the_real_floor_for_a_perfect_autoencoder_and_grows_with_noise(tmp_path):
    """``fd_recon`` scores reconstructions of the held-out test images against the training images: with
    reconstructions equal to the inputs it is exactly ``fd_recon_real_test`` (the same images), with noisy
    ones it is larger."""
    import types

    import jax

    from configs import digits
    from latentebm_jax.data import load_splits
    from latentebm_jax.evaluation.generation import fd_reconstructions
    from latentebm_jax.methods.base import EvalContext

    config = digits.get_config("lebm")
    config.eval.fd_classifier_epochs = 2
    config.eval.fd_num_samples = 200
    splits = load_splits(config.data)

    def run(reconstruct):
        method = types.SimpleNamespace(predict={"reconstruct": reconstruct})
        ctx = EvalContext(
            config, method, None, splits, str(tmp_path), 0, jax.random.key(0), str(tmp_path), "d"
        )
        return fd_reconstructions(ctx)

    exact = run(lambda params, batch, key: {"image": batch["image"]})
    assert exact["fd_recon"] == pytest.approx(exact["fd_recon_real_test"], rel=1e-6)
    assert exact["fd_recon_num_samples"] == 200
    noisy = run(
        lambda params, batch, key: {"image": batch["image"] + jax.random.normal(key, batch["image"].shape)}
    )
    assert noisy["fd_recon"] > 2 * exact["fd_recon"]
