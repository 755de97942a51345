"""``PredictionConsumer``: the Kafka loop around the pipeline (plain aiokafka, see below).

The loop fetches up to ``max_batch`` requests and admits each one: limits and decoding
(a refused request gets an ``InvalidRequest`` error result when its id is readable, else it
is dead-lettered), dedupe by request id, routing, the result cache. What needs a prediction
goes to its served model's lane (``consumers.predictor.lanes``): each model has its own
bounded queue and concurrency, so a slow or stuck model delays only its own requests. Answers
leave as soon as their lane finishes them (``consumers.predictor.delivery``): results are
produced (acks=all), and an offset is committed only once every record before it in its
partition is finished - answered, dead-lettered, or a duplicate of an answered request. A
crash anywhere redelivers the unfinished records, whose requests get the same answers again
(at-least-once, with identical duplicates); at most ``max_batch * (max_in_flight + 1)``
records are held, which bounds memory under any backlog.

Every record ends in exactly one of: a result (``results``), a duplicate of one
(``duplicates``), a dead letter (``dead_letters``), or a dead letter that could not be written
(``dlq_failed``, logged). No exception raised for one record stops the consumer.

Why not a faust agent (the first design asked for one unless measurement said otherwise):
measured on this machine against the embedded broker, a faust-streaming 0.15 agent consumed
~3,600-4,100 msg/s (per event or ``stream.take``), with its main thread CPU-bound in the
per-message delivery path (a ``wait_first`` with two new tasks per message, a queue hop into
the stream), while its fetches were fast (30,000 records in two fetches, 0.13 s). Fetch and
buffer settings did not move it. A plain aiokafka ``getmany`` reads ~280,000 msg/s on the
same topic; the 20,000 requests/s target needs the plain loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from consumers.cache import RecentIds, ResultCache
from consumers.errors import ProviderUnavailable
from consumers.predictor.delivery import (
    Answer,
    Committer,
    Emitter,
    OffsetTracker,
    PartitionWindow,
    Slot,
)
from consumers.predictor.lanes import Lane, Lanes
from consumers.predictor.pipeline import PredictionPipeline, internal_error
from consumers.predictor.results import (
    HEADERS,
    Outgoing,
    ResultWriter,
    error_record,
    failed_result,
)
from consumers.predictor.view import RegistryView
from consumers.predictor.work import Work
from consumers.providers.base import CallPolicy
from consumers.providers.factory import ProviderFactory
from consumers.routing import ChampionChallengerRouter, Route
from registry.core.predictions import wire_time
from registry.infra.kafka.clients import (
    lag_of,
    make_consumer,
    make_producer,
    partitions_of,
    start_client,
)
from registry.infra.kafka.dlq import DlqOutcome
from registry.infra.kafka.traits import broker_traits
from registry.infra.settings import PredictorSettings, Settings

__all__ = ["PredictionConsumer", "PredictorStats"]

log = logging.getLogger(__name__)


@dataclass
class PredictorStats:
    """Counters for health, metrics and accounting. Health is judged by
    ``last_progress_monotonic``: the time of the last answer or of the last poll that found
    every partition caught up.

    Accounting: every record read (``records``) ends in exactly one of ``results`` (its
    result acknowledged), ``duplicates`` (its request id was answered by another record),
    ``dead_letters`` or ``dlq_failed``; ``in_flight`` are those not finished yet. ``rejected``
    (refused input answered with an ``InvalidRequest`` result or dead-lettered) and
    ``overloaded`` (answered at once because their model's lane was stalled) say why.
    """

    records: int = 0
    requests: int = 0
    results: int = 0
    errors: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    duplicates: int = 0
    rejected: int = 0
    overloaded: int = 0
    dead_letters: int = 0
    dlq_failed: int = 0
    in_flight: int = 0
    commits: int = 0
    lag: int = 0
    delivery_retries: int = 0
    registry_events: int = 0
    registry_events_skipped: int = 0
    shadow_results: int = 0
    """Mirrored copies answered by shadow challengers (on ``predictions.shadow``)."""
    shadow_dropped: int = 0
    """Mirrored copies dropped (a full shadow lane, or the write failed): best effort."""
    last_progress_monotonic: float = field(default_factory=time.monotonic)

    def unaccounted(self) -> int:
        """Records read but neither finished nor in flight (0 unless something is lost)."""
        finished = self.results + self.duplicates + self.dead_letters + self.dlq_failed
        return self.records - finished - self.in_flight


class PredictionConsumer:
    """Answers ``predictions.requests`` on ``predictions.results``, tagged by variant.

    ``lane_capacity`` (default ``max_batch``), ``lane_groups`` and ``lane_max_wait_s`` shape
    each model's bulkhead (``consumers.predictor.lanes``); ``drain_timeout_s`` bounds the
    wait for the requests in hand at shutdown. Each defaults to the predictor's settings
    (``REGISTRY_PREDICTOR_LANE_*``, ``REGISTRY_PREDICTOR_DRAIN_TIMEOUT_S``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        mock_fallback: bool = False,
        config: PredictorSettings | None = None,
        factory: ProviderFactory | None = None,
        router: ChampionChallengerRouter | None = None,
        lane_capacity: int | None = None,
        lane_groups: int | None = None,
        lane_max_wait_s: float | None = None,
        drain_timeout_s: float | None = None,
    ) -> None:
        config = config or settings.predictor
        if mock_fallback:
            config = config.with_(mock_fallback=True)
        if config.assignment is None:  # not chosen by the process: scale out in a group
            config = config.with_(assignment="group")
        self.settings = settings
        self.config = config
        self.stats = PredictorStats()
        self.ready = asyncio.Event()
        self.view = RegistryView(settings)
        self.factory = factory or ProviderFactory(
            CallPolicy.of(config), grants=settings.grants, data_dir=settings.data_dir
        )
        self.pipeline = PredictionPipeline(
            self.view,
            self.factory,
            config,
            limits=settings.limits,
            router=router,
            cache=ResultCache(config.cache_ttl_s, config.cache_max_entries),
            recent=RecentIds(config.dedupe_max_ids),
        )
        self.requests_topic = settings.topic("predictions.requests")
        self.results_topic = settings.topic("predictions.results")
        self.shadow_topic = settings.topic("predictions.shadow")
        self._producer: AIOKafkaProducer | None = None
        self.lane_max_wait_s = (
            config.lane_max_wait_s if lane_max_wait_s is None else lane_max_wait_s
        )
        self.drain_timeout_s = (
            config.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        )
        self.lanes = Lanes(
            self._run_group,
            capacity=lane_capacity or config.lane_capacity or config.max_batch,
            groups=lane_groups or config.lane_groups,
            max_group=config.max_batch,
        )
        self.tracker = OffsetTracker(config.max_batch * (config.max_in_flight + 1))
        # Request ids in hand -> the slots of their duplicates (None: none so far; no list is
        # allocated per request on the hot path).
        self._inflight: dict[str, list[Slot] | None] = {}
        self._emitter: Emitter | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._result_partitions: list[int] = []
        self._same_partitioning = True
        self._partitioner = DefaultPartitioner()
        self._follower: asyncio.Task[None] | None = None
        # the predictions the broker carries before it slows down (None: no limit known),
        # and the next count to warn at (that, then each tenfold)
        self._load_first: int | None = None
        self._load_limit: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then let the requests in hand be answered (at most
        ``drain_timeout_s``), commit and close.

        Raises:
            BrokerUnavailable: Kafka could not be reached at start.
        """
        await self.view.start()
        self._sync_view_stats()
        await self._warm_up()
        if self.config.tune_gc:
            # Everything loaded so far (modules, models, the registry view) lives for the
            # whole process: keep it out of the collector's scans, and collect the young
            # generation less often (a batch allocates ~10^5 short-lived objects).
            gc.collect()
            gc.freeze()
            gc.set_threshold(max(gc.get_threshold()[0], 20_000), 50, 100)
        traits = await broker_traits(self.settings)
        self._load_first = traits.requests_before_slowdown if traits is not None else None
        self._load_limit = self._load_first
        linger_ms = (
            traits.result_linger_ms(self.config.result_linger_ms)
            if traits is not None
            else self.config.result_linger_ms or 0
        )
        producer = make_producer(self.settings, linger_ms=linger_ms, max_batch_size=1024 * 1024)
        group_mode = self.config.assignment == "group"
        fetch_wait = self.config.fetch_max_wait_ms
        consumer = make_consumer(
            self.settings,
            *([self.requests_topic] if group_mode else []),
            group_id=f"{self.settings.topic_prefix}{self.config.group_id}",
            **({} if fetch_wait is None else {"fetch_max_wait_ms": fetch_wait}),
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.config.session_timeout_ms // 3),
        )
        follow_stop = asyncio.Event()
        follower: asyncio.Task[None] | None = None
        try:
            await start_client(producer, self.settings)
            await start_client(consumer, self.settings)
            await self._learn_partitions(producer, consumer)
            self._producer = producer
            follower = asyncio.create_task(self.view.follow(follow_stop), name="registry-view")
            self._follower = follower
            self.ready.set()
            log.info("prediction consumer ready", extra={"topic": self.requests_topic})
            await self._serve(stop, consumer, producer)
        finally:
            follow_stop.set()
            if follower is not None:
                with contextlib.suppress(Exception):
                    await follower
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()
            await self.view.stop()
            await self.factory.aclose()

    async def _warm_up(self) -> None:
        """Build the providers of the active models and load their model files now, so the
        first requests do not pay for it (bounded: a slow load only delays readiness)."""
        active = [s.config for s in self.view.state.models.values() if s.serves]
        providers = [self.factory.get_provider(config) for config in active]
        if providers:
            await asyncio.wait(
                [asyncio.ensure_future(p.warm()) for p in providers],
                timeout=self.config.warm_up_timeout_s,
            )

    async def _learn_partitions(
        self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer
    ) -> None:
        self._result_partitions = sorted(await producer.partitions_for(self.results_topic))
        requests = await partitions_of(consumer, self.requests_topic)
        if self.config.assignment == "all":
            # One instance reads every partition, resuming from the group's committed offsets;
            # no group membership, so no join delay and no wait for a dead member's session.
            consumer.assign(requests)
        # Same partition count: a result goes to its request's partition number, which is
        # where the default partitioner puts the same key, without hashing it again.
        self._same_partitioning = len(requests) == len(self._result_partitions)

    # ------------------------------------------------------------------ the loop

    async def _serve(
        self, stop: asyncio.Event, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer
    ) -> None:
        tracker = self.tracker
        committer = Committer(consumer, tracker)
        tracker.on_progress = committer.kick
        emitter = self._emitter = Emitter(
            producer,
            self.results_topic,
            self._partition_of,
            self._acked,
            self._dead,
            excerpt_bytes=self.settings.limits.dlq_excerpt_bytes,
        )
        committer.start()
        emitter.start()
        wait_s = self.config.poll_timeout_ms / 1000
        try:
            while not stop.is_set():
                self._check_view()
                if tracker.full and not await tracker.room(wait_s):
                    continue  # every slot is taken: wait for answers, not for more requests
                data = await consumer.getmany(
                    timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_batch
                )
                self._sync_view_stats()
                if not data:
                    await self._note_idle(consumer)
                    continue
                await self._admit(data)
                await self._update_lag(consumer)
                if self._load_limit is not None and self.stats.records >= self._load_limit:
                    self._check_load()
        finally:
            await self._shutdown(committer, emitter)

    async def _shutdown(self, committer: Committer, emitter: Emitter) -> None:
        """Let what is in hand be answered (bounded), then stop trying and commit."""
        if not await self.tracker.idle(self.drain_timeout_s):
            log.warning(
                "stopping with %d request(s) unanswered; they are answered again after a restart",
                self.tracker.unfinished,
            )
        await emitter.close(timeout=1.0)
        await self.lanes.cancel()
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await committer.stop()
        self.stats.commits = committer.commits
        self.stats.delivery_retries = emitter.retries

    def _check_load(self) -> None:
        """Warn that the embedded broker slows down with what it has carried: once past
        ``traits.EMBEDDED_REQUESTS_BEFORE_SLOWDOWN`` predictions, and again at each tenfold."""
        limit = self._load_limit
        if limit is None or self.stats.records < limit:
            return
        self._load_limit = limit * 10
        log.warning(
            "this predictor has read %d requests from the embedded broker, which slows down "
            "with every record batch it keeps (it cannot trim its logs): latency grows from "
            "about %d requests on. Restart the stack to start afresh, or run against Apache "
            "Kafka for a sustained load (README, Running against a real Kafka).",
            self.stats.records,
            self._load_first or limit,
        )

    def _check_view(self) -> None:
        """A predictor whose registry view stopped following must not serve on: it crashes
        (visibly, for its supervisor) instead of answering from a frozen view."""
        follower = self._follower
        if follower is not None and follower.done():
            follower.result()  # re-raises the view's error, if it had one
            raise RuntimeError("the registry view stopped following registry.events")

    # ------------------------------------------------------------------ admission

    async def _admit(self, data: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Read, dedupe, route and dispatch one fetched batch. Each record ends answered,
        dead-lettered or handed to a lane; nothing raised for one record escapes."""
        t0 = time.perf_counter()
        fetched_at = time.monotonic()
        works: list[Work] = []
        read = self.pipeline.read
        recent, inflight, tracker = self.pipeline.recent, self._inflight, self.tracker
        for tp, records in data.items():
            self.stats.records += len(records)
            window = tracker.track(tp, records)
            for record in records:
                try:
                    request = read(record)
                except Exception as exc:  # noqa: BLE001 - an unexpected error is a refusal too
                    request = f"internal error while reading the request ({type(exc).__name__})"
                if isinstance(request, str):
                    self._refuse(record, window, request)
                    continue
                request_id = request.id
                if request_id in inflight:  # in hand: finished when the original's result is
                    duplicates = inflight[request_id]
                    if duplicates is None:
                        duplicates = inflight[request_id] = []
                    duplicates.append(Slot(window, record.offset))
                    continue
                if request_id in recent:  # answered already, with the same answer
                    self.stats.duplicates += 1
                    tracker.finish(window, record.offset)
                    continue
                inflight[request_id] = None
                works.append(Work(record, request, window, t0))
        self.stats.in_flight = tracker.unfinished
        if not works:
            return
        self.stats.requests += len(works)
        await self._dispatch(self._route(works, fetched_at))

    def _route(self, works: list[Work], fetched_at: float) -> list[Work]:
        """Route ``works``; those naming a model the view does not know yet wait for it in
        the background (the others do not wait for them)."""
        unknown = self.pipeline.route(works)
        if not unknown:
            return works
        if self.config.unknown_model_wait_s <= 0:
            for w in unknown:
                self.pipeline.not_found(w)
            return works
        # A model registered a moment before its first request: let the view catch up.
        self._spawn(self._after_view(unknown, fetched_at))
        waiting = {id(w) for w in unknown}
        return [w for w in works if id(w) not in waiting]

    def _refuse(
        self, record: ConsumerRecord[bytes, bytes], window: PartitionWindow, reason: str
    ) -> None:
        """Refused input: an ``InvalidRequest`` result when its id is readable, else the DLQ."""
        self.stats.rejected += 1
        emitter = self._emitter
        assert emitter is not None
        try:
            out = error_record(
                record,
                reason,
                wire_time(),
                max_bytes=self.settings.limits.request_bytes,
            )
        except Exception:  # noqa: BLE001 - no readable id, then
            out = None
        if out is None:
            emitter.dead_letter(record, reason, Slot(window, record.offset))
            return
        emitter.answer([Answer(out, window, record.offset, None, error=True)])

    async def _after_view(self, works: list[Work], fetched_at: float) -> None:
        try:
            await self.view.refreshed(fetched_at, self.config.unknown_model_wait_s)
        except Exception as exc:  # noqa: BLE001 - then the models are not found
            log.warning("waiting for the registry view failed (%s)", type(exc).__name__)
        for w in self.pipeline.route(works):
            self.pipeline.not_found(w)
        await self._dispatch(works)

    async def _dispatch(self, works: list[Work]) -> None:
        """Answer what needs no prediction; queue the rest in their models' lanes. A full
        lane holds this (and the fetch loop) only while it moves (see ``lanes``)."""
        try:
            finished, by_model = self.pipeline.split(works)
        except Exception as exc:  # noqa: BLE001 - a bug: these requests fail, nothing else
            for w in works:
                internal_error(w, "the cache lookup", exc)
            finished, by_model = works, {}
        if finished:
            self._finish(finished)
        overflow: list[tuple[Lane, list[Work]]] = []
        for model_id, queued in by_model.items():
            lane = self.lanes.get(model_id)
            left = lane.offer_many(queued)
            if left:
                overflow.append((lane, left))
        for lane, left in overflow:  # the other lanes have theirs already
            await self._place(lane, left)

    async def _place(self, lane: Lane, works: list[Work]) -> None:
        while works:
            works = lane.offer_many(works)
            if not works:
                return
            stalled = lane.stalled_for()
            if stalled >= self.lane_max_wait_s:
                self._shed(lane, works)
                return
            await lane.wait_room(self.lane_max_wait_s - stalled)

    def _shed(self, lane: Lane, works: list[Work]) -> None:
        """Answer at once: the lane is full and has not moved for ``lane_max_wait_s``."""
        failure = ProviderUnavailable(
            f"model '{lane.model_id}' is overloaded: {lane.size} requests are waiting for it "
            f"and none has been answered for {lane.stalled_for():.1f}s"
        )
        for w in works:
            w.failure = failure
        self.stats.overloaded += len(works)
        self._after_predict(works)

    # ------------------------------------------------------------------ lanes

    async def _run_group(self, works: list[Work]) -> None:
        """A lane's group: predict, then fall back or answer. Never raises."""
        try:
            await self.pipeline.predict_group(works)
        except Exception as exc:  # noqa: BLE001 - predict_group does not raise; be safe
            for w in works:
                internal_error(w, "the prediction", exc)
        self._after_predict(works)

    def _after_predict(self, works: list[Work]) -> None:
        try:
            retry = self.pipeline.fallback_to_champion(works)
        except Exception as exc:  # noqa: BLE001
            log.error("the champion fallback failed (%s)", type(exc).__name__)
            retry = []
        again = {id(w) for w in retry}
        for w in retry:
            assert w.served is not None
            self.lanes.get(w.served.model_id).offer(w, force=True)  # fallbacks are not shed
        self._finish([w for w in works if id(w) not in again])

    # ------------------------------------------------------------------ answers

    def _finish(self, works: list[Work]) -> None:
        """Results for finished works, handed to the emitter."""
        emitter = self._emitter
        assert emitter is not None
        now = wire_time()
        writer = ResultWriter(now)
        mock = self.pipeline.fallback_to_mock if self.config.mock_fallback else None
        answers: list[Answer] = []
        shadows: list[Work] = []
        for w in works:
            if w.shadow_of is not None:  # a mirrored copy's answer: to the monitor only
                self._shadow_result(writer, w)
                continue
            route = w.route
            if route is not None and route.shadow is not None and w.failure is None:
                shadows.append(w)
            window = w.window
            assert window is not None
            try:
                if mock is not None:
                    mock(w)
                out = writer.record(w)
            except Exception as exc:  # noqa: BLE001 - an answer all the same
                log.error("building a result failed (%s)", type(exc).__name__)
                message = f"internal error: the result could not be built ({type(exc).__name__})"
                try:
                    out = failed_result(w, "ProviderFailed", message, now)
                except Exception:  # noqa: BLE001 - nothing left but the DLQ
                    emitter.dead_letter(
                        w.record, message, Slot(window, w.record.offset), w.request.id
                    )
                    continue
                answers.append(Answer(out, window, w.record.offset, w.request.id, error=True))
                continue
            failed = w.failure is not None
            answers.append(
                Answer(
                    out,
                    window,
                    w.record.offset,
                    w.request.id,
                    failed,
                    not failed and w.fallback is not None,
                    w.cached,
                )
            )
        emitter.answer(answers)
        if shadows:
            self._mirror(shadows)

    # ------------------------------------------------------------------ shadow tests

    def _mirror(self, works: list[Work]) -> None:
        """Send mirrored copies of answered requests to their shadow challengers' lanes.
        Best effort: a full lane drops the copy (the caller's answer is never held up)."""
        now = time.perf_counter()
        for w in works:
            route = w.route
            assert route is not None
            assert route.shadow is not None
            copy = Work(
                w.record,
                w.request,
                None,
                now,
                route=Route(
                    served=route.shadow,
                    variant="shadow",
                    test_id=route.test_id,
                    split_version=route.split_version,
                    resolved=route.resolved,
                ),
                served=route.shadow,
                shadow_of=w,
            )
            if not self.lanes.get(route.shadow.model_id).offer(copy):
                self.stats.shadow_dropped += 1

    def _shadow_result(self, writer: ResultWriter, w: Work) -> None:
        """Produce a shadow answer to ``predictions.shadow`` (not tracked: at most once)."""
        producer = self._producer
        if producer is None:
            return
        try:
            out = writer.record(w)
        except Exception as exc:  # noqa: BLE001 - a lost shadow answer harms no caller
            log.error("building a shadow result failed (%s)", type(exc).__name__)
            return
        self.stats.shadow_results += 1

        async def send() -> None:
            try:
                await producer.send(self.shadow_topic, out.value, key=out.key, headers=HEADERS)
            except Exception as exc:  # noqa: BLE001 - at most once, by design
                self.stats.shadow_dropped += 1
                log.warning("a shadow result was not written (%s)", type(exc).__name__)

        self._spawn(send())

    def _acked(self, answers: list[Answer]) -> None:
        """The emitter's callback: these results are out."""
        recent_add, pop = self.pipeline.recent.add, self._inflight.pop
        finished = len(answers)
        errors = fallbacks = cached = duplicated = 0
        for _, window, offset, request_id, error, fallback, hit in answers:
            window.finish(offset)
            errors += error
            fallbacks += fallback
            cached += hit
            if request_id is not None:
                recent_add(request_id)
                duplicates = pop(request_id, None)
                if duplicates:
                    for dup_window, dup_offset in duplicates:
                        dup_window.finish(dup_offset)
                    duplicated += len(duplicates)
        s = self.stats
        s.results += finished
        s.errors += errors
        s.fallbacks += fallbacks
        s.cache_hits += cached
        s.duplicates += duplicated
        self.tracker.released(finished + duplicated)
        s.in_flight = self.tracker.unfinished
        s.last_progress_monotonic = time.monotonic()

    def _dead(self, slot: Slot, outcome: DlqOutcome, request_id: str | None) -> None:
        """The emitter's callback: a dead letter was written (or given up on)."""
        s = self.stats
        self.tracker.finish(slot.window, slot.offset)
        if outcome is DlqOutcome.FAILED:
            s.dlq_failed += 1
        else:
            s.dead_letters += 1
        if request_id is not None:
            for window, offset in self._inflight.pop(request_id, None) or ():
                self.tracker.finish(window, offset)
                s.duplicates += 1
        s.in_flight = self.tracker.unfinished
        s.last_progress_monotonic = time.monotonic()

    def _partition_of(self, out: Outgoing) -> int:
        parts = self._result_partitions
        if self._same_partitioning or out.key is None:
            return parts[out.source_partition % len(parts)]
        return int(self._partitioner(out.key, parts, parts))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ stats

    def _sync_view_stats(self) -> None:
        self.stats.registry_events = self.view.applied
        self.stats.registry_events_skipped = self.view.skipped.count

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> int | None:
        lag = await lag_of(consumer, consumer.assignment())
        if lag is not None:
            self.stats.lag = lag
        return lag

    async def _note_idle(self, consumer: AIOKafkaConsumer) -> None:
        """An empty poll is progress when every assigned partition is caught up; a moment
        to close the providers a config change retired, once no lane is using one."""
        if await self._update_lag(consumer) == 0:
            self.stats.last_progress_monotonic = time.monotonic()
        if not self.lanes.busy:
            self.lanes.prune()
            await self.factory.collect()
        if self._emitter is not None:
            self.stats.delivery_retries = self._emitter.retries
