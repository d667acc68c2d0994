"""Append-only JSON-lines metrics (``metrics.jsonl``) and atomic JSON files (``summary.json``)."""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

log = logging.getLogger("latentebm_jax.training")


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class MetricsWriter:
    """Writes one JSON object per line; every record carries its ``step``."""

    def __init__(self, path: str, enabled: bool = True):
        self.path = path
        self.enabled = enabled
        if enabled:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run replays the steps after its checkpoint)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            for record in kept:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, self.path)

    def write(self, step: int, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), **_plain(record)}) + "\n")


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_plain(data), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class MetricsFileError(ValueError):
    """A ``metrics.jsonl`` line other than the last one is not JSON."""


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl``. A partial last line (a write cut short, e.g. by a full disk) is
    dropped with a warning; a broken line before it is a :class:`MetricsFileError` naming the line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                log.warning("dropping the partial last line of %s (a write that was cut short)", path)
                break
            raise MetricsFileError(
                f"line {i + 1} of {path} is not JSON ({err.msg}); remove or repair that line"
            ) from err
    return records
