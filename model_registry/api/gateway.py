"""``Gateway``: the ``ApiServices`` the routes and the console share (``app.state.services``).

- **Who is calling**: ``authenticate(token)`` finds the hashed token (``TokenStore``) and
  takes the actor's roles from the actors file as it is now (an actor removed from the file
  loses access at once).
- **Writes**: one ``CommandClient`` per actor, signing with the service's own gateway key
  (``<data_dir>/api.identity.json``, actor ``api``) in that actor's name. The decider checks
  the gateway may sign for it and the actor's own roles (registry/core/auth.py).
- **Reads**: one ``ProjectionReader``; ``reader(principal)`` first waits until the
  projection has applied every event the principal's writes appended (read-your-writes).
- **Predictions**: ``PredictionWaiter``: one producer and one consumer of
  ``predictions.results`` shared by every ``POST /predict``, answers matched by request id.

Everything is started lazily, on first use, and closed by ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.monitor.service import monitor_path
from model_registry.api.services import Principal
from model_registry.api.tokens import TokenError, TokenStore
from model_registry.runtime import find_running
from projections.reader import ProjectionReader
from projections.schema import projection_path
from registry.core.errors import BrokerUnavailable, CommandTimeout
from registry.core.predictions import PredictionRequest, PredictionResult
from registry.decider.client import CommandClient
from registry.infra.identity import ActorsFile, Identity, IdentityError, ensure_api
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of, start_client
from registry.infra.settings import Settings

__all__ = ["Gateway", "PredictionTimeout", "PredictionWaiter"]

log = logging.getLogger(__name__)


class PredictionTimeout(CommandTimeout):
    """No prediction result in time (the request may still be answered later)."""

    code = "PredictionTimeout"


class PredictionWaiter:
    """Sends prediction requests and hands each result to the request that waits for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[PredictionResult]] = {}
        self._lock = asyncio.Lock()

    async def _start(self) -> None:
        async with self._lock:
            if self._task is not None:
                return
            s = self.settings
            producer, consumer = make_producer(s, linger_ms=0), make_consumer(s)
            try:
                await start_client(producer, s)
                await start_client(consumer, s)
                tps = await partitions_of(consumer, s.topic("predictions.results"))
                consumer.assign(tps)
                await consumer.seek_to_end(*tps)
                for tp in tps:
                    await consumer.position(tp)
            except BaseException:
                await producer.stop()
                await consumer.stop()
                raise
            self._producer, self._consumer = producer, consumer
            self._task = asyncio.create_task(self._read(), name="api prediction results")

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            if not self._waiting:
                continue
            for records in batch.values():
                for record in records:
                    value = record.value
                    if value is None or b"api-" not in value:
                        continue  # cheap pre-filter: only this service's request ids
                    try:
                        data = orjson.loads(value)
                        fut = self._waiting.get(str(data.get("request_id")))
                        if fut is not None and not fut.done():
                            fut.set_result(PredictionResult.model_validate(data))
                    except Exception:  # noqa: BLE001 - an unreadable result fails nobody
                        log.debug("unreadable prediction result skipped", exc_info=True)

    async def predict(self, request: PredictionRequest, timeout: float) -> PredictionResult:
        """Send ``request`` and wait for its result. Raises ``PredictionTimeout``."""
        await self._start()
        assert self._producer is not None
        fut: asyncio.Future[PredictionResult] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = fut
        try:
            value = orjson.dumps(request.model_dump(mode="json", exclude_none=True))
            await self._producer.send_and_wait(
                self.settings.topic("predictions.requests"),
                value,
                key=request.routing_unit.encode(),
                headers=[("type", b"PredictionRequest")],
            )
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise PredictionTimeout(
                    f"no result for request {request.id} within {timeout:g}s; is the predictor "
                    "running?"
                ) from None
        finally:
            self._waiting.pop(request.id, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._consumer = self._producer = None


class Gateway:
    """The API's shared services (implements ``model_registry.api.services.ApiServices``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        projection: Path | None = None,
        monitor: Path | None = None,
    ) -> None:
        self.settings = settings
        self.projection_path = projection or projection_path(settings)
        self.monitor_path = monitor or monitor_path(settings)
        self.tokens = TokenStore(settings.api_tokens_file)
        self.actors = ActorsFile(settings.actors_file)
        self._reader: ProjectionReader | None = None
        self._clients: dict[str, CommandClient] = {}
        self._client_lock = asyncio.Lock()
        self._identity: Identity | None = None
        self._predictions: PredictionWaiter | None = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ who

    def authenticate(self, token: str | None) -> Principal | None:
        if token is None:
            if self.settings.api.anonymous_reads:
                return Principal(None, frozenset())
            return None
        try:
            stored = self.tokens.find(token)
            if stored is None:
                return None
            actor = self.actors.current().get(stored.actor)
        except (TokenError, IdentityError) as exc:
            log.error("cannot authenticate API requests: %s", exc)
            return None
        if actor is None:  # removed from the actors file: its tokens die with it
            return None
        return Principal(
            stored.actor,
            frozenset(str(r) for r in actor.roles),
            stored.id,
            read_only=stored.read_only,
        )

    # ------------------------------------------------------------------ reads

    async def reader(self, principal: Principal | None = None) -> ProjectionReader:
        if self._reader is None:
            self._reader = ProjectionReader(self.projection_path)
            await self._reader.open()
        if principal is not None and principal.actor is not None:
            client = self._clients.get(principal.actor)
            if client is not None:
                for partition, offset in client.written.items():
                    await self._reader.wait_for_offset(
                        partition, offset, timeout=self.settings.api.read_wait_s
                    )
        return self._reader

    # ------------------------------------------------------------------ writes

    def _broker_settings(self) -> Settings:
        found = find_running(self.settings)
        if found is None:
            raise BrokerUnavailable(
                f"no registry is running on the data dir {self.settings.data_dir} and no "
                "KAFKA_BOOTSTRAP_SERVERS is set: writes and predictions need the broker"
            )
        return found

    async def client(self, principal: Principal) -> CommandClient:
        if principal.actor is None:
            raise PermissionError("anonymous callers may only read")
        existing = self._clients.get(principal.actor)
        if existing is not None:
            return existing
        async with self._client_lock:
            existing = self._clients.get(principal.actor)
            if existing is not None:
                return existing
            if self._identity is None:
                self._identity = ensure_api(self.settings)
            client = CommandClient(
                self._broker_settings(),
                actor=principal.actor,
                identity=self._identity,
                timeout=self.settings.api.command_timeout_s,
            )
            try:
                await client.start()
            except BaseException:
                await client.close()
                raise
            self._clients[principal.actor] = client
            return client

    # ------------------------------------------------------------------ predictions

    async def predict(self, request: PredictionRequest, timeout: float) -> PredictionResult:
        """Send a prediction request and wait for its result (``PredictionTimeout``)."""
        if self._predictions is None:
            self._predictions = PredictionWaiter(self._broker_settings())
        return await self._predictions.predict(request, timeout)

    # ------------------------------------------------------------------ lifecycle

    def stats(self) -> dict[str, Any]:
        return {"clients": len(self._clients)}

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        if self._predictions is not None:
            await self._predictions.close()
            self._predictions = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
