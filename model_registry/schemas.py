"""The wire contract as JSON Schema (draft 2020-12), generated from the code: contract v1.1.

Layout under ``schemas/``::

    v1/defs.json                      every shared definition (ModelConfig, Status, Provider,
                                      the per-provider providerConfig schemas, payloads...)
    v1/commands/<Type>.json           one file per command, referring to defs.json by $ref
    v1/events/<Type>.json             one file per event
    v1/predictions/<Type>.json        PredictionRequest, PredictionResult, PredictionOutcome
    v1/CommandReply.json              the decider's reply
    v1/Command.json, v1/Event.json,   unions: ``oneOf`` with a ``type`` discriminator
    v1/PredictionMessage.json
    openapi.json                      the HTTP API (generated from its routes)

Every ``$id`` is absolute and matches the file's path under ``SCHEMA_BASE`` (an identifier,
never fetched: a validator loads every file and resolves the relative ``$ref``\\ s between
them). Rules applied here, stated in docs/design.md#the-wire-contract:

- **Required means always there.** A command, prediction request or outcome must carry
  ``id`` and ``type``; what the registry writes (events, replies, results) lists every field
  it always writes as required. A field that does not apply is *absent*, never written as
  ``null`` (readers accept ``null`` as absent, so nullable types stay in the schemas).
- **Titles name types only** (a message, a definition): property titles are dropped, so a
  generator names a type after its class (``ABTestConfig``), never after a field
  (``Trafficpercentage``).
- **Closed sets are enums**: status, provider, routing, variants, reply outcomes, rejection
  codes, prediction error codes.
- **providerConfig is one schema per provider** (``oneOf`` by ``provider``), listing exactly
  the settings that provider reads (``registry.core.provider_checks``): a misspelt or unknown
  setting is refused by the schema, as the decider refuses it.

``tests/model_registry/test_schemas.py`` fails when the committed files drift from the code,
and validates every JSON example of the README and ``docs/`` against its schema.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from registry.core.errors import RejectionCode
from registry.core.messages import COMMANDS, EVENTS, CommandReply
from registry.core.predictions import (
    PredictionErrorCode,
    PredictionOutcome,
    PredictionRequest,
    PredictionResult,
)
from registry.core.provider_checks import POLICY_SETTINGS, PROVIDER_SETTINGS, Setting
from registry.core.types import Provider

__all__ = [
    "OPENAPI_FILE",
    "SCHEMA_BASE",
    "SCHEMA_DIR_VERSION",
    "export_schemas",
    "render_openapi",
    "render_schemas",
]

SCHEMA_DIR_VERSION = "v1"
SCHEMA_BASE = "https://model-registry.example/schemas/"
"""The base of every ``$id`` (an identifier under a reserved domain, never fetched)."""
CONTRACT_VERSION = "1.1"
OPENAPI_FILE = "openapi.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
_DEFS = "defs.json"
_PLACEHOLDER = "@@DEFS@@"

_PROVIDER_DEF_NAMES = {
    Provider.OPENAI: "OpenAIProviderConfig",
    Provider.ANTHROPIC: "AnthropicProviderConfig",
    Provider.AWS_SAGEMAKER: "SageMakerProviderConfig",
    Provider.AZURE_ML: "AzureMLProviderConfig",
    Provider.CUSTOM: "CustomProviderConfig",
    Provider.SCIKIT_LEARN: "ScikitLearnProviderConfig",
    Provider.TENSORFLOW: "TensorFlowProviderConfig",
    Provider.PYTORCH: "PyTorchProviderConfig",
}

_WRITTEN_BY_CLIENTS = (PredictionRequest, PredictionOutcome)
_WRITTEN_BY_REGISTRY = (PredictionResult, CommandReply)


def _raw(cls: type[BaseModel]) -> dict[str, Any]:
    return cls.model_json_schema(
        by_alias=True, mode="validation", ref_template=_PLACEHOLDER + "#/$defs/{model}"
    )


def _strip_titles(node: Any, *, keep: bool = True) -> Any:
    """Drop every ``title`` except a type's own (``keep``: this node names a type)."""
    if isinstance(node, list):
        return [_strip_titles(n, keep=False) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and not keep:
            continue
        if key in ("properties", "$defs", "patternProperties") and isinstance(value, dict):
            out[key] = {k: _strip_titles(v, keep=key == "$defs") for k, v in value.items()}
        else:
            out[key] = _strip_titles(value, keep=False)
    return out


def _point_refs(node: Any, target: str) -> Any:
    """Rewrite the placeholder of every ``$ref`` to ``target`` (a path to defs.json, or '')."""
    if isinstance(node, list):
        return [_point_refs(n, target) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _point_refs(v, target) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(_PLACEHOLDER):
        out["$ref"] = target + ref[len(_PLACEHOLDER) :]
    return out


_KEEPS_NULL = frozenset({"Explanation", "Contribution", "Evidence"})
"""Definitions whose values may be ``null`` on the wire (a feature with no value, a figure
the report did not have): built as plain JSON, not by leaving unset fields out."""


def _no_nulls(properties: dict[str, Any]) -> dict[str, Any]:
    """The properties with their ``null`` alternative (and ``default: null``) dropped: a field
    that does not apply is absent, never ``null``."""
    out = {}
    for name, prop in properties.items():
        prop = dict(prop)
        if prop.get("default", ...) is None:
            del prop["default"]
        branches = prop.get("anyOf")
        if isinstance(branches, list) and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"]
            if len(rest) == 1:
                prop = {**rest[0], **prop}
            else:
                prop["anyOf"] = rest
        out[name] = prop
    return out


def _always_written(cls: type[BaseModel]) -> list[str]:
    """The wire names of the fields the registry always writes: required ones, and those
    whose default is not None (``encode`` leaves out only the None ones)."""
    names = []
    for name, info in cls.model_fields.items():
        if info.exclude_if is not None:
            continue
        if info.is_required() or info.default_factory is not None or info.default is not None:
            names.append(info.alias or name)
    return names


def _setting_schema(setting: Setting) -> dict[str, Any]:
    if setting.minimum is not None:
        return {"type": "number", "minimum": setting.minimum}
    kinds: dict[type | tuple[type, ...], dict[str, Any]] = {
        str: {"type": "string"},
        bool: {"type": "boolean"},
        int: {"type": "integer"},
        list: {"type": "array"},
        (int, float): {"type": "number"},
        (dict, list): {"anyOf": [{"type": "object"}, {"type": "array"}]},
    }
    out = dict(kinds[setting.kind])
    if setting.choices:
        out["enum"] = list(setting.choices)
    if setting.required:
        out["minLength"] = 1
    return out


def _provider_defs() -> dict[str, Any]:
    """One closed schema per provider, and ``ProviderConfig``: their ``oneOf`` by provider."""
    defs: dict[str, Any] = {}
    for provider, name in _PROVIDER_DEF_NAMES.items():
        settings = PROVIDER_SETTINGS[provider]
        properties: dict[str, Any] = {
            "provider": {"const": provider.value, "type": "string"},
            "endpoint": {"type": "string", "description": "The provider's URL (no user-info)."},
            "credentials": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "References only ('env:NAME', 'file:NAME'), never a secret.",
            },
        }
        for key, setting in {**settings, **POLICY_SETTINGS}.items():
            properties[key] = _setting_schema(setting)
        required = ["provider", *(k for k, s in settings.items() if s.required)]
        defs[name] = {
            "title": name,
            "description": f"providerConfig of a {provider.value} model: exactly the settings "
            "it reads (registry/core/provider_checks.py).",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
    defs["ProviderConfig"] = {
        "title": "ProviderConfig",
        "description": "Provider configuration (spec 3): one schema per provider, chosen by "
        "`provider`.",
        "type": "object",
        "oneOf": [{"$ref": f"#/$defs/{n}"} for n in _PROVIDER_DEF_NAMES.values()],
        "discriminator": {"propertyName": "provider"},
    }
    return defs


def _rejection_def() -> dict[str, Any]:
    return {
        "title": "RejectionInfo",
        "description": "Why a command was refused: a stable `code`, a message a person can act "
        "on, and the field at fault when there is one.",
        "type": "object",
        "properties": {
            "code": {"$ref": "#/$defs/RejectionCode"},
            "message": {"type": "string"},
            "field": {"type": "string"},
        },
        "required": ["code", "message"],
        "additionalProperties": False,
    }


def _shared_enums() -> dict[str, Any]:
    return {
        "RejectionCode": {
            "title": "RejectionCode",
            "description": "Stable codes of command rejections (docs/api.md lists what each "
            "means).",
            "type": "string",
            "enum": [c.value for c in RejectionCode],
        },
        "PredictionErrorCode": {
            "title": "PredictionErrorCode",
            "description": "Stable codes of prediction errors (the `error.code` of a result).",
            "type": "string",
            "enum": [c.value for c in PredictionErrorCode],
        },
    }


def _message(
    cls: type[BaseModel], folder: str, defs: dict[str, Any], *, client_written: bool
) -> dict[str, Any]:
    schema = _raw(cls)
    for name, definition in schema.pop("$defs", {}).items():
        if name == "ProviderConfig":
            continue  # replaced by the per-provider schemas
        existing = defs.setdefault(name, definition)
        if existing != definition:
            raise ValueError(f"two definitions named {name} differ")
    required = list(schema.get("required", []))
    extra = ["id", "type"] if client_written else _always_written(cls)
    schema["required"] = [*dict.fromkeys([*required, *extra])]
    schema = _strip_titles(schema)
    schema["properties"] = _no_nulls(schema.get("properties", {}))
    up = "../" if folder else ""
    schema = dict(_point_refs(schema, up + _DEFS))
    schema["$schema"] = DRAFT
    schema["$id"] = f"{SCHEMA_BASE}{SCHEMA_DIR_VERSION}/{folder}{cls.__name__}.json"
    schema["title"] = cls.__name__
    return schema


def _refine(name: str, schema: dict[str, Any]) -> None:
    """What the models cannot say in their own schema: typed rejections and error codes,
    the output, the rule that ``model_id`` equals ``payload.id``."""
    props = schema.get("properties", {})
    if name == "CommandReply":
        props["rejection"] = {"$ref": f"{_DEFS}#/$defs/RejectionInfo"}
        props["command_type"] = {
            "type": "string",
            "description": "The command's type, when readable (even in a rejection).",
        }
        props["model_id"] = {
            "type": "string",
            "description": "The command's model, when readable (even in a rejection).",
        }
        props["revision"] = {
            "type": "integer",
            "minimum": 0,
            "description": "accepted/duplicate: the model's revision after the command; "
            "rejected: its current revision (what a retry sends as expected_revision); "
            "absent for a model the registry does not hold.",
        }
    if name == "PredictionResult":
        props["output"] = {
            "description": "The provider's answer, any JSON value (its shape is the "
            "provider's: a label and probabilities for a classifier, a number for a "
            "regressor, text for a language model...). Absent when `error` is present.",
        }
    if name == "RegisterModel":
        schema["description"] = (
            "Register a model. `model_id` must equal `payload.id` (a command whose two ids "
            "differ is refused as InvalidCommand)."
        )


def render_schemas() -> dict[str, str]:
    """Relative path -> JSON text of every schema (deterministic: sorted keys)."""
    defs: dict[str, Any] = {}
    files: dict[str, dict[str, Any]] = {}
    groups: list[tuple[str, list[type[BaseModel]], bool]] = [
        ("commands/", list(COMMANDS.values()), True),
        ("events/", list(EVENTS.values()), False),
        ("predictions/", list(_WRITTEN_BY_CLIENTS), True),
        ("predictions/", [PredictionResult], False),
        ("", [CommandReply], False),
    ]
    for folder, classes, client_written in groups:
        for cls in classes:
            schema = _message(cls, folder, defs, client_written=client_written)
            _refine(cls.__name__, schema)
            files[f"{SCHEMA_DIR_VERSION}/{folder}{cls.__name__}.json"] = schema
    defs = _point_refs(_strip_titles({"$defs": defs})["$defs"], "")
    for name, definition in defs.items():
        if "properties" in definition and name not in _KEEPS_NULL:
            definition["properties"] = _no_nulls(definition["properties"])
    defs.update(_provider_defs())
    defs.update(_shared_enums())
    defs["RejectionInfo"] = _rejection_def()
    if "PredictionError" in defs:
        defs["PredictionError"]["properties"]["code"] = {"$ref": "#/$defs/PredictionErrorCode"}
    files[f"{SCHEMA_DIR_VERSION}/{_DEFS}"] = {
        "$schema": DRAFT,
        "$id": f"{SCHEMA_BASE}{SCHEMA_DIR_VERSION}/{_DEFS}",
        "title": "Definitions",
        "description": f"Shared definitions of the model registry's wire contract "
        f"{CONTRACT_VERSION}.",
        "$defs": defs,
    }
    unions = {
        "Command": ("commands/", list(COMMANDS)),
        "Event": ("events/", list(EVENTS)),
        "PredictionMessage": (
            "predictions/",
            ["PredictionRequest", "PredictionResult", "PredictionOutcome"],
        ),
    }
    for name, (folder, members) in unions.items():
        files[f"{SCHEMA_DIR_VERSION}/{name}.json"] = {
            "$schema": DRAFT,
            "$id": f"{SCHEMA_BASE}{SCHEMA_DIR_VERSION}/{name}.json",
            "title": name,
            "description": f"Any {name[0].lower()}{name[1:]} of contract {CONTRACT_VERSION}, "
            "chosen by its `type`.",
            "type": "object",
            "oneOf": [{"$ref": f"{folder}{m}.json"} for m in members],
            "discriminator": {"propertyName": "type"},
        }
    out = {
        rel: json.dumps(schema, indent=2, sort_keys=True) + "\n" for rel, schema in files.items()
    }
    out[OPENAPI_FILE] = render_openapi()
    return out


def render_openapi() -> str:
    """The HTTP API's OpenAPI document (JSON text, sorted keys), as the routes declare it."""
    from model_registry.api.app import create_app
    from registry.infra.settings import Settings

    return json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"


def load_schemas(root: Path) -> dict[str, dict[str, Any]]:
    """Every schema under ``root/v1`` by its ``$id`` (for a validator's registry)."""
    out = {}
    for path in sorted((root / SCHEMA_DIR_VERSION).rglob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        out[schema["$id"]] = copy.deepcopy(schema)
    return out


def export_schemas(root: Path) -> list[Path]:
    """Write every schema under ``root``; returns the files written. Files of an older
    layout that are no longer generated are removed from ``root/v1``."""
    rendered = render_schemas()
    stale = {p for p in (root / SCHEMA_DIR_VERSION).rglob("*.json")} - {
        root / rel for rel in rendered
    }
    for path in stale:
        path.unlink()
    written = []
    for rel, text in rendered.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
