"""The decider: the single writer of ``registry.events`` (docs/design.md#the-write-path).

It holds the state of every model, rebuilt from ``registry.events`` (up to the fetch high
watermark) before the first command. The registry topics have exactly one partition (one
total order of every change); the decider refuses to start on any other layout.
Then, per batch of commands: decode, dedupe by command id, ``decide``, append the events
(acks=all), reply on ``registry.replies``, and only then commit the command offsets.

Exactly-once effect without broker transactions: a command id already present in the log
(as an event's ``causation_id``) is answered from what was recorded, never applied twice; so
a crash between append and commit repeats the reply, not the event.

Partitions are assigned manually (all of them) rather than through a consumer group: one
decider per registry is the deployment model, group joins cost ~5 s on the embedded broker,
and on a real Kafka the opt-in transactional producer fences a zombie.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from registry.core import codec
from registry.core.chain import Chain, record_hash
from registry.core.errors import (
    DecodeError,
    RegistryError,
    Rejection,
    RejectionCode,
    SecretInConfig,
)
from registry.core.limits import over_limits
from registry.core.messages import (
    CommandBase,
    CommandReply,
    EventBase,
    EventRef,
    utc_now,
)
from registry.core.replay import RecordLike, fold_records
from registry.core.rules import decide
from registry.core.secrets import find_secret, looks_secret
from registry.core.state import Change, Fact, RegistryState
from registry.decider.gate import About, Gate, Signed, about, about_bytes
from registry.infra.journal import EventJournal, JournalRecord
from registry.infra.kafka.clients import (
    lag_of,
    make_consumer,
    make_producer,
    partitions_of,
    start_client,
)
from registry.infra.kafka.dlq import send_to_dlq
from registry.infra.kafka.follower import Batch, LogBadRecords, LogFollower
from registry.infra.kafka.traits import broker_traits
from registry.infra.settings import Settings

__all__ = ["Decider", "DeciderStats", "RegistryTopicLayout"]

log = logging.getLogger(__name__)


class RegistryTopicLayout(RegistryError):
    """A registry topic with other than one partition: the registry is one total order."""

    code = "RegistryTopicLayout"


@dataclass
class DeciderStats:
    """Counters for health checks: progress, not mere liveness."""

    commands: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    events_appended: int = 0
    lag: int = 0
    unauthenticated: int = 0  # commands refused for a missing or bad signature
    forbidden: int = 0  # signed commands their actor may not send
    skipped_events: int = 0  # unreadable, unlinked or out-of-sequence events not believed
    last_progress_monotonic: float = field(default_factory=time.monotonic)


_Pending = tuple[CommandBase, list[tuple[EventBase, bytes, "asyncio.Future[Any]"]]]
"""A command whose events are being appended, with their send futures."""


@dataclass
class _State:
    registry: RegistryState = field(default_factory=RegistryState)
    # command id -> (revision after it, the events it produced): answers duplicates
    seen: dict[str, tuple[int, list[EventRef]]] = field(default_factory=dict)
    # model id -> the actor who registered or released its current version (four eyes)
    authors: dict[str, str] = field(default_factory=dict)


_AUTHORED = frozenset({"ModelRegistered", "ModelVersionReleased"})


class Decider:
    """Consumes ``registry.commands``, appends to ``registry.events``, replies by command id."""

    def __init__(
        self,
        settings: Settings,
        *,
        allow_clear: bool | None = None,
        clock: Callable[[], datetime] = utc_now,
        journal: EventJournal | None = None,
    ) -> None:
        self.settings = settings
        config = settings.decider
        self.allow_clear = config.allow_clear if allow_clear is None else allow_clear
        self.clock = clock
        self.batch_size = config.batch_size
        self.journal = journal
        self.stats = DeciderStats()
        self._commands = settings.topic("registry.commands")
        self._events = settings.topic("registry.events")
        self._replies = settings.topic("registry.replies")
        self._state = _State()
        self._positions: dict[int, int] = {}
        self._dead_letters: list[asyncio.Task[Any]] = []
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._uncommitted: dict[TopicPartition, int] = {}  # offsets not yet sent to commit
        self._committer: asyncio.Task[None] | None = None
        self._crash_after_append = config.crash_after_append
        self.gate = Gate(settings)
        self.limits = settings.limits
        self._chain = Chain()  # the tip of registry.events
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, check the topics, rebuild the state from the log, seek to the committed
        offset."""
        s = self.settings
        self.gate.refresh()  # no actors file: refuse to start, saying what to do
        producer_kwargs: dict[str, Any] = {}
        if s.decider.transactional:
            producer_kwargs["transactional_id"] = f"{s.topic_prefix}registry-decider"
        elif (traits := await broker_traits(s)) is not None and traits.kafka:
            # A produce retried across a leader change would otherwise append its events
            # twice (tests/kafka/test_failover.py); the embedded broker has no idempotence.
            producer_kwargs["enable_idempotence"] = True
        # linger 0: an idle decider appends and replies at once; under load the producer
        # still batches what accumulates while a request is in flight (docs/write-path.md)
        self._producer = make_producer(s, linger_ms=0, **producer_kwargs)
        self._consumer = make_consumer(
            s, group_id=f"{s.topic_prefix}registry-decider", max_poll_records=self.batch_size
        )
        await start_client(self._producer, s)
        await start_client(self._consumer, s)
        tps = await partitions_of(self._consumer, self._commands)
        for topic in (self._commands, self._events, self._replies):
            count = len(await partitions_of(self._consumer, topic))
            if count != 1:
                raise RegistryTopicLayout(
                    f"{topic} has {count} partitions; the registry topics have exactly one "
                    "(one total order of every change: docs/design.md#topics). Recreate it "
                    "with one partition."
                )
        await self._rebuild()
        self._consumer.assign(tps)
        for tp in tps:
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)
        self.ready.set()
        log.info("decider ready on %d partition(s) of %s", len(tps), self._commands)

    async def stop(self) -> None:
        committer, self._committer = self._committer, None
        if committer is not None:
            try:
                await committer  # the last offsets committed: fewer repeats after a restart
            except Exception as exc:  # noqa: BLE001 - stopping anyway; a restart repeats replies
                log.warning("decider stopped without committing its last offsets: %s", exc)
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None

    async def run(self, stop: asyncio.Event) -> None:
        """Decide commands until ``stop`` is set."""
        try:
            await self.start()
            while not stop.is_set():
                await self.step()
        finally:
            await self.stop()

    async def _rebuild(self) -> None:
        """Fold ``registry.events`` into memory, to the high watermark.

        An unreadable or out-of-sequence event is logged and not believed: the projector
        reports it; the decider must not build on it."""
        self._state = state = _State()
        self._chain = Chain()
        skipped = LogBadRecords("decider")
        follower = LogFollower(
            self.settings, [self._events], name="decider rebuild", partitions=[0]
        )
        await follower.start()

        remember = functools.partial(self._remember, state)

        def fold(batch: Batch) -> None:
            for records in batch.values():
                fold_records(
                    records, state.registry, on_bad=skipped, on_applied=remember, chain=self._chain
                )

        try:
            await follower.catch_up(fold)
        finally:
            await follower.stop()
        self.stats.skipped_events = skipped.count

    @staticmethod
    def _remember(state: _State, record: RecordLike, fact: Fact, changes: list[Change]) -> None:
        """Note which command caused ``fact``, so a repeat of it is answered, not applied, and
        who authored each model's version (four eyes)."""
        if fact.type in _AUTHORED:
            state.authors[fact.model_id] = fact.actor
        if not fact.causation_id:
            return
        ref = EventRef(
            id=fact.id,
            type=fact.type,
            revision=fact.revision,
            partition=record.partition,
            offset=record.offset,
        )
        prior = state.seen.get(fact.causation_id)
        refs = (prior[1] if prior else []) + [ref]
        state.seen[fact.causation_id] = (fact.revision, refs)

    # ------------------------------------------------------------------ the loop

    async def step(self, timeout_ms: int = 200) -> int:
        """Handle one batch of commands; returns how many records it handled."""
        assert self._consumer is not None
        assert self._producer is not None
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self.batch_size)
        if self._committer is not None and self._committer.done():
            committer, self._committer = self._committer, None
            committer.result()  # a failed commit is a broker error: crash, rebuild, go on
        handled = 0
        for tp, records in batch.items():
            if records:
                await self._handle_partition(tp, records)
                handled += len(records)
        lag = await lag_of(self._consumer, self._consumer.assignment())
        self.stats.lag = self.stats.lag if lag is None else lag
        self.stats.last_progress_monotonic = time.monotonic()
        return handled

    async def _handle_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        assert self._producer is not None
        state = self._state
        self.gate.refresh()  # an edited actors file counts from the next batch on
        if self.settings.decider.transactional:
            await self._producer.begin_transaction()
        replies: list[CommandReply] = []
        pending: list[_Pending] = []
        in_batch: set[str] = set()
        repeated: list[CommandBase] = []  # duplicates of a command still being appended
        for record in records:
            self.stats.commands += 1
            reply, sent = await self._decide_one(state, record, in_batch, repeated)
            if reply is not None:
                replies.append(reply)
            if sent is not None:
                pending.append(sent)
                in_batch.add(sent[0].id)
        # Wait for every append (acks=all) before replying: a reply promises durability.
        replies += await self._appended(state, pending)
        letters, self._dead_letters = self._dead_letters, []
        await asyncio.gather(*letters)  # every dead letter written (or counted failed) first
        for command in repeated:
            self.stats.duplicates += 1
            replies.append(self._duplicate_reply(command, state))
        if self._crash_after_append and pending:
            log.error("fault injection: exiting after append, before reply and commit")
            os._exit(137)
        await self._send_replies(replies)
        await self._commit(tp, records[-1].offset + 1)

    async def _appended(self, state: _State, pending: list[_Pending]) -> list[CommandReply]:
        """Await the appends of ``pending``; journal them (embedded broker); their replies."""
        journal: list[JournalRecord] = []
        replies = []
        for command, sends in pending:
            refs = []
            for event, value, fut in sends:
                meta = await fut
                if self.journal is not None:
                    journal.append(
                        JournalRecord(
                            meta.partition,
                            meta.offset,
                            event.model_id.encode(),
                            value,
                            tuple(codec.headers_for(event)),
                        )
                    )
                refs.append(
                    EventRef(
                        id=event.id,
                        type=event.type,
                        revision=event.revision,
                        partition=meta.partition,
                        offset=meta.offset,
                    )
                )
                self.stats.events_appended += 1
            revision = refs[-1].revision if refs else state.registry.revision_of(command.model_id)
            state.seen[command.id] = (revision, refs)
            replies.append(self._reply(command, "accepted", refs, state))
        if self.journal is not None and journal:
            await asyncio.to_thread(self.journal.append, journal)
        return replies

    async def _send_replies(self, replies: list[CommandReply]) -> None:
        assert self._producer is not None
        futures = [
            await self._producer.send(
                self._replies,
                codec.encode(r),
                key=r.command_id.encode(),
                headers=[("type", b"CommandReply")],
            )
            for r in replies
        ]
        for fut in futures:
            await fut

    async def _commit(self, tp: TopicPartition, next_offset: int) -> None:
        """Commit the command offsets (the batch's replies are written by now).

        In a transaction: at once, inside it. Otherwise in the background, so the next batch
        does not wait for the round trip: one commit in flight at a time, the offsets of the
        batches handled meanwhile sent together after it. A restart before they are committed
        decides those commands again, which answers them as duplicates (docs/write-path.md)."""
        assert self._consumer is not None
        assert self._producer is not None
        offsets = {tp: next_offset}
        self._positions[tp.partition] = next_offset
        if self.settings.decider.transactional:
            group = f"{self.settings.topic_prefix}registry-decider"
            await self._producer.send_offsets_to_transaction(offsets, group)
            await self._producer.commit_transaction()
            return
        self._uncommitted.update(offsets)
        if self._committer is None or self._committer.done():
            if self._committer is not None:
                self._committer.result()  # a failed commit: crash, rebuild, go on
            self._committer = asyncio.create_task(self._commit_offsets(), name="decider-commit")

    async def _commit_offsets(self) -> None:
        assert self._consumer is not None
        while self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            await self._consumer.commit(offsets)

    async def _decide_one(
        self,
        state: _State,
        record: ConsumerRecord[bytes, bytes],
        in_batch: set[str],
        repeated: list[CommandBase],
    ) -> tuple[CommandReply | None, _Pending | None]:
        """``_decide_record``; anything it did not foresee dead-letters the record."""
        try:
            return await self._decide_record(state, record, in_batch, repeated)
        except KafkaError:
            raise  # the broker, not the record: crash, rebuild, and decide it again
        except Exception as exc:  # noqa: BLE001 - one command must never stop the decider
            log.exception("command record %s:%d could not be handled", record.topic, record.offset)
            reason = f"the command could not be handled ({type(exc).__name__})"
            return await self._dead_letter(record, RejectionCode.INVALID_COMMAND, reason), None

    async def _decide_record(
        self,
        state: _State,
        record: ConsumerRecord[bytes, bytes],
        in_batch: set[str],
        repeated: list[CommandBase],
    ) -> tuple[CommandReply | None, _Pending | None]:
        """Decide one command record: a reply now, or events in flight (reply after append).

        In order: limits (raw bytes), signature, decoding, secrets, the actor's rights, then
        the rules. Whatever goes wrong with one record becomes its rejection or dead letter;
        it never stops the decider (docs/security.md)."""
        value = record.value
        over = over_limits(value, self.limits.command_bytes, self.limits.json_depth)
        if over is not None:
            return await self._dead_letter(record, RejectionCode.OVER_LIMIT, over), None
        signed = self.gate.verify(record)
        if isinstance(signed, Rejection):
            self.stats.unauthenticated += 1
            return await self._refuse_unread(record, signed), None
        obj: Any = None
        try:
            obj = orjson.loads(value) if value else None
            secret = find_secret(obj)
            if secret is not None:
                raise SecretInConfig(secret)
            command = codec.decode_command(value)
        except SecretInConfig as exc:
            # Not copied to the DLQ: that would copy the secret into one more topic.
            self.stats.rejected += 1
            rejection = Rejection(RejectionCode.SECRET_IN_CONFIG, str(exc), exc.field)
            return self._rejection_reply(about(obj), None, rejection, state), None
        except DecodeError as exc:
            return await self._dead_letter(record, RejectionCode.INVALID_COMMAND, exc.reason), None
        except (orjson.JSONDecodeError, RecursionError) as exc:
            reason = f"malformed JSON: {exc}" if isinstance(exc, ValueError) else "too deep"
            return await self._dead_letter(record, RejectionCode.INVALID_COMMAND, reason), None
        return await self._decide_signed(state, record, command, signed, in_batch, repeated)

    async def _decide_signed(
        self,
        state: _State,
        record: ConsumerRecord[bytes, bytes],
        command: CommandBase,
        signed: Signed,
        in_batch: set[str],
        repeated: list[CommandBase],
    ) -> tuple[CommandReply | None, _Pending | None]:
        assert self._producer is not None
        refused = self.gate.refusal(command, signed, state.authors.get(command.model_id))
        if refused is not None:
            self.stats.forbidden += 1
            self.stats.rejected += 1
            return self._rejection_reply(None, command, refused, state), None
        if command.id in in_batch:
            repeated.append(command)
            return None, None
        if command.id in state.seen:
            self.stats.duplicates += 1
            return self._duplicate_reply(command, state), None
        decision = decide(command, state.registry, now=self.clock(), allow_clear=self.allow_clear)
        if isinstance(decision, Rejection):
            self.stats.rejected += 1
            return self._rejection_reply(None, command, decision, state), None
        if not decision:  # a no-op: nothing to append, answer now
            self.stats.accepted += 1
            return self._reply(command, "accepted", [], state), None
        encoded = self._sealed(decision, signed, record.partition)
        self.stats.accepted += 1
        sends = []
        for event, value in encoded:
            # optimistic: a failed append crashes the process, which rebuilds
            state.registry.apply_event(event)
            if event.type in _AUTHORED:
                state.authors[event.model_id] = event.actor
            fut = await self._producer.send(
                self._events,
                value,
                key=event.model_id.encode(),
                partition=record.partition,
                headers=codec.headers_for(event),
            )
            sends.append((event, value, fut))
        tip = self._chain.tip(record.partition)
        tip.hash, tip.linked = record_hash(encoded[-1][1]), True
        return None, (command, sends)

    def _sealed(
        self, events: Sequence[EventBase], signed: Signed, partition: int
    ) -> list[tuple[EventBase, bytes]]:
        """The events with their command's signature and their chain links, encoded.

        Done before anything changes: a failure here leaves no trace."""
        prev, encoded = self._chain.tip(partition).hash, []
        for event in events:
            event = event.model_copy(
                update={
                    "signed_by": signed.signer.name,
                    "signature": signed.signature,
                    "command_digest": signed.digest,
                    "prev": prev,
                }
            )
            value = codec.encode(event)
            prev = record_hash(value)
            encoded.append((event, value))
        return encoded

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], code: RejectionCode, reason: str
    ) -> CommandReply | None:
        """Copy ``record`` to the DLQ with ``reason``; a rejection reply when its id is readable.

        A record that looks like it holds a secret is dead-lettered as a reference without
        its bytes: a secret never reaches one more topic, readable or not."""
        assert self._producer is not None
        self.stats.dead_lettered += 1
        excerpt = self.limits.dlq_excerpt_bytes
        if looks_secret((record.value or b"").decode("utf-8", "replace")):
            excerpt, reason = 0, f"{reason}; its bytes are withheld: they look like a secret"
        # written while the batch goes on; awaited before the batch's offsets are committed
        self._dead_letters.append(
            asyncio.create_task(send_to_dlq(self._producer, record, reason, excerpt_bytes=excerpt))
        )
        return self._rejection_reply(
            about_bytes(record.value), None, Rejection(code, reason), self._state
        )

    async def _refuse_unread(
        self, record: ConsumerRecord[bytes, bytes], rejection: Rejection
    ) -> CommandReply | None:
        """Refuse a record without believing it: a reply to its id when one can be read, else
        a dead letter (nobody to answer)."""
        readable = about_bytes(record.value)
        if readable.id is None:
            return await self._dead_letter(record, rejection.code, rejection.message)
        self.stats.rejected += 1
        return self._rejection_reply(readable, None, rejection, self._state)

    def _reply(
        self,
        command: CommandBase,
        outcome: Literal["accepted", "duplicate"],
        refs: list[EventRef],
        state: _State,
    ) -> CommandReply:
        return CommandReply(
            command_id=command.id,
            command_type=command.type,
            model_id=command.model_id,
            outcome=outcome,
            revision=state.registry.revision_of(command.model_id)
            if not refs
            else refs[-1].revision,
            events=refs,
        )

    def _duplicate_reply(self, command: CommandBase, state: _State) -> CommandReply:
        revision, refs = state.seen[command.id]
        return CommandReply(
            command_id=command.id,
            command_type=command.type,
            model_id=command.model_id,
            outcome="duplicate",
            revision=revision,
            events=refs,
        )

    def _rejection_reply(
        self,
        readable: About | None,
        command: CommandBase | None,
        rejection: Rejection,
        state: _State | None,
    ) -> CommandReply | None:
        """The rejection reply of a decoded ``command``, or of a record known only by what is
        ``readable`` of it (its id, type and model id, when they are readable). ``revision``:
        the model's current revision (what a retry would send as its expected revision),
        absent for a model the registry does not hold."""
        if command is not None:
            readable = About(command.id, command.type, command.model_id)
        assert readable is not None
        log.info("rejected command %s: %s: %s", readable.id, rejection.code, rejection.message)
        if readable.id is None:
            return None  # no readable id: nobody to answer; the DLQ has it
        revision = None
        if readable.model_id is not None and state is not None:
            revision = state.registry.revision_of(readable.model_id) or None
        return CommandReply(
            command_id=readable.id,
            command_type=readable.type,
            model_id=readable.model_id,
            outcome="rejected",
            revision=revision,
            rejection={k: str(v) for k, v in rejection.as_dict().items()},
        )
