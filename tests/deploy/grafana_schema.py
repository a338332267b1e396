"""A Grafana dashboard checked against Grafana's schema, without a Grafana to load it into.

The schema is Grafana's own (its CUE kinds), as the types its foundation SDK generates from it:
decoding the dashboard into those types and encoding it back loses every key the schema does
not know, and the decoded values are checked against the types' annotations.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.deploy.dashboard_checks import panels


def schema_problems(doc: dict[str, Any]) -> list[str]:
    """What Grafana's schema does not accept in a dashboard: unknown keys, wrong types."""
    plugins.register_default_plugins()
    try:
        model = Dashboard.from_json(doc)
    except (TypeError, AttributeError, KeyError, ValueError) as error:
        return [f"not decodable as a dashboard: {error!r}"]
    back = json.loads(JSONEncoder().encode(model))
    problems = _lost(doc, back, "")
    problems += _mistyped(model, "")
    known = set(runtime.Runtime().panelcfg_variants) | {"row"}
    problems += [
        f"panel {p.get('id')}: type {p.get('type')!r} is not a panel Grafana knows"
        for p in panels(doc)
        if p.get("type") not in known
    ]
    return problems


def _lost(original: Any, back: Any, path: str) -> list[str]:
    """Keys of `original` the round trip dropped or changed (defaults it added are fine)."""
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [f"{path}: not an object"]
        problems = []
        for key, value in original.items():
            if key in back:
                problems += _lost(value, back[key], f"{path}.{key}")
            else:
                problems.append(f"{path}.{key}: not in the schema")
        return problems
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [f"{path}: the list did not survive"]
        return [
            p
            for i, (a, b) in enumerate(zip(original, back, strict=True))
            for p in _lost(a, b, f"{path}[{i}]")
        ]
    return [] if original == back else [f"{path}: {original!r} came back as {back!r}"]


def _model(value: object) -> bool:
    return type(value).__module__.startswith("grafana_foundation_sdk.")


def _mistyped(obj: object, path: str) -> list[str]:
    """Each attribute of a decoded SDK object against its type annotation, recursively."""
    problems = []
    for name, hint in typing.get_type_hints(type(obj)).items():
        if hasattr(obj, name):
            problems += _wrong(getattr(obj, name), hint, f"{path}.{name}")
    return problems


def _wrong(value: Any, hint: Any, path: str) -> list[str]:  # noqa: PLR0911 - one per shape
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return _mistyped(value, path) if _model(value) else []
    if origin in (typing.Union, types.UnionType):
        tries = [_wrong(value, a, path) for a in args]
        if any(not t for t in tries):
            return []
        # The one alternative of the value's shape tells what is wrong inside it.
        shaped = [
            t
            for a, t in zip(args, tries, strict=True)
            if isinstance(value, typing.get_origin(a) or a)
        ]
        return shaped[0] if len(shaped) == 1 else [f"{path}: {repr(value)[:60]} is not {hint}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {value!r} is not a list"]
        return [p for i, v in enumerate(value) for p in _wrong(v, args[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {value!r} is not an object"]
        return [p for k, v in value.items() for p in _wrong(v, args[1], f"{path}.{k}")]
    return _wrong_leaf(value, hint, path)


def _wrong_leaf(value: Any, hint: Any, path: str) -> list[str]:
    if hint is type(None):
        return [] if value is None else [f"{path}: {value!r} is not null"]
    if typing.get_origin(hint) is typing.Literal:
        args = typing.get_args(hint)
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        ok = isinstance(value, hint) or value in {m.value for m in hint}
        return [] if ok else [f"{path}: {value!r} is not one of {[m.value for m in hint]}"]
    if hint in (bool, int, float, str):
        return [] if _scalar(value, hint) else [f"{path}: {value!r} is not a {hint.__name__}"]
    if isinstance(hint, type):
        if isinstance(value, dict) and hasattr(hint, "from_json"):
            value = hint.from_json(value)  # its parent left it undecoded (transformations)
        if not isinstance(value, hint):
            return [f"{path}: {type(value).__name__} is not {hint.__name__}"]
        return _mistyped(value, path)
    raise AssertionError(f"{path}: no check for the type {hint!r}")


def _scalar(value: Any, hint: type) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # a bool is an int to Python, not to JSON
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)
