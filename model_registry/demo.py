"""The spec's story, end to end, against a running stack.

1. train two lead-scoring models on synthetic leads (scikit-learn, a second or so), saved as
   skops files (no pickle) in ``<data_dir>/models``, the model root every prediction consumer
   is granted (docs/security-providers.md);
2. register ``lead-scoring-v1`` (active) and ``lead-scoring-v2`` (testing), each pinning its
   file's SHA-256 (``providerConfig.modelSha256``), record v2's metrics, activate it, and
   start a 20% champion/challenger test (v2 challenges v1);
3. stream prediction requests, wait for every result, then send the ground truth;
4. print the monitor's comparison report; promote v2 (one event, the report as evidence):
   the alias ``lead-scoring@production`` the requests named now leads to v2, and one more
   request asks it why it scores a lead as it does (an explanation);
5. print the audit history of v2, and v2's state at a moment before it was activated (a
   point-in-time query).

Safe to run again on the same data dir: steps already done are reported and skipped.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from consumers.client import PredictionClient
from consumers.monitor import build_report, monitor_path
from consumers.providers.files import file_digest
from model_registry.client import ModelRegistry
from model_registry.evidence import evidence_of, running_report
from model_registry.render.report import print_report
from registry.core.errors import Rejected
from registry.core.predictions import PredictionOutcome, PredictionRequest
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of, start_client
from registry.infra.settings import Settings

__all__ = ["FEATURES", "make_leads", "run_demo", "train_lead_models"]

FEATURES = ["employees_log", "engagement", "email_opens", "web_visits", "budget_known"]
CHAMPION, CHALLENGER = "lead-scoring-v1", "lead-scoring-v2"
ALIAS = "lead-scoring@production"
"""The stable name CRM modules ask for: it follows promotions."""


def make_leads(n: int, seed: int) -> tuple[list[dict[str, float]], list[int]]:
    """Synthetic leads: features and whether each converted."""
    rng = random.Random(seed)
    rows, labels = [], []
    for _ in range(n):
        row = {
            "employees_log": rng.uniform(0, 5),
            "engagement": rng.uniform(0, 1),
            "email_opens": float(rng.randint(0, 20)),
            "web_visits": float(rng.randint(0, 50)),
            "budget_known": float(rng.random() < 0.4),
        }
        z = (
            -4
            + 0.5 * row["employees_log"]
            + 3 * row["engagement"]
            + 0.08 * row["email_opens"]
            + 0.03 * row["web_visits"]
            + 1.5 * row["budget_known"]
        )
        labels.append(int(rng.random() < 1 / (1 + 2.718281828**-z)))
        rows.append(row)
    return rows, labels


def train_lead_models(out_dir: Path) -> dict[str, Any]:
    """Train v1 (two features, weaker) and v2 (all features); save them as skops files (types
    skops trusts by default only); return their paths, digests and metrics."""
    import skops.io as sio  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    out_dir.mkdir(parents=True, exist_ok=True)
    train_x, train_y = make_leads(4000, seed=1)
    test_x, test_y = make_leads(2000, seed=2)
    result: dict[str, Any] = {}
    for model_id, features in ((CHAMPION, ["engagement", "email_opens"]), (CHALLENGER, FEATURES)):
        model = LogisticRegression(max_iter=500)
        model.fit([[r[f] for f in features] for r in train_x], train_y)
        predicted = model.predict([[r[f] for f in features] for r in test_x])
        path = out_dir / f"{model_id}.skops"
        path.write_bytes(sio.dumps(model))
        result[model_id] = {
            "path": str(path.resolve()),
            "sha256": file_digest(path),
            "features": features,
            "metrics": {
                "accuracy": round(100 * accuracy_score(test_y, predicted), 2),
                "precision": round(100 * precision_score(test_y, predicted, zero_division=0), 2),
                "recall": round(100 * recall_score(test_y, predicted, zero_division=0), 2),
                "f1Score": round(100 * f1_score(test_y, predicted, zero_division=0), 2),
            },
        }
    return result


def _config(model_id: str, version: str, status: str, trained: dict[str, Any]) -> dict[str, Any]:
    info = trained[model_id]
    return {
        "id": model_id,
        "name": f"Lead scoring {version.split('.')[0]}",
        "version": version,
        "type": "classification",
        "provider": "scikit-learn",
        "description": "Probability that a lead converts (synthetic demo data)",
        "status": status,
        "providerConfig": {
            "provider": "scikit-learn",
            "modelPath": info["path"],
            "modelSha256": info["sha256"],
            "features": info["features"],
        },
        "lastTrained": datetime.now(UTC).isoformat(),
    }


async def _step(console: Console, label: str, action: Any) -> Any:
    try:
        result = await action
    except Rejected as exc:
        console.print(f"  [yellow]-[/] {label}: already done earlier ({exc.rejection.code})")
        return None
    if result.events:
        console.print(f"  [green]✓[/] {label} (revision {result.revision})")
    else:
        console.print(f"  [green]✓[/] {label} (no change: already so)")
    return result


async def _stream_predictions(
    settings: Settings, n: int, console: Console
) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """Send ``n`` requests, wait for every result; returns variant counts and (request, truth)."""
    leads, truth = make_leads(n, seed=int(time.time()))
    producer = make_producer(settings, linger_ms=5)
    results = make_consumer(settings)
    await start_client(producer, settings)
    await start_client(results, settings)
    variants: dict[str, int] = {}
    pending: dict[str, int] = {}
    try:
        tps = await partitions_of(results, settings.topic("predictions.results"))
        results.assign(tps)
        await results.seek_to_end(
            *tps
        )  # may lag on the embedded broker: old results are filtered below
        for tp in tps:
            await results.position(tp)
        with _progress(console) as progress:
            sent = progress.add_task("requests sent", total=n)
            got = progress.add_task("results received", total=n)
            for i, (lead, label) in enumerate(zip(leads, truth, strict=True)):
                request = PredictionRequest(model_id=ALIAS, unit_id=f"lead-{i}", input=lead)
                pending[request.id] = label
                await producer.send(
                    settings.topic("predictions.requests"),
                    orjson.dumps(request.model_dump(mode="json")),
                    key=request.routing_unit.encode(),
                    headers=[("type", b"PredictionRequest")],
                )
                progress.advance(sent)
            await producer.flush()
            labels = dict(pending)
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                batch = await results.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        result = orjson.loads(record.value)
                        if pending.pop(result.get("request_id"), None) is None:
                            continue
                        variants[result.get("variant", "none")] = (
                            variants.get(result.get("variant", "none"), 0) + 1
                        )
                        progress.advance(got)
            if pending:
                console.print(f"  [red]![/] {len(pending)} requests got no result within 60 s")
            outcomes = progress.add_task("outcomes sent", total=len(labels))
            for request_id, label in labels.items():
                outcome = PredictionOutcome(request_id=request_id, actual=label)
                await producer.send(
                    settings.topic("predictions.outcomes"),
                    orjson.dumps(outcome.model_dump(mode="json")),
                    key=request_id.encode(),
                    headers=[("type", b"PredictionOutcome")],
                )
                progress.advance(outcomes)
            await producer.flush()
    finally:
        await producer.stop()
        await results.stop()
    return variants, list(labels.items())


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("  {task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


async def _wait_for_monitor(
    settings: Settings, expected_outcomes: int, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    db = monitor_path(settings)
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                try:
                    scored = conn.execute(
                        "SELECT COALESCE(SUM(scored), 0) FROM variant_minute WHERE model_id IN (?, "
                        "?)",
                        (CHAMPION, CHALLENGER),
                    ).fetchone()[0]
                except sqlite3.OperationalError:
                    scored = 0
            if scored >= expected_outcomes:
                return
        await asyncio.sleep(0.2)


async def _explain(settings: Settings, console: Console) -> None:
    """Ask the alias for one lead's score with an explanation: who serves it now, and why."""
    lead = make_leads(1, seed=7)[0][0]
    async with PredictionClient(settings) as client:
        result = await client.predict(ALIAS, lead, unit_id="lead-why", explain=True, timeout=30)
    served = f"{result.served_model_id} {result.served_version}"
    console.print(f"  {ALIAS} is served by [cyan]{served}[/] now; output {result.output}")
    explanation = result.explanation
    if explanation is None:
        console.print(f"  no explanation: {result.explanation_error}")
        return
    console.print(
        f"  why ({explanation.method}, {explanation.target}): baseline {explanation.baseline:+.3f}"
    )
    for c in explanation.contributions[:5]:
        console.print(f"    {c.feature:<14} = {c.value!s:<8} {c.contribution:+.3f}")


async def run_demo(
    settings: Settings,
    *,
    n_requests: int = 3000,
    stop: asyncio.Event | None = None,
    console: Console | None = None,
) -> None:
    """Walk the spec's story against the stack at ``settings``."""
    console = console or Console()
    started = time.monotonic()
    console.rule("[bold]model-registry demo")
    console.print("[bold]1. Train two lead-scoring models[/] (scikit-learn, synthetic leads)")
    trained = await asyncio.to_thread(train_lead_models, settings.data_dir / "models")
    for model_id, info in trained.items():
        console.print(
            f"  {model_id}: accuracy {info['metrics']['accuracy']}%, f1 "
            f"{info['metrics']['f1Score']}%"
        )

    console.print("[bold]2. Register, validate, activate, and start a 20% A/B test[/]")
    async with ModelRegistry(settings) as reg:
        metrics = {m: trained[m]["metrics"] for m in (CHAMPION, CHALLENGER)}
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (
                f"register {CHAMPION} 1.0.0 as active",
                lambda: reg.register(_config(CHAMPION, "1.0.0", "active", trained)),
            ),
            (
                f"record {CHAMPION} metrics",
                lambda: reg.record_metrics(CHAMPION, metrics[CHAMPION]),
            ),
            (f"point {ALIAS} at {CHAMPION}", lambda: reg.assign_alias(ALIAS, CHAMPION)),
            (
                f"register {CHALLENGER} 2.0.0 as testing",
                lambda: reg.register(_config(CHALLENGER, "2.0.0", "testing", trained)),
            ),
            (
                f"record {CHALLENGER} validation metrics",
                lambda: reg.record_metrics(CHALLENGER, metrics[CHALLENGER]),
            ),
        ]
        for label, write in steps:
            await _step(console, label, write())
        await asyncio.sleep(0.05)
        before_activation = datetime.now(UTC)
        await asyncio.sleep(0.05)
        for label, write in [
            (
                f"activate {CHALLENGER}",
                lambda: reg.update_status(CHALLENGER, "active", reason="validation passed"),
            ),
            (
                f"start A/B: {CHALLENGER} takes 20% of {CHAMPION}",
                lambda: reg.start_ab_test(CHALLENGER, CHAMPION, 20),
            ),
        ]:
            await _step(console, label, write())
        view = await reg.get_model(CHALLENGER)
        if view is None:  # read-your-writes: the projection has applied our writes
            raise RuntimeError(f"the projection does not show {CHALLENGER} after its writes")
        console.print(
            f"  projection shows {CHALLENGER}: status {view.status}, revision {view.revision}"
        )

        console.print(f"[bold]3. Stream {n_requests} prediction requests and their outcomes[/]")
        variants, _ = await _stream_predictions(settings, n_requests, console)
        total = sum(variants.values()) or 1
        console.print(
            "  variants: "
            + ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in sorted(variants.items()))
        )

        console.print("[bold]4. Champion vs challenger[/] (the monitor's report)")
        await _wait_for_monitor(settings, n_requests)
        report = build_report(monitor_path(settings), CHAMPION)
        print_report(report, console)

        console.print(f"[bold]5. Promote {CHALLENGER}[/] (one event, the report as evidence)")
        running = running_report(monitor_path(settings), CHALLENGER)
        evidence = evidence_of(running) if running is not None else None
        await _step(
            console,
            f"promote {CHALLENGER} over {CHAMPION} ({report.verdict})",
            reg.promote(CHALLENGER, reason="the demo's A/B test", evidence=evidence),
        )
        await _explain(settings, console)

        console.print(f"[bold]6. Audit: the history of {CHALLENGER}[/]")
        for row in await reg.status_history(CHALLENGER):
            console.print(f"  {row}")
        past = await reg.get_model(CHALLENGER, as_of=before_activation)
        console.print(
            f"[bold]7. Point in time:[/] {CHALLENGER} as of "
            f"{before_activation.isoformat(timespec='seconds')} "
            f"was [cyan]{past.status if past else 'not registered'}[/] (now {view.status})"
        )
    console.rule(f"demo finished in {time.monotonic() - started:.1f} s")
