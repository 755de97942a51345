"""``model-registry predict``: sends a request, waits for its result, prints it with the variant."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson

from registry.core.predictions import PredictionResult
from registry.infra.settings import Settings
from tests.consumers.conftest import RegistryWriter, custom_config, running_consumer

REPO = Path(__file__).resolve().parents[2]


async def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_FETCH_MAX_WAIT_MS": "20",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "model_registry",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_predict_prints_the_result_with_its_variant(
    settings: Settings, registry: RegistryWriter
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    await registry.register(custom_config("rules-v2", "tests.consumers.custom_models:score_v2"))
    test_id = await registry.start_test("rules-v2", "rules-v1", 50)
    async with running_consumer(settings):
        code, out, err = await _cli(
            settings, "predict", "rules-v1", "--input", '{"visits": 8}', "--unit", "lead-1"
        )
        assert code == 0, err
        assert "variant   champion" in out or "variant   challenger" in out
        assert f"test      {test_id} (split v1)" in out
        assert "served by rules-v" in out
        assert "output    {" in out
        code, out, err = await _cli(
            settings,
            "predict",
            "rules-v2",
            "--input",
            '{"visits": 8}',
            "--unit",
            "lead-1",
            "--json",
            "--request-id",
            "cli-1",
        )
        assert code == 0, err
        result = PredictionResult.model_validate(orjson.loads(out))
        assert result.request_id == "cli-1"
        assert result.unit_id == "lead-1"
        assert result.variant in {"champion", "challenger"}
        assert result.requested_model_id == "rules-v2"
        assert result.test_id == test_id


async def test_predict_reports_errors_and_bad_input(
    settings: Settings, registry: RegistryWriter, tmp_path: Path
) -> None:
    async with running_consumer(settings):
        code, out, _ = await _cli(settings, "predict", "no-such-model", "--input", "{}")
        assert code == 1
        assert "ModelNotFound" in out
        code, _, err = await _cli(settings, "predict", "rules-v1", "--input", "{not json")
        assert code == 2
        assert "not JSON" in err
        code, _, err = await _cli(
            settings, "predict", "rules-v1", "--input", f"@{tmp_path}/missing.json"
        )
        assert code == 2
        assert "cannot read" in err
        code, _, err = await _cli(settings, "predict", "bad id!", "--input", "{}")
        assert code == 2
        assert "model_id" in err


async def test_predict_times_out_without_a_predictor(settings: Settings) -> None:
    code, _, err = await _cli(settings, "predict", "rules-v1", "--input", "{}", "--timeout", "1")
    assert code == 3
    assert "no result for request" in err
