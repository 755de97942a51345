"""Projection rebuild: N registry events from Kafka into SQLite, against a bare fetch.

    python bench/rebuild.py [--events 1000000] [--quick] [--json out.json]

Writes a realistic mix of events (20 per model: registration with a full config, metrics,
status moves, a config update, a release) to ``registry.events``, then in the same run:
1. the ceiling: a bare aiokafka ``getmany`` loop over the same events (no decoding);
2. a ``projections rebuild`` where no projection exists yet (the built file is renamed into
   place): the live projection of step 3;
3. the figure: a ``projections rebuild`` swapped into that live projection while it is in use
   (a reader thread queries it every few milliseconds through its own open connection, and a
   ``ProjectionReader`` opened before the rebuild must see the new file afterwards), as
   ``model-registry projections rebuild`` does on a running registry. The time runs from the
   start of the rebuild to the end of the swap.
Target: >= 100,000 events/s.

Besides the rates it reports where the CPU went, per event: this process (fetch, decode,
fold, rows), the rebuild's writer process (SQLite, indexes) and the broker; and how many
records the fold's fast path left to the careful one (expected: none).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    add_broker_option,
    bootstrap,
    machine,
    peak_rss_mb,
    results_path,
    use_broker,
    write_figures,
)
from bench.events import event_stream, produce  # noqa: E402


async def bare_fetch(bootstrap_servers: str, topic: str, expected: int) -> float:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        started = time.perf_counter()
        n = 0
        while n < expected:
            batch = await consumer.getmany(timeout_ms=500, max_records=20000)
            n += sum(len(v) for v in batch.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


class LiveReads:
    """A projection in use: a thread querying it every 5 ms through one open connection,
    reopened when the file was swapped (as ``ProjectionReader`` does), counting the reads that
    failed (there must be none: the swap is atomic for readers)."""

    def __init__(self, db: Path) -> None:
        self._db = db
        self._stop = threading.Event()
        self.reads = self.failures = 0
        self.generations: set[str] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveReads:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn, ident = None, None
        try:
            while not self._stop.wait(0.005):
                try:
                    st = os.stat(self._db)  # as ProjectionReader: reopen on a swap
                    if conn is None or (st.st_dev, st.st_ino) != ident:
                        if conn is not None:
                            conn.close()
                        conn, ident = sqlite3.connect(self._db, timeout=10), (st.st_dev, st.st_ino)
                    conn.execute(
                        "SELECT * FROM models WHERE model_id = 'model-00000000'"
                    ).fetchone()
                    row = conn.execute(
                        "SELECT value FROM projection_meta WHERE key = 'generation'"
                    ).fetchone()
                    self.generations.add(row[0])
                    self.reads += 1
                except sqlite3.Error:
                    self.failures += 1
        finally:
            if conn is not None:
                conn.close()


def _cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of process ``pid``, or of this one."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # children that have exited
    return usage.ru_utime + usage.ru_stime


async def main_async(n: int, out: Path) -> None:
    from projections.projector import rebuild
    from projections.reader import ProjectionReader
    from registry.infra.kafka.topics import ensure_topics
    from registry.infra.settings import Settings

    broker, bs = bootstrap()
    try:
        settings = Settings(
            bootstrap_servers=bs, topic_prefix=f"bench{int(time.time())}.", fetch_max_wait_ms=500
        )
        await ensure_topics(settings)
        topic = settings.topic("registry.events")
        t = time.perf_counter()
        produced = await produce(bs, topic, event_stream(n))
        print(f"rebuild: wrote {produced:,} events in {time.perf_counter() - t:.1f} s")
        bare_s = await bare_fetch(bs, topic, produced)
        broker_pid = broker.pid if broker is not None and sys.platform.startswith("linux") else None
        with tempfile.TemporaryDirectory() as tmp:
            live = Path(tmp) / "projection.db"
            first = await rebuild(settings, live)  # no projection yet: renamed into place
            print(f"  first rebuild (no live file): {produced / first.seconds:,.0f} events/s")
            async with ProjectionReader(live) as reader:
                before = await reader.get_model("model-00000000")
                assert before is not None
                with LiveReads(live) as reads:
                    cpu0, children0 = _cpu_seconds(), _children_cpu()
                    broker0 = _cpu_seconds(broker_pid) if broker_pid else 0.0
                    result = await rebuild(settings, live)  # swapped into the file in use
                    cpu1, children1 = _cpu_seconds(), _children_cpu()
                    broker1 = _cpu_seconds(broker_pid) if broker_pid else 0.0
                    time.sleep(0.05)  # a few reads of the new projection
                after = await reader.get_model("model-00000000")
                assert after is not None
                assert after.config == before.config
            if reads.failures or len(reads.generations) != 2:
                raise SystemExit(
                    f"the live projection's readers saw {reads.failures} failures and "
                    f"{len(reads.generations)} generations (expected 0 and 2)"
                )
            size_mb = live.stat().st_size / 2**20
        us = 1e6 / produced
        cpu = {
            "main_process": round((cpu1 - cpu0) * us, 2),
            "writer_process": round((children1 - children0) * us, 2),
        }
        if broker_pid:
            cpu["broker"] = round((broker1 - broker0) * us, 2)
        bare_rate, rate = produced / bare_s, produced / result.seconds
        figures = {
            "events": produced,
            "bare_fetch_per_s": round(bare_rate),
            "rebuild_per_s": round(rate),
            "rebuild_seconds": round(result.seconds, 2),
            "swap_into_live_seconds": round(result.swap_seconds, 2),
            "ratio_to_bare_fetch": round(rate / bare_rate, 3),
            "rebuild_new_file_per_s": round(produced / first.seconds),
            "live_reads_during_rebuild": reads.reads,
            "events_applied": result.events_applied,
            "errors": result.errors,
            "db_mb": round(size_mb, 1),
            "careful_path_records": result.careful,
            "cpu_us_per_event": cpu,
            "target_per_s": 100_000,
            "peak_rss_mb": peak_rss_mb(),
            "writer_peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
            ),
            "machine": machine(),
        }
        print(f"  bare aiokafka fetch {bare_rate:>12,.0f} events/s  (ceiling)")
        print(
            f"  projection rebuild  {rate:>12,.0f} events/s  ratio {rate / bare_rate:.2f}  "
            f"({result.seconds:.1f} s, of which the swap into the live file "
            f"{result.swap_seconds:.2f} s; target >= 100,000/s)"
        )
        print(f"  {reads.reads:,} reads of the live projection meanwhile, none failed")
        print(
            f"  applied {result.events_applied:,}, errors {result.errors}, database {size_mb:.0f} "
            f"MB, peak RSS {figures['peak_rss_mb']} MB (writer {figures['writer_peak_rss_mb']} MB)"
        )
        print(f"  CPU per event (us): {cpu}; records left to the careful path: {result.careful:,}")
        write_figures(out, figures)
    finally:
        if broker is not None:
            broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="20,000 events: a smoke run")
    ap.add_argument("--json", type=Path, help="default: bench/results/rebuild[.kafka].json")
    add_broker_option(ap)
    args = ap.parse_args()
    use_broker(args)
    out = args.json or results_path("rebuild")
    asyncio.run(main_async(20_000 if args.quick else args.events, out))


if __name__ == "__main__":
    main()
