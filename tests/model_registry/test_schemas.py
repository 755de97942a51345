"""The exported JSON Schemas (contract 1.1): no drift from the models, every rule of the
contract held, every JSON example of the README and docs/ valid, and enough to produce
valid JSON from the schemas alone (what a TypeScript CRM module does)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource

from model_registry.schemas import SCHEMA_BASE, load_schemas, render_schemas
from registry.core import codec
from registry.core.errors import RejectionCode
from registry.core.messages import COMMANDS, EVENTS, ModelRegistered, RegisterModel
from registry.core.predictions import PredictionErrorCode, PredictionResult, wire_time
from registry.core.provider_checks import PROVIDER_SETTINGS
from registry.core.types import ModelConfig, Provider

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = load_schemas(ROOT / "schemas")
REGISTRY: Registry = Registry().with_resources(
    (uri, Resource.from_contents(schema)) for uri, schema in SCHEMAS.items()
)


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator of ``schemas/v1/<name>`` resolving its ``$ref``s among the files."""
    schema = SCHEMAS[f"{SCHEMA_BASE}v1/{name}"]
    return jsonschema.Draft202012Validator(
        schema, registry=REGISTRY, format_checker=jsonschema.FormatChecker()
    )


def valid(name: str, instance: Any) -> bool:
    return validator(name).is_valid(instance)


def test_committed_schemas_match_the_models() -> None:
    rendered = render_schemas()
    committed = {
        str(p.relative_to(ROOT / "schemas")): p.read_text()
        for p in (ROOT / "schemas").rglob("*.json")
    }
    assert sorted(committed) == sorted(rendered), "run `model-registry schemas export` and commit"
    drifted = [name for name, text in rendered.items() if committed[name] != text]
    assert not drifted, (
        f"schemas drifted from the models: {drifted}; run `model-registry schemas export`"
    )


def test_export_command_writes_the_same_files(tmp_path: Path) -> None:
    stale = tmp_path / "v1" / "OldLayout.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    subprocess.run(
        [sys.executable, "-m", "model_registry", "schemas", "export", "--out", str(tmp_path)],
        check=True,
        timeout=60,
    )
    for name, text in render_schemas().items():
        assert (tmp_path / name).read_text() == text
    assert not stale.exists(), "a file of an older layout is removed"


# --------------------------------------------------------------------------- the rules


def test_every_id_is_absolute_and_matches_its_path() -> None:
    for path in (ROOT / "schemas" / "v1").rglob("*.json"):
        schema = json.loads(path.read_text())
        rel = path.relative_to(ROOT / "schemas").as_posix()
        assert schema["$id"] == f"{SCHEMA_BASE}{rel}", rel
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def test_definitions_live_in_one_file_and_titles_name_types_only() -> None:
    for uri, schema in SCHEMAS.items():
        if uri.endswith("/defs.json"):
            continue
        assert "$defs" not in schema, f"{uri} copies definitions instead of referring to them"
        for where, node in _walk(schema):
            ref = node.get("$ref")
            if isinstance(ref, str) and "#" in ref:
                assert ref.split("#")[0].endswith("defs.json"), (uri, where, ref)
    for uri, schema in SCHEMAS.items():
        for where, node in _walk(schema):
            props = node.get("properties")
            if isinstance(props, dict):
                for name, prop in props.items():
                    assert "title" not in prop, f"{uri}{where}/{name} has a title"


def test_a_field_that_does_not_apply_is_absent_never_null() -> None:
    keeps_null = {"Explanation", "Contribution", "Evidence"}
    for uri, schema in SCHEMAS.items():
        for where, node in _walk(schema):
            if any(f"/$defs/{name}/" in where + "/" for name in keeps_null):
                continue
            if "/properties/" not in where or where.endswith("/properties"):
                continue
            if node.get("type") == "null" and where.count("/") and "/anyOf/" in where:
                pytest.fail(f"{uri}{where}: a field typed null")
            assert node.get("default", ...) is not None, f"{uri}{where}: default null"


def test_closed_sets_are_enums() -> None:
    defs = SCHEMAS[f"{SCHEMA_BASE}v1/defs.json"]["$defs"]
    assert defs["RejectionCode"]["enum"] == [c.value for c in RejectionCode]
    assert defs["PredictionErrorCode"]["enum"] == [c.value for c in PredictionErrorCode]
    assert defs["ABTestConfig"]["properties"]["routing"]["enum"] == ["hash", "random"]
    result = SCHEMAS[f"{SCHEMA_BASE}v1/predictions/PredictionResult.json"]["properties"]
    assert set(result["variant"]["enum"]) == {"champion", "challenger", "shadow", "none"}
    reply = SCHEMAS[f"{SCHEMA_BASE}v1/CommandReply.json"]["properties"]
    assert set(reply["outcome"]["enum"]) == {"accepted", "rejected", "duplicate"}


def test_unions_pick_the_member_by_type() -> None:
    for union, members in (("Command", COMMANDS), ("Event", EVENTS)):
        schema = SCHEMAS[f"{SCHEMA_BASE}v1/{union}.json"]
        assert schema["discriminator"] == {"propertyName": "type"}
        assert {ref["$ref"].split("/")[-1][:-5] for ref in schema["oneOf"]} == set(members)
    command = _register_command()
    assert valid("Command.json", command)
    assert not valid("Command.json", {**command, "type": "ChangeStatus"})
    assert not valid("Command.json", {**command, "type": "Launch"})


def _register_command(**payload: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "RegisterModel",
        "model_id": "lead-scoring-v2",
        "actor": "crm-leads",
        "payload": {
            "id": "lead-scoring-v2",
            "name": "Lead Scoring Model v2",
            "version": "2.0.0",
            "type": "classification",
            "provider": "custom",
            "providerConfig": {"provider": "custom", "callable": "crm_models:score"},
            **payload,
        },
    }


def test_json_built_from_the_schema_alone_is_a_valid_command() -> None:
    """What a TypeScript CRM module would write, checked by the schema and then by the decoder."""
    command = _register_command(
        provider="aws-sagemaker",
        description="Enhanced lead scoring with SageMaker",
        status="active",
        providerConfig={
            "provider": "aws-sagemaker",
            "endpointName": "lead-scoring-v2",
            "credentials": {
                "accessKeyId": "env:AWS_ACCESS_KEY_ID",
                "secretAccessKey": "env:AWS_SECRET_ACCESS_KEY",
                "region": "us-east-1",
            },
        },
        abTest={"enabled": True, "trafficPercentage": 20, "championModelId": "lead-scoring-v1"},
    )
    validator("commands/RegisterModel.json").validate(command)
    decoded = codec.decode_command(json.dumps(command).encode())
    assert decoded.model_id == "lead-scoring-v2"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"payload": {"status": "flying"}}, "invalid ChangeStatus"),
        ({"payload": {"status": "active"}, "surprise": 1}, "invalid ChangeStatus"),
        ({"model_id": None}, "invalid ChangeStatus"),
        ({"id": None}, "needs an `id`"),
        ({"type": None}, "needs its `type`"),
    ],
)
def test_schema_and_decoder_agree_on_invalid_commands(bad: dict[str, Any], why: str) -> None:
    good = {"id": "c-1", "type": "ChangeStatus", "model_id": "m", "payload": {"status": "active"}}
    assert valid("commands/ChangeStatus.json", good)
    command = {k: v for k, v in {**good, **bad}.items() if v is not None}
    assert not valid("commands/ChangeStatus.json", command)
    with pytest.raises(codec.DecodeError, match=re.escape(why)):
        codec.decode_command(json.dumps(command).encode())


def test_a_misspelt_provider_setting_is_refused_by_the_schema() -> None:
    command = _register_command()
    command["payload"]["providerConfig"] = {"provider": "custom", "callabel": "crm:score"}
    errors = list(validator("commands/RegisterModel.json").iter_errors(command))
    assert errors
    assert not valid("commands/RegisterModel.json", command)


@pytest.mark.parametrize("provider", list(Provider))
def test_each_provider_schema_lists_exactly_what_the_provider_reads(provider: Provider) -> None:
    defs = SCHEMAS[f"{SCHEMA_BASE}v1/defs.json"]["$defs"]
    (name,) = [
        n
        for n, d in defs.items()
        if d.get("properties", {}).get("provider", {}).get("const") == provider.value
    ]
    props = set(defs[name]["properties"])
    assert set(PROVIDER_SETTINGS[provider]) <= props
    assert defs[name]["additionalProperties"] is False


def test_model_id_must_equal_payload_id() -> None:
    command = _register_command()
    command["model_id"] = "another-id"
    assert (
        "must equal `payload.id`"
        in SCHEMAS[f"{SCHEMA_BASE}v1/commands/RegisterModel.json"]["description"]
    )
    with pytest.raises(codec.DecodeError, match="differs from payload.id"):
        codec.decode_command(json.dumps(command).encode())


# --------------------------------------------------------------------------- what is written


def test_what_the_registry_writes_validates() -> None:
    """Events, replies and results as the code writes them, against the schemas."""
    command = RegisterModel(
        model_id="m-1",
        actor="alice",
        payload=ModelConfig.model_validate(_register_command()["payload"] | {"id": "m-1"}),
    )
    raw = json.loads(codec.encode(command))
    assert valid("Command.json", raw)
    event = ModelRegistered(model_id="m-1", actor="alice", revision=1, payload=command.payload)
    assert valid("Event.json", json.loads(codec.encode(event)))
    result = PredictionResult(
        id="r", request_id="q", requested_model_id="m-1", variant="champion", output=[1, 2]
    )
    wire = json.loads(result.model_dump_json(exclude_none=True))
    assert valid("PredictionMessage.json", wire)


@settings(max_examples=60, deadline=None)
@given(at=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1)))
def test_one_timestamp_format(at: datetime) -> None:
    """Results write the same RFC 3339 UTC form as pydantic writes events and replies."""
    text = wire_time(at.replace(tzinfo=UTC))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert jsonschema.FormatChecker().conforms(text, "date-time")


# --------------------------------------------------------------------------- the docs


def _json_examples() -> list[tuple[str, Any]]:
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^( *)```json\n(.*?)^\1```", text, flags=re.S | re.M):
            line = text[: match.start()].count("\n") + 1
            body = "\n".join(row[len(match.group(1)) :] for row in match.group(2).splitlines())
            out.append((f"{path.name}:{line}", json.loads(body)))
    return out


_SCHEMA_OF = {
    **{name: f"commands/{name}.json" for name in COMMANDS},
    **{name: f"events/{name}.json" for name in EVENTS},
    "PredictionRequest": "predictions/PredictionRequest.json",
    "PredictionResult": "predictions/PredictionResult.json",
    "PredictionOutcome": "predictions/PredictionOutcome.json",
    "CommandReply": "CommandReply.json",
}


def test_every_json_example_in_the_docs_is_valid() -> None:
    examples = _json_examples()
    messages = [(where, ex) for where, ex in examples if isinstance(ex, dict) and "type" in ex]
    assert len(messages) >= 4, "the README's contract section shows its messages"
    for where, example in messages:
        name = _SCHEMA_OF.get(example["type"])
        assert name is not None, f"{where}: {example['type']} is not a message type"
        errors = [e.message for e in validator(name).iter_errors(example)]
        assert not errors, f"{where}: {errors}"
