"""What the broker behind a bootstrap address is like, learned at run time.

The registry runs on Apache Kafka and on the embedded broker (Tansu), whose known gaps
(docs/design.md#brokers) need work-arounds that would only cost on Kafka: a fetch that
waits its full ``fetch_max_wait_ms`` even when data arrives, and a ``ListOffsets(latest)``
(``end_offsets()``) that can lag the log. Nobody configures which broker it is: the first
client of a process asks the broker for its API versions once (cached per bootstrap
address) and ``broker_traits`` says what to trust.

The test is the broker's own answer: Apache Kafka has answered ``OffsetForLeaderEpoch``
(API key 23) since 0.11, because its replicas truncate their logs with it; the embedded
broker does not replicate and does not list it. A broker that lists it is trusted to
answer a waiting fetch as soon as data arrives and to know where its logs end.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.protocol.admin import ApiVersionRequest

from registry.infra.settings import Settings

__all__ = [
    "EMBEDDED_FETCH_WAIT_MS",
    "EMBEDDED_REQUESTS_BEFORE_SLOWDOWN",
    "RESULT_LINGER_MS",
    "BrokerTraits",
    "broker_traits",
    "forget_broker_traits",
]

log = logging.getLogger(__name__)

OFFSET_FOR_LEADER_EPOCH = 23
EMBEDDED_FETCH_WAIT_MS = 10
"""The longest fetch wait worth having on a broker that always waits it out in full."""
EMBEDDED_REQUESTS_BEFORE_SLOWDOWN = 10_000
"""About how many predictions the embedded broker carries before its latency grows several
fold (bench/soak.py: at 50 and 100 requests/s the p99 grew ~10x after 10-15 thousand; at
1,000/s within the first minute). Its memory storage cannot trim a log (DeleteRecords is not
implemented) and a fetch costs time in proportion to the record batches a partition holds,
so it is the volume carried since the broker started, not the rate, that slows it; the
predictor warns past this many, and again at each tenfold."""
RESULT_LINGER_MS = {True: 0, False: 0}
"""The results producer's linger by broker (``kafka``: Apache Kafka). 0 on both: the
predictor's emitter already gathers every answer queued for a partition into one batch,
and while a batch is in flight the next one fills, so batches grow with the load by
themselves; a linger only added its milliseconds to every answer (bench/latency.py)."""

_cache: dict[str, BrokerTraits] = {}


@dataclass(frozen=True)
class BrokerTraits:
    """What a broker can be trusted with (``kafka``: it behaves as Apache Kafka)."""

    kafka: bool
    api_keys: int = 0  # how many APIs it listed, for the log line

    @property
    def fetch_answers_early(self) -> bool:
        """A waiting fetch returns as soon as data arrives (so a long wait costs nothing)."""
        return self.kafka

    @property
    def exact_end_offsets(self) -> bool:
        """``end_offsets()`` answers where each log ends (else: high watermarks of fetches)."""
        return self.kafka

    def fetch_max_wait_ms(self, configured: int) -> int:
        """The fetch wait to use: as configured on Kafka, capped where a fetch waits in full."""
        return configured if self.fetch_answers_early else min(configured, EMBEDDED_FETCH_WAIT_MS)

    def result_linger_ms(self, configured: int | None) -> int:
        """The results producer's linger: as configured, else this broker's default."""
        return RESULT_LINGER_MS[self.kafka] if configured is None else configured

    @property
    def requests_before_slowdown(self) -> int | None:
        """How many predictions this broker carries before it slows down (None: no limit
        known; Apache Kafka trims its logs and indexes them)."""
        return None if self.kafka else EMBEDDED_REQUESTS_BEFORE_SLOWDOWN

    @property
    def name(self) -> str:
        return "Apache Kafka" if self.kafka else "embedded-like (no OffsetForLeaderEpoch)"


async def broker_traits(settings: Settings, timeout: float = 5.0) -> BrokerTraits | None:
    """The traits of the broker at ``settings.bootstrap_servers``; None when no bootstrap
    server answered (the caller's own connection will report that)."""
    key = settings.bootstrap_servers
    known = _cache.get(key)
    if known is not None:
        return known
    kwargs = settings.client_kwargs()
    conn_kwargs: dict[str, Any] = {k: v for k, v in kwargs.items() if k != "bootstrap_servers"}
    for address in key.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            continue
        try:
            keys = await asyncio.wait_for(
                _api_keys(host.strip("[]"), int(port), conn_kwargs), timeout
            )
        except Exception as exc:  # noqa: BLE001 - any failure: try the next address
            log.debug("no ApiVersions answer from %s: %s", address, exc)
            continue
        traits = BrokerTraits(kafka=OFFSET_FOR_LEADER_EPOCH in keys, api_keys=len(keys))
        _cache[key] = traits
        log.info("broker at %s: %s (%d APIs)", key, traits.name, traits.api_keys)
        return traits
    return None


def forget_broker_traits() -> None:
    """Drop what was learned (a test that restarts a broker on the same address)."""
    _cache.clear()


async def _api_keys(host: str, port: int, kwargs: dict[str, Any]) -> set[int]:
    conn = await create_conn(host, port, request_timeout_ms=5000, **kwargs)
    try:
        response = await conn.send(ApiVersionRequest())
        return {int(api_key) for api_key, _min, _max in response.api_versions}
    finally:
        conn.close()
