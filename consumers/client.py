"""``PredictionClient``: send a prediction request and wait for its result by request id.

What a CRM module does, in Python: produce a ``PredictionRequest`` keyed by its unit id to
``predictions.requests``, then read ``predictions.results`` until the result with that
request id arrives. The client starts watching the results before it sends, so it cannot
miss a fast answer.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from registry.core.errors import CommandTimeout
from registry.core.predictions import PredictionRequest, PredictionResult
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of, start_client
from registry.infra.settings import Settings

__all__ = ["PredictionClient", "PredictionTimeout"]


class PredictionTimeout(CommandTimeout):
    """No result arrived in time; the request may still be answered later."""

    code = "PredictionTimeout"


class PredictionClient:
    """Sends requests and awaits their results. Use as an async context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Connect, and position on the end of ``predictions.results``.

        Raises:
            BrokerUnavailable: Kafka could not be reached.
        """
        self._producer = make_producer(self.settings)
        await start_client(self._producer, self.settings)
        self._consumer = make_consumer(self.settings)
        await start_client(self._consumer, self.settings)
        tps = await partitions_of(self._consumer, self.settings.topic("predictions.results"))
        self._consumer.assign(tps)
        # end_offsets() may lag on the embedded broker: starting a little early only means
        # reading a few older results, which are skipped by request id.
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)

    async def stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None

    async def __aenter__(self) -> PredictionClient:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def send(self, request: PredictionRequest) -> None:
        """Produce ``request`` (keyed by its routing unit) and wait for the broker's ack."""
        assert self._producer is not None, "start() first"
        value = orjson.dumps(request.model_dump(mode="json", exclude_none=True))
        await self._producer.send_and_wait(
            self.settings.topic("predictions.requests"),
            value,
            key=request.routing_unit.encode(),
            headers=[("type", b"PredictionRequest")],
        )

    async def predict(
        self,
        model_id: str,
        input: dict[str, Any] | list[Any] | str,  # noqa: A002 - the wire field's name
        *,
        unit_id: str | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        explain: bool = False,
        timeout: float = 10.0,
    ) -> PredictionResult:
        """Send one request and return its result (``explain``: with the per-feature
        contributions, when the model's provider can give them).

        Raises:
            PredictionTimeout: no result within ``timeout`` seconds.
            pydantic.ValidationError: the request itself is invalid (e.g. a bad model id).
        """
        fields: dict[str, Any] = {
            "model_id": model_id,
            "input": input,
            "unit_id": unit_id,
            "correlation_id": correlation_id,
        }
        if request_id is not None:
            fields["id"] = request_id
        if explain:
            fields["explain"] = True
        request = PredictionRequest(**fields)
        await self.send(request)
        return await self.wait_for(request.id, timeout)

    async def wait_for(self, request_id: str, timeout: float = 10.0) -> PredictionResult:
        """The result of ``request_id``, read from ``predictions.results``."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        deadline = time.monotonic() + timeout
        needle = request_id.encode()
        while (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000) or 1)
            for records in batch.values():
                for record in records:
                    if record.value is None or needle not in record.value:
                        continue  # cheap pre-filter before decoding
                    data = orjson.loads(record.value)
                    if data.get("request_id") == request_id:
                        return PredictionResult.model_validate(data)
        raise PredictionTimeout(
            f"no result for request {request_id} within {timeout:g}s; is the predictor running?"
        )
