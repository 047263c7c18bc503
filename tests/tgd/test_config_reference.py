"""docs/CONFIG.md is the configuration reference generated from the schema: current, complete, and
every key says what it is for."""
from __future__ import annotations

from tests.fixtures import ROOT
from tgd.config import RunConfig
from tgd.config_reference import _section_model, all_keys, render


def test_config_reference_is_current():
    assert (ROOT / "docs" / "CONFIG.md").read_text() == render(), (
        "docs/CONFIG.md is stale: regenerate it with `.venv/bin/python -m tgd.config_reference > docs/CONFIG.md`")


def test_every_key_is_in_the_reference_with_a_description():
    text = render()
    keys = all_keys()
    assert "distill.alpha_kl" in keys and "ray.stages.distill.workers" in keys
    assert [k for k in keys if f"`{k}`" not in text] == []
    missing = []

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            sub = _section_model(field.annotation)
            if sub is not None:
                walk(sub, f"{prefix}{name}.")
            elif not (field.description or "").strip():
                missing.append(f"{prefix}{name}")

    walk(RunConfig, "")
    assert missing == [], f"config keys without a description: {missing}"
