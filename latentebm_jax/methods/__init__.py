"""One module per paper; each offers pure functions and a ``make(config, steps_per_epoch) -> Method``."""

from __future__ import annotations

from latentebm_jax.methods import bidvl, diffusion, joint, lebm, lebm_text
from latentebm_jax.methods.base import LatentTools, Method

REGISTRY = {
    "lebm": lebm.make,
    "joint": joint.make,
    "diffusion": diffusion.make,
    "bidvl": bidvl.make,
    "lebm_text": lebm_text.make,
}
TEXT_METHODS = ("lebm_text",)


def get_method(config, steps_per_epoch: int, vocab=None) -> Method:
    """The :class:`Method` that ``config.method`` names, bound to the config (text methods also take the
    training split's vocabulary)."""
    if config.method not in REGISTRY:
        raise ValueError(f"unknown method {config.method!r}; available: {sorted(REGISTRY)}")
    if config.method in TEXT_METHODS:
        if vocab is None:
            raise ValueError(f"method {config.method!r} needs the vocabulary of a text corpus")
        return REGISTRY[config.method](config, steps_per_epoch, vocab)
    return REGISTRY[config.method](config, steps_per_epoch)


__all__ = [
    "REGISTRY",
    "TEXT_METHODS",
    "LatentTools",
    "Method",
    "bidvl",
    "diffusion",
    "get_method",
    "joint",
    "lebm",
    "lebm_text",
]
