"""Restore ``registry.events`` from the projection into an empty topic.

The embedded broker keeps data in memory only; the projection's ``events`` table is the
durable local copy of the log. ``restore_log`` re-produces every stored record verbatim
(same partition, key, value bytes, headers and timestamp, in offset order) and checks that
each lands at the offset it had, so the stored checkpoints stay valid and the projector
carries on without a rebuild. An unreadable record, whose bytes the projection does not
keep, comes back as a placeholder at its offset naming the original's digest.

It refuses (``RestoreRefused``) when the topic is not empty, the stored log has offset gaps
that a producer cannot reproduce, or an offset comes out different.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from projections.errors import ProjectionUnavailable, RestoreRefused
from projections.guard import high_watermarks, placeholder
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of, start_client
from registry.infra.settings import Settings

__all__ = ["restore_log"]

_CHUNK = 5000
_STORED = """
SELECT partition, offset, key, headers, timestamp_ms, value, NULL, 0, 0 FROM events
 WHERE partition > ? OR (partition = ? AND offset > ?)
UNION ALL
SELECT partition, offset, key, headers, timestamp_ms, NULL, value_sha256, value_size, 1
  FROM projection_errors
 WHERE kind = 'undecodable' AND (partition > ? OR (partition = ? AND offset > ?))
ORDER BY 1, 2 LIMIT ?
"""

Stored = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]], int]


def _decode_row(row: tuple[Any, ...]) -> Stored:
    partition, offset, key, headers, ts, value, digest, size, unreadable = row
    hdrs = [(k, base64.b64decode(v)) for k, v in orjson.loads(headers)]
    if not unreadable:
        data: bytes | None = str(value).encode("utf-8")
    else:
        data = None if digest is None else placeholder(digest, size)
    return partition, offset, key, data, hdrs, ts


_UNION = """
SELECT partition, offset FROM events
UNION ALL
SELECT partition, offset FROM projection_errors WHERE kind = 'undecodable'
"""
_FIRST_GAP = f"""
SELECT partition, prev, offset FROM (
  SELECT partition, offset, lag(offset) OVER (PARTITION BY partition ORDER BY offset) AS prev
    FROM ({_UNION})
) WHERE offset != coalesce(prev + 1, 0) ORDER BY partition, offset LIMIT 1
"""


def _open(db_path: Path) -> sqlite3.Connection:
    if not db_path.exists():
        raise ProjectionUnavailable(f"no projection at {db_path} to restore from")
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)


def _chunks(conn: sqlite3.Connection) -> Iterator[list[Stored]]:
    """The stored records in (partition, offset) order, a chunk at a time (memory stays bounded)."""
    last = (-1, -1)
    while True:
        rows = conn.execute(
            _STORED, (last[0], last[0], last[1], last[0], last[0], last[1], _CHUNK)
        ).fetchall()
        if not rows:
            return
        yield [_decode_row(row) for row in rows]
        last = (rows[-1][0], rows[-1][1])


def _check_stored(conn: sqlite3.Connection, topic: str, db_path: Path) -> tuple[int, int]:
    """(records, highest partition) of a stored log that can be reproduced offset for offset."""
    stored = conn.execute("SELECT value FROM projection_meta WHERE key = 'topic'").fetchone()
    if stored is not None and stored[0] != topic:
        raise RestoreRefused(f"{db_path} holds the log of {stored[0]}, not of {topic}")
    gap = conn.execute(_FIRST_GAP).fetchone()
    if gap is not None:
        partition, prev, offset = gap
        raise RestoreRefused(
            f"the stored log of partition {partition} jumps from offset "
            f"{-1 if prev is None else prev} "
            f"to {offset}; a producer cannot reproduce gaps, so the offsets would not match. "
            "Rebuild instead."
        )
    count, top = conn.execute(f"SELECT count(*), max(partition) FROM ({_UNION})").fetchone()
    return int(count), int(top or 0)


async def restore_log(settings: Settings, db_path: Path) -> int:
    """Re-produce the stored log into an empty ``registry.events``; returns the records written.

    Raises:
        RestoreRefused: the topic is not empty, or the offsets would (or did) differ.
        ProjectionUnavailable: there is no projection file to restore from.
    """
    topic = settings.topic("registry.events")
    conn = _open(Path(db_path))
    try:
        count, top = _check_stored(conn, topic, Path(db_path))
        if count == 0:
            return 0
        await _check_empty(settings, topic, top)
        producer = make_producer(settings, linger_ms=5, max_batch_size=1024 * 1024)
        await start_client(producer, settings)
        try:
            for chunk in _chunks(conn):
                await _produce(producer, topic, chunk)
        finally:
            await producer.stop()
    finally:
        conn.close()
    return count


async def _produce(producer: AIOKafkaProducer, topic: str, chunk: list[Stored]) -> None:
    futures = [
        (
            offset,
            await producer.send(
                topic, value, key=key, headers=headers, partition=partition, timestamp_ms=ts
            ),
        )
        for partition, offset, key, value, headers, ts in chunk
    ]
    for offset, future in futures:
        meta = await future
        if meta.offset != offset:
            raise RestoreRefused(
                f"a restored record landed at offset {meta.offset} of partition {meta.partition} "
                "instead "
                f"of {offset}; the topic was written to during the restore. Rebuild the projection."
            )


async def _check_empty(settings: Settings, topic: str, max_partition: int) -> None:
    consumer = make_consumer(settings)
    await start_client(consumer, settings)
    try:
        tps = await partitions_of(consumer, topic)
        if max_partition >= len(tps):
            raise RestoreRefused(
                f"{topic} has {len(tps)} partitions; the stored log needs {max_partition + 1}"
            )
        consumer.assign(tps)
        hws = await high_watermarks(consumer, tps)
    finally:
        await consumer.stop()
    busy = {tp.partition: hw for tp, hw in hws.items() if hw > 0}
    if busy:
        raise RestoreRefused(
            f"{topic} is not empty (high watermarks {busy}); a restore only fills an empty log"
        )
