"""Compare a JSON value's shape (keys and JSON types, recursively) against real venue samples.

`learn(*samples)` folds one or more real samples into a `Shape`: per object the keys seen and
which of them every sample had, per array the merged element shape, per scalar the set of kinds.
`mismatches(ours, shape)` lists every place where our value differs:

* a key the samples always carried is missing (unless listed in `optional`);
* a key no sample carried is present (unless listed in `extra`);
* a kind differs: "object", "array", "bool", "int", "number", "null", and three string kinds:
  "decimal" ("-12.5", the venue's numeric strings, no exponent), "iso" (ISO-8601 UTC timestamps)
  and "string". A sample that only ever held decimal strings requires a decimal string.

Tolerances: a key that is null in a sample accepts any kind (the venue leaves it empty at times);
a key missing from some samples is optional; list lengths are ignored (an empty sample list
accepts any items); int and float count as the same JSON "number" unless the samples only had
ints. Objects keyed by data (tickers, asset symbols) are named in `map_keys`: their values are
folded into one shape and their keys are not compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAP_KEYS = frozenset({"markets", "openPerpetualPositions", "assetPositions", "oraclePrices",
                              "trading"})
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


@dataclass
class Shape:
    kinds: set[str] = field(default_factory=set)
    keys: dict[str, Shape] = field(default_factory=dict)
    seen_in: dict[str, int] = field(default_factory=dict)  # key -> number of objects carrying it
    objects: int = 0
    items: Shape | None = None  # merged element shape of arrays (None: only empty arrays seen)
    map_values: Shape | None = None  # for objects keyed by data


def kind_of(value: Any) -> str:
    """The comparator's kind of one JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        if _DECIMAL.fullmatch(value):
            return "decimal"
        if _ISO.fullmatch(value):
            return "iso"
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def learn(*samples: Any, map_keys: frozenset[str] = DEFAULT_MAP_KEYS) -> Shape:
    """Fold real samples of the same message into one Shape."""
    shape = Shape()
    for sample in samples:
        _fold(shape, sample, None, map_keys)
    return shape


def _fold(shape: Shape, value: Any, key: str | None, map_keys: frozenset[str]) -> None:
    kind = kind_of(value)
    shape.kinds.add(kind)
    if kind == "array":
        for item in value:
            shape.items = shape.items or Shape()
            _fold(shape.items, item, None, map_keys)
    elif kind == "object" and key in map_keys:
        for item in value.values():
            shape.map_values = shape.map_values or Shape()
            _fold(shape.map_values, item, None, map_keys)
    elif kind == "object":
        shape.objects += 1
        for k, v in value.items():
            shape.seen_in[k] = shape.seen_in.get(k, 0) + 1
            _fold(shape.keys.setdefault(k, Shape()), v, k, map_keys)


def mismatches(ours: Any, shape: Shape, *, extra: frozenset[str] | set[str] = frozenset(),
               optional: frozenset[str] | set[str] = frozenset(), path: str = "$",
               map_keys: frozenset[str] = DEFAULT_MAP_KEYS) -> list[str]:
    """List the differences between our value and the learnt shape (empty: same shape)."""
    return _check(ours, shape, None, path, frozenset(extra), frozenset(optional), map_keys)


def _check(value: Any, shape: Shape, key: str | None, path: str, extra: frozenset[str],
           optional: frozenset[str], map_keys: frozenset[str]) -> list[str]:
    kind = kind_of(value)
    if shape.kinds == {"null"}:
        return []  # the venue left it empty: any value is acceptable
    if not _kind_ok(kind, shape.kinds):
        return [f"{path}: {kind} where the venue sends {'/'.join(sorted(shape.kinds))}"]
    problems: list[str] = []
    if kind == "array":
        if shape.items is not None:
            for i, item in enumerate(value):
                problems += _check(item, shape.items, None, f"{path}[{i}]", extra, optional, map_keys)
    elif kind == "object" and key in map_keys:
        if shape.map_values is not None:
            for k, item in value.items():
                problems += _check(item, shape.map_values, None, f"{path}.{k}", extra, optional, map_keys)
    elif kind == "object":
        for k in shape.keys:
            if k not in value and shape.seen_in[k] == shape.objects and k not in optional:
                problems.append(f"{path}: missing key {k!r}")
        for k, item in value.items():
            sub = shape.keys.get(k)
            if sub is None:
                if k not in extra:
                    problems.append(f"{path}: key {k!r} is not in any venue sample")
                continue
            problems += _check(item, sub, k, f"{path}.{k}", extra, optional, map_keys)
    return problems


def _kind_ok(kind: str, allowed: set[str]) -> bool:
    if kind in allowed:
        return True
    if kind == "null":
        return False
    if kind == "int" and "number" in allowed:
        return True
    if kind == "number" and "int" in allowed:
        return True  # epoch seconds are sometimes whole ("epoch": 1753767908)
    # a free-text sample field accepts any string; decimal/iso samples require that format
    return kind in ("decimal", "iso") and "string" in allowed
