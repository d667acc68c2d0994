"""The interface the runner uses for every method: a bundle of pure functions with their settings bound."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from latentebm_jax.training.state import TrainState


@dataclasses.dataclass(frozen=True)
class LatentTools:
    """Latent-space functions behind the representation figures (ICCV 2023 Figs. 2, 4–7, 9).

    Latents are tuples of layers ``(B, d_i)``, bottom first (a single-layer model has a 1-tuple).

    * ``sample_prior(params, key, num, num_steps) -> z``: the prior sampler with ``num_steps`` Langevin
      steps (the same key gives the same chain, so shorter runs are prefixes of longer ones);
    * ``decode(params, z) -> images``;
    * ``infer(params, images, key) -> z``: inferred latents (as ``Method.infer_latents``);
    * ``resample_layer(params, z, layer, key) -> z``: Langevin on one layer of the prior with the others
      fixed; or ``None``;
    * ``attack(params, x_orig, x_target, layer) -> x_adv``: latent attack on one layer's inference
      distribution; or ``None`` (no inference network).
    """

    latent_dims: tuple[int, ...]
    sample_prior: Callable[..., tuple]
    decode: Callable[[Any, tuple], jax.Array]
    infer: Callable[[Any, jax.Array, jax.Array], tuple]
    resample_layer: Callable[..., tuple] | None = None
    attack: Callable[..., jax.Array] | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """What the training loop, evaluation and sampling need from a method.

    Every callable is a pure function of arrays (settings already bound):

    * ``init(key) -> TrainState``
    * ``train_step(state, batch, axis_name) -> (state, metrics)``: one step on this device's share of the
      batch; ``axis_name`` is the ``pmap`` axis for ``lax.pmean`` (``None`` on one device, unmapped).
    * ``generate(params, key, num) -> images``: samples from the model, ``(num, H, W, C)`` in ``[−1, 1]``.
    * ``reconstruct(params, images, key) -> images``: inferred latents decoded again.
    * ``log_joint(params, images, key) -> (B,)``: ``log p(x, z)`` at inferred ``z`` (anomaly score is its
      negative); ``None`` where a method has no such score.
    * ``long_run_chain(params, key, num, num_steps, record_every) -> dict`` with ``images`` of shape
      ``(snapshots, num, H, W, C)``, ``steps`` and the per-step ``energy`` (``−log p̃(z)``); or ``None``.
    * ``infer_latents(params, images, key) -> latents``: inferred ``z`` (a pytree of layers, bottom first)
      for the latent probes; or ``None``.
    * ``reconstruct_and_log_joint(params, images, key) -> (images, (B,))``: both of the above from *one*
      inference (evaluation uses it when it needs both); or ``None``.
    * ``inference_params(state) -> params``: what the functions above take as ``params``, built from a
      :class:`TrainState` (default ``state.params``; methods with non-trainable state such as
      spectral-norm vectors add it here).
    * ``latent_tools``: a :class:`LatentTools` for the latent-space figures, or ``None``.
    * ``num_epochs``: training length in epochs when the method sets it itself (the diffusion prior's
      stage 1 reads ``diffusion.backbone_epochs``); ``None`` = ``train.num_epochs``.
    * ``extras``: method-specific tools for its own evaluations (e.g. ``methods.diffusion.DiffusionTools``).
    * ``modality``: ``"image"``, or ``"text"`` (``methods.lebm_text``: ``generate`` returns ``(ids,
      lengths)``, ``reconstruct`` takes ``(params, ids, lengths, key)``; evaluation is
      ``training/text_eval.py``, with ``extras`` a ``methods.lebm_text.TextTools``).
    """

    name: str
    init: Callable[[jax.Array], TrainState]
    train_step: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    generate: Callable[[Any, jax.Array, int], jax.Array]
    reconstruct: Callable[[Any, jax.Array, jax.Array], jax.Array]
    log_joint: Callable[[Any, jax.Array, jax.Array], jax.Array] | None = None
    long_run_chain: Callable[..., dict[str, Any]] | None = None
    infer_latents: Callable[[Any, jax.Array, jax.Array], Any] | None = None
    reconstruct_and_log_joint: Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]] | None = (
        None
    )
    hparams: Any = None
    inference_params: Callable[[TrainState], Any] = lambda state: state.params
    latent_tools: LatentTools | None = None
    num_epochs: int | None = None
    extras: Any = None
    modality: str = "image"
