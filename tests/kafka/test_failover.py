"""The registry survives the loss of the leader of ``registry.events`` (3-node Apache Kafka).

The test starts a 3-node cluster of its own (``scripts/kafka.sh start --nodes 3``:
replication factor 3, ``min.insync.replicas=2``), whatever cluster the Kafka pass runs on,
creates the registry topics with replication factor 3 and runs a decider in-process. 20
clients each register a model and then record its metrics in a loop, each command with its
own id; a command that times out is sent again with the same id (the decider dedupes by
id). Meanwhile the JVM leading ``registry.events`` partition 0 is killed (SIGKILL) and the
writes go on for some seconds. Then: every acknowledged command is in ``registry.events``
exactly once (by causation id), revisions are gap-free per model, and the decider never
stopped (same task, no restart). The longest stall of acknowledged writes is printed.

Before the decider's producer was idempotent on Kafka, half the runs found events appended
twice (same event id and revision): a produce retried across the leader change.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from registry.core import codec
from registry.core.errors import CommandTimeout
from registry.core.messages import CommandBase, RecordMetrics, RecordMetricsPayload, RegisterModel
from registry.core.types import ModelConfig
from registry.decider.client import CommandClient
from registry.decider.decider import Decider
from registry.infra.identity import ensure_local, write_actors
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import DeciderSettings, Settings
from tests.helpers import model_config, read_topic

pytestmark = [
    pytest.mark.kafka_only,
    pytest.mark.skipif(
        not (shutil.which("java") and shutil.which("mvn")),
        reason="needs Java and Maven to start a 3-node Apache Kafka",
    ),
]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"
CLIENTS = 20
BEFORE_KILL = 4.0  # seconds of writes before the leader dies
AFTER_KILL = 20.0  # and after (Kafka notices a dead broker after its 9 s session timeout)
REPLY_TIMEOUT = 4.0  # a client's wait for one reply before sending the command again


def _kafka(*args: str) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"kafka.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return done.stdout


async def _leader_of(settings: Settings, topic: str) -> int:
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=10000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    (partition,) = [p for p in described["partitions"] if p["partition"] == 0]
    return int(partition["leader"])


class _Writer:
    """One client: registers its model, then records metrics until told to stop."""

    def __init__(self, client: CommandClient, index: int, acks: list[float]) -> None:
        self.client = client
        self.model_id = f"failover-{index}"
        self.acks = acks
        self.acknowledged: dict[str, str] = {}  # command id -> outcome
        self.timeouts = 0
        self.send_errors = 0

    async def _send(self, command: CommandBase) -> None:
        """Send until answered, always with the same command id."""
        while True:
            try:
                result = await self.client.send(command, timeout=REPLY_TIMEOUT)
            except CommandTimeout:
                self.timeouts += 1
                continue
            except KafkaError:
                self.send_errors += 1
                await asyncio.sleep(0.2)
                continue
            self.acks.append(time.monotonic())
            assert result.command_id == command.id
            assert command.id not in self.acknowledged
            self.acknowledged[command.id] = result.outcome
            return

    async def run(self, stop: asyncio.Event) -> None:
        actor = self.client.actor
        await self._send(
            RegisterModel(
                model_id=self.model_id,
                payload=ModelConfig.model_validate(model_config(self.model_id)),
                actor=actor,
            )
        )
        i = 0
        while not stop.is_set():
            i += 1
            payload = RecordMetricsPayload.model_validate({"metrics": {"accuracy": i % 100 / 100}})
            await self._send(RecordMetrics(model_id=self.model_id, payload=payload, actor=actor))


async def test_writes_survive_the_loss_of_the_events_leader(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    try:
        out = await asyncio.to_thread(_kafka, "start", "--nodes", "3", "--data", str(data))
        bootstrap = next(
            line.split()[1] for line in out.splitlines() if line.startswith("bootstrap ")
        )
        settings = Settings(
            bootstrap_servers=bootstrap,
            topic_prefix="failover.",
            data_dir=tmp_path / "registry",
            fetch_max_wait_ms=100,
            replication_factor=3,
            decider=DeciderSettings(allow_clear=True),
        )
        settings.data_dir.mkdir()
        identity = ensure_local(settings)
        write_actors(
            settings.actors_file,
            [
                {
                    "name": identity.actor,
                    "public_key": identity.public_key,
                    "roles": ["admin"],
                    "signs_for": ["*"],
                }
            ],
        )
        await ensure_topics(settings)

        decider = Decider(settings)
        stop_decider = asyncio.Event()
        deciding = asyncio.create_task(decider.run(stop_decider), name="decider")
        await asyncio.wait_for(decider.ready.wait(), 60)

        acks: list[float] = []
        stop_writing = asyncio.Event()
        clients = [CommandClient(settings, timeout=REPLY_TIMEOUT) for _ in range(CLIENTS)]
        await asyncio.gather(*(c.start() for c in clients))
        writers = [_Writer(c, i, acks) for i, c in enumerate(clients)]
        try:
            writing = [asyncio.create_task(w.run(stop_writing)) for w in writers]
            await asyncio.sleep(BEFORE_KILL)
            leader = await _leader_of(settings, settings.topic("registry.events"))
            pid = int((data / f"node-{leader}" / "kafka.pid").read_text())
            accepted_before = decider.stats.accepted
            acks_before = len(acks)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(AFTER_KILL)
            stop_writing.set()
            await asyncio.wait_for(asyncio.gather(*writing), 60)
            assert not deciding.done(), f"the decider stopped: {deciding}"
            new_leader = await _leader_of(settings, settings.topic("registry.events"))
        finally:
            stop_writing.set()
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
            stop_decider.set()
            await asyncio.wait_for(deciding, 30)

        events = [
            codec.decode_event(r.value) for r in await read_topic(settings, "registry.events")
        ]
    finally:
        await asyncio.to_thread(_kafka, "stop", "--data", str(data), "--wipe")

    acknowledged: dict[str, str] = {}
    for w in writers:
        acknowledged.update(w.acknowledged)
    outcomes = Counter(acknowledged.values())
    causes = Counter(e.causation_id for e in events)
    twice = [c for c, n in causes.items() if n > 1]
    assert not twice, "commands applied more than once: " + repr(
        [
            (e.causation_id, e.id, e.model_id, e.revision)
            for e in events
            if e.causation_id in twice[:3]
        ]
    )
    assert set(acknowledged) == set(causes), (
        f"acknowledged but not in the log: {len(set(acknowledged) - set(causes))}, "
        f"in the log but never acknowledged: {len(set(causes) - set(acknowledged))}"
    )
    by_model: dict[str, list[int]] = {}
    for e in events:
        by_model.setdefault(e.model_id, []).append(e.revision)
    assert len(by_model) == CLIENTS
    for model, revs in by_model.items():
        assert revs == list(range(1, len(revs) + 1)), f"{model}: revisions {revs}"
    assert len(acks) > acks_before, "no write was acknowledged after the kill"
    assert decider.stats.accepted > accepted_before

    acks.sort()
    gaps = [(b - a, a) for a, b in zip(acks, acks[1:], strict=False)]
    stall, stall_start = max(gaps)
    timeouts = sum(w.timeouts for w in writers)
    send_errors = sum(w.send_errors for w in writers)
    print(
        f"\nfailover: killed node {leader} (leader of registry.events/0; now node {new_leader}); "
        f"{len(acknowledged)} commands acknowledged ({dict(outcomes)}), {len(events)} events, "
        f"{timeouts} reply timeouts resent, {send_errors} send errors resent; longest stall of "
        f"acknowledged writes {stall:.2f}s, starting {stall_start - killed_at:+.2f}s from the kill"
    )
