"""`up` survives a crashing component: the cause is told, the component restarted with a
backoff, the stack (and its embedded broker) goes on."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from model_registry.cli.up import run_stack
from model_registry.client import ModelRegistry
from model_registry.supervisor import (
    STUCK_AFTER,
    Backoff,
    Crash,
    RecordPosition,
    record_position,
    supervise,
)
from registry.infra.health import ComponentHealth
from registry.infra.settings import Settings
from tests.helpers import eventually, model_config
from tests.model_registry.test_up import Up

FAST = Backoff(initial=0.01, factor=2.0, maximum=0.04, reset_after=60.0)


def at_record(
    exc: Exception, topic: str = "registry.commands", p: int = 0, o: int = 7
) -> Exception:
    """The convention: the exception names the record its component was handling."""
    exc.topic, exc.partition, exc.offset = topic, p, o  # type: ignore[attr-defined]
    return exc


class Flaky:
    """A component that raises the given errors on its first runs, then runs until stopped."""

    def __init__(self, script: list[BaseException | float], runs: list[Flaky]) -> None:
        self.script = script
        self.stats = SimpleNamespace(last_progress_monotonic=time.monotonic())
        self.ready = asyncio.Event()
        runs.append(self)

    async def run(self, stop: asyncio.Event) -> None:
        step = self.script.pop(0) if self.script else None
        if isinstance(step, float):  # run this long, then crash
            await asyncio.sleep(step)
            raise RuntimeError("worked a while, then failed")
        if isinstance(step, BaseException):
            raise step
        self.ready.set()
        await stop.wait()


async def supervised(
    script: list[BaseException | float], backoff: Backoff = FAST, until: int = 1
) -> tuple[list[Crash], list[Flaky], ComponentHealth]:
    """Supervise a Flaky until it has been started ``until`` times past its script."""
    runs: list[Flaky] = []
    crashes: list[Crash] = []
    health = ComponentHealth("decider", Flaky(script, runs))
    stop = asyncio.Event()
    task = asyncio.create_task(
        supervise(
            health,
            lambda: Flaky(script, runs),
            stop,
            on_crash=crashes.append,
            backoff=backoff,
        )
    )
    await eventually(lambda: not script and health.component.ready.is_set(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, 5)
    return crashes, runs, health


def test_backoff_doubles_up_to_its_bound() -> None:
    delays = [Backoff().delay(n) for n in range(1, 10)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert Backoff().delay(10_000) == 30


def test_the_record_is_found_by_its_attributes_on_the_error_or_its_cause() -> None:
    direct = at_record(RuntimeError("x"), "t", 2, 9)
    assert record_position(direct) == RecordPosition("t", 2, 9)
    outer = ValueError("while handling it")
    outer.__cause__ = direct
    assert record_position(outer) == RecordPosition("t", 2, 9)
    implicit = KeyError("during it")
    implicit.__context__ = outer
    assert record_position(implicit) == RecordPosition("t", 2, 9)
    holder = RuntimeError("y")
    record = SimpleNamespace(topic="u", partition=1, offset=3, value=b"never read")
    holder.record = record  # type: ignore[attr-defined]
    assert record_position(holder) == RecordPosition("u", 1, 3)
    assert str(RecordPosition("u", 1, 3)) == "u partition 1 offset 3"
    assert record_position(RuntimeError("no record")) is None
    half = RuntimeError("half")
    half.partition, half.offset = 0, 1  # type: ignore[attr-defined]  # no topic: not a record
    assert record_position(half) is None
    grouped = ExceptionGroup("tasks", [at_record(RuntimeError("z"), "v", 0, 4)])
    assert record_position(grouped) == RecordPosition("v", 0, 4)


async def test_a_crash_is_told_with_its_cause_and_the_component_restarted() -> None:
    crashes, runs, health = await supervised(
        [at_record(RuntimeError("boom")), KeyError("missing"), at_record(RuntimeError("boom"))]
    )
    assert len(runs) == 4  # three crashes, then a fresh instance that runs
    assert health.component is runs[-1]
    assert [c.in_a_row for c in crashes] == [1, 2, 3]
    assert [c.restart_in for c in crashes] == [0.01, 0.02, 0.04]
    first = crashes[0]
    assert (first.component, first.error, first.message) == ("decider", "RuntimeError", "boom")
    assert first.position == RecordPosition("registry.commands", 0, 7)
    assert first.describe() == (
        "decider crashed at registry.commands partition 0 offset 7: RuntimeError: boom; "
        "restarting it in 0.01s."
    )
    assert crashes[1].describe() == (
        "decider crashed: KeyError: 'missing'; restarting it in 0.02s (crash 2 in a row)."
    )
    assert crashes[2].at_same_record == 1  # the KeyError named no record in between


async def test_crashing_again_and_again_at_one_record_is_said_loudly() -> None:
    script: list[BaseException | float] = [
        at_record(RuntimeError("poison")) for _ in range(STUCK_AFTER + 1)
    ]
    crashes, _, _ = await supervised(script)
    assert [c.at_same_record for c in crashes] == [1, 2, 3, 4]
    assert [c.stuck for c in crashes] == [False, False, True, True]
    loud = crashes[STUCK_AFTER - 1].describe()
    assert loud.startswith("ALERT: decider has crashed 3 times in a row at registry.commands")
    assert "RuntimeError: poison" in loud
    assert "dead-lettered" in loud


async def test_a_healthy_run_starts_the_backoff_over() -> None:
    backoff = Backoff(initial=0.01, maximum=1.0, reset_after=0.05)
    crashes, _, _ = await supervised([0.08, 0.08, 0.08], backoff)
    assert [c.in_a_row for c in crashes] == [1, 1, 1]
    assert {c.restart_in for c in crashes} == {0.01}


async def test_a_failing_constructor_and_an_unasked_return_are_crashes_too() -> None:
    runs: list[Flaky] = []
    crashes: list[Crash] = []
    attempts = iter([ValueError("no config"), None])

    class Quits(Flaky):
        async def run(self, stop: asyncio.Event) -> None:
            return None  # returns although nobody asked it to stop

    def create() -> Flaky:
        failure = next(attempts)
        if failure is not None:
            raise failure
        return Flaky([], runs)

    health = ComponentHealth("monitor", Quits([], runs))
    stop = asyncio.Event()
    task = asyncio.create_task(
        supervise(health, create, stop, on_crash=crashes.append, backoff=FAST)
    )
    await eventually(lambda: len(runs) == 2 and runs[-1].ready.is_set(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [c.cause for c in crashes] == [
        "RuntimeError: it stopped without being asked to",
        "ValueError: no config",
    ]


async def test_stop_interrupts_the_backoff() -> None:
    runs: list[Flaky] = []
    health = ComponentHealth("projector", Flaky([RuntimeError("down")], runs))
    stop = asyncio.Event()
    slow = Backoff(initial=30.0)
    crashes: list[Crash] = []
    task = asyncio.create_task(
        supervise(health, lambda: Flaky([], runs), stop, on_crash=crashes.append, backoff=slow)
    )
    await eventually(lambda: crashes)
    report = health.report()
    assert report["healthy"] is False  # waiting for its restart: the health check says so
    assert report["error"] == "RuntimeError"
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1
    assert len(runs) == 1


async def test_up_reports_the_cause_and_keeps_the_stack_running(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reproduction: a crashed decider used to print `component(s) crashed: decider;
    stopping` and stop the whole stack. Now its cause is printed and it comes back."""
    runs: list[Flaky] = []
    script: list[BaseException | float] = [at_record(RuntimeError("boom"), o=17)]
    stop = asyncio.Event()

    def flaky(s: Settings, options: dict[str, Any]) -> Flaky:
        return Flaky(script, runs)

    task = asyncio.create_task(
        run_stack(
            settings,
            run_demo=False,
            health_port=0,
            status_every=0,
            options={},
            components=("decider", "projector"),
            stop=stop,
            factories={"decider": flaky},
        )
    )
    await eventually(lambda: len(runs) == 2 and runs[-1].ready.is_set(), timeout=30)
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    err = capsys.readouterr().err
    assert (
        "decider crashed at registry.commands partition 0 offset 17: RuntimeError: boom; "
        "restarting it in 0.5s." in err
    )
    assert "stopping" in err
    assert err.index("decider crashed") < err.index("stopping...")  # not stopped by it


def test_under_up_a_component_that_cannot_start_is_retried_and_the_rest_serves(
    tmp_path: Path,
) -> None:
    """A real `up` whose monitor cannot open its database: the cause is printed, the
    monitor is retried, the registry still takes writes, and Ctrl-C stops it cleanly."""
    data_dir = tmp_path / "reg"
    data_dir.mkdir()
    (data_dir / "monitor.db").write_bytes(b"this is not a SQLite database" * 100)
    up = Up(data_dir)
    try:
        health = json.loads(
            _get(f"http://127.0.0.1:{up.info['health_port']}/healthz"),
        )
        assert health["components"]["decider"]["healthy"] is True
        assert health["components"]["monitor"]["healthy"] is False

        async def write() -> int:
            async with ModelRegistry(up.settings) as reg:
                return (await reg.register(model_config("still-serving"))).revision

        assert asyncio.run(write()) == 1
        time.sleep(1.0)  # the monitor's second attempt (0.5 s backoff)
    finally:
        up.stop()
    _, err = up.proc.communicate(timeout=30)
    assert up.proc.returncode == 0, err[-2000:]
    assert "monitor crashed: DatabaseError: file is not a database; restarting it in 0.5s." in err
    assert "(crash 2 in a row)" in err
    assert "Traceback" not in err, err[-2000:]


def _get(url: str) -> bytes:
    try:
        return bytes(urllib.request.urlopen(url, timeout=10).read())
    except urllib.error.HTTPError as exc:  # 503 when a component is unhealthy
        return bytes(exc.read())


def test_with_json_logs_a_crash_is_a_structured_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`up --json-logs` gives no reporter: the stack logs the crash with its fields."""
    from model_registry.stack import Stack

    stack = Stack(Settings())
    crash = Crash("decider", "RuntimeError", "boom", RecordPosition("t", 0, 1), 1, 1, 0.5)
    with caplog.at_level(logging.WARNING, logger="model_registry.stack"):
        stack._crashed(crash)  # noqa: SLF001 - what the supervisor calls
    record = caplog.records[-1]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == crash.describe()
    assert (record.component, record.error, record.record) == (  # type: ignore[attr-defined]
        "decider",
        "RuntimeError",
        "t partition 0 offset 1",
    )
    assert record.exc_info is None  # the traceback only with REGISTRY_DEBUG
    assert stack.crashes[-1] is crash
