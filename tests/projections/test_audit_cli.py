"""Audit replay (from the log) and the read side's CLI."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
from click.testing import CliRunner, Result

from model_registry.cli.main import main
from projections import Projector, replay
from projections.audit import AuditEntry
from projections.schema import projection_path
from registry.core.messages import (
    ClearRegistry,
    ClearRegistryPayload,
    RecordMetrics,
    RecordMetricsPayload,
)
from registry.core.types import Metrics, Status
from registry.infra.settings import Settings
from tests.projections.workload import T0, History, produce, produce_raw, register, status


def story() -> History:
    """T0+1s .. T0+9s, one event a second."""
    h = History()
    h.do(register("lead-v1", status=Status.TESTING))  # offset 0, T0+1s
    h.do(register("lead-v2", status=Status.TRAINING))  # 1, +2s
    h.do(status("lead-v1", Status.ACTIVE, reason="validated", actor="alice"))  # 2, +3s
    h.do(
        RecordMetrics(
            model_id="lead-v2",
            payload=RecordMetricsPayload(metrics=Metrics(accuracy=91)),
            actor="ci",
        )
    )  # 3
    h.do(status("lead-v2", Status.TESTING, actor="alice"))  # 4, +5s
    h.do(status("lead-v1", Status.DEPRECATED, actor="bob"))  # 5, +6s
    h.do(
        ClearRegistry(payload=ClearRegistryPayload(reason="reset", confirm=True), actor="ops")
    )  # 6, +7s
    return h


async def collect(settings: Settings, **kw: Any) -> list[AuditEntry]:
    return [e async for e in replay(settings, **kw)]


async def test_replay_by_offsets_times_and_filters(settings: Settings) -> None:
    h = story()
    await produce(settings, h.events[:3])
    garbage_at = int((T0 + timedelta(seconds=3.5)).timestamp() * 1000)
    await produce_raw(settings, [(b"x", b"garbage", [])], timestamps=[garbage_at])  # offset 3
    await produce(settings, h.events[3:])
    everything = await collect(settings)
    assert [e.offset for e in everything] == list(range(8))
    assert everything[3].event is None
    assert "malformed JSON" in (everything[3].error or "")
    assert [e.offset for e in await collect(settings, from_offset=2, to_offset=4)] == [2, 3, 4]
    window = await collect(
        settings, since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=5)
    )
    assert [e.type for e in window] == [
        "ModelStatusChanged",
        "(unreadable)",
        "ModelMetricsRecorded",
        "ModelStatusChanged",
    ]
    naive = await collect(settings, since=(T0 + timedelta(seconds=6)).replace(tzinfo=None))
    assert [e.type for e in naive] == ["ModelStatusChanged", "RegistryCleared"]
    by_model = await collect(settings, model_id="lead-v1")
    assert [e.offset for e in by_model] == [0, 2, 6, 7]  # the clear named it
    assert [
        e.offset for e in await collect(settings, types=["ModelStatusChanged"], actor="alice")
    ] == [2, 5]
    assert await collect(settings, actor="nobody") == []


def cli(settings: Settings, *args: str) -> Result:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_DATA_DIR": str(settings.data_dir),
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


async def run_cli(settings: Settings, *args: str) -> Result:
    """The CLI runs its own event loop: give it a thread."""
    return await asyncio.to_thread(cli, settings, *args)


async def test_cli_reads_audit_and_rebuild(settings: Settings) -> None:
    h = story()
    await produce(settings, h.events[:6])
    db = projection_path(settings)
    await Projector(settings, db).catch_up()

    out = await run_cli(settings, "models", "get", "lead-v1", "--json")
    assert out.exit_code == 0, out.output
    assert orjson.loads(out.output)["config"]["status"] == "deprecated"
    past = await run_cli(
        settings,
        "models",
        "get",
        "lead-v1",
        "--as-of",
        (T0 + timedelta(seconds=2)).isoformat(),
        "--json",
    )
    assert orjson.loads(past.output)["config"]["status"] == "testing"
    by_offset = await run_cli(settings, "models", "get", "lead-v1", "--as-of", "2", "--json")
    assert orjson.loads(by_offset.output)["config"]["status"] == "active"
    human = await run_cli(settings, "models", "get", "lead-v2")
    assert "lead-v2" in human.output
    assert "accuracy=91" in human.output
    missing = await run_cli(settings, "models", "get", "nope")
    assert missing.exit_code == 1
    assert "no model 'nope'" in missing.output
    bad = await run_cli(settings, "models", "get", "lead-v1", "--as-of", "yesterday")
    assert bad.exit_code == 2
    assert "neither an offset nor an ISO-8601 time" in bad.output

    listed = orjson.loads(
        (await run_cli(settings, "models", "list", "--status", "testing", "--json")).output
    )
    assert [m["config"]["id"] for m in listed] == ["lead-v2"]
    assert "2 models" in (await run_cli(settings, "models", "list")).output
    history = await run_cli(settings, "models", "history", "lead-v1")
    assert "validated" in history.output
    assert "deprecated" in history.output
    versions = orjson.loads(
        (await run_cli(settings, "models", "versions", "lead-v2", "--json")).output
    )
    assert [v["version"] for v in versions] == ["1.0.0"]

    show = await run_cli(settings, "audit", "show", "lead-v1")
    assert show.exit_code == 0
    assert show.output.index("active -> deprecated") < show.output.index(
        "registered 1.0.0"
    )  # newest first
    assert "Actor:    alice" in show.output

    lines = (
        await run_cli(settings, "audit", "replay", "--json", "--model", "lead-v2")
    ).output.splitlines()
    assert [orjson.loads(line)["event"]["type"] for line in lines] == [
        "ModelRegistered",
        "ModelMetricsRecorded",
        "ModelStatusChanged",
    ]
    table = await run_cli(
        settings, "audit", "replay", "--from-offset", "4", "--type", "ModelStatusChanged"
    )
    assert "2 events" in table.output

    await produce(settings, h.events[6:])
    rebuilt = await run_cli(settings, "projections", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "rebuilt" in rebuilt.output
    assert "7 records" in rebuilt.output
    status_out = orjson.loads((await run_cli(settings, "projections", "status", "--json")).output)
    assert status_out["rows"]["events"] == 7
    assert status_out["checkpoints"][0]["next_offset"] == 7
