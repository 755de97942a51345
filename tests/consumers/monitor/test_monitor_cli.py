"""``model-registry monitor`` as a process and the commands it adds to the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from registry.infra.settings import Settings
from tests.consumers.monitor.streams import (
    ab_test_events,
    counted,
    produce_events,
    produce_results,
    result,
)
from tests.helpers import eventually


def test_commands_are_registered() -> None:
    from model_registry.cli.main import main

    assert "monitor" in main.commands
    ab = main.commands["ab"]
    assert "report" in ab.commands  # type: ignore[attr-defined]


async def test_monitor_process_serves_metrics_on_loopback_and_stops_cleanly(
    settings: Settings, tmp_path: Path
) -> None:
    events, test_id = ab_test_events(pct=20)
    await produce_events(settings, events)
    await produce_results(
        settings, [result(f"c{i}", "champion", test_id, output=1) for i in range(30)]
    )
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "model_registry", "monitor", "--metrics-port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline, port = time.monotonic() + 30, None
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
            port = int(match.group(1)) if match else None
            assert line or proc.poll() is None, "the monitor exited early"
        assert port is not None
        db = tmp_path / "monitor.db"  # the default: <data dir>/monitor.db
        await eventually(lambda: counted(db) == 30)
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert re.search(
            r'model_registry_monitor_requests_total\{model="lead-scoring-v1",'
            r'test_id="[^"]+",variant="champion"\} 30\.0',
            body,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0
