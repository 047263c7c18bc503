"""The configuration reference (docs/CONFIG.md), generated from the pydantic schema of ``RunConfig``
so it cannot drift from the code: ``python -m tgd.config_reference > docs/CONFIG.md``; a test fails
when the file is stale."""
from __future__ import annotations

import json
import re
import typing

from pydantic import BaseModel

from tgd.config import TASK_DEFAULTED, RunConfig
from tgd.tasks import SPECS

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


def _entry_models(annotation) -> tuple[str, list[type[BaseModel]]] | None:
    """A list of a discriminated union of models (``graph.rules``) -> (the key that picks the model,
    the models), else None."""
    if typing.get_origin(annotation) is not list:
        return None
    inner = typing.get_args(annotation)[0]
    if typing.get_origin(inner) is not typing.Annotated:
        return None
    union, *meta = typing.get_args(inner)
    key = next((m.discriminator for m in meta if isinstance(getattr(m, "discriminator", None), str)), None)
    models = [t for t in typing.get_args(union) if isinstance(t, type) and issubclass(t, BaseModel)]
    return (key, models) if key and models else None


def _entry_tables(name: str, annotation) -> list[str]:
    """One table per model a list entry can be (the entry's own keys), under the list's section."""
    key, models = _entry_models(annotation)
    lines = ["", f"### `{name}` entries", "", f"Each entry is a mapping whose `{key}` says which of these it is.", ""]
    for m in models:
        tag = typing.get_args(m.model_fields[key].annotation)[0]
        lines += [f"#### `{key}: {tag}`", "", _cell(m.__doc__), "",
                  "| key | type | default | description |", "|---|---|---|---|"]
        lines += [f"| `{k}` | {_type(f.annotation, f.metadata)} | {_default(f)} | {_cell(f.description)} |"
                  for k, f in m.model_fields.items()]
        lines.append("")
    return lines[:-1]


BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _literal(annotation) -> str | None:
    """``Literal["a", "b"]`` (or ``Literal[...] | None``, ``list[Literal[...]]``) -> "one of `a`, `b`"."""
    if typing.get_origin(annotation) is list:
        inner = _literal(typing.get_args(annotation)[0])
        return f"list, each {inner}" if inner else None
    choices = [c for t in (annotation, *typing.get_args(annotation)) if typing.get_origin(t) is typing.Literal
               for c in typing.get_args(t)]
    if not choices:
        return None
    text = "one of " + ", ".join(f"`{json.dumps(c) if not isinstance(c, str) else c}`" for c in choices)
    return text + (" or `null`" if type(None) in typing.get_args(annotation) else "")


def _type(annotation, metadata=()) -> str:
    """The field's type as the reference shows it: Literal choices spelt out, then any numeric bounds."""
    text = _literal(annotation)
    if text is None and (entries := _entry_models(annotation)):
        key, models = entries
        text = f"list, each entry with `{key}` one of " + ", ".join(
            f"`{typing.get_args(m.model_fields[key].annotation)[0]}`" for m in models) + " (tables below)"
    if text is None:
        text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
        text = text or str(annotation).replace("typing.", "").replace("pathlib.", "")
    bounds = [f"{op} {getattr(m, key)}" for m in metadata for key, op in BOUNDS if getattr(m, key, None) is not None]
    return _cell(text + (f" ({', '.join(bounds)})" if bounds else ""))


def _default(field) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value, default=lambda v: v.model_dump(mode='json') if isinstance(v, BaseModel) else str(v))}`"


def _task_default(key: str) -> str | None:
    """A task-defaulted key's default cell: null, then each task's value."""
    if key not in TASK_DEFAULTED:
        return None
    return "`null`: " + ", ".join(f"{name} `{json.dumps(spec.task_defaults[key])}`" for name, spec in SPECS.items())


def _cell(text: str | None) -> str:
    """One table cell: on one line, ``|`` escaped (a column break otherwise) and, outside code spans,
    ``<`` (GitHub would read ``<stage>`` as an HTML tag and drop it)."""
    parts = " ".join((text or "").split()).replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else re.sub(r"<(?=[A-Za-z/!?])", "&lt;", part) for i, part in enumerate(parts))


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
    lines += [f"| `{n}` | {_type(f.annotation, f.metadata)} | {_default(f)} | {_cell(f.description)} |"
              for n, f in top]
    for name, model in _sections(RunConfig, ""):
        lines += ["", f"## `{name}`", "", _cell(model.__doc__), "",
                  "| key | type | default | description |", "|---|---|---|---|"]
        for key, field in model.model_fields.items():
            if _section_model(field.annotation) is not None:
                desc = f"section: see `{name}.{key}` below. {_cell(field.description)}".strip()
                lines.append(f"| `{name}.{key}` | section | | {desc} |")
            else:
                default = _task_default(f"{name}.{key}") or _default(field)
                lines.append(f"| `{name}.{key}` | {_type(field.annotation, field.metadata)} | {default} | "
                             f"{_cell(field.description)} |")
        for key, field in model.model_fields.items():
            if _entry_models(field.annotation):
                lines += _entry_tables(f"{name}.{key}", field.annotation)
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
