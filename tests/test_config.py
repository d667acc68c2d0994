"""Config validation: every shipped config passes; unknown keys and bad values fail naming both."""

import os
import subprocess
import sys

import pytest
from conftest import apply_overrides

from configs import default
from latentebm_jax.training.validation import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ["digits", "digits32", "svhn", "cifar10", "celeba64", "celeba32", "mnist", "fashion_mnist"]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_validate(name):
    module = __import__(f"configs.{name}", fromlist=["get_config"])
    config = module.get_config("lebm")
    default.validate(config)
    assert config.method == "lebm"


def test_unknown_key_is_named_with_the_allowed_keys():
    c = default.get_config()
    c.train.unlocked_typo = 3
    with pytest.raises(ConfigError, match=r"unknown config key 'train.unlocked_typo'.*batch_size"):
        default.validate(c)


@pytest.mark.parametrize(
    "path,value,pattern",
    [
        (
            "model.generator",
            "resnet",
            r"'model.generator' has value 'resnet'; allowed values: \['dcgan'",
        ),
        ("train.batch_size", 0, r"'train.batch_size' has value 0; it must be a positive integer"),
        ("train.lr_gen", "fast", r"'train.lr_gen' has value 'fast' of type str; expected float"),
        ("data.name", "imagenet", r"'data.name' has value 'imagenet'"),
        ("train.beta1", 1.5, r"'train.beta1' has value 1.5; it must be in \[0, 1\)"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(path, value, pattern):
    c = default.get_config()
    group, key = path.split(".")
    with c.ignore_type():
        c[group][key] = value
    with pytest.raises(ConfigError, match=pattern):
        default.validate(c)


def test_cross_field_checks():
    c = default.get_config()
    c.model.generator = "small8"
    with pytest.raises(ConfigError, match="small8"):
        default.validate(c)
    c = default.get_config()
    c.eval.anomaly = True
    with pytest.raises(ConfigError, match="holdout_class"):
        default.validate(c)
    with pytest.raises(ValueError, match="unknown method 'gan'"):
        default.get_config("gan")


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


def test_command_line_rejects_unknown_override_and_bad_value(tmp_path):
    bad_key = _run_main("--config=configs/digits.py", f"--workdir={tmp_path}", "--config.train.bogus=1")
    assert bad_key.returncode != 0 and "bogus" in bad_key.stderr
    bad_value = _run_main(
        "--config=configs/digits.py", f"--workdir={tmp_path}", "--config.model.generator=vae"
    )
    assert bad_value.returncode == 2
    assert "'model.generator' has value 'vae'" in bad_value.stderr and "small8" in bad_value.stderr
    bad_method = _run_main("--config=configs/digits.py:gan", f"--workdir={tmp_path}")
    assert bad_method.returncode != 0 and "unknown method 'gan'" in bad_method.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


def test_command_line_missing_dataset_says_how_to_prepare_it(tmp_path):
    out = _run_main(
        "--config=configs/svhn.py",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
    )
    assert out.returncode == 1, out.stderr[-2000:]
    assert "svhn_cropped" in out.stderr and "tfds build svhn_cropped" in out.stderr
    assert f"--data_dir={tmp_path / 'tfds'}" in out.stderr


@pytest.mark.parametrize("name", [*CONFIGS, "digits_toy"])
def test_shipped_joint_configs_validate(name):
    module = __import__(f"configs.{name}", fromlist=["get_config"])
    config = module.get_config("joint")
    default.validate(config)
    assert config.method == "joint" and len(config.model.hier_widths) == len(config.model.latent_dims) + 1


@pytest.mark.parametrize(
    "method,overrides,pattern",
    [
        ("joint", {"model.hier_widths": (8, 16)}, r"'model.hier_widths' has 2 values but .* 3 layers"),
        (
            "joint",
            {"model.latent_dims": (2,) * 7, "model.hier_widths": (4,) * 8},
            r"'data.image_size' = 32 does not halve 6 times; use at most 6 layers",
        ),
        ("joint", {"model.latent_dims": (3,)}, r"'model.latent_dims' .* at least 2 positive integers"),
        ("joint", {"model.kl_estimator": "mc"}, r"'model.kl_estimator' has value 'mc'; allowed"),
        ("lebm", {"model.ebm_hidden": 0}, r"'model.ebm_hidden' is 0 \(no EBM\), which only method 'joint'"),
        (
            "joint",
            {"data.classes": (0, 1), "data.holdout_class": 9},
            r"'data.holdout_class' = 9 is not among",
        ),
    ],
)
def test_joint_cross_field_checks(method, overrides, pattern):
    from configs import digits

    c = digits.get_config(method)
    apply_overrides(c, overrides)
    with pytest.raises(ConfigError, match=pattern):
        default.validate(c)
