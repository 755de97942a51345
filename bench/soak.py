"""Sustained load: does the latency stay flat, and does a long-run stack answer as fast as a
fresh one?

    python bench/soak.py [--rate 1000] [--minutes 10] [--quick] [--bootstrap HOST:PORT]
                         [--json out.json]

A client writes requests at ``--rate``/s for ``--minutes`` to a ``PredictionConsumer`` over a
20% A/B test of two local scikit-learn models (as ``bench/latency.py``) and reads the
results, end-to-end latency per minute (p50/p95/p99; a window is the requests *sent* in that
minute). Then the same rate for 30 s twice: on the stack that has just run the soak
("aged"), and on a fresh broker (embedded: a new one; Kafka: new topics) with a fresh
predictor ("fresh").

Target (issue 18): the p99 does not grow from minute to minute, and the aged stack answers
as fast as the fresh one. ``--quick``: 200/s for 20 s, windows of 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    add_broker_option,
    bootstrap,
    broker_kind,
    machine,
    peak_rss_mb,
    results_path,
    use_broker,
    write_figures,
)
from bench.latency import Samples, drive, settings_for, summary  # noqa: E402
from bench.predictions import _train  # noqa: E402
from consumers.predictor import PredictionConsumer  # noqa: E402
from registry.infra.settings import PredictorSettings, Settings  # noqa: E402

COMPARE_S = 30.0


def _row(samples: Samples, start: float, end: float, seconds: float) -> dict[str, Any]:
    values = samples.window(start, end)
    sent = sum(1 for _ in values)
    return {
        "from_s": start,
        **summary(values),
        "answered": sent,
        "answered_per_s": round(sent / max(1e-9, seconds), 1),
    }


async def _stopped(task: asyncio.Task[None]) -> str | None:
    """Wait for the predictor to stop; what it crashed with, if it did."""
    try:
        await asyncio.wait_for(task, 60.0)
    except Exception as exc:  # noqa: BLE001 - a figure, not a failure of the bench
        print(f"  the predictor stopped with {type(exc).__name__}: {exc}")
        return f"{type(exc).__name__}: {exc}"[:500]
    return None


async def _serve(settings: Settings) -> tuple[asyncio.Event, asyncio.Task[None], Any]:
    consumer = PredictionConsumer(settings, config=PredictorSettings(assignment="all"))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await consumer.ready.wait()
    await asyncio.sleep(0.5)
    return stop, task, consumer


async def main_async(rate: int, seconds: float, window_s: float, out: Path) -> None:
    broker, bootstrap_servers = bootstrap()
    figures: dict[str, Any] = {"rate": rate, "seconds": seconds, "window_s": window_s}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            models = _train(Path(tmp))
            settings = await settings_for(bootstrap_servers, models)
            stop, task, consumer = await _serve(settings)
            started = time.perf_counter()

            def progress(s: Samples, elapsed: float) -> None:
                if int(elapsed) % int(max(window_s, 10)) < 10:
                    last = s.window(max(0.0, elapsed - 10), elapsed)
                    row = summary(last)
                    print(
                        f"  {elapsed:>5.0f} s  sent {s.sent:,}  answered {s.answered:,}  "
                        f"last 10 s p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms",
                        flush=True,
                    )

            soak = await drive(settings, rate, seconds, drain_s=30.0, on_window=progress)
            windows = [
                _row(soak, w, w + window_s, window_s) for w in range(0, int(seconds), int(window_s))
            ]
            figures["windows"] = windows
            figures["sent"], figures["answered"] = soak.sent, soak.answered
            figures["soak_wall_s"] = round(time.perf_counter() - started, 1)
            print(f"soak: {rate}/s for {seconds:g} s, by windows of {window_s:g} s (sent at)")
            for w in windows:
                print(
                    f"  {w['from_s']:>5.0f} s  p50 {w['p50_ms']:>8.2f} ms"
                    f"  p95 {w['p95_ms']:>8.2f} ms"
                    f"  p99 {w['p99_ms']:>8.2f} ms  ({w['answered']:,} answered)"
                )
            print(f"  answered {soak.answered:,} of {soak.sent:,}")
            aged = await drive(settings, rate, COMPARE_S)
            stop.set()
            figures["predictor_crash"] = await _stopped(task)
            figures["aged"] = {
                **summary(aged.all(1.0)),
                "sent": aged.sent,
                "answered": aged.answered,
            }
            s = consumer.stats
            figures["predictor"] = {
                "records": s.records,
                "results": s.results,
                "errors": s.errors,
                "overloaded": s.overloaded,
                "in_flight": s.in_flight,
                "lag": s.lag,
            }
            if broker is not None:  # a fresh embedded broker for the fresh stack
                broker.stop()
                broker, bootstrap_servers = bootstrap()
            fresh_settings = await settings_for(bootstrap_servers, models)
            stop, task, _ = await _serve(fresh_settings)
            fresh = await drive(fresh_settings, rate, COMPARE_S)
            stop.set()
            await _stopped(task)
            figures["fresh"] = {
                **summary(fresh.all(1.0)),
                "sent": fresh.sent,
                "answered": fresh.answered,
            }
    finally:
        if broker is not None:
            broker.stop()
    first, last = figures["windows"][0], figures["windows"][-1]
    figures["p99_growth_last_to_first"] = round(last["p99_ms"] / max(first["p99_ms"], 1e-9), 2)
    figures["aged_to_fresh_p99"] = round(
        figures["aged"]["p99_ms"] / max(figures["fresh"]["p99_ms"], 1e-9), 2
    )
    figures["aged_to_fresh_p50"] = round(
        figures["aged"]["p50_ms"] / max(figures["fresh"]["p50_ms"], 1e-9), 2
    )
    print(
        f"  after the soak (aged) p50 {figures['aged']['p50_ms']} ms p99 "
        f"{figures['aged']['p99_ms']} ms; fresh stack p50 {figures['fresh']['p50_ms']} ms p99 "
        f"{figures['fresh']['p99_ms']} ms: ratio p99 {figures['aged_to_fresh_p99']}"
    )
    print(f"  p99 of the last window / the first: ratio {figures['p99_growth_last_to_first']}")
    figures["peak_rss_mb"] = peak_rss_mb()
    figures["machine"] = machine()
    write_figures(out, figures)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=int, default=1000, help="requests/s")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="200/s for 20 s: a smoke run")
    ap.add_argument("--json", type=Path, default=None)
    add_broker_option(ap)
    args = ap.parse_args()
    use_broker(args)
    rate, seconds, window = (200, 20.0, 5.0) if args.quick else (args.rate, args.minutes * 60, 60.0)
    if args.quick:
        global COMPARE_S
        COMPARE_S = 5.0
    print(f"soak ({broker_kind()} broker): {rate}/s for {seconds:g} s", flush=True)
    asyncio.run(main_async(rate, seconds, window, args.json or results_path("soak")))


if __name__ == "__main__":
    main()
