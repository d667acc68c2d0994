"""Config validation before anything compiles: unknown keys and bad values fail with a message naming both."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config key or value is not allowed."""


def _flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    items = cfg.items() if isinstance(cfg, (ml_collections.ConfigDict, Mapping)) else []
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, Mapping)):
            out[path] = _GROUP
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


_GROUP = object()


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


def validate_config(
    config: ml_collections.ConfigDict,
    reference: ml_collections.ConfigDict,
    choices: Mapping[str, tuple] | None = None,
    checks: Mapping[str, tuple[Callable[[Any], bool], str]] | None = None,
) -> None:
    """Check ``config`` against ``reference`` (the schema: every allowed key with a value of its type).

    Args:
      choices: ``{"group.key": allowed values}``.
      checks: ``{"group.key": (predicate, "what it must be")}``.

    Raises:
      ConfigError naming the offending key, its value and what is allowed.
    """
    given, schema = _flatten(config), _flatten(reference)
    for path, value in given.items():
        if path not in schema:
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            siblings = sorted(
                p.rsplit(".", 1)[-1] for p in schema if (p.rsplit(".", 1)[0] if "." in p else "") == parent
            )
            where = f"group '{parent}'" if parent else "the top level"
            raise ConfigError(f"unknown config key '{path}'; allowed keys in {where}: {siblings}")
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
            raise ConfigError(f"config key '{path}' is missing")
    for path, allowed in (choices or {}).items():
        if path in given and given[path] not in allowed:
            raise ConfigError(
                f"config key '{path}' has value {given[path]!r}; allowed values: {list(allowed)}"
            )
    for path, (ok, what) in (checks or {}).items():
        if path in given and not ok(given[path]):
            raise ConfigError(f"config key '{path}' has value {given[path]!r}; it must be {what}")
