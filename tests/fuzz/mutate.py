"""Hypothesis strategies that start from real message samples and break them.

A mutated message is a real sample (a dYdX fixture, or a hand-written Binance payload) with a
few structural changes (a field dropped, renamed, given the wrong type, an absurd string, deep
nesting, a list blown up) or with its numbers made huge, tiny, non-finite or not numbers at all
(`number_storm`), and then, sometimes, a byte-level change
(truncated, invalid UTF-8, a byte flipped), so both the decoders and the code behind them see
input that is almost right, which is where parsers break.

Budgets: `fuzz_settings(n)` runs n examples under `make test` and 100 x n under
`HYPOTHESIS_PROFILE=fuzz-long` (`make fuzz`).
"""

from __future__ import annotations

import copy
import json
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SHARED = Path(__file__).resolve().parents[3] / "shared"
DYDX_FIXTURES = SHARED / "fixtures" / "dydx"

LONG_PROFILE = "fuzz-long"
LONG_FACTOR = 100


def fuzz_settings(examples: int) -> settings:
    """A fixed, small budget for `make test`; 100 x under HYPOTHESIS_PROFILE=fuzz-long."""
    factor = LONG_FACTOR if os.environ.get("HYPOTHESIS_PROFILE") == LONG_PROFILE else 1
    return settings(
        max_examples=examples * factor, deadline=None, derandomize=factor == 1,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
        database=None,
    )


# ---- seeds -----------------------------------------------------------------------------------


def load_json_dir(folder: Path) -> dict[str, Any]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def batch_of(frame: dict[str, Any]) -> dict[str, Any] | None:
    """The `channel_batch_data` form of a `channel_data` frame (its contents as a list)."""
    if frame.get("type") != "channel_data":
        return None
    return {**frame, "type": "channel_batch_data", "contents": [frame["contents"], frame["contents"]]}


# ---- values that break parsers ---------------------------------------------------------------

NASTY_STRINGS = [
    "", " ", "NaN", "nan", "-nan", "sNaN", "Infinity", "-Infinity", "inf", "-inf",
    "1e999999999", "-1e999999999", "1E-999999999", "1e+1000000000000000000", "0E-1000", "-0",
    "1_000", "0x10", "12a", " 1", "1.2.3", "--1", "+", ".", "1e", "²", "١٢٣", "߁", "¹²",
    "9" * 400, "1" + "0" * 5000, "0." + "0" * 5000 + "1",
    "2024-13-45T25:61:61Z", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59",
    "0000-00-00T00:00:00Z", "2024-07-24T19:12:35.705Z", "2024-07-24", "T", "Z",
    "BUY", "SELL", "buy", "OPEN", "FILLED", "CANCELED", "MAKER", "BTC-USD", "ETH-USD",
    "\x00", "\u202e", "\ud800", "\uffff", "x" * 20_000,
]
HUGE_INTS = [2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 10**400, -1, 0]
DEEP = "\x00deep\x00"  # replaced by nested brackets after json.dumps (too deep for the encoder)
NAN_TOKENS = ["\x00NaN\x00", "\x00Infinity\x00", "\x00-Infinity\x00"]  # bare tokens (not JSON)

scalars = (st.none() | st.booleans() | st.integers() | st.sampled_from(HUGE_INTS)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
           | st.sampled_from(NASTY_STRINGS) | st.sampled_from(NAN_TOKENS))
wrong_values = (scalars | st.lists(scalars, max_size=3)
                | st.dictionaries(st.text(max_size=6), scalars, max_size=3) | st.just(DEEP))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    # Long lists and maps (100 book levels, 125 markets): their first entries stand for the rest.
    if isinstance(value, dict):
        for k in list(value)[:8]:
            out.extend(_paths(value[k], (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value[:8]):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        root = root[part]
    return root


@st.composite
def mutated_tree(draw: st.DrawFn, seed: Any) -> Any:
    """A deep copy of `seed` with 0-3 structural mutations."""
    tree = copy.deepcopy(seed)
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(tree)
        op = draw(st.sampled_from(["nasty", "nasty", "replace", "drop", "rename", "wrap", "blow_up"]))
        if op == "nasty":  # a leaf (a number or a decimal string, mostly) becomes an absurd string
            leaves = [p for p in paths if p and not isinstance(_get(tree, p), dict | list)] or paths
            path = draw(st.sampled_from(leaves))
        else:
            path = draw(st.sampled_from(paths))
        if not path:  # the root itself
            if op in ("replace", "nasty", "wrap"):
                tree = draw(wrong_values) if op == "replace" else [tree]
            continue
        parent, key = _get(tree, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = draw(wrong_values)
        elif op == "nasty":
            parent[key] = draw(st.sampled_from(NASTY_STRINGS))
        elif op == "drop":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from([str(key).upper(), f"{key}_", "", "type", "id"]))] = parent.pop(key)
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}]))
        elif op == "blow_up":  # a long list; short when the item is itself big
            big = isinstance(parent[key], dict | list)
            parent[key] = [parent[key]] * draw(st.sampled_from([0, 2, 50] if big else [0, 2, 1000, 20_000]))
    return tree


NASTY_NUMBERS = [
    "NaN", "-Infinity", "inf", "1e999999999", "-1e999999999", "1E-999999999", "1e+1000000000000000000",
    "0E-1000", "-0", "0", "-1", "1e30", "1e31", "-1e31", "1e-31", "²", "١٢٣", "1_0", " 1", "", "1" * 400,
]
EXPONENTS = [-(10**12), -999_999, -31, 31, 999_999, 10**6, 10**12]  # around Decimal's emax and our bounds
numbers = (st.sampled_from(NASTY_NUMBERS)
           | st.builds("{}E{}".format, st.integers(-(10**6), 10**6),
                       st.sampled_from(EXPONENTS) | st.integers())
           | st.integers().map(str) | st.decimals(allow_nan=True, allow_infinity=True).map(str))


def _is_decimal_text(value: Any) -> bool:
    try:
        Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return False
    return isinstance(value, str)


@st.composite
def number_storm(draw: st.DrawFn, seed: Any) -> Any:
    """`seed` with some of its decimal strings and integers replaced by absurd numbers."""
    tree = copy.deepcopy(seed)
    for path in _paths(tree):
        if not path:
            continue
        parent, key = _get(tree, path[:-1]), path[-1]
        value = parent[key]
        if _is_decimal_text(value) and draw(st.integers(0, 3)) == 0:
            parent[key] = draw(numbers)
        elif type(value) is int and draw(st.integers(0, 9)) == 0:
            parent[key] = draw(st.sampled_from(HUGE_INTS) | st.integers())
    return tree


def dumps(tree: Any, depth: int) -> bytes:
    text = json.dumps(tree, separators=(",", ":"))
    text = text.replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    for token in NAN_TOKENS:
        text = text.replace(json.dumps(token), token.strip("\x00"))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated_bytes(draw: st.DrawFn, seeds: list[Any]) -> bytes:
    """A seed, mutated structurally, serialised, then maybe damaged byte-wise."""
    seed = draw(st.sampled_from(seeds))
    tree = draw(mutated_tree(seed) | number_storm(seed))
    raw = dumps(tree, draw(st.sampled_from([3, 600, 5000, 100_000])))
    op = draw(st.sampled_from(["none"] * 8 + ["truncate", "bad_utf8", "flip", "garbage"]))
    if not raw or op == "none":
        return raw
    at = draw(st.integers(0, len(raw) - 1))
    if op == "truncate":
        return raw[:at]
    if op == "bad_utf8":
        quote = raw.find(b'"', at)
        at = quote + 1 if quote >= 0 else at
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]))
        return raw[:at] + bad + raw[at:]
    if op == "flip":
        return raw[:at] + bytes([raw[at] ^ (1 << draw(st.integers(0, 7)))]) + raw[at + 1:]
    return draw(st.binary(max_size=64))
