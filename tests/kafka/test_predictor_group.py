"""Prediction consumers scale out in a consumer group (Apache Kafka).

Three ``model-registry predictor`` processes (``REGISTRY_PREDICTOR_ASSIGNMENT=group``) share
the six partitions of ``predictions.requests``. While 20,000 requests stream in, one is
killed with SIGKILL (no commit, no leaving the group) and another started: every request is
answered, a request answered twice (redelivered to another member after the kill) carries
the same answer and variant both times, and a routing unit keeps its variant. Run with
``-s`` for the figures.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from registry.infra.settings import Settings
from tests.consumers.conftest import (  # noqa: F401 - the prediction tests' fixtures
    RegistryWriter,
    lead_input,
    lead_models,
    producer,
    registry,
    request_bytes,
    send_requests,
    settings,
    sklearn_config,
)
from tests.consumers.test_kill_restart import ResultsWatcher, _answer, _start

pytestmark = pytest.mark.kafka_only

TOTAL = 20_000
CHUNK = 1_000
MEMBERS = 3


def _requests(first: int, count: int) -> list[tuple[bytes, bytes]]:
    return [
        (
            f"lead-{i % 3000}".encode(),
            request_bytes(f"r{i}", "lead-v1", lead_input(i), f"lead-{i % 3000}"),
        )
        for i in range(first, first + count)
    ]


async def _stop_all(members: list[subprocess.Popen[bytes]]) -> list[int | None]:
    """SIGTERM the living members; their exit codes (the killed one's: -SIGKILL)."""
    for proc in members:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for proc in members:
        try:
            codes.append(await asyncio.to_thread(proc.wait, 30))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(None)
    return codes


async def test_three_members_one_killed_and_replaced_answer_every_request_once(
    settings: Settings,  # noqa: F811
    registry: RegistryWriter,  # noqa: F811
    producer: AIOKafkaProducer,  # noqa: F811
    lead_models: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    assert settings.prediction_partitions == 6
    await registry.register(sklearn_config("lead-v1", lead_models["champion"]))
    await registry.register(sklearn_config("lead-v2", lead_models["challenger"], version="2.0.0"))
    await registry.start_test("lead-v2", "lead-v1", 20)
    logs = [tmp_path / f"member-{i}.log" for i in range(MEMBERS + 1)]
    members = [_start(settings, logs[i], "group") for i in range(MEMBERS)]
    seen_at: list[tuple[float, int]] = []
    started = time.monotonic()
    killed_at = replaced_at = 0.0
    try:
        async with ResultsWatcher(settings) as watcher:

            async def stream() -> None:
                for first in range(0, TOTAL, CHUNK):
                    await send_requests(settings, producer, _requests(first, CHUNK))
                    await asyncio.sleep(0.25)

            sending = asyncio.create_task(stream())

            async def until(distinct: int, timeout: float) -> None:
                deadline = time.monotonic() + timeout
                while watcher.distinct() < distinct and time.monotonic() < deadline:
                    await watcher.until(min(distinct, watcher.distinct() + 500), timeout=1)
                    seen_at.append((time.monotonic() - started, watcher.distinct()))

            await until(TOTAL // 4, timeout=120)
            victim = members[1]
            victim.kill()  # SIGKILL: its uncommitted requests go to the others after a rebalance
            victim.wait(10)
            killed_at = time.monotonic() - started
            members.append(_start(settings, logs[MEMBERS], "group"))
            replaced_at = time.monotonic() - started
            await until(TOTAL, timeout=180)
            await sending
    finally:
        codes = await _stop_all(members)
    elapsed = time.monotonic() - started
    answers: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for r in watcher.results:
        answers[r.request_id].add(_answer(r))
    times = Counter(r.request_id for r in watcher.results)
    twice = sum(1 for n in times.values() if n > 1)
    longest_gap = max(
        (b[0] - a[0] for a, b in zip(seen_at, seen_at[1:], strict=False) if b[1] == a[1]),
        default=0.0,
    )
    print(
        f"\npredictor group: {MEMBERS} members on 6 partitions, {TOTAL:,} requests in "
        f"{elapsed:.1f}s ({TOTAL / elapsed:,.0f}/s, streamed); one killed at {killed_at:.1f}s "
        f"and replaced at {replaced_at:.1f}s; {twice:,} requests answered twice (redelivered), "
        f"all identically; longest stall without a new answer {longest_gap:.1f}s"
    )
    assert watcher.distinct() == TOTAL, f"lost requests; see {tmp_path}"
    assert all(len(a) == 1 for a in answers.values()), "a redelivered request got another answer"
    assert all(r.error is None for r in watcher.results)
    variants_of_unit: dict[str | None, set[str]] = defaultdict(set)
    for r in watcher.results:
        variants_of_unit[r.unit_id].add(r.variant)
    assert all(len(v) == 1 for v in variants_of_unit.values()), "a unit changed variant"
    assert codes[1] == -signal.SIGKILL
    assert [c for i, c in enumerate(codes) if i != 1] == [0] * MEMBERS, codes
