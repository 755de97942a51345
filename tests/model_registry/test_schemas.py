"""The exported JSON Schemas: no drift from the models, and enough to produce valid JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest

from model_registry.schemas import render_schemas
from registry.core import codec

ROOT = Path(__file__).resolve().parents[2]


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
    subprocess.run(
        [sys.executable, "-m", "model_registry", "schemas", "export", "--out", str(tmp_path)],
        check=True,
        timeout=60,
    )
    for name, text in render_schemas().items():
        assert (tmp_path / name).read_text() == text


def _schema(name: str) -> dict[str, object]:
    return json.loads((ROOT / "schemas" / "v1" / name).read_text())  # type: ignore[no-any-return]


def test_json_built_from_the_schema_alone_is_a_valid_command() -> None:
    """What a TypeScript CRM module would write, checked by the schema and then by the decoder."""
    command = {
        "id": str(uuid.uuid4()),
        "type": "RegisterModel",
        "model_id": "lead-scoring-v2",
        "actor": "crm-leads",
        "payload": {
            "id": "lead-scoring-v2",
            "name": "Lead Scoring Model v2",
            "version": "2.0.0",
            "type": "classification",
            "provider": "aws-sagemaker",
            "description": "Enhanced lead scoring with SageMaker",
            "status": "active",
            "providerConfig": {
                "provider": "aws-sagemaker",
                "endpoint": "https://runtime.sagemaker.us-east-1.amazonaws.com",
                "credentials": {
                    "accessKeyId": "env:AWS_ACCESS_KEY_ID",
                    "secretAccessKey": "env:AWS_SECRET_ACCESS_KEY",
                    "region": "us-east-1",
                },
            },
            "abTest": {
                "enabled": True,
                "trafficPercentage": 20,
                "championModelId": "lead-scoring-v1",
            },
        },
    }
    jsonschema.validate(command, _schema("commands/RegisterModel.json"))
    decoded = codec.decode_command(json.dumps(command).encode())
    assert decoded.model_id == "lead-scoring-v2"


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "ChangeStatus", "model_id": "m", "payload": {"status": "flying"}},
        {"type": "ChangeStatus", "model_id": "m", "payload": {"status": "active"}, "surprise": 1},
        {"type": "ChangeStatus", "payload": {"status": "active"}},
    ],
)
def test_schema_and_decoder_agree_on_invalid_commands(bad: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema("commands/ChangeStatus.json"))
    with pytest.raises(codec.DecodeError):
        codec.decode_command(json.dumps(bad).encode())


def test_prediction_request_schema() -> None:
    request = {
        "type": "PredictionRequest",
        "id": "r1",
        "model_id": "lead-scoring-v1",
        "unit_id": "lead-42",
        "input": {"score": 3, "source": "web"},
    }
    jsonschema.validate(request, _schema("predictions/PredictionRequest.json"))
