"""Config settings declared where they are read, and their validation before anything compiles.

Every config key belongs to the component that reads it: the data loader (``data``), the runner
(``train``, the runner's ``eval`` keys), an evaluator (the ``eval`` keys it declares) or the chosen method
(its own group). A component declares a key once, as a :class:`Setting` (default, allowed values or a
check, one line of documentation); a method's hparams dataclass declares its keys with :func:`setting`
fields, so the hparams type is the single source of its config group, its defaults and its allowed values:

    @dataclasses.dataclass(frozen=True)
    class Hparams:
        image_shape: tuple[int, int, int] = (32, 32, 3)            # derived from the data, not a key
        generator: str = setting("dcgan", "generator network", choices=("dcgan", "small8"))

    config.lebm = group_of(Hparams)                             # every setting with its default
    check_group(config.lebm, settings_of(Hparams), "lebm")      # allowed values, checks
    hp = Hparams(image_shape=..., **values_of(config.lebm, Hparams))

:func:`check_keys` compares a config against the reference config of its method: a key nobody reads is a
:class:`ConfigError` naming the key and the nearest key that exists.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config key or value is not allowed (the message names the key, the value and the fix)."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One config key: its default, what it means, and what values it accepts."""

    default: Any
    doc: str = ""
    choices: tuple | None = None
    check: Callable[[Any], bool] | None = None
    what: str = ""  # what ``check`` requires, for the error message

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or ``None``."""
        if self.choices is not None and value not in self.choices:
            return f"allowed values: {list(self.choices)}"
        if self.check is not None and not self.check(value):
            return f"it must be {self.what or getattr(self.check, 'what', 'valid')}"
        return None


def setting(
    default: Any,
    doc: str = "",
    *,
    choices: tuple | None = None,
    check: Callable[[Any], bool] | None = None,
    what: str = "",
) -> Any:
    """A dataclass field that is also a config key (see the module docstring)."""
    meta = Setting(default, doc, choices, check, what)
    return dataclasses.field(default=default, metadata={"setting": meta})


def settings_of(cls: type) -> dict[str, Setting]:
    """The config keys an hparams dataclass declares, in field order."""
    return {f.name: f.metadata["setting"] for f in dataclasses.fields(cls) if "setting" in f.metadata}


def group_of(settings: type | Mapping[str, Setting]) -> ml_collections.ConfigDict:
    """A config group holding every declared key at its default."""
    table = settings_of(settings) if isinstance(settings, type) else settings
    return ml_collections.ConfigDict({name: s.default for name, s in table.items()})


def values_of(group: Any, cls: type) -> dict[str, Any]:
    """The hparams keyword arguments a (validated) group gives ``cls``; sequences become tuples."""
    return {
        name: tuple(group[name]) if isinstance(group[name], (list, tuple)) else group[name]
        for name in settings_of(cls)
    }


def check_group(group: Any, settings: Mapping[str, Setting], prefix: str) -> None:
    """Every value of ``group`` that ``settings`` declares is allowed; raises :class:`ConfigError`."""
    for name, s in settings.items():
        if name in group:
            why = s.problem(group[name])
            if why:
                raise ConfigError(f"config key '{prefix}.{name}' has value {group[name]!r}; {why}")


def check_fields(instance: Any, cls: type) -> None:
    """The :func:`setting` fields of a (directly built) hparams ``instance`` hold allowed values; raises
    ``ValueError`` naming the field, the value and what is allowed."""
    for name, s in settings_of(cls).items():
        why = s.problem(getattr(instance, name))
        if why:
            raise ValueError(f"{type(instance).__name__}.{name} = {getattr(instance, name)!r}: {why}")


# ----------------------------------------------------------------------------- keys and types

_GROUP = object()


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"group.key": value}`` for every key, groups marked."""
    out: dict[str, Any] = {}
    items = cfg.items() if isinstance(cfg, (ml_collections.ConfigDict, Mapping)) else []
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, Mapping)):
            out[path] = _GROUP
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def leaf_values(cfg: Any) -> dict[str, Any]:
    """``{"group.key": value}`` for every key that holds a value (groups left out)."""
    return {k: v for k, v in flatten(cfg).items() if v is not _GROUP}


def _type_ok(value: Any, reference: Any) -> bool:
    if reference is None or value is None:
        return True
    if isinstance(reference, bool):
        return isinstance(value, bool)
    if isinstance(reference, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(reference, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(reference, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(reference))


def nearest_key(path: str, schema: Mapping[str, Any]) -> str | None:
    """The existing key most like ``path``: the same last part in another group, else the closest spelling
    of the whole path, else of its last part."""
    keys = [p for p, v in schema.items() if v is not _GROUP]
    leaf = path.rsplit(".", 1)[-1]
    same_leaf = [p for p in keys if p.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return same_leaf[0]
    close = difflib.get_close_matches(path, keys, n=1, cutoff=0.8)
    if close:
        return close[0]
    leaves = {p.rsplit(".", 1)[-1]: p for p in reversed(keys)}
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.7)
    return leaves[close[0]] if close else None


def set_keys(config: ml_collections.ConfigDict, overrides: Mapping[str, Any], origin: str = "override"):
    """Set ``{"group.key": value}`` on ``config`` as ``--config.group.key=value`` would, and return it.

    Raises:
      ConfigError for a key the config lacks (naming the nearest one) or a value the key cannot hold;
      ``origin`` says where the override came from (e.g. ``--set``).
    """
    schema = flatten(config)
    for path, value in overrides.items():
        if path not in schema:
            near = nearest_key(path, schema)
            hint = f"; did you mean '{near}'?" if near else ""
            raise ConfigError(f"{origin}: config key '{path}' does not exist for {config.method}{hint}")
        *groups, key = path.split(".")
        target = config
        for group in groups:
            target = target[group]
        try:
            target[key] = value
        except TypeError as err:
            raise ConfigError(f"{origin}: config key '{path}' = {value!r}: {err}") from None
    return config


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict, owner: str) -> None:
    """``config`` has exactly the keys of ``reference`` (the schema of ``owner``, e.g. "method 'lebm'"),
    each with a value of the reference's type.

    Raises:
      ConfigError naming the offending key, its value and the fix (for an unknown key: the nearest key
      that exists, and the keys of its group).
    """
    given, schema = flatten(config), flatten(reference)
    for path, value in given.items():
        if path not in schema:
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            siblings = sorted(
                p.rsplit(".", 1)[-1] for p in schema if (p.rsplit(".", 1)[0] if "." in p else "") == parent
            )
            near = nearest_key(path, schema)
            hint = f"; did you mean '{near}'?" if near else ""
            where = (
                f"keys of group '{parent}': {siblings}"
                if parent in schema
                else f"{owner} has no group '{parent}'"
                if parent
                else f"top-level keys: {siblings}"
            )
            raise ConfigError(f"config key '{path}' is not read by {owner}{hint} ({where})")
        ref = schema[path]
        if (ref is _GROUP) != (value is _GROUP):
            raise ConfigError(f"config key '{path}' must be {'a group' if ref is _GROUP else 'a value'}")
        if ref is not _GROUP and not _type_ok(value, ref):
            raise ConfigError(
                f"config key '{path}' has value {value!r} of type {type(value).__name__}; "
                f"expected {type(ref).__name__}"
            )
    for path in schema:
        if path not in given:
            raise ConfigError(f"config key '{path}' is missing ({owner} reads it)")


@dataclasses.dataclass(frozen=True)
class Check:
    """A value test with the words an error message uses for it (``what``)."""

    test: Callable[[Any], bool]
    what: str

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))


positive = Check(lambda x: x > 0, "positive")
positive_int = Check(lambda x: x > 0, "a positive integer")
non_negative = Check(lambda x: x >= 0, "non-negative")
non_negative_int = Check(lambda x: x >= 0, "a non-negative integer")
unit_interval = Check(lambda x: 0 <= x < 1, "in [0, 1)")  # Adam betas, dropout rates
positive_ints = Check(lambda x: all(isinstance(v, int) and v > 0 for v in x), "a tuple of positive integers")
latent_layers = Check(
    lambda x: len(x) >= 2 and positive_ints(x), "a tuple of at least 2 positive integers (bottom layer first)"
)
