"""The configuration reference (docs/CONFIG.md), generated from the pydantic schema of ``RunConfig``
so it cannot drift from the code: ``python -m tgd.config_reference > docs/CONFIG.md``; a test fails
when the file is stale."""
from __future__ import annotations

import json
import typing

from pydantic import BaseModel

from tgd.config import RunConfig

HEADER = """# Configuration reference

Generated from the pydantic schema (`tgd/config.py`) by `python -m tgd.config_reference > docs/CONFIG.md`;
do not edit by hand. Every key is optional: a run config (YAML) sets only what differs from these
defaults, and `--set section.key=value` overrides any of them on the command line. `tgd config CONFIG`
prints a config with every default filled in.
"""


def _section_model(annotation) -> type[BaseModel] | None:
    """The BaseModel a field holds (directly or as ``X | None``), if any."""
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _type(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("|", "\\|")


def _default(field) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value, default=str)}`"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _sections(model: type[BaseModel], prefix: str) -> list[tuple[str, type[BaseModel]]]:
    """(dotted name, model) of every nested section under ``model``, depth first."""
    out: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        sub = _section_model(field.annotation)
        if sub is not None:
            out.append((f"{prefix}{name}", sub))
            out += _sections(sub, f"{prefix}{name}.")
    return out


def render() -> str:
    lines = [HEADER]
    top = [(n, f) for n, f in RunConfig.model_fields.items() if _section_model(f.annotation) is None]
    lines += ["## Top level", "", "| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| `{n}` | {_type(f.annotation)} | {_default(f)} | {_cell(f.description)} |" for n, f in top]
    for name, model in _sections(RunConfig, ""):
        lines += ["", f"## `{name}`", "", _cell(model.__doc__), "",
                  "| key | type | default | description |", "|---|---|---|---|"]
        for key, field in model.model_fields.items():
            if _section_model(field.annotation) is not None:
                desc = f"section: see `{name}.{key}` below. {_cell(field.description)}".strip()
                lines.append(f"| `{name}.{key}` | section | | {desc} |")
            else:
                lines.append(f"| `{name}.{key}` | {_type(field.annotation)} | {_default(field)} | "
                             f"{_cell(field.description)} |")
    return "\n".join(lines) + "\n"


def all_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, sections included."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        sub = _section_model(field.annotation)
        if sub is not None:
            keys += all_keys(sub, f"{prefix}{name}.")
    return keys


if __name__ == "__main__":
    print(render(), end="")
