"""JSON that every parser takes: strict JSON has no NaN or Infinity, which Python's json module writes by default
(an evaluation of identical files has an infinite PSNR; a band's nodata may be NaN)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable


def json_safe(value: Any, non_finite: Callable[[float], Any] = str) -> Any:
    """A copy with only JSON types: numpy scalars as Python numbers, tuples as lists, paths as strings, and each
    non-finite float as `non_finite(value)` ("nan", "inf", "-inf" by default: as .sarz headers write them)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v, non_finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, non_finite) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # a numpy array: its elements
        return json_safe(value.tolist(), non_finite)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite(value)
    return value


def dumps(value: Any, non_finite: Callable[[float], Any] = str, indent: int = 2) -> str:
    """Strict, indented, sorted JSON of `value` (json_safe's strings for non-finite numbers by default)."""
    return json.dumps(json_safe(value, non_finite), indent=indent, sort_keys=True, allow_nan=False, default=str)


def null(value: float) -> None:
    """Non-finite numbers as null (the benchmark's JSON files)."""
    return None


def write_json(value: Any, path: Path, non_finite: Callable[[float], Any] = str, indent: int = 1) -> Path:
    """`value` as `dumps` writes it, in the file `path`; the path."""
    path.write_text(dumps(value, non_finite, indent) + "\n", encoding="utf-8")
    return path
