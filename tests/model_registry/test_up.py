"""`model-registry up` and `demo` as a user runs them: real processes, embedded broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from model_registry.client import ModelRegistry
from registry.infra.settings import Settings, SettingsError
from tests.helpers import model_config


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REGISTRY_"))}
    env.update(extra)
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


class Up:
    """A running `model-registry up` in its own process."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "model_registry",
                "up",
                "--data-dir",
                str(data_dir),
                "--status-every",
                "0",
                "--health-port",
                "0",
                *args,
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        # the banner is printed once every component is ready and runtime.json is written
        assert self.proc.stdout is not None
        line = ""
        while "model-registry is up" not in line:
            line = self.proc.stdout.readline()
            if not line:
                _, err = self.proc.communicate(timeout=30)
                pytest.fail(f"`up` exited before it was ready: {err[-3000:]}")
        self.info: dict[str, Any] = json.loads((data_dir / "runtime.json").read_text())

    @property
    def settings(self) -> Settings:
        return Settings(
            bootstrap_servers=self.info["bootstrap_servers"],
            data_dir=self.data_dir,
            fetch_max_wait_ms=20,
        )

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        return time.monotonic() - started


async def test_history_survives_a_restart_and_nothing_is_left_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "reg"
    first = Up(data_dir)
    try:
        health = json.loads(
            urllib.request.urlopen(
                f"http://127.0.0.1:{first.info['health_port']}/healthz", timeout=10
            ).read()
        )
        assert health["healthy"] is True
        assert set(health["components"]) == {
            "decider",
            "projector",
            "predictor",
            "monitor",
            "guard",
            "api",
        }
        async with ModelRegistry(first.settings) as reg:
            await reg.register(model_config("lead-scoring-v1", status="testing"))
            await reg.record_metrics("lead-scoring-v1", {"accuracy": 80})
            await reg.update_status("lead-scoring-v1", "active")
            await reg.release_version("lead-scoring-v1", "1.1.0")
            before = await reg.get_model("lead-scoring-v1")
            versions_before = await reg.list_versions("lead-scoring-v1")
            history_before = await reg.status_history("lead-scoring-v1")
    finally:
        took = first.stop()
    assert first.proc.returncode == 0
    assert took < 15, f"stopping took {took:.1f}s"
    assert not _alive(first.info["broker_pid"]), "the embedded broker outlived `up`"
    assert not (data_dir / "runtime.json").exists()

    second = Up(data_dir)
    try:
        assert second.info["broker_pid"] != first.info["broker_pid"]
        async with ModelRegistry(second.settings) as reg:
            after = await reg.get_model("lead-scoring-v1")
            assert after is not None
            assert after.revision == before.revision == 4
            assert after.config == before.config
            assert await reg.list_versions("lead-scoring-v1") == versions_before
            assert await reg.status_history("lead-scoring-v1") == history_before
            # the restored log goes on: the next write gets the next revision
            result = await reg.update_status("lead-scoring-v1", "deprecated")
            assert result.revision == 5
    finally:
        second.stop()
    assert second.proc.returncode == 0
    assert not _alive(second.info["broker_pid"])


def test_ctrl_c_stops_everything_cleanly(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group: `up` must still stop its
    components before the broker (no connection errors, no orphan)."""
    up = Up(tmp_path / "reg")
    os.killpg(up.proc.pid, signal.SIGINT)
    _, err = up.proc.communicate(timeout=30)
    assert up.proc.returncode == 0
    assert "ERROR" not in err, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert "stopped." in err
    assert not _alive(up.info["broker_pid"])


async def test_acknowledged_writes_survive_a_kill_before_projection(tmp_path: Path) -> None:
    """SIGKILL while events are acknowledged but not projected (no projector runs at all):
    the journal brings them back; nothing acknowledged is lost."""
    data_dir = tmp_path / "reg"
    first = Up(data_dir, "--only", "decider")
    try:
        async with ModelRegistry(first.settings) as reg:
            await reg.register(model_config("kept", status="testing"))
            await reg.update_status("kept", "active")
    finally:
        first.proc.kill()
        first.proc.wait(30)
    assert not (data_dir / "projection.db").exists()  # nothing was projected
    second = Up(data_dir)
    try:
        async with ModelRegistry(second.settings) as reg:
            result = await reg.record_metrics("kept", {"accuracy": 91})
            assert result.revision == 3
            view = await reg.get_model("kept")
            assert view is not None
            assert view.status == "active"
            assert view.revision == 3
    finally:
        second.stop()


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_registry",
            "demo",
            "--data-dir",
            str(tmp_path / "demo"),
            "--requests",
            "1500",
        ],
        env=_env(COLUMNS="120"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "activate lead-scoring-v2" in text
    assert "status active" in text
    assert "challenger" in text
    assert "champion" in text
    assert "SRM check" in text
    assert "Verdict" in text
    assert "was testing" in text  # the point-in-time query
    assert "promote lead-scoring-v2 over lead-scoring-v1" in text
    assert "lead-scoring@production is served by lead-scoring-v2 2.0.0 now" in text
    assert "why (linear" in text  # the explanation's method and its top factors
    assert "demo finished" in text


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, piped (not a terminal), with no broker configured."""
    return subprocess.run(
        [sys.executable, "-m", "model_registry", *args],
        env=_env(REGISTRY_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_python_client_and_the_cli_find_a_running_up(tmp_path: Path) -> None:
    """The README's `ModelRegistry(Settings.from_env())`, with no KAFKA_BOOTSTRAP_SERVERS,
    talks to the `up` running on the data dir, as the CLI does; piped tables keep whole ids;
    a rejection exits 2 with its code."""
    data_dir = tmp_path / "reg"
    settings = Settings.from_env({"REGISTRY_DATA_DIR": str(data_dir)})
    assert not settings.bootstrap_servers
    long_id = "lead-scoring-" + "x" * 90
    up = Up(data_dir)
    try:
        async with ModelRegistry(settings) as reg:
            await reg.register(model_config(long_id, status="testing"))
            view = await reg.get_model(long_id)
            assert view is not None
            assert view.revision == 1
        listed = _cli(data_dir, "models", "list")
        assert listed.returncode == 0, listed.stderr
        assert long_id in listed.stdout  # whole, though far wider than 80 columns
        assert "1 models" in listed.stdout
        refused = _cli(data_dir, "models", "status", long_id, "deprecated")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith("rejected (InvalidTransition): ")
        regress = _cli(data_dir, "models", "release", long_id, "0.9.0")
        assert regress.returncode == 2, regress.stderr
        assert regress.stderr.startswith("rejected (")
        assert "Traceback" not in refused.stderr + regress.stderr
    finally:
        up.stop()
    assert up.proc.returncode == 0
    with pytest.raises(SettingsError, match="no Kafka bootstrap address"):
        async with ModelRegistry(settings):
            pass
    gone = _cli(data_dir, "models", "status", long_id, "active")
    assert gone.returncode == 3
    assert gone.stderr.startswith("no registry is running on the data dir")
