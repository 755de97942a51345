"""Kill -9 the predictor process mid-stream, restart it: no request is lost, and a request
answered twice (redelivered after the crash) carries the same answer both times."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from registry.core.predictions import PredictionResult
from registry.infra.kafka.clients import make_consumer, partitions_of
from registry.infra.settings import Settings
from tests.consumers.conftest import (
    RegistryWriter,
    lead_input,
    request_bytes,
    send_requests,
    sklearn_config,
)

REPO = Path(__file__).resolve().parents[2]


class ResultsWatcher:
    """Reads predictions.results incrementally from the beginning."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.results: list[PredictionResult] = []
        self.consumer = make_consumer(settings, fetch_max_wait_ms=20)

    async def __aenter__(self) -> ResultsWatcher:
        await self.consumer.start()
        tps = await partitions_of(self.consumer, self.settings.topic("predictions.results"))
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    def distinct(self) -> int:
        return len({r.request_id for r in self.results})

    async def until(self, distinct: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.distinct() < distinct and time.monotonic() < deadline:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=20_000)
            for records in batch.values():
                self.results.extend(PredictionResult.model_validate_json(r.value) for r in records)


def _start(settings: Settings, log: Path, assignment: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_FETCH_MAX_WAIT_MS": "20",
        "REGISTRY_DATA_DIR": str(settings.data_dir),
        "PREDICTOR_MAX_BATCH": "50",  # many small commits: the kill lands between them
        "PREDICTOR_ASSIGNMENT": assignment,
        "PREDICTOR_SESSION_TIMEOUT_MS": "6000",
    }
    return subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "model_registry", "--log-level", "info", "predictor"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def _answer(r: PredictionResult) -> tuple[Any, ...]:
    return (
        r.id,
        r.variant,
        r.served_model_id,
        r.served_version,
        r.test_id,
        r.split_version,
        repr(r.output),
        r.error,
    )


@pytest.mark.parametrize("assignment", ["all", "group"])
async def test_kill_9_mid_stream_loses_nothing_and_repeats_answers_exactly(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    lead_models: dict[str, Path],
    tmp_path: Path,
    assignment: str,
) -> None:
    await registry.register(sklearn_config("lead-v1", lead_models["champion"]))
    await registry.register(sklearn_config("lead-v2", lead_models["challenger"], version="2.0.0"))
    await registry.start_test("lead-v2", "lead-v1", 20)
    first = [
        (
            f"lead-{i % 3000}".encode(),
            request_bytes(f"r{i}", "lead-v1", lead_input(i), f"lead-{i % 3000}"),
        )
        for i in range(12_000)
    ]
    later = [
        (
            f"lead-{i % 3000}".encode(),
            request_bytes(f"r{i}", "lead-v1", lead_input(i), f"lead-{i % 3000}"),
        )
        for i in range(12_000, 14_000)
    ]
    await send_requests(settings, producer, first)
    log = tmp_path / "predictor.log"
    async with ResultsWatcher(settings) as watcher:
        proc = _start(settings, log, assignment)
        try:
            await watcher.until(2_000, timeout=60)
        finally:
            proc.kill()  # SIGKILL: no cleanup, no commit, no leaving the group
            proc.wait(10)
        killed_at = watcher.distinct()
        assert 2_000 <= killed_at < 12_000, f"not mid-stream ({killed_at} answered); see {log}"
        await send_requests(settings, producer, later)  # requests keep coming while it is down
        proc = _start(settings, log, assignment)
        try:
            await watcher.until(14_000, timeout=90)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 30)
    assert watcher.distinct() == 14_000, f"lost requests; see {log}"
    assert code == 0, log.read_text()[-3000:]
    answers: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for r in watcher.results:
        answers[r.request_id].add(_answer(r))
    assert all(len(a) == 1 for a in answers.values()), (
        "a redelivered request got a different answer"
    )
    assert all(r.error is None for r in watcher.results)
    variants_of_unit: dict[str | None, set[str]] = defaultdict(set)
    for r in watcher.results:
        variants_of_unit[r.unit_id].add(r.variant)
    assert all(len(v) == 1 for v in variants_of_unit.values()), (
        "a unit changed variant across the restart"
    )
