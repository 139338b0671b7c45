"""The `[optimize]` section of a config file: the search space and how trials are scored.

```toml
[optimize]
objective = "return_over_drawdown"   # or return, sharpe, sortino
turnover_penalty = 0.01              # score -= penalty * turnover (traded notional / equity)
walk = "rolling"                     # or anchored (train on everything before the test window)

[optimize.space]
"strategy.target_vol_annual" = { low = 0.2, high = 1.0 }
"strategy.carry.entry_threshold_bps" = { low = 5, high = 40, step = 5 }
"rules.vol_max_annual" = { low = 0.5, high = 3.0, log = true }
"execution.urgency" = { choices = ["low", "high"] }
```

Every other key of the file is the daemon's config (the base every trial starts from); a trial's
parameters are set on that base by dotted name and validated by the same `config.load`, so a
name that is not a setting, or a range the setting refuses, fails before any trial runs.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import SECRET_FIELDS, Settings, load
from bot.errors import ConfigError

OBJECTIVES = ("return_over_drawdown", "return", "sharpe", "sortino")
WALKS = ("rolling", "anchored")
Value = int | float | str | bool


class SpecError(ValueError):
    """Bad optimize input; `key` names the config key or CLI option."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Param:
    """One searched setting: an int or float range, or a list of choices."""

    name: str
    kind: str  # "int", "float" or "choice"
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Value, ...] = ()

    def probes(self) -> list[Value]:
        """Values that must all be valid settings: the ends of a range, or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


@dataclass(frozen=True)
class OptimizeSpec:
    space: tuple[Param, ...]
    objective: str = "return_over_drawdown"
    turnover_penalty: float = 0.01
    min_drawdown: float = 0.01  # floor under max drawdown in return_over_drawdown
    walk: str = "rolling"
    divergence_warn: float = 0.5  # warn when out-of-sample score falls this share below in-sample

    def describe(self) -> dict[str, Any]:
        return {"objective": self.objective, "turnover_penalty": self.turnover_penalty,
                "min_drawdown": self.min_drawdown, "walk": self.walk,
                "divergence_warn": self.divergence_warn,
                "space": {p.name: _param_json(p) for p in self.space}}


def _param_json(p: Param) -> dict[str, Any]:
    if p.kind == "choice":
        return {"choices": list(p.choices)}
    out: dict[str, Any] = {"low": p.low, "high": p.high}
    if p.step is not None:
        out["step"] = p.step
    if p.log:
        out["log"] = True
    return out


def read_config(path: Path) -> tuple[dict[str, Any], OptimizeSpec]:
    """The daemon config (without `[optimize]`) as raw TOML data, and the parsed search spec."""
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise SpecError("--config", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError("--config", f"invalid TOML in {path}: {exc}") from None
    except OSError as exc:
        raise SpecError("--config", f"cannot read {path}: {exc.strerror}") from None
    for name in SECRET_FIELDS:
        if name in raw:
            raise SpecError(name, f"secrets come from the environment only (PERPBOT_{name.upper()})")
    section = raw.pop("optimize", None)
    if not isinstance(section, dict):
        raise SpecError("optimize", "the config has no [optimize] section with a [optimize.space]")
    return raw, parse_spec(section)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(key, f"must be a number (got {value!r})")
    return value


def parse_spec(section: dict[str, Any]) -> OptimizeSpec:
    known = {"space", "objective", "turnover_penalty", "min_drawdown", "walk", "divergence_warn"}
    for key in section:
        if key not in known:
            raise SpecError(f"optimize.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    objective = section.get("objective", "return_over_drawdown")
    if objective not in OBJECTIVES:
        raise SpecError("optimize.objective", f"must be one of {', '.join(OBJECTIVES)} (got {objective!r})")
    walk = section.get("walk", "rolling")
    if walk not in WALKS:
        raise SpecError("optimize.walk", f"must be rolling or anchored (got {walk!r})")
    numbers = {}
    for key, default, low in (("turnover_penalty", 0.01, 0.0), ("min_drawdown", 0.01, 1e-9),
                              ("divergence_warn", 0.5, 0.0)):
        value = _number(f"optimize.{key}", section.get(key, default))
        if value < low:
            raise SpecError(f"optimize.{key}", f"must be >= {low} (got {value!r})")
        numbers[key] = float(value)
    space = section.get("space")
    if not isinstance(space, dict) or not space:
        raise SpecError("optimize.space", "needs at least one setting, e.g. "
                        "\"strategy.target_vol_annual\" = { low = 0.2, high = 1.0 }")
    params = tuple(_param(name, spec) for name, spec in space.items())
    return OptimizeSpec(params, objective, walk=walk, **numbers)


def _param(name: str, spec: Any) -> Param:
    key = f"optimize.space.{name}"
    if name.split(".")[0] in SECRET_FIELDS:
        raise SpecError(key, "secrets are not searchable")
    if not isinstance(spec, dict):
        raise SpecError(key, "must be a table like { low = 1, high = 5 } or { choices = [...] }")
    extra = set(spec) - {"low", "high", "step", "log", "choices"}
    if extra:
        raise SpecError(f"{key}.{sorted(extra)[0]}", "unknown key (known: low, high, step, log, choices)")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise SpecError(key, "choices cannot be combined with low/high/step/log")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpecError(f"{key}.choices", "must be a non-empty list")
        if any(not isinstance(c, int | float | str | bool) for c in choices):
            raise SpecError(f"{key}.choices", "must hold numbers, strings or booleans")
        if len(set(map(repr, choices))) != len(choices):
            raise SpecError(f"{key}.choices", "lists a value twice")
        return Param(name, "choice", choices=tuple(choices))
    for part in ("low", "high"):
        if part not in spec:
            raise SpecError(f"{key}.{part}", "is required (or give choices)")
    low, high = _number(f"{key}.low", spec["low"]), _number(f"{key}.high", spec["high"])
    if low >= high:
        raise SpecError(f"{key}.high", f"must be above low ({low!r})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(f"{key}.log", f"must be true or false (got {log!r})")
    if log and low <= 0:
        raise SpecError(f"{key}.low", "must be > 0 with log = true")
    step = spec.get("step")
    if step is not None:
        step = _number(f"{key}.step", step)
        if step <= 0 or step > high - low:
            raise SpecError(f"{key}.step", f"must be > 0 and at most high - low (got {step!r})")
        if log:
            raise SpecError(f"{key}.step", "cannot be combined with log = true")
    is_int = all(isinstance(v, int) for v in (spec["low"], spec["high"], spec.get("step", 1)))
    return Param(name, "int" if is_int else "float", low, high, step, log)


# ---- parameters -> settings ------------------------------------------------------------------


def with_params(base: dict[str, Any], params: dict[str, Value]) -> dict[str, Any]:
    """The raw config with each dotted name set to its value (the base is not changed)."""
    data = copy.deepcopy(base)
    for name, value in params.items():
        node = data
        *parents, leaf = name.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(f"optimize.space.{name}", f"{part!r} is a value, not a section")
            node = child
        node[leaf] = value
    return data


def settings_for(base: dict[str, Any], params: dict[str, Value]) -> Settings:
    """Validated settings for one trial (ConfigError names the offending setting)."""
    return load(None, **with_params(base, params))


def setting_value(settings: Settings, name: str) -> Any:
    node: Any = settings
    for part in name.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def check_space(base: dict[str, Any], spec: OptimizeSpec) -> Settings:
    """Fail before any trial when a searched name or value is not a valid setting; return the base."""
    try:
        settings = load(None, **copy.deepcopy(base))
    except ConfigError as exc:
        raise SpecError(exc.key, exc.reason) from None
    for param in spec.space:
        key = f"optimize.space.{param.name}"
        for value in param.probes():
            try:
                trial = settings_for(base, {param.name: value})
            except ConfigError as exc:
                reason = "not a setting" if exc.reason == "unknown key" else exc.reason
                raise SpecError(key, f"{value!r}: {reason}") from None
            try:
                got = setting_value(trial, param.name)
            except (AttributeError, KeyError, TypeError):
                raise SpecError(key, "not a setting") from None
            if not _same(got, value):
                raise SpecError(key, f"set to {value!r} but the setting reads {got!r} "
                                "(a PERPBOT_* environment variable overrides it?)")
    return settings


def _same(got: Any, value: Value) -> bool:
    if isinstance(value, bool) or isinstance(value, str):
        return str(got).lower() == str(value).lower() if isinstance(got, bool) else got == value
    try:
        return math.isclose(float(got), float(value), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False
