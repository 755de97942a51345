"""The committed OpenAPI document: no drift from the code, and a live ``up`` honours it
(schemathesis: no 5xx, every status code and body as documented)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from model_registry.api.tokens import TokenStore
from model_registry.schemas import OPENAPI_FILE, render_openapi
from registry.infra.identity import load_identity

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "schemas" / OPENAPI_FILE


def test_committed_openapi_matches_the_code() -> None:
    assert COMMITTED.read_text() == render_openapi(), (
        "the OpenAPI document drifted from the routes: run `model-registry schemas export`"
    )


def test_every_error_is_a_problem_and_every_route_but_health_needs_a_token() -> None:
    doc = json.loads(COMMITTED.read_text())
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            secured = bool(operation.get("security"))
            assert secured == (path != "/health"), (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"]


# --------------------------------------------------------------------------- a live `up`


@pytest.fixture(scope="module")
def live_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real `model-registry up` (embedded broker, API on a free port) and an admin token."""
    data_dir = tmp_path_factory.mktemp("api-up")
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(
        REGISTRY_DATA_DIR=str(data_dir),
        REGISTRY_API_PORT="0",
        REGISTRY_GRANTS_CALLABLES="tests.consumers.custom_models:score",
        PYTHONUNBUFFERED="1",
    )
    log = data_dir.parent / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "model_registry", "up", "--status-every", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    try:
        for _ in range(900):
            if "model-registry is up" in log.read_text() or proc.poll() is not None:
                break
            time.sleep(0.1)
        banner = log.read_text()
        assert "API and console: http://127.0.0.1:" in banner, banner[-3000:]
        port = json.loads((data_dir / "runtime.json").read_text())["api_port"]
        assert f"API and console: http://127.0.0.1:{port}/" in banner
        actor = load_identity(data_dir / "identity.json").actor
        _, token = TokenStore(data_dir / "api-tokens.json").create(actor)
        url = f"http://127.0.0.1:{port}"
        seed = {
            "id": "lead-scoring-v1",
            "name": "Lead scoring",
            "version": "1.0.0",
            "type": "classification",
            "provider": "custom",
            "status": "testing",
            "providerConfig": {
                "provider": "custom",
                "callable": "tests.consumers.custom_models:score",
            },
        }
        r = httpx.post(
            f"{url}/models", json=seed, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert r.status_code == 200, r.text
        yield url, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.slow
def test_the_live_api_honours_its_openapi(live_up: tuple[str, str]) -> None:
    """Every operation, 25 generated cases each (deterministic): no 5xx, and every status,
    content type and body as the committed document says."""
    url, token = live_up
    schema = schemathesis.openapi.from_path(COMMITTED)
    schema.config.update(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, request_timeout=30
    )
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(checks=checks)

        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - every operation's failure is reported
            failures.append(f"{operation.label}: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
