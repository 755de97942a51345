"""The monitor process: results and outcomes in, per-variant metrics out (docs/monitor.md).

One ``LogFollower`` reads ``registry.events`` (for the A/B tests and model types),
``predictions.results``, ``predictions.outcomes`` and ``predictions.shadow`` (a shadow test's
mirrored answers, compared with the champion's). Each poll becomes one SQLite
transaction holding the new sums *and* the positions after them; on start the follower seeks
to those stored positions, so a kill at any point repeats and loses nothing. The registry log
is folded from offset 0 on every start (see ``abtests``).

A prediction log that comes back shorter than the stored position (the embedded broker keeps
data in memory only, so ``model-registry up`` can restart it empty; or retention removed the
stored offset on a real Kafka) is detected - stored position above the high watermark, or an
out-of-range fetch - logged, recorded in ``log_resets``, and read again from its start. The
metrics already counted are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from consumers.monitor.abtests import ABTestTracker
from consumers.monitor.aggregate import OutcomeRow, ResultRow, Unstorable
from consumers.monitor.store import Applied, Batch, MonitorStore
from consumers.monitor.totals import Totals
from registry.core.errors import DecodeError, describe_validation_error
from registry.core.limits import over_limits
from registry.core.predictions import PredictionOutcome, PredictionResult
from registry.core.replay import fold_records
from registry.infra.kafka.clients import make_producer, start_client
from registry.infra.kafka.dlq import DlqOutcome, send_to_dlq
from registry.infra.kafka.follower import Batch as Records
from registry.infra.kafka.follower import LogBadRecords, LogFollower, Shortened
from registry.infra.settings import MonitorSettings, Settings

__all__ = ["Monitor", "MonitorStats", "monitor_path"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Record: TypeAlias = ConsumerRecord  # aiokafka is untyped: ConsumerRecord[bytes, bytes]


def monitor_path(settings: Settings) -> Path:
    """The default monitor database: ``<data_dir>/monitor.db``."""
    return Path(settings.data_dir) / "monitor.db"


@dataclass(slots=True)
class MonitorStats:
    """Live counters for health checks and the metrics endpoint.

    ``last_progress_monotonic`` moves whenever a batch is committed or a poll finds the
    monitor caught up, so "lag > 0 and no progress for N seconds" means stalled.
    """

    results: int = 0
    outcomes: int = 0
    registry_events: int = 0
    duplicate_results: int = 0
    duplicate_outcomes: int = 0
    outcomes_joined: int = 0
    outcomes_pending: int = 0
    outcomes_expired: int = 0
    dlq: int = 0
    results_dlq: int = 0
    outcomes_dlq: int = 0
    shadow_results: int = 0
    duplicate_shadow_results: int = 0
    shadow_pairs: int = 0
    shadow_outcomes_joined: int = 0
    shadow_dlq: int = 0
    dlq_failed: int = 0
    registry_unreadable: int = 0
    log_resets: int = 0
    lag: int = 0
    lag_by_partition: dict[tuple[str, int], int] = field(default_factory=dict)
    caught_up: bool = False
    last_progress_monotonic: float = field(default_factory=time.monotonic)

    _COUNTS = (
        "results",
        "outcomes",
        "registry_events",
        "duplicate_results",
        "duplicate_outcomes",
        "outcomes_joined",
        "outcomes_expired",
        "dlq",
        "results_dlq",
        "outcomes_dlq",
        "shadow_results",
        "duplicate_shadow_results",
        "shadow_pairs",
        "shadow_outcomes_joined",
        "shadow_dlq",
        "dlq_failed",
        "registry_unreadable",
        "log_resets",
    )

    def counts(self) -> dict[str, int]:
        """The monotonic counters by name."""
        return {name: getattr(self, name) for name in self._COUNTS}

    def snapshot(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return {
            **self.counts(),
            "outcomes_pending": self.outcomes_pending,
            "lag": self.lag,
            "caught_up": self.caught_up,
            "seconds_since_progress": round(time.monotonic() - self.last_progress_monotonic, 3),
        }

    def load(self, counters: dict[str, int]) -> None:
        """Seed from the database's ``monitor_counters``."""
        for name in (*self._COUNTS, "outcomes_pending"):
            if name in counters and name != "registry_events":
                setattr(self, name, counters[name])


class Monitor:
    """Consumes results, outcomes and registry events into the monitor database."""

    def __init__(
        self,
        settings: Settings,
        db_path: Path | str | None = None,
        config: MonitorSettings | None = None,
    ) -> None:
        self.settings = settings
        self.db_path = Path(db_path) if db_path is not None else monitor_path(settings)
        self.config = config or settings.monitor
        self._limits = settings.limits
        self.stats = MonitorStats()
        self.totals = Totals()
        self.tracker = ABTestTracker()
        self._events_topic = settings.topic("registry.events")
        self._results_topic = settings.topic("predictions.results")
        self._outcomes_topic = settings.topic("predictions.outcomes")
        self._shadow_topic = settings.topic("predictions.shadow")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-db")
        self._store: MonitorStore | None = None
        self._follower: LogFollower | None = None
        self._producer: AIOKafkaProducer | None = None
        self._skipped = LogBadRecords("monitor")
        self._registry_tps: list[TopicPartition] = []
        self._prediction_tps: list[TopicPartition] = []
        self._committed: dict[TopicPartition, int] = {}
        self._next_expiry = 0.0
        self._inflight: asyncio.Future[None] | None = None
        self.ready = asyncio.Event()
        """Set once the first catch-up has read every partition to its end."""

    # ------------------------------------------------------------------ lifecycle

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        """Open the database, connect, assign every partition and seek to the stored positions."""
        if self._follower is not None:
            return
        self._store = await self._db(MonitorStore, self.db_path)
        self.stats.load(await self._db(self._store.counters))
        self.totals.merge(await self._db(self._store.load_totals))
        follower = LogFollower(
            self.settings,
            [self._events_topic, self._results_topic, self._outcomes_topic, self._shadow_topic],
            name="monitor",
            max_records=self.config.max_records,
            poll_ms=self.config.poll_timeout_ms,
            on_shortened=self._reset,
            max_partition_fetch_bytes=1024 * 1024,
        )
        producer = make_producer(self.settings)
        await start_client(producer, self.settings)
        try:
            stored = await self._db(self._store.positions)
            await follower.start()
        except BaseException:
            await producer.stop()
            raise
        self._follower, self._producer = follower, producer
        self._registry_tps = follower.partitions_of(self._events_topic)
        self._prediction_tps = [tp for tp in follower.partitions if tp not in self._registry_tps]
        positions = {}
        for tp in self._prediction_tps:  # registry events: always from the start
            offset = stored.get((tp.topic, tp.partition))
            if offset is not None:
                positions[tp] = self._committed[tp] = offset
        await follower.seek(positions)
        log.info("monitor started on %s (db %s)", self.settings.bootstrap_servers, self.db_path)

    async def close(self) -> None:
        """Disconnect and close the database (idempotent)."""
        try:
            await self.drain()
        finally:
            await self._disconnect()

    async def _disconnect(self) -> None:
        follower, producer, store = self._follower, self._producer, self._store
        self._follower = self._producer = self._store = None
        if follower is not None:
            await follower.stop()
        if producer is not None:
            await producer.stop()
        if store is not None:
            await self._db(store.close)

    async def catch_up(self) -> None:
        """Read every partition to its current end (registry first, then predictions)."""
        await self.start()
        follower = self._require_follower()
        follower.pause(self._prediction_tps)
        try:
            await self._until_caught_up(self._registry_tps)
        finally:
            follower.resume(self._prediction_tps)
        await self._until_caught_up([*self._registry_tps, *self._prediction_tps])
        await self.drain()
        self.ready.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Catch up, then follow the logs until ``stop`` is set; closes on the way out."""
        try:
            await self.catch_up()
            while not stop.is_set():
                await self.poll_once(self.config.poll_timeout_ms)
        finally:
            await self.close()

    def healthy(self, stall_after_s: float = 60.0) -> bool:
        """False when there is lag and no progress for ``stall_after_s`` seconds."""
        idle = time.monotonic() - self.stats.last_progress_monotonic
        return self.stats.lag == 0 or idle < stall_after_s

    def _require_follower(self) -> LogFollower:
        if self._follower is None:
            raise RuntimeError("the monitor is not started")
        return self._follower

    # ------------------------------------------------------------------ polling

    async def _until_caught_up(self, tps: list[TopicPartition]) -> None:
        while not await self.poll_once(self.config.catch_up_poll_ms, tps):
            pass

    async def poll_once(self, timeout_ms: int, tps: list[TopicPartition] | None = None) -> bool:
        """Fetch (handling shortened logs), process one batch; True when ``tps`` (default:
        all) are caught up."""
        follower = self._require_follower()
        records = await follower.poll(timeout_ms)
        if records:
            await self._process(records)
        if time.monotonic() >= self._next_expiry:
            await self._expire()
        self._update_lag()
        caught_up = follower.caught_up(tps)
        if caught_up or records:
            self.stats.last_progress_monotonic = time.monotonic()
        return caught_up

    async def _reset(self, shortened: list[Shortened]) -> None:
        """A prediction log came back shorter than the stored position: keep the metrics
        counted so far and read it from its start."""
        await self.drain()  # no batch may commit a position of a partition after its reset
        resets = [
            (s.tp, self._committed.get(s.tp, s.position), s.high_watermark) for s in shortened
        ]
        for tp, stored, hw in resets:
            log.warning(
                "%s[%d] is shorter than the monitor's position %d (high watermark %s): the log was "
                "restarted or truncated; keeping the metrics counted so far and reading it from "
                "its start",
                tp.topic,
                tp.partition,
                stored,
                hw,
            )
        store = self._require_store()
        await self._db(
            store.reset_positions, [(tp.topic, tp.partition, s, hw) for tp, s, hw in resets]
        )
        for tp, _, _ in resets:
            self._committed.pop(tp, None)
        await self._require_follower().consumer.seek_to_beginning(*[tp for tp, _, _ in resets])
        self.stats.log_resets += len(resets)

    def _update_lag(self) -> None:
        lags = self._require_follower().stats.lag_by_partition
        total = 0
        for tp in self._prediction_tps:
            if tp in lags:
                self.stats.lag_by_partition[(tp.topic, tp.partition)] = lags[tp]
                total += lags[tp]
        self.stats.lag = total
        self.stats.caught_up = self._require_follower().caught_up()

    def _require_store(self) -> MonitorStore:
        if self._store is None:
            raise RuntimeError("the monitor is not started")
        return self._store

    # ------------------------------------------------------------------ processing

    async def _process(self, records: Records) -> None:
        batch = Batch()
        sources = _Sources()
        refused: list[tuple[Record, str, str]] = []  # (record, reason, its kind)
        # Registry events first: a test or model type in this batch applies to its results.
        for tp in sorted(records, key=lambda t: t.topic != self._events_topic):
            recs = records[tp]
            if tp.topic == self._events_topic:
                self._fold(recs, batch)
                continue
            is_result = tp.topic == self._results_topic
            is_shadow = tp.topic == self._shadow_topic
            for r in recs:
                if is_result or is_shadow:
                    self._take_result(r, is_shadow, batch, sources, refused)
                    continue
                over = over_limits(r.value, self._limits.outcome_bytes, self._limits.json_depth)
                if over is not None:
                    refused.append((r, f"PredictionOutcome refused: {over}", "outcomes"))
                    continue
                outcome, reason = _read(r.value, _decode_outcome, "PredictionOutcome")
                if outcome is not None:
                    batch.outcomes.append(outcome)
                    sources.outcomes.append(r)
                    continue
                refused.append((r, reason, "outcomes"))
            batch.positions[(tp.topic, tp.partition)] = recs[-1].offset + 1
        if refused:
            # The dead letters are written (or given up on, and counted) before the position
            # that passes them is committed.
            await self._dead_letter(refused, batch.counters)
        if not batch:
            return
        # One batch in flight: this one is written while the next is fetched and decoded;
        # transactions still commit in order (one DB thread, and we wait for the previous).
        await self.drain()
        store = self._require_store()
        # The live kinds map is read, not copied: CPython dict reads are atomic, and a type
        # learnt from a later registry event is only more up to date.
        applying = asyncio.get_running_loop().run_in_executor(
            self._executor, store.apply, batch, self.tracker.kinds, time.time()
        )
        self._inflight = asyncio.ensure_future(self._committed_batch(applying, batch, sources))

    @staticmethod
    def _take_result(
        r: Record,
        on_shadow_topic: bool,
        batch: Batch,
        sources: _Sources,
        refused: list[tuple[Record, str, str]],
    ) -> None:
        """A record of ``predictions.results`` or ``predictions.shadow`` into the batch, or
        refused. A shadow result belongs on ``predictions.shadow`` and only there: it shares
        its request id with the champion's answer, which is the request's one result."""
        kind = "shadow" if on_shadow_topic else "results"
        result, reason = _read(r.value, _decode_result, "PredictionResult")
        if result is None:
            refused.append((r, reason, kind))
        elif (result.variant == "shadow") != on_shadow_topic:
            where = (
                "predictions.shadow holds shadow results only"
                if on_shadow_topic
                else "a shadow result belongs on predictions.shadow"
            )
            refused.append(
                (r, f"invalid PredictionResult: variant {result.variant!r}: {where}", kind)
            )
        elif on_shadow_topic:
            batch.shadows.append(result)
            sources.shadows.append(r)
        else:
            batch.results.append(result)
            sources.results.append(r)

    async def _dead_letter(
        self, refused: list[tuple[Record, str, str]], counters: Counter[str]
    ) -> None:
        """Write the refused records to their DLQs (never raises) and count what became of
        them in ``counters`` (which the batch's transaction adds to ``monitor_counters``)."""
        producer = self._producer
        assert producer is not None
        excerpt = self._limits.dlq_excerpt_bytes
        outcomes = await asyncio.gather(
            *(send_to_dlq(producer, r, reason, excerpt_bytes=excerpt) for r, reason, _ in refused)
        )
        for (_, _, kind), outcome in zip(refused, outcomes, strict=True):
            if outcome is DlqOutcome.FAILED:
                counters["dlq_failed"] += 1
            else:
                counters["dlq"] += 1
                counters[f"{kind}_dlq"] += 1

    async def _committed_batch(
        self, applying: asyncio.Future[Applied], batch: Batch, sources: _Sources
    ) -> None:
        try:
            applied = await applying
        except Exception as exc:  # noqa: BLE001 - a record the store cannot apply
            applied = await self._apply_without_poison(batch, sources, exc)
        for (topic, partition), offset in batch.positions.items():
            self._committed[TopicPartition(topic, partition)] = offset
        self.totals.merge(applied.delta)
        self._count(applied.counters)
        self.stats.last_progress_monotonic = time.monotonic()

    async def _apply_without_poison(
        self, batch: Batch, sources: _Sources, error: Exception
    ) -> Applied:
        """``apply`` raised: find the records it cannot apply (each tried alone, nothing
        written), dead-letter them, and apply the rest with the batch's positions. An error
        no record explains (a full disk...) is raised: that is not the input's fault."""
        store = self._require_store()
        for _ in range(3):
            bad_results, bad_outcomes, bad_shadows = await self._db(
                store.find_poison, batch, self.tracker.kinds, time.time()
            )
            if not bad_results and not bad_outcomes and not bad_shadows:
                break
            log.error(
                "%d result(s), %d outcome(s) and %d shadow result(s) could not be applied (%s); "
                "dead-lettering them",
                len(bad_results),
                len(bad_outcomes),
                len(bad_shadows),
                type(error).__name__,
            )
            refused = (
                [
                    (
                        sources.results[i],
                        f"PredictionResult could not be stored ({name})",
                        "results",
                    )
                    for i, name in bad_results
                ]
                + [
                    (
                        sources.outcomes[i],
                        f"PredictionOutcome could not be stored ({name})",
                        "outcomes",
                    )
                    for i, name in bad_outcomes
                ]
                + [
                    (sources.shadows[i], f"PredictionResult could not be stored ({name})", "shadow")
                    for i, name in bad_shadows
                ]
            )
            drop_r, drop_o = {i for i, _ in bad_results}, {i for i, _ in bad_outcomes}
            drop_s = {i for i, _ in bad_shadows}
            batch.shadows = [x for i, x in enumerate(batch.shadows) if i not in drop_s]
            sources.shadows = [x for i, x in enumerate(sources.shadows) if i not in drop_s]
            batch.results = [x for i, x in enumerate(batch.results) if i not in drop_r]
            sources.results = [x for i, x in enumerate(sources.results) if i not in drop_r]
            batch.outcomes = [x for i, x in enumerate(batch.outcomes) if i not in drop_o]
            sources.outcomes = [x for i, x in enumerate(sources.outcomes) if i not in drop_o]
            await self._dead_letter(refused, batch.counters)
            try:
                return await self._db(store.apply, batch, self.tracker.kinds, time.time())
            except Exception as again:  # noqa: BLE001 - look again (at most three rounds)
                error = again
        raise error

    async def drain(self) -> None:
        """Wait until the batch being written (if any) is committed."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    def _fold(self, recs: list[Record], batch: Batch) -> None:
        # The projector owns this log's DLQ; the monitor only skips and counts.
        before = self._skipped.count
        counts = fold_records(
            recs, self.tracker.state, on_bad=self._skipped, on_applied=self.tracker.record(batch)
        )
        self.stats.registry_events += counts.applied
        self.stats.registry_unreadable += self._skipped.count - before

    def _count(self, counts: dict[str, int]) -> None:
        s = self.stats
        s.results_dlq += counts.get("results_dlq", 0)
        s.outcomes_dlq += counts.get("outcomes_dlq", 0)
        for name in (
            "shadow_results",
            "duplicate_shadow_results",
            "shadow_pairs",
            "shadow_outcomes_joined",
            "shadow_dlq",
        ):
            setattr(s, name, getattr(s, name) + counts.get(name, 0))
        s.dlq_failed += counts.get("dlq_failed", 0)
        s.results += counts.get("results", 0)
        s.outcomes += counts.get("outcomes", 0)
        s.duplicate_results += counts.get("duplicate_results", 0)
        s.duplicate_outcomes += counts.get("duplicate_outcomes", 0)
        s.outcomes_joined += counts.get("outcomes_joined", 0)
        s.dlq += counts.get("dlq", 0)
        s.outcomes_pending += counts.get("outcomes_parked", 0) - counts.get("outcomes_unparked", 0)

    async def _expire(self) -> None:
        self._next_expiry = time.monotonic() + self.config.expire_every_s
        store = self._require_store()
        expired, _ = await self._db(
            store.expire, time.time(), self.config.outcome_ttl_s, self.config.join_window_s
        )
        self.stats.outcomes_expired += expired
        self.stats.outcomes_pending = (await self._db(store.counters))["outcomes_pending"]


class _Sources:
    """The records a batch's results and outcomes were read from (same order), so that one
    the store cannot apply can be dead-lettered."""

    __slots__ = ("outcomes", "results", "shadows")

    def __init__(self) -> None:
        self.results: list[Record] = []
        self.outcomes: list[Record] = []
        self.shadows: list[Record] = []


def _read(
    value: bytes | None, decode: Callable[[bytes | None], T], what: str
) -> tuple[T, str] | tuple[None, str]:
    """``(row, "")``, or ``(None, reason)`` when ``value`` is refused. Never raises, and the
    reason never quotes the value."""
    try:
        return decode(value), ""
    except DecodeError as exc:
        return None, exc.reason
    except Unstorable as exc:
        return None, f"invalid {what}: {exc.reason}"
    except Exception as exc:  # noqa: BLE001 - no input may stop the monitor
        return None, f"unreadable {what} ({type(exc).__name__})"


def _decode_result(value: bytes | None) -> ResultRow:
    if value is None:
        raise DecodeError("empty message (null value)")
    try:
        return ResultRow.of(PredictionResult.model_validate_json(value))
    except ValidationError as exc:
        raise DecodeError(
            f"invalid PredictionResult: {describe_validation_error(exc)[0]}"
        ) from None


def _decode_outcome(value: bytes | None) -> OutcomeRow:
    if value is None:
        raise DecodeError("empty message (null value)")
    try:
        return OutcomeRow.of(PredictionOutcome.model_validate_json(value))
    except ValidationError as exc:
        raise DecodeError(
            f"invalid PredictionOutcome: {describe_validation_error(exc)[0]}"
        ) from None
