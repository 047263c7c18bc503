"""docs/CONFIG.md is the configuration reference generated from the schema: current, complete, and
every key says what it is for."""
from __future__ import annotations

import typing

from pydantic import BaseModel

from tests.fixtures import ROOT
from tgd.config import RunConfig
from tgd.config_reference import render

REGENERATE = ".venv/bin/python -m tgd.config_reference > docs/CONFIG.md"


def _fields(model: type[BaseModel], prefix: str = ""):
    """(dotted key, field, nested model or None) of every field under ``model``, walked here rather
    than with the renderer's own helpers, so a key the renderer skips is caught."""
    for name, field in model.model_fields.items():
        nested = next((t for t in (field.annotation, *typing.get_args(field.annotation))
                       if isinstance(t, type) and issubclass(t, BaseModel)), None)
        yield f"{prefix}{name}", field, nested
        if nested is not None:
            yield from _fields(nested, f"{prefix}{name}.")


def test_config_reference_is_current():
    assert (ROOT / "docs" / "CONFIG.md").read_text() == render(), (
        f"docs/CONFIG.md is stale (tgd/config.py changed): regenerate it with `{REGENERATE}`")


def test_reference_says_it_is_generated():
    head = render().splitlines()[:5]
    assert head[0].startswith("# ") and any("python -m tgd.config_reference > docs/CONFIG.md" in l for l in head)
    assert any("do not edit by hand" in l for l in head)


def test_every_key_is_in_the_reference():
    text = render()
    keys = [key for key, _, nested in _fields(RunConfig) if nested is None]
    sections = [key for key, _, nested in _fields(RunConfig) if nested is not None]
    assert {"run_dir", "distill.alpha_kl", "ray.stages.distill.workers"} <= set(keys)
    assert {"data", "ray", "ray.stages", "ray.stages.graphs"} <= set(sections)
    assert [k for k in keys if f"| `{k}` |" not in text] == []  # a row in its section's table
    assert [s for s in sections if f"## `{s}`" not in text] == []  # a heading of its own


def test_every_key_has_a_description():
    missing = [key for key, field, nested in _fields(RunConfig) if nested is None
               and not (field.description or "").strip()]
    assert missing == [], f"config keys without a description (say why the setting exists): {missing}"
