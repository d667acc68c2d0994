"""The method registry: one module per paper, each exporting a
:class:`~latentebm_jax.methods.base.MethodSpec`.

Adding a method is one module (its hparams, config group and validation, init, train step, predict
functions and its own evaluators) and one line in :data:`SPECS`.
"""

from __future__ import annotations

from latentebm_jax.config_schema import ConfigError
from latentebm_jax.methods import bidvl, diffusion_prior, hvae, joint, lebm, lebm_text, nvae
from latentebm_jax.methods.base import EvalContext, Evaluator, LatentSpace, Method, MethodSpec

SPECS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        lebm.SPEC,
        lebm_text.SPEC,
        joint.SPEC,
        hvae.SPEC,
        nvae.SPEC,
        diffusion_prior.SPEC,
        bidvl.SPEC,
    )
}
METHODS = tuple(SPECS)


def spec(name: str) -> MethodSpec:
    """The registered method ``name``; :class:`ConfigError` naming the methods there are otherwise."""
    if name not in SPECS:
        raise ConfigError(f"config key 'method' has value {name!r}; allowed values: {list(SPECS)}")
    return SPECS[name]


def make_method(config, splits, steps_per_epoch: int) -> Method:
    """The :class:`Method` that ``config.method`` names, bound to a validated config and the data."""
    return spec(config.method).make(config, splits, steps_per_epoch)


__all__ = [
    "METHODS",
    "SPECS",
    "EvalContext",
    "Evaluator",
    "LatentSpace",
    "Method",
    "MethodSpec",
    "bidvl",
    "diffusion_prior",
    "hvae",
    "joint",
    "lebm",
    "lebm_text",
    "make_method",
    "nvae",
    "spec",
]
