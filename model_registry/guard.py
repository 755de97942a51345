"""The guard: enforces running A/B tests' guardrails, as the authenticated actor ``monitor``.

Every ``guard_interval_s`` it reads the tests that run with guardrails from the projection
(``models.ab_guardrails``), builds each one's comparison report from the monitor database and
asks ``consumers.monitor.guardrails.evaluate`` whether a guardrail is crossed with
statistical confidence (always-valid intervals: looking every two seconds does not raise the
false-alarm rate). When one is, it sends the command the test's guardrails name, signed with
its own key (``<data_dir>/monitor.identity.json``, a ``deployer`` in the actors file):

- ``zero_traffic`` (the default): ``ChangeABTraffic`` to 0%, the test stays for inspection;
- ``stop``: ``StopABTest``;
- ``promote`` (only with ``promoteWhenBetter``): ``PromoteChallenger``, with the report's
  verdict and figures as the event's evidence.

The reason names the guardrail and the figures, so the audit log says why. Command ids are
derived from (test, split version, action): a guard restarted mid-way sends the same
command again and the decider answers ``duplicate``. Shadow tests are not guarded (their
mirrored answers are never served). It lives in the composition root because it is the one
place that may read both databases and write commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.monitor.errors import TestNotFound
from consumers.monitor.guardrails import Thresholds, Verdict, evaluate
from consumers.monitor.report import ComparisonReport, build_report
from consumers.monitor.service import monitor_path
from model_registry.evidence import evidence_of
from projections.schema import projection_path
from registry.core.errors import Rejected
from registry.core.messages import (
    ChangeABTraffic,
    ChangeABTrafficPayload,
    CommandBase,
    Evidence,
    PromoteChallenger,
    PromotePayload,
    ReasonPayload,
    StopABTest,
)
from registry.decider.client import CommandClient
from registry.infra.identity import IdentityError, load_identity
from registry.infra.settings import Settings

__all__ = ["Guard", "GuardStats", "guarded_tests", "thresholds_of"]

log = logging.getLogger(__name__)

_RUNNING = (
    "SELECT model_id, ab_test_id, split_version, traffic_percentage, ab_guardrails, ab_mode "
    "FROM models WHERE ab_guardrails IS NOT NULL AND ab_test_id IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class GuardedTest:
    challenger_id: str
    test_id: str
    split_version: int
    traffic_percentage: float
    guardrails: dict[str, Any]


@dataclass
class GuardStats:
    checks: int = 0
    actions: int = 0
    refused: int = 0
    errors: int = 0
    last_progress_monotonic: float = field(default_factory=time.monotonic)
    last_actions: list[dict[str, Any]] = field(default_factory=list)


def guarded_tests(projection: Path) -> list[GuardedTest]:
    """The running split tests that carry guardrails, from the projection (read-only)."""
    if not projection.exists():
        return []
    conn = sqlite3.connect(f"file:{projection}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(_RUNNING).fetchall()
    except sqlite3.OperationalError:  # a projection being created or rebuilt: next time
        return []
    finally:
        conn.close()
    return [
        GuardedTest(mid, test_id, int(split), float(pct), json.loads(guardrails))
        for mid, test_id, split, pct, guardrails, mode in rows
        if (mode or "split") == "split"
    ]


def thresholds_of(guardrails: dict[str, Any], report: ComparisonReport) -> Thresholds:
    """The evaluator's thresholds from a test's guardrails (wire form: percent, points)."""
    quality_delta = guardrails.get("minQualityDelta")
    # accuracy: points on the wire, a fraction in the evaluator; MAE: the target's units
    if quality_delta is not None and report.quality is not None and report.quality.metric != "MAE":
        quality_delta = quality_delta / 100
    max_error_rate = guardrails.get("maxErrorRate")
    return Thresholds(
        max_error_rate=None if max_error_rate is None else min(max_error_rate / 100, 0.999999),
        max_latency_p99_ms=guardrails.get("maxLatencyP99Ms"),
        # opt-in: while requests are in flight the arms' results arrive at different speeds (a
        # failing challenger's fallbacks come last), which an SRM test reads as a mismatch
        srm=guardrails.get("srmPValue"),
        min_quality_delta=quality_delta,
        min_samples=int(guardrails.get("minSamples", 100)),
        promote_when_better=bool(guardrails.get("promoteWhenBetter", False)),
    )


def _evidence(report: ComparisonReport, verdict: Verdict) -> Evidence:
    figures = {
        f"guard_{k}": v
        for k, v in verdict.figures.items()
        if isinstance(v, int | float | str) and not isinstance(v, bool)
    }
    return Evidence.model_validate(evidence_of(report, **figures))


def command_for(test: GuardedTest, report: ComparisonReport, verdict: Verdict) -> CommandBase:
    """The command that carries out ``verdict`` (its id derived from test, split, action)."""
    action = verdict.action
    if action != "promote":  # a tripped guardrail: the test's own choice of action
        action = test.guardrails.get("action", "zero_traffic")
    reason = f"guardrail {verdict.guardrail}: {verdict.reason}"[:2000]
    envelope: dict[str, Any] = {
        "id": f"guard:{test.test_id}:{test.split_version}:{action}",
        "model_id": test.challenger_id,
        "actor": "monitor",
    }
    if action == "promote":
        payload = PromotePayload(reason=reason, evidence=_evidence(report, verdict))
        return PromoteChallenger(payload=payload, **envelope)
    if action == "stop":
        return StopABTest(payload=ReasonPayload(reason=reason), **envelope)
    return ChangeABTraffic(
        payload=ChangeABTrafficPayload(traffic_percentage=0, reason=reason), **envelope
    )


class Guard:
    """Watches guarded tests and acts on crossed guardrails (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = GuardStats()
        self.ready = asyncio.Event()
        self._acted: set[str] = set()
        self._client: CommandClient | None = None
        self._warned = False

    async def start(self) -> None:
        try:
            identity = load_identity(self.settings.monitor_identity_file)
        except IdentityError as exc:
            log.error("the guard has no identity, so it cannot act: %s", exc)
            identity = None
        if identity is not None:
            self._client = CommandClient(self.settings, identity=identity, timeout=10.0)
            await self._client.start()
        self.ready.set()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def healthy(self, stall_after_s: float = 60.0) -> bool:
        return time.monotonic() - self.stats.last_progress_monotonic < stall_after_s

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            while not stop.is_set():
                await self.check_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.monitor.guard_interval_s)
        finally:
            await self.close()

    async def check_once(self) -> list[CommandBase]:
        """One pass over the guarded tests; returns the commands sent."""
        self.stats.checks += 1
        self.stats.last_progress_monotonic = time.monotonic()
        tests = await asyncio.to_thread(guarded_tests, projection_path(self.settings))
        sent: list[CommandBase] = []
        for test in tests:
            try:
                command = await asyncio.to_thread(self._decide, test)
            except Exception as exc:  # noqa: BLE001 - one test's trouble, not the guard's
                self.stats.errors += 1
                log.error("guard could not evaluate %s: %s", test.test_id, type(exc).__name__)
                continue
            if command is None or command.id in self._acted:
                continue
            if await self._send(command):
                sent.append(command)
        return sent

    def _decide(self, test: GuardedTest) -> CommandBase | None:
        path = monitor_path(self.settings)
        if not path.exists():
            return None
        try:
            report = build_report(path, test.test_id)
        except TestNotFound:
            return None
        if report.test_id != test.test_id or not report.running:
            return None
        if test.traffic_percentage == 0 and not test.guardrails.get("promoteWhenBetter"):
            return None  # already throttled: nothing more to protect
        verdict = evaluate(report, thresholds_of(test.guardrails, report))
        if verdict.action is None:
            return None
        log.warning("guardrail %s of %s: %s", verdict.guardrail, test.test_id, verdict.reason[:300])
        return command_for(test, report, verdict)

    async def _send(self, command: CommandBase) -> bool:
        client = self._client
        if client is None:
            if not self._warned:
                log.error("a guardrail was crossed but the guard cannot sign: %s", command.type)
                self._warned = True
            return False
        try:
            result = await client.send(command)
        except Rejected as exc:
            self.stats.refused += 1
            self._acted.add(command.id)  # the same refusal again would change nothing
            log.error("the guard's %s was refused: %s", command.type, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a broker hiccup: try again next time
            self.stats.errors += 1
            log.error("the guard could not send %s: %s", command.type, type(exc).__name__)
            return False
        self._acted.add(command.id)
        self.stats.actions += 1
        self.stats.last_actions = [
            *self.stats.last_actions[-9:],
            {"command": command.type, "model_id": command.model_id, "outcome": result.outcome},
        ]
        return True
