"""A transactional decider fences its zombie (Apache Kafka: transactions exist there only).

Two ``model-registry decider`` processes with ``REGISTRY_DECIDER_TRANSACTIONAL=1`` share one
transactional id. The first is frozen (SIGSTOP) in the middle of a batch, with records of
its open transaction already in the log; the second starts, which fences the first and
aborts that transaction, then answers every command. The first, resumed (SIGCONT), finds
itself fenced and exits: nothing it writes afterwards is committed. Every command is then
applied exactly once, revisions are gap-free, and readers (read committed) never see the
aborted records, which are physically in the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from registry.core import codec
from registry.decider.client import CommandClient, WriteResult
from registry.infra.kafka.clients import make_consumer, start_client
from registry.infra.settings import Settings
from tests.helpers import eventually, model_config, read_topic

pytestmark = pytest.mark.kafka_only

MODELS = 10
COMMANDS = 300  # RecordMetrics, streamed while the deciders change hands


def _decider(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_DATA_DIR": str(settings.data_dir),
        "REGISTRY_AUTH_ACTORS_FILE": str(settings.actors_file),
        "REGISTRY_DECIDER_TRANSACTIONAL": "1",
        "REGISTRY_DECIDER_BATCH_SIZE": "20",  # many small transactions: many chances mid-batch
        "REGISTRY_FETCH_MAX_WAIT_MS": "20",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "model_registry", "decider"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


class _Ends:
    """Where the registry topics end for a reader of everything and for a committed reader."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tps = [
            TopicPartition(settings.topic(t), 0) for t in ("registry.events", "registry.replies")
        ]
        self.all: AIOKafkaConsumer = make_consumer(settings, isolation_level="read_uncommitted")
        self.committed: AIOKafkaConsumer = make_consumer(settings)

    async def start(self) -> None:
        await start_client(self.all, self.settings)
        await start_client(self.committed, self.settings)

    async def stop(self) -> None:
        await self.all.stop()
        await self.committed.stop()

    async def open_transaction(self) -> bool:
        """Records of an open transaction are in the log: its end is past the stable end."""
        high = await self.all.end_offsets(self.tps)
        stable = await self.committed.end_offsets(self.tps)
        return any(high[tp] > stable[tp] for tp in self.tps)


async def _freeze_mid_transaction(proc: subprocess.Popen[bytes], ends: _Ends) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.05)  # what it had in flight lands
        if await ends.open_transaction():
            return
        proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.01 + (time.monotonic() * 1000 % 7) / 100)
    raise AssertionError("never caught the first decider with a transaction open")


async def test_a_frozen_decider_is_fenced_and_every_command_is_applied_once(
    settings: Settings, tmp_path: Path
) -> None:
    first = _decider(settings, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    ends = _Ends(settings)
    await ends.start()
    try:
        async with CommandClient(settings, actor="tester", timeout=90) as client:
            for i in range(MODELS):  # the first decider is up once these are answered
                await client.register(model_config(f"z-{i}"))

            async def stream() -> list[WriteResult]:
                tasks = []
                for i in range(COMMANDS):
                    tasks.append(
                        asyncio.create_task(
                            client.record_metrics(f"z-{i % MODELS}", {"accuracy": float(i % 100)})
                        )
                    )
                    await asyncio.sleep(0.004)
                return list(await asyncio.gather(*tasks))

            sending = asyncio.create_task(stream())
            await asyncio.sleep(0.3)
            await _freeze_mid_transaction(first, ends)
            frozen_at = await ends.all.end_offsets(ends.tps)
            second = _decider(settings, tmp_path / "second.log")
            results = await asyncio.wait_for(sending, 120)
        first.send_signal(signal.SIGCONT)
        code = await asyncio.to_thread(first.wait, 60)
    finally:
        await ends.stop()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 15)
                except subprocess.TimeoutExpired:
                    proc.kill()

    first_log = (tmp_path / "first.log").read_text(errors="replace")
    assert code != 0, f"the fenced decider went on:\n{first_log[-2000:]}"
    assert "fenc" in first_log.lower(), first_log[-2000:]

    # every command answered once, accepted
    assert Counter(r.outcome for r in results) == {"accepted": COMMANDS}
    command_ids = {r.command_id for r in results}
    assert len(command_ids) == COMMANDS

    # the committed log: each command applied exactly once, revisions gap-free per model
    events = [codec.decode_event(r.value) for r in await read_topic(settings, "registry.events")]
    causes = Counter(e.causation_id for e in events)
    assert all(n == 1 for n in causes.values()), "a command was applied twice"
    assert command_ids <= set(causes)
    assert len(events) == MODELS + COMMANDS
    by_model: dict[str, list[int]] = {}
    for e in events:
        by_model.setdefault(e.model_id, []).append(e.revision)
    assert all(revs == list(range(1, len(revs) + 1)) for revs in by_model.values()), by_model
    replies = await read_topic(settings, "registry.replies")
    assert Counter(r.key.decode() for r in replies).most_common(1)[0][1] == 1  # one each

    # the zombie's aborted records are in the log, and no committed reader saw them
    everything = AIOKafkaConsumer(**settings.client_kwargs(), isolation_level="read_uncommitted")
    await everything.start()
    raw = 0
    try:
        everything.assign(ends.tps)
        await everything.seek_to_beginning(*ends.tps)
        log_ends = await everything.end_offsets(ends.tps)
        for tp in ends.tps:
            while await everything.position(tp) < log_ends[tp]:
                batch = await everything.getmany(tp, timeout_ms=1000)
                raw += len(batch.get(tp, []))
    finally:
        await everything.stop()
    fenced = next((line for line in first_log.splitlines() if "fenc" in line.lower()), "")
    print(
        f"\nzombie decider: frozen with the logs at {sorted(frozen_at.values())}; exit {code} "
        f"({fenced.strip()[:120]}); committed {len(events)} events + {len(replies)} replies, "
        f"{raw - len(events) - len(replies)} aborted records in the log"
    )
    assert raw > len(events) + len(replies), "the frozen decider had written nothing to abort"
    assert sum(frozen_at.values()) > 0
    await eventually(lambda: first.poll() is not None, 5, what="the zombie to be gone")
