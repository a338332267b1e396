"""The configuration reference, generated from the schema: `python -m tripline.conf.reference`.

docs/configuration.md is this module's output; a test fails when the two differ, so the
reference cannot fall behind the schema.
"""

from __future__ import annotations

import dataclasses
import sys
import tomllib
from importlib import resources
from typing import Any

from tripline.conf.schema import _SECTIONS, ENV_PREFIX

_SHIPPED: dict[str, dict[str, Any]] = tomllib.loads(
    resources.files("tripline.conf").joinpath("default.toml").read_text("utf-8")
)

HEADER = """\
# Configuration reference

Generated from `conf/schema.py` by `python -m tripline.conf.reference > docs/configuration.md`;
do not edit by hand. `conf/default.toml` holds every default; `tripline run --config FILE` overrides
it; environment variables `TRIPLINE__SECTION__KEY` override both (values parse as TOML
literals, e.g. `TRIPLINE__DIALER__PENDING_SECONDS='{ low = 60 }'`). Secrets are accepted only
from the environment. `tripline check-config FILE` prints every problem at once.
"""


def _default(section: str, f: dataclasses.Field[Any]) -> str:
    """The default as conf/default.toml sets it (the schema's own default where it does not)."""
    if f.metadata.get("secret"):
        return "(secret: environment only)"
    shipped = _SHIPPED.get(section, {})
    if f.name in shipped:
        value: Any = shipped[f.name]
    elif f.default is not dataclasses.MISSING:
        value = f.default
    else:
        value = f.default_factory()  # type: ignore[operator]  # every field has one or the other
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _rules(meta: Any) -> str:  # noqa: ANN401
    parts = []
    if "min" in meta:
        parts.append(f"≥ {meta['min']}")
    if "max" in meta:
        parts.append(f"≤ {meta['max']}")
    if "choices" in meta:
        parts.append("one of " + ", ".join(f"`{c}`" for c in meta["choices"]))
    if "keys" in meta:
        parts.append("keys: " + ", ".join(f"`{c}`" for c in meta["keys"]))
    if "values" in meta:
        parts.append("values: " + ", ".join(f"`{c}`" for c in meta["values"]))
    return "; ".join(parts)


def render() -> str:
    """The whole reference as Markdown."""
    out = [HEADER]
    for name, cls in _SECTIONS.items():
        out.append(f"\n## [{name}]\n\n{(cls.__doc__ or '').strip()}\n")
        out.append("| key | default | allowed | environment variable | meaning |")
        out.append("|---|---|---|---|---|")
        for f in dataclasses.fields(cls):
            env = f"`{ENV_PREFIX}{name.upper()}__{f.name.upper()}`"
            doc = f.metadata.get("doc", "").replace("|", "\\|")
            rules = _rules(f.metadata).replace("|", "\\|")
            default = _default(name, f).replace("|", "\\|")
            out.append(f"| `{f.name}` | {default} | {rules} | {env} | {doc} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
