"""Config validation: every shipped config passes; a key no component reads and bad values fail naming the
key, the value and the fix; the method's group is the only place its settings live."""

import os
import subprocess
import sys

import pytest
from conftest import apply_overrides

from configs import default
from latentebm_jax import methods
from latentebm_jax.config_schema import ConfigError, settings_of
from latentebm_jax.methods import lebm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ["digits", "digits32", "svhn", "cifar10", "celeba64", "celeba32", "mnist", "fashion_mnist"]
SHIPPED = [
    *[(name, m) for name in CONFIGS for m in ("lebm", "joint")],
    *[
        (name, m)
        for name in ("digits", "svhn", "cifar10", "celeba64", "celeba32", "mnist")
        for m in ("bidvl",)
    ],
    *[(name, m) for name in ("digits", "cifar10", "celeba64", "mnist") for m in ("hvae", "diffusion")],
    ("digits32", "bidvl"),
    ("digits_toy", "joint"),
    ("digits_toy", "lebm"),
    *[(name, "lebm_text") for name in ("text_toy", "text_modes", "ptb", "yahoo", "snli")],
]


@pytest.mark.parametrize("name,method", SHIPPED)
def test_shipped_configs_validate(name, method):
    module = __import__(f"configs.{name}", fromlist=["get_config"])
    config = module.get_config(method)
    default.validate(config)
    assert config.method == method
    # the config holds the shared groups and the method's own, nothing else
    own = {"lebm": {"lebm", "sampler"}, "lebm_text": {"lebm_text", "sampler"}, "joint": {"joint", "sampler"}}
    own |= {"hvae": {"hvae", "backbone"}, "diffusion": {"diffusion", "backbone"}, "bidvl": {"bidvl"}}
    assert set(config) == {"method", "seed", "data", "train", "eval", *own[method]}


def test_the_method_group_is_its_hparams_settings():
    """One source of keys, defaults and allowed values: the hparams dataclass's setting fields."""
    c = default.get_config("lebm")
    declared = {**settings_of(lebm.EBMPrior), **settings_of(lebm.GaussianImageLikelihood)}
    declared |= settings_of(lebm.LEBMOptimizer)
    assert set(c.lebm) == set(declared)
    assert c.lebm.generator == "dcgan" and declared["generator"].choices == ("dcgan", "small8")
    hp = lebm.hparams_from_config(c)
    assert (hp.latent_dim, hp.likelihood.ngf, hp.prior_steps) == (100, 64, 60)


def test_a_key_another_method_reads_is_an_error_under_this_method():
    c = default.get_config("lebm")
    c.bidvl = default.get_config("bidvl").bidvl
    with pytest.raises(ConfigError, match=r"config key 'bidvl' is not read by method 'lebm'"):
        default.validate(c)
    c = default.get_config("bidvl")
    c.sampler = default.get_config("lebm").sampler  # BiDVL runs no Langevin chain
    with pytest.raises(ConfigError, match=r"'sampler' is not read by method 'bidvl'"):
        default.validate(c)
    c = default.get_config("joint")
    c.sampler.posterior_steps = 20  # the joint prior infers with its network, not a posterior chain
    with pytest.raises(ConfigError, match=r"'sampler.posterior_steps' is not read by method 'joint'"):
        default.validate(c)


def test_unknown_key_names_the_nearest_key():
    c = default.get_config()
    c.train.unlocked_typo = 3
    with pytest.raises(
        ConfigError, match=r"'train.unlocked_typo' is not read.*keys of group 'train'.*batch_size"
    ):
        default.validate(c)
    c = default.get_config()
    c.lebm.latnt_dim = 3
    with pytest.raises(ConfigError, match=r"did you mean 'lebm.latent_dim'\?"):
        default.validate(c)


def test_evaluator_keys_exist_only_where_an_evaluator_reads_them():
    text = default.get_config("lebm_text")
    assert "fd_num_samples" not in text.eval and "nll_samples" in text.eval
    images = default.get_config("lebm")
    assert "fd_num_samples" in images.eval and "nll_samples" not in images.eval
    assert "ood_sets" in default.get_config("bidvl").eval and "ood_sets" not in images.eval


@pytest.mark.parametrize(
    "path,value,pattern",
    [
        ("lebm.generator", "resnet", r"'lebm.generator' has value 'resnet'; allowed values: \['dcgan'"),
        ("train.batch_size", 0, r"'train.batch_size' has value 0; it must be a positive integer"),
        ("lebm.lr_gen", "fast", r"'lebm.lr_gen' has value 'fast' of type str; expected float"),
        ("data.name", "imagenet", r"'data.name' has value 'imagenet'"),
        ("lebm.beta1", 1.5, r"'lebm.beta1' has value 1.5; it must be in \[0, 1\)"),
        ("lebm.ebm_hidden", -1, r"'lebm.ebm_hidden' has value -1; it must be a non-negative integer"),
        ("train.num_steps", 0, r"'train.num_steps' has value 0; it must be -1 \(use num_epochs\)"),
        ("eval.metrics", ("fd", "fdd"), r"'eval.metrics' names evaluator 'fdd'.*did you mean 'fd'"),
        (
            "eval.metrics",
            ("nll",),
            r"'eval.metrics' names evaluator 'nll', which method 'lebm' does not have",
        ),
        ("eval.fd_num_samples", 1, r"'eval.fd_num_samples' has value 1; it must be an integer >= 2"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(path, value, pattern):
    c = default.get_config()
    with c.ignore_type():
        apply_overrides(c, {path: value})
    with pytest.raises(ConfigError, match=pattern):
        default.validate(c)


def test_cross_field_checks():
    c = default.get_config()
    c.lebm.generator = "small8"
    with pytest.raises(ConfigError, match="small8"):
        default.validate(c)
    c = default.get_config()
    c.eval.metrics = ("reconstruction", "anomaly")
    with pytest.raises(ConfigError, match=r"evaluator 'anomaly'.*data\.holdout_class"):
        default.validate(c)
    with pytest.raises(ConfigError, match=r"config key 'method' has value 'gan'; allowed values"):
        default.get_config("gan")


def test_every_registered_method_builds_and_validates_its_reference_config():
    for name in methods.SPECS:
        c = default.get_config(name)
        default.validate(c)
        assert c.method == name and c.eval.metrics


def _run_main(*args, timeout=120):
    env = dict(os.environ, TQDM_DISABLE="1")
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_command_line_rejects_unknown_override_and_bad_value_in_one_line(tmp_path):
    bad_key = _run_main("--config=configs/digits.py", f"--workdir={tmp_path}", "--config.bidvl.enc_width=1")
    assert bad_key.returncode == 2, bad_key.stderr[-2000:]
    assert bad_key.stderr.strip() == (
        "config error: config key 'bidvl.enc_width' is not read by method 'lebm' with dataset 'digits' "
        "(--config.bidvl.enc_width)"
    )
    renamed = _run_main(
        "--config=configs/digits.py:joint", f"--workdir={tmp_path}", "--config.model.hier_widths=(8,)"
    )
    assert renamed.returncode == 2 and "did you mean 'joint.widths'?" in renamed.stderr
    bad_value = _run_main(
        "--config=configs/digits.py", f"--workdir={tmp_path}", "--config.lebm.generator=vae"
    )
    assert bad_value.returncode == 2
    assert "'lebm.generator' has value 'vae'" in bad_value.stderr and "small8" in bad_value.stderr
    assert "Traceback" not in bad_value.stderr + bad_key.stderr
    bad_method = _run_main("--config=configs/digits.py:gan", f"--workdir={tmp_path}")
    assert bad_method.returncode == 2 and "'method' has value 'gan'" in bad_method.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


def test_command_line_missing_dataset_says_how_to_prepare_it(tmp_path):
    out = _run_main(
        "--config=configs/svhn.py",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
    )
    assert out.returncode == 1, out.stderr[-2000:]
    assert "svhn_cropped" in out.stderr and "experiments.prepare_data svhn_cropped" in out.stderr
    assert "Variant folder" not in out.stderr  # tfds' warning about a folder that does not exist
    assert f"--data_dir={tmp_path / 'tfds'}" in out.stderr


@pytest.mark.parametrize(
    "method,overrides,pattern",
    [
        ("joint", {"joint.widths": (8, 16)}, r"'joint.widths' has 2 values but .* 3 layers"),
        (
            "joint",
            {"joint.latent_dims": (2,) * 7, "joint.widths": (4,) * 8},
            r"'data.image_size' = 32 does not halve 6 times; use at most 6 layers",
        ),
        ("joint", {"joint.latent_dims": (3,)}, r"'joint.latent_dims' .* at least 2 positive integers"),
        ("joint", {"joint.kl_estimator": "mc"}, r"'joint.kl_estimator' has value 'mc'; allowed"),
        ("hvae", {"backbone.widths": (8, 16)}, r"'backbone.widths' has 2 values but .* 3 layers"),
        (
            "diffusion",
            {"diffusion.label_layers": (4,)},
            r"'diffusion.label_layers' = \(4,\) names layers beyond",
        ),
        ("diffusion", {"eval.ood_source": "imagenet"}, r"'eval.ood_source' has value 'imagenet'"),
        ("bidvl", {"eval.ood_sets": ("noise",)}, r"'eval.ood_sets' has value \('noise',\)"),
        ("lebm", {"data.name": "text_toy"}, r"text corpus 'text_toy'; method 'lebm' models images"),
        (
            "joint",
            {"data.classes": (0, 1), "data.holdout_class": 9},
            r"'data.holdout_class' = 9 is not among",
        ),
    ],
)
def test_method_cross_field_checks(method, overrides, pattern):
    from configs import digits

    c = digits.get_config(method)
    if "data.name" in overrides:  # a text corpus has the text data group
        from latentebm_jax.data.settings import data_group

        c.data = data_group(overrides.pop("data.name"))
    apply_overrides(c, overrides)
    with pytest.raises(ConfigError, match=pattern):
        default.validate(c)


def test_help_lists_every_config_file_every_method_the_modes_and_the_override_syntax():
    from latentebm_jax.methods import METHODS

    shown = _run_main("--help")
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout + shown.stderr
    listed = text.split("Methods (")[0]
    files = sorted(n for n in os.listdir(os.path.join(ROOT, "configs")) if n.endswith(".py"))
    for name in files:
        if name not in ("__init__.py", "default.py"):
            assert name in listed, name
    for method in METHODS:
        assert f"\n  {method} " in text, method
    for words in (
        "--mode: train",
        "eval (",
        "sample (",
        "--config.<group>.<key>=<value>",
        "--smoke",
        "Quick start",
    ):
        assert words in text, words
    assert "\\\\" not in text.split("flags:")[0]  # no stray line continuation in the usage text


def test_smoke_shrinks_a_config_to_a_few_steps_and_the_cheap_evaluators():
    from configs import digits, text_toy

    for config in (digits.get_config("lebm"), digits.get_config("joint"), text_toy.get_config()):
        default.smoke(config)
        default.validate(config)
        assert (
            config.train.num_steps == 3 and config.train.eval_every == 0 and not config.eval.interval_metrics
        )
        assert config.eval.metrics and set(config.eval.metrics) <= set(default.SMOKE_METRICS)
        assert config.eval.max_test_examples <= config.eval.batch_size


@pytest.mark.slow  # one short run end to end (about 45 s on 2 shared cores)
def test_smoke_run_trains_three_steps_and_scores_reconstructions(tmp_path):
    import json

    run = _run_main("--config=configs/digits.py", f"--workdir={tmp_path}", "--smoke", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert (
        summary["train_steps"] == 3 and summary["num_test_examples"] == 100 and 0 < summary["recon_mse"] < 4
    )
    assert "fd" not in summary and os.path.isfile(tmp_path / "samples.png")
    assert "step 3/3 (100%)" in run.stderr  # plain progress lines: stderr is a pipe here


def test_sample_export_and_external_scoring_flags_need_their_mode(tmp_path):
    run = _run_main(
        "--config=configs/digits.py", f"--workdir={tmp_path}", "--num_samples=5", "--samples_npz=x.npz"
    )
    assert run.returncode == 2
    assert (
        run.stderr.strip()
        == "config error: --num_samples exports samples with --mode=sample; add --mode=sample"
    )
