"""Export the JSON Schemas of every command, event and reply into a versioned folder.

Layout: ``schemas/v1/commands/<Type>.json``, ``schemas/v1/events/<Type>.json``,
``schemas/v1/CommandReply.json``, ``schemas/v1/predictions/<Type>.json``, and the HTTP
API's OpenAPI document, ``schemas/openapi.json`` (generated from the routes' pydantic
models). The commands and events are the ones registered on their bases
(``registry.core.messages``). A CRM module in any language validates what it produces
against these; ``tests/model_registry/test_schemas.py`` fails when they drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from registry.core.messages import COMMANDS, EVENTS, CommandReply
from registry.core.predictions import PredictionOutcome, PredictionRequest, PredictionResult

__all__ = [
    "OPENAPI_FILE",
    "SCHEMA_DIR_VERSION",
    "export_schemas",
    "render_openapi",
    "render_schemas",
]

SCHEMA_DIR_VERSION = "v1"
OPENAPI_FILE = "openapi.json"


def _schema(cls: type[BaseModel]) -> dict[str, Any]:
    schema = cls.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"model-registry/{SCHEMA_DIR_VERSION}/{cls.__name__}.json"
    return schema


def render_schemas() -> dict[str, str]:
    """Relative path -> JSON text of every schema (deterministic: sorted keys)."""
    out: dict[str, str] = {}
    groups: list[tuple[str, list[type[BaseModel]]]] = [
        ("commands/", list(COMMANDS.values())),
        ("events/", list(EVENTS.values())),
        ("predictions/", [PredictionRequest, PredictionResult, PredictionOutcome]),
        ("", [CommandReply]),
    ]
    for folder, classes in groups:
        for cls in classes:
            text = json.dumps(_schema(cls), indent=2, sort_keys=True) + "\n"
            out[f"{SCHEMA_DIR_VERSION}/{folder}{cls.__name__}.json"] = text
    out[OPENAPI_FILE] = render_openapi()
    return out


def render_openapi() -> str:
    """The HTTP API's OpenAPI document (JSON text, sorted keys), as the routes declare it."""
    from model_registry.api.app import create_app
    from registry.infra.settings import Settings

    return json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"


def export_schemas(root: Path) -> list[Path]:
    """Write every schema under ``root``; returns the files written."""
    written = []
    for rel, text in render_schemas().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
