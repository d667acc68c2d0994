"""Evaluators by name: the shared ones, the registry that adds each method's own, and their config keys.

``config.eval.metrics`` names the evaluators run at the end of training and by ``--mode=eval`` (the
sampling ones among them also by ``--mode=sample``); ``config.eval.interval_metrics`` those run at every
``train.eval_every`` steps. A method's evaluators are the shared ones that read what its batches hold
(``MethodSpec.batch_fields``) and the ones it owns (``MethodSpec.evaluators``). Each evaluator declares the
predict functions it calls and the ``eval.*`` keys it reads (:class:`~latentebm_jax.methods.base.Evaluator`),
so a config is checked before anything compiles.

Shared evaluators (images):

* ``reconstruction``, ``anomaly``, ``interval_reconstructions`` (:mod:`.reconstruction`);
* ``fd``, ``fid`` (:mod:`.generation`); ``probe`` (:mod:`.probes`); ``hierarchy`` (:mod:`.hierarchy`);
* ``samples``, ``chains``, ``interval_samples`` (:mod:`.samples`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from latentebm_jax.config_schema import ConfigError, Setting, check_group
from latentebm_jax.evaluation import generation, hierarchy, probes, reconstruction, samples
from latentebm_jax.evaluation.cache import cache_root, dataset_id
from latentebm_jax.methods.base import EvalContext, Evaluator, Method, MethodSpec

SHARED: dict[str, Evaluator] = {
    e.name: e
    for module in (reconstruction, generation, probes, hierarchy, samples)
    for e in module.EVALUATORS
}


def available(spec: MethodSpec) -> dict[str, Evaluator]:
    """The evaluators a method can name: the shared ones that read what its batches hold, and its own."""
    clash = set(SHARED) & set(spec.evaluators)
    if clash:
        raise ValueError(f"method {spec.name!r} owns evaluators named like shared ones: {sorted(clash)}")
    fields = set(spec.batch_fields)
    shared = {name: e for name, e in SHARED.items() if set(e.reads) <= fields}
    return {**shared, **spec.evaluators}


def settings(evaluators: Iterable[Evaluator]) -> dict[str, Setting]:
    """The ``eval.*`` keys the evaluators read (one declaration per key: equal defaults required)."""
    out: dict[str, Setting] = {}
    for e in evaluators:
        for name, s in e.settings.items():
            if name in out and out[name].default != s.default:
                raise ValueError(
                    f"eval.{name} is declared with defaults {out[name].default!r} and {s.default!r}"
                )
            out.setdefault(name, s)
    return out


def _lookup(name: str, table: Mapping[str, Evaluator], key: str, method: str) -> Evaluator:
    if name in table:
        return table[name]
    near = difflib.get_close_matches(name, list(table), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ConfigError(
        f"config key '{key}' names evaluator {name!r}, which method {method!r} does not have{hint} "
        f"(available: {sorted(table)})"
    )


def selected(config, spec: MethodSpec, key: str = "metrics") -> list[Evaluator]:
    """The evaluators ``config.eval.<key>`` names (``metrics`` or ``interval_metrics``), in order."""
    table = available(spec)
    return [_lookup(name, table, f"eval.{key}", spec.name) for name in config.eval[key]]


def check_config(config, spec: MethodSpec) -> None:
    """Every named evaluator exists for the method, takes its settings and accepts the config; raises
    :class:`ConfigError` naming the key."""
    check_group(config.eval, settings(available(spec).values()), "eval")
    for key in ("metrics", "interval_metrics"):
        names = list(config.eval[key])
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"config key 'eval.{key}' names {twice} more than once")
        for e in selected(config, spec, key):
            if e.check is not None:
                e.check(config)


def check_method(method: Method, evaluators: Iterable[Evaluator], key: str = "eval.metrics") -> None:
    """Every evaluator finds the predict functions it calls (before anything compiles)."""
    for e in evaluators:
        missing = [n for n in e.needs if n not in method.predict]
        if missing:
            raise ConfigError(
                f"evaluator {e.name!r} (in {key}) needs the predict function(s) {missing}, which method "
                f"{method.name!r} does not have with this config; remove {e.name!r} from {key}"
            )


def run(ctx: EvalContext, evaluators: Iterable[Evaluator]) -> dict:
    """Run the evaluators in order and merge their summaries (``main_only`` ones on process 0 only)."""
    summary: dict = {}
    for e in evaluators:
        if e.main_only and not ctx.main_process:
            continue
        summary.update(e.run(ctx))
    return summary


__all__ = [
    "SHARED",
    "available",
    "cache_root",
    "check_config",
    "check_method",
    "dataset_id",
    "run",
    "selected",
    "settings",
]
