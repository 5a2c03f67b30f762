"""docs/CONFIG.md is what the generator makes of the models, and the models are documented."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from cdc.config.docs import render_markdown
from cdc.config.loader import config_model
from cdc.config.problems import type_members
from cdc.registry import ConnectorRegistry

ROOT = Path(__file__).resolve().parents[3]


def test_committed_docs_match_the_models(registry: ConnectorRegistry) -> None:
    committed = (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    assert committed == render_markdown(config_model(registry)), (
        "docs/CONFIG.md is out of date: run `python -m cdc.config.docs` (with cdc installed)"
    )


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    todo = [root]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for field in m.model_fields.values():
            stack = [field.annotation]
            while stack:
                for t, _ in type_members(stack.pop()):
                    if isinstance(t, type) and issubclass(t, BaseModel):
                        todo.append(t)
                    else:
                        stack.extend(getattr(t, "__args__", ()))
    return seen


def test_every_field_has_description_and_every_scalar_an_example(
    registry: ConnectorRegistry,
) -> None:
    models = _models(config_model(registry))
    assert len(models) > 15
    missing = []
    for model in models:
        assert model.__doc__, model
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("frozen") is True, model
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}: description")
            nested = any(
                isinstance(t, type) and issubclass(t, BaseModel)
                for t, _ in type_members(field.annotation)
            )
            if not nested and not field.examples and name not in ("sources", "sinks"):
                missing.append(f"{model.__name__}.{name}: examples")
    assert not missing, missing
