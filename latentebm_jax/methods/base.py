"""The contract between a method, the evaluators and the runner.

A method module (one per paper) exports a :class:`MethodSpec`: its config group and validation, a ``make``
that binds a config into a :class:`Method` (pure functions with their settings bound), and the evaluators
it owns. The runner reaches methods only through the registry (``methods.SPECS``) and evaluators only by
name (``config.eval.metrics``); it never tests which method or which kind of data it runs.

**Predict functions.** ``Method.predict`` maps names to jitted functions. A name means the same thing for
every method, with one signature (a batch is the dict the data pipeline yields: ``{"image"}`` for images,
``{"ids", "lengths"}`` for text, plus ``"label"`` where the data has labels):

================== ========================================================== =============================
name               signature                                                  returns
================== ========================================================== =============================
``generate``       ``(params, key, num)``                                     a batch of ``num`` samples
``reconstruct``    ``(params, batch, key)``                                   a batch: inferred latents
                                                                              decoded again
``log_joint``      ``(params, batch, key)``                                   ``(B,)``: ``log p(x, z)`` at
                                                                              inferred ``z`` (anomaly
                                                                              score, its negative)
``infer``          ``(params, batch, key)``                                   latents: a tuple of layers
                                                                              ``(B, d_i)``, bottom first
``decode``         ``(params, latents)``                                      a batch
``sample_prior``   ``(params, key, num, num_steps)``                          latents (``num_steps`` =
                                                                              ``None``: the default chain)
``resample_layer`` ``(params, latents, layer, key)``                          latents, ``layer`` drawn
                                                                              anew, the others fixed
``attack``         ``(params, x_orig, x_target, layer, steps, lr, l2)``       adversarial images (latent
                                                                              attack on one layer)
``long_run_chain`` ``(params, key, num, num_steps, record_every)``            ``{"frames": batch with a
                                                                              leading frame axis,
                                                                              "steps", "energy"}``
================== ========================================================== =============================

A method may add names of its own for its own evaluators (documented in its module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections

from latentebm_jax.config_schema import Setting
from latentebm_jax.state import TrainState

Batch = dict[str, Any]
PREDICT_NAMES = (
    "generate",
    "reconstruct",
    "log_joint",
    "infer",
    "decode",
    "sample_prior",
    "resample_layer",
    "attack",
    "long_run_chain",
)


@dataclasses.dataclass(frozen=True)
class LatentSpace:
    """What the latent-space evaluators need to know of a method's latents."""

    dims: tuple[int, ...]  # units per layer, bottom first (a single-layer model has one entry)
    prior_steps: int  # Langevin steps of the default prior sampler (0: exact samples)


@dataclasses.dataclass(frozen=True)
class Method:
    """A method bound to a config: what training, evaluation and sampling call.

    * ``init(key) -> TrainState``: the state of a fresh run (it may read what the config names, such as a
      pretrained backbone);
    * ``state_shapes(key) -> TrainState`` of ``jax.ShapeDtypeStruct``: the same tree, reading nothing and
      computing nothing (the target a checkpoint is restored into);
    * ``train_step(state, batch, axis_name) -> (state, metrics)``: one step on this device's share of the
      batch; ``axis_name`` is the ``pmap`` axis for ``lax.pmean`` (``None`` unmapped);
    * ``inference_params(state) -> params``: what the predict functions take (the networks and any
      non-trainable state they use);
    * ``predict``: the predict functions (module docstring);
    * ``latents``: a :class:`LatentSpace`, or ``None`` for a method without a latent prior to probe;
    * ``watch``: the train-step metrics the divergence guard watches: ``"energy"`` (their magnitude) and
      ``"generator_grad"`` (gradient norms that must not vanish).
    """

    name: str
    init: Callable[[jax.Array], TrainState]
    state_shapes: Callable[[jax.Array], TrainState]
    train_step: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    predict: Mapping[str, Callable[..., Any]]
    inference_params: Callable[[TrainState], Any] = lambda state: state.params
    latents: LatentSpace | None = None
    watch: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What an evaluator gets: the bound method, its parameters, the data and where to write.

    ``key`` is the run's evaluation key for this checkpoint; every evaluator folds it with numbers of its
    own, so adding or removing an evaluator changes no other one's numbers. ``out_dir`` is the workdir (or
    ``<workdir>/samples_final`` for ``--mode=sample``).
    """

    config: ml_collections.ConfigDict
    method: Method
    params: Any
    splits: Any  # latentebm_jax.data.DataSplits
    out_dir: str
    step: int
    key: jax.Array
    cache_dir: str  # where metric caches live (domain classifiers, FID statistics, language models)
    dataset_id: str  # a file-name-safe identity of the preprocessed dataset, for cache names
    main_process: bool = True

    def say(self, message: str) -> None:
        """Print ``message`` on the main process only."""
        if self.main_process:
            print(message, flush=True)


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One named evaluation: ``run(ctx) -> {summary key: value}``, writing its files under ``ctx.out_dir``.

    * ``needs``: the predict functions it calls (the runner checks the method has them before anything
      compiles);
    * ``reads``: the batch fields it reads from data or samples (``("image",)``, ``("ids", "lengths")``);
      shared evaluators apply to the methods whose batches have them;
    * ``settings``: the ``eval.<key>`` config keys it reads (declared once here; several evaluators may
      declare the same key with the same default);
    * ``check(config)``: raises ``ConfigError`` for settings it cannot run with (before anything compiles);
    * ``sampling``: it draws from the model only, so ``--mode=sample`` runs it too;
    * ``main_only``: it only writes files, so only process 0 runs it.
    """

    name: str
    run: Callable[[EvalContext], dict[str, Any]]
    doc: str = ""
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    settings: Mapping[str, Setting] = dataclasses.field(default_factory=dict)
    check: Callable[[ml_collections.ConfigDict], None] | None = None
    sampling: bool = False
    main_only: bool = False


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """What the registry holds for a method (one per method module).

    * ``configure(config)``: add the method's group(s) with its reference defaults (the paper's setting);
      it may also set the shared groups to that setting (its reference dataset, default evaluators);
    * ``validate(config)``: the values of its group(s), cross-field checks and the data it accepts;
      raises ``ConfigError``;
    * ``make(config, splits, steps_per_epoch) -> Method``;
    * ``batch_fields``: the fields of the batches it trains on and produces (which shared evaluators apply);
    * ``evaluators``: the evaluators it owns, by name (names no shared evaluator uses);
    * ``adapt_reference(reference, config)``: for a method whose groups' keys depend on a value (the
      diffusion prior's backbone kind), make the reference config's groups those of ``config``;
    * ``run_only_keys``: keys of its groups that change nothing a checkpoint computes (where a new run
      reads something from), so a run may continue or be evaluated with them changed.
    """

    name: str
    doc: str
    configure: Callable[[ml_collections.ConfigDict], None]
    validate: Callable[[ml_collections.ConfigDict], None]
    make: Callable[..., Method]
    batch_fields: tuple[str, ...] = ("image",)
    evaluators: Mapping[str, Evaluator] = dataclasses.field(default_factory=dict)
    adapt_reference: Callable[[ml_collections.ConfigDict, ml_collections.ConfigDict], None] | None = None
    run_only_keys: tuple[str, ...] = ()


def shapes_of(init: Callable[[jax.Array], TrainState]) -> Callable[[jax.Array], TrainState]:
    """``state_shapes`` for a pure ``init``: its output tree as ``ShapeDtypeStruct`` (nothing computed)."""

    def shapes(key: jax.Array) -> TrainState:
        return jax.eval_shape(init, key)

    return shapes
