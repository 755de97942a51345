"""The decider as a real process: crash between append and commit, and the write CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_registry.client import ModelRegistry
from registry.core.errors import CommandTimeout
from registry.infra.settings import Settings
from tests.helpers import eventually, model_config, read_events, read_topic

CRASH_AFTER_APPEND_ENV = "REGISTRY_DECIDER_CRASH_AFTER_APPEND"


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_AFTER_APPEND_ENV}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        REGISTRY_TOPIC_PREFIX=settings.topic_prefix,
        REGISTRY_DATA_DIR=str(settings.data_dir),
        REGISTRY_FETCH_MAX_WAIT_MS="20",
        **extra,
    )
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "model_registry", *args]


@pytest.fixture
def decider_process(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(_cli("decider"), env=_env(settings))
    yield proc
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def test_killed_between_append_and_commit_produces_no_duplicate(settings: Settings) -> None:
    crashing = subprocess.Popen(
        _cli("decider"), env=_env(settings, **{CRASH_AFTER_APPEND_ENV: "1"})
    )
    try:
        async with ModelRegistry(settings, timeout=3) as reg:
            with pytest.raises(CommandTimeout):
                await reg.register(model_config("crashy"))
        assert await asyncio.to_thread(crashing.wait, 20) == 137  # died in the window
    finally:
        if crashing.poll() is None:
            crashing.kill()
    events = await read_events(settings)
    assert [e.type for e in events] == ["ModelRegistered"]  # appended, never acknowledged
    healthy = subprocess.Popen(_cli("decider"), env=_env(settings))
    try:
        # The restarted decider re-reads the uncommitted command and answers it as a duplicate.
        replies = await eventually(lambda: read_topic(settings, "registry.replies"), 20)
        assert len(replies) == 1
        assert b'"duplicate"' in replies[0].value
        async with ModelRegistry(settings) as reg:
            result = await reg.update_status("crashy", "testing")
        assert result.revision == 2
    finally:
        healthy.terminate()
        healthy.wait(10)
    events = await read_events(settings)
    assert [(e.type, e.revision) for e in events] == [
        ("ModelRegistered", 1),
        ("ModelStatusChanged", 2),
    ]


def _run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli(*args), env=_env(settings), capture_output=True, text=True, timeout=60
    )


async def test_write_cli_prints_outcomes_and_fails_on_rejection(
    settings: Settings, decider_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    spec = tmp_path / "model.yaml"
    spec.write_text(
        "id: lead-scoring-v1\nname: Lead scoring\nversion: 1.0.0\ntype: classification\n"
        "provider: scikit-learn\nstatus: testing\nmetrics:\n  accuracy: 87.5\n"
    )
    out = await asyncio.to_thread(_run_cli, settings, "models", "register", "-f", str(spec))
    assert out.returncode == 0, out.stderr
    assert "registered: lead-scoring-v1 now at revision 1" in out.stdout
    out = await asyncio.to_thread(
        _run_cli, settings, "models", "status", "lead-scoring-v1", "deprecated"
    )
    assert out.returncode == 2
    assert "rejected (InvalidTransition)" in out.stderr
    assert "testing" in out.stderr
    out = await asyncio.to_thread(
        _run_cli, settings, "models", "status", "lead-scoring-v1", "active"
    )
    assert out.returncode == 0
    assert "revision 2" in out.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"id": "x", "name": "x", "version": "1.0", "type": "nlp", "provider": "openai"}'
    )
    out = await asyncio.to_thread(_run_cli, settings, "models", "register", "-f", str(bad))
    assert out.returncode == 2
    assert "version" in out.stderr
    out = await asyncio.to_thread(_run_cli, settings, "ab", "stop", "lead-scoring-v1")
    assert out.returncode == 2
    assert "ABTestNotRunning" in out.stderr


async def test_promotion_workflow(
    settings: Settings, decider_process: subprocess.Popen[bytes]
) -> None:
    """Spec section 4: register v2 as testing, validate, activate, deprecate v1, unregister v1."""
    async with ModelRegistry(settings) as reg:
        await reg.register(model_config("lead-scoring-v1", status="active"))
        await reg.register(model_config("lead-scoring-v2", version="2.0.0", status="testing"))
        await reg.record_metrics("lead-scoring-v2", {"accuracy": 91.0, "f1Score": 89.5})
        await reg.update_status("lead-scoring-v2", "active")
        await reg.update_status("lead-scoring-v1", "deprecated", reason="v2 deployed")
        await reg.unregister("lead-scoring-v1", reason="grace period over")
    events = await read_events(settings)
    assert [(e.model_id, e.type) for e in events] == [
        ("lead-scoring-v1", "ModelRegistered"),
        ("lead-scoring-v2", "ModelRegistered"),
        ("lead-scoring-v2", "ModelMetricsRecorded"),
        ("lead-scoring-v2", "ModelStatusChanged"),
        ("lead-scoring-v1", "ModelStatusChanged"),
        ("lead-scoring-v1", "ModelUnregistered"),
    ]
