"""One module per paper; each offers pure functions and a ``make(config, steps_per_epoch) -> Method``."""

from __future__ import annotations

from latentebm_jax.methods import bidvl, diffusion, joint, lebm
from latentebm_jax.methods.base import LatentTools, Method

REGISTRY = {"lebm": lebm.make, "joint": joint.make, "diffusion": diffusion.make, "bidvl": bidvl.make}


def get_method(config, steps_per_epoch: int) -> Method:
    """The :class:`Method` that ``config.method`` names, bound to the config."""
    if config.method not in REGISTRY:
        raise ValueError(f"unknown method {config.method!r}; available: {sorted(REGISTRY)}")
    return REGISTRY[config.method](config, steps_per_epoch)


__all__ = ["REGISTRY", "LatentTools", "Method", "bidvl", "diffusion", "get_method", "joint", "lebm"]
