"""The write side's client: send a command to ``registry.commands``, await its reply.

A write returns once the decider has appended its event (``WriteResult`` carries the
offsets), or raises ``Rejected`` with the typed rejection, or ``CommandTimeout``. Every
command is signed with the client's identity (``Settings.identity_file``, or one given),
and one that holds a raw secret is refused here, before it is sent (docs/security.md). The typed
methods (``register``, ``update_status``...) are the spec's API; ``ModelRegistry``
(``model_registry.client``) adds the reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from registry.core import codec
from registry.core.errors import (
    CommandTimeout,
    Rejected,
    Rejection,
    RejectionCode,
    SecretInConfig,
)
from registry.core.messages import (
    AliasPayload,
    AssignAlias,
    ChangeABTraffic,
    ChangeABTrafficPayload,
    ChangeStatus,
    ChangeStatusPayload,
    ClearRegistry,
    ClearRegistryPayload,
    CommandBase,
    CommandReply,
    ConfigChanges,
    EventRef,
    Evidence,
    PromoteChallenger,
    PromotePayload,
    ReasonPayload,
    RecordMetrics,
    RecordMetricsPayload,
    RegisterModel,
    ReleaseVersion,
    ReleaseVersionPayload,
    RemoveAlias,
    RollbackPromotion,
    StartABTest,
    StartABTestPayload,
    StopABTest,
    UnregisterModel,
    UpdateConfig,
    UpdateConfigPayload,
)
from registry.core.secrets import find_secret
from registry.core.types import ABMode, Guardrails, Metrics, ModelConfig, Routing, Status
from registry.infra.identity import Identity, load_identity
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of, start_client
from registry.infra.settings import Settings

__all__ = ["CommandClient", "WriteResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    """An accepted command: the events it appended (none for a no-op) and the new revision."""

    command_id: str
    model_id: str
    outcome: str
    revision: int | None
    events: tuple[EventRef, ...]

    @property
    def offset(self) -> int | None:
        """Offset of the last event appended, if any."""
        return self.events[-1].offset if self.events else None


class CommandClient:
    """Sends signed commands and awaits the decider's replies. Use as ``async with``.

    ``identity`` signs every command (default: the one in ``settings.identity_file``);
    ``actor`` is whom the commands are for: the identity's own actor by default, another
    only when the actors file lets the identity sign for it (a gateway).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        actor: str | None = None,
        timeout: float = 10.0,
        identity: Identity | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self._actor = actor
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._replies: AIOKafkaConsumer | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[CommandReply]] = {}
        self._written: dict[int, int] = {}  # partition -> highest event offset this client wrote

    # ------------------------------------------------------------------ lifecycle

    @property
    def actor(self) -> str:
        """Whom this client's commands are for."""
        if self._actor is not None:
            return self._actor
        return self.identity.actor if self.identity is not None else "unknown"

    async def start(self) -> None:
        s = self.settings
        if self.identity is None:
            self.identity = load_identity(s.identity_file)
        self._producer = make_producer(s, linger_ms=0)
        self._replies = make_consumer(s)
        await start_client(self._producer, s)
        await start_client(self._replies, s)
        tps = await partitions_of(self._replies, s.topic("registry.replies"))
        self._replies.assign(tps)
        # end_offsets() may lag on the embedded broker; that only means reading a few old
        # replies, which are filtered by command id. It never skips a new one.
        await self._replies.seek_to_end(*tps)
        for tp in tps:
            await self._replies.position(tp)
        self._reader_task = asyncio.create_task(self._read_replies(), name="registry-replies")

    async def close(self) -> None:
        if self._reader_task:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        for client in (self._producer, self._replies):
            if client is not None:
                await client.stop()
        self._producer = self._replies = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def written(self) -> dict[int, int]:
        """Per partition of ``registry.events``, the highest offset this client's writes reached."""
        return dict(self._written)

    async def _read_replies(self) -> None:
        assert self._replies is not None
        while True:
            batch = await self._replies.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    fut = (
                        self._waiting.get(record.key.decode(errors="replace"))
                        if record.key
                        else None
                    )
                    if fut is None or fut.done():
                        continue
                    try:
                        fut.set_result(codec.decode_reply(record.value))
                    except Exception as exc:  # noqa: BLE001 - an unreadable reply fails only its waiter
                        fut.set_exception(exc)

    # ------------------------------------------------------------------ commands

    async def send(self, command: CommandBase, *, timeout: float | None = None) -> WriteResult:
        """Send ``command`` and wait for the decider's reply.

        Raises:
            SecretInConfig: the command holds a raw secret; it was not sent.
            Rejected: the rules refused it (``.rejection.code`` says why).
            CommandTimeout: no reply in time (the command may still be applied later).
        """
        assert self._producer is not None, "call start() or use 'async with'"
        assert self.identity is not None
        if command.actor == "unknown":
            command = command.model_copy(update={"actor": self.actor})
        value = codec.encode(command)
        secret = find_secret(orjson.loads(value))
        if secret is not None:
            raise SecretInConfig(secret)
        fut: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._waiting[command.id] = fut
        try:
            await self._producer.send_and_wait(
                self.settings.topic("registry.commands"),
                value,
                key=command.model_id.encode(),
                headers=codec.headers_for(command) + self.identity.headers(value),
            )
            try:
                reply = await asyncio.wait_for(fut, timeout or self.timeout)
            except TimeoutError:
                raise CommandTimeout(
                    f"no reply to {command.type} {command.id} for '{command.model_id}' within "
                    f"{timeout or self.timeout}s; is the decider running?"
                ) from None
        finally:
            self._waiting.pop(command.id, None)
        if reply.outcome == "rejected":
            raw = reply.rejection or {}
            raise Rejected(
                Rejection(
                    RejectionCode(raw.get("code", "InvalidCommand")),
                    raw.get("message", ""),
                    raw.get("field"),
                )
            )
        for ref in reply.events:
            self._written[ref.partition] = max(self._written.get(ref.partition, -1), ref.offset)
        return WriteResult(
            command.id, command.model_id, reply.outcome, reply.revision, tuple(reply.events)
        )

    def _envelope(self, expected_revision: int | None) -> dict[str, Any]:
        return {"actor": self.actor, "expected_revision": expected_revision}

    async def register(
        self, config: ModelConfig | Mapping[str, Any], *, expected_revision: int | None = None
    ) -> WriteResult:
        """Register a model (spec ``register``); an identical re-registration is a no-op."""
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.model_validate(config)
        return await self.send(
            RegisterModel(model_id=cfg.id, payload=cfg, **self._envelope(expected_revision))
        )

    async def update_status(
        self,
        model_id: str,
        status: Status | str,
        *,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> WriteResult:
        """Move a model along its lifecycle (spec ``updateStatus``)."""
        payload = ChangeStatusPayload(status=Status(status), reason=reason)
        return await self.send(
            ChangeStatus(model_id=model_id, payload=payload, **self._envelope(expected_revision))
        )

    async def unregister(
        self, model_id: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> WriteResult:
        """Unregister a deprecated model (spec ``unregister``); its history stays."""
        payload = ReasonPayload(reason=reason)
        return await self.send(
            UnregisterModel(model_id=model_id, payload=payload, **self._envelope(expected_revision))
        )

    async def clear(self, *, reason: str | None = None) -> WriteResult:
        """Testing only (spec ``clear``): refused unless the decider allows it; recorded as an
        event."""
        return await self.send(
            ClearRegistry(
                payload=ClearRegistryPayload(reason=reason, confirm=True), actor=self.actor
            )
        )

    async def release_version(
        self,
        model_id: str,
        version: str,
        *,
        status: Status | str | None = None,
        metrics: Metrics | Mapping[str, Any] | None = None,
        expected_revision: int | None = None,
        **changes: Any,
    ) -> WriteResult:
        """Release a higher version under the same id (same major)."""
        payload = ReleaseVersionPayload(
            version=version,
            status=Status(status) if status else None,
            metrics=Metrics.model_validate(metrics) if isinstance(metrics, Mapping) else metrics,
            changes=ConfigChanges.model_validate(changes),
        )
        return await self.send(
            ReleaseVersion(model_id=model_id, payload=payload, **self._envelope(expected_revision))
        )

    async def record_metrics(
        self,
        model_id: str,
        metrics: Metrics | Mapping[str, Any],
        *,
        replace: bool = False,
        expected_revision: int | None = None,
    ) -> WriteResult:
        """Record evaluation metrics: merged into the model's current set (``replace``: they
        become the whole set)."""
        m = metrics if isinstance(metrics, Metrics) else Metrics.model_validate(metrics)
        payload = RecordMetricsPayload(metrics=m, replace=True if replace else None)
        return await self.send(
            RecordMetrics(model_id=model_id, payload=payload, **self._envelope(expected_revision))
        )

    async def update_config(
        self, model_id: str, *, expected_revision: int | None = None, **changes: Any
    ) -> WriteResult:
        """Change name, description, endpoint, credentials (references), providerConfig,
        parameters or lastTrained."""
        payload = UpdateConfigPayload(changes=ConfigChanges.model_validate(changes))
        return await self.send(
            UpdateConfig(model_id=model_id, payload=payload, **self._envelope(expected_revision))
        )

    async def start_ab_test(
        self,
        challenger_id: str,
        champion_id: str,
        traffic_percentage: float,
        *,
        routing: Routing = "hash",
        mode: ABMode = "split",
        guardrails: Guardrails | Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Route ``traffic_percentage``% of the champion's requests to the challenger (mode
        ``shadow``: mirror them to it, its answers compared and never returned), under
        ``guardrails`` the monitor enforces."""
        payload = StartABTestPayload(
            champion_model_id=champion_id,
            traffic_percentage=traffic_percentage,
            routing=routing,
            mode=mode,
            guardrails=Guardrails.model_validate(guardrails) if guardrails is not None else None,
        )
        return await self.send(
            StartABTest(model_id=challenger_id, payload=payload, actor=self.actor)
        )

    async def change_traffic(
        self, challenger_id: str, traffic_percentage: float, *, reason: str | None = None
    ) -> WriteResult:
        """Change a running test's split (a new split version)."""
        payload = ChangeABTrafficPayload(traffic_percentage=traffic_percentage, reason=reason)
        return await self.send(
            ChangeABTraffic(model_id=challenger_id, payload=payload, actor=self.actor)
        )

    async def stop_ab_test(self, challenger_id: str, *, reason: str | None = None) -> WriteResult:
        """Stop the challenger's running test."""
        return await self.send(
            StopABTest(
                model_id=challenger_id, payload=ReasonPayload(reason=reason), actor=self.actor
            )
        )

    async def promote(
        self,
        challenger_id: str,
        *,
        reason: str | None = None,
        evidence: Evidence | Mapping[str, Any] | None = None,
        expected_revision: int | None = None,
    ) -> WriteResult:
        """Make the challenger the served model for everything addressed to its champion (one
        event): the test ends, the champion is deprecated and forwards to it, its aliases
        move. ``evidence``: the report's verdict and figures, kept in the event."""
        payload = PromotePayload(
            reason=reason,
            evidence=Evidence.model_validate(evidence) if evidence is not None else None,
        )
        return await self.send(
            PromoteChallenger(
                model_id=challenger_id, payload=payload, **self._envelope(expected_revision)
            )
        )

    async def rollback(self, model_id: str, *, reason: str | None = None) -> WriteResult:
        """Undo the promotion that made ``model_id`` the served model (one event)."""
        return await self.send(
            RollbackPromotion(
                model_id=model_id, payload=ReasonPayload(reason=reason), actor=self.actor
            )
        )

    async def assign_alias(self, alias: str, model_id: str) -> WriteResult:
        """Point ``alias`` (``name@label``) at ``model_id``, an active model."""
        return await self.send(
            AssignAlias(model_id=model_id, payload=AliasPayload(alias=alias), actor=self.actor)
        )

    async def remove_alias(self, alias: str, model_id: str) -> WriteResult:
        """Remove ``alias`` from ``model_id``, the model it names."""
        return await self.send(
            RemoveAlias(model_id=model_id, payload=AliasPayload(alias=alias), actor=self.actor)
        )
