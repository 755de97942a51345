"""Human output of the read side's CLI (rich tables, a ``git log``-like history)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.table import Column, Table

from model_registry.render import console as _console
from projections.audit import AuditEntry
from projections.views import ModelView, StatusChange, VersionView
from registry.core.messages import (
    ABTestStarted,
    ABTestStopped,
    ABTestTrafficChanged,
    AliasAssigned,
    AliasRemoved,
    ChallengerPromoted,
    ModelConfigUpdated,
    ModelMetricsRecorded,
    ModelRegistered,
    ModelStatusChanged,
    ModelUnregistered,
    ModelVersionReleased,
    PromotionRolledBack,
    RegistryCleared,
)

__all__ = [
    "audit_table",
    "git_log",
    "history_table",
    "model_detail",
    "models_table",
    "summary",
    "versions_table",
]


def _metrics(e: ModelMetricsRecorded) -> str:
    m = e.payload.metrics.model_dump(by_alias=True, exclude_none=True)
    return "metrics " + ", ".join(f"{k}={v}" for k, v in m.items())


def _why(reason: str | None) -> str:
    return f": {reason}" if reason else ""


_SUMMARIES: dict[type[Any], Callable[[Any], str]] = {
    ModelRegistered: lambda e: (
        f"registered {e.payload.version} ({e.payload.type}, {e.payload.provider}) as "
        f"{e.payload.status}"
    ),
    ModelVersionReleased: lambda e: (
        f"released {e.payload.version} (was {e.payload.previous_version}) as {e.payload.status}"
    ),
    ModelStatusChanged: lambda e: (
        f"{e.payload.from_status} -> {e.payload.to_status}{_why(e.payload.reason)}"
    ),
    ModelMetricsRecorded: _metrics,
    ModelConfigUpdated: lambda e: (
        "config: " + ", ".join(sorted(e.payload.changes.model_fields_set))
    ),
    ABTestStarted: lambda e: (
        f"{'shadow' if e.payload.mode == 'shadow' else 'A/B'} {e.payload.test_id}: "
        f"{e.payload.traffic_percentage}% of {e.payload.champion_model_id}"
        + (" (guardrails)" if e.payload.guardrails else "")
    ),
    ABTestTrafficChanged: lambda e: (
        f"A/B {e.payload.test_id}: {e.payload.previous_percentage}% -> "
        f"{e.payload.traffic_percentage}%{_why(e.payload.reason)}"
    ),
    ChallengerPromoted: lambda e: (
        f"promoted {e.payload.version} over {e.payload.champion_model_id} "
        f"{e.payload.champion_version}"
        + (f" (aliases {', '.join(e.payload.aliases)})" if e.payload.aliases else "")
        + (f"; evidence: {e.payload.evidence.verdict}" if e.payload.evidence else "")
        + _why(e.payload.reason)
    ),
    PromotionRolledBack: lambda e: (
        f"rolled back to {e.payload.restored_model_id} {e.payload.restored_version}"
        + (f" (aliases {', '.join(e.payload.aliases)})" if e.payload.aliases else "")
        + _why(e.payload.reason)
    ),
    AliasAssigned: lambda e: (
        f"alias {e.payload.alias}"
        + (f" (from {e.payload.previous_model_id})" if e.payload.previous_model_id else "")
    ),
    AliasRemoved: lambda e: f"alias {e.payload.alias} removed",
    ABTestStopped: lambda e: f"A/B {e.payload.test_id} stopped{_why(e.payload.reason)}",
    ModelUnregistered: lambda e: f"unregistered at {e.payload.version}{_why(e.payload.reason)}",
    RegistryCleared: lambda e: (
        f"registry cleared ({len(e.payload.model_ids)} models){_why(e.payload.reason)}"
    ),
}


def summary(entry: AuditEntry) -> str:
    """One line saying what the event did."""
    e = entry.event
    if e is None:
        return f"unreadable record: {entry.error}"
    describe = _SUMMARIES.get(type(e))
    return describe(e) if describe else str(e.type)


def audit_table(entries: Sequence[AuditEntry]) -> None:
    table = Table(
        "pos", "occurred at", "type", Column("model", overflow="fold"), "rev", "actor", "what"
    )
    for e in entries:
        table.add_row(
            f"{e.partition}:{e.offset}",
            e.occurred_at.isoformat(timespec="seconds"),
            e.type,
            e.model_id or "",
            str(e.event.revision) if e.event else "",
            e.actor or "",
            summary(e),
        )
    console = _console()
    console.print(table)
    console.print(f"{len(entries)} events")


def git_log(model_id: str, entries: Sequence[AuditEntry]) -> None:
    """Newest first, one block per event."""
    console = _console()
    for e in reversed(entries):
        ev = e.event
        refused = "" if e.applied is not False else "  [red](not applied: see projection_errors)[/]"
        console.print(
            f"[yellow]event {ev.id if ev else '?'}[/] ({e.type}, revision "
            f"{ev.revision if ev else '?'}){refused}"
        )
        console.print(f"Position: registry.events[{e.partition}] offset {e.offset}")
        console.print(f"Actor:    {e.actor}")
        console.print(f"Date:     {e.occurred_at.isoformat()}")
        if ev is not None and ev.causation_id:
            console.print(f"Command:  {ev.causation_id}")
        console.print(f"\n    {summary(e)}\n")


def model_detail(view: ModelView) -> None:
    console = _console()
    cfg = view.config
    console.print(
        f"[bold]{view.model_id}[/] {view.version} ({view.type}, {view.provider})  status "
        f"[cyan]{view.status}[/]"
    )
    console.print(f"  name         {cfg.name}")
    if cfg.description:
        console.print(f"  description  {cfg.description}")
    console.print(f"  revision     {view.revision}")
    console.print(f"  registered   {view.registered_at.isoformat()}")
    console.print(f"  updated      {view.updated_at.isoformat()}")
    if cfg.endpoint:
        console.print(f"  endpoint     {cfg.endpoint}")
    if cfg.metrics:
        m = cfg.metrics.model_dump(by_alias=True, exclude_none=True)
        console.print("  metrics      " + ", ".join(f"{k}={v}" for k, v in m.items()))
    if view.aliases:
        console.print(f"  aliases      {', '.join(view.aliases)}")
    if view.served_by:
        console.print(f"  served by    {view.served_by} (promoted over this model)")
    if view.replaces:
        console.print(f"  replaces     {view.replaces} (ab rollback restores it)")
    if view.ab_test_id:
        kind = "shadow test" if view.ab_mode == "shadow" else "A/B test"
        share = "mirrored" if view.ab_mode == "shadow" else "traffic"
        console.print(
            f"  {kind:<12} {view.ab_test_id}: {view.traffic_percentage}% of "
            f"{view.champion_model_id}'s {share} "
            f"(split v{view.split_version}, {view.ab_routing})"
        )
        if view.guardrails:
            rails = ", ".join(f"{k}={v}" for k, v in view.guardrails.items())
            console.print(f"  guardrails   {rails}")


def models_table(views: Sequence[ModelView]) -> None:
    table = Table(
        Column("id", overflow="fold"),
        "version",
        "type",
        "provider",
        "status",
        "rev",
        "updated",
        "A/B",
    )
    for v in views:
        ab = f"{v.traffic_percentage}% of {v.champion_model_id}" if v.ab_test_id else ""
        table.add_row(
            v.model_id,
            v.version,
            str(v.type),
            str(v.provider),
            str(v.status),
            str(v.revision),
            v.updated_at.isoformat(timespec="seconds"),
            ab,
        )
    console = _console()
    console.print(table)
    console.print(f"{len(views)} models")


def versions_table(model_id: str, rows: Sequence[VersionView]) -> None:
    table = Table("version", "released", "as", "by", "superseded", "metrics", title=model_id)
    for v in rows:
        m = v.metrics.model_dump(by_alias=True, exclude_none=True) if v.metrics else {}
        table.add_row(
            v.version,
            v.released_at.isoformat(timespec="seconds"),
            str(v.released_status),
            v.released_by,
            v.superseded_at.isoformat(timespec="seconds") if v.superseded_at else "",
            ", ".join(f"{k}={x}" for k, x in m.items()),
        )
    _console().print(table)


def history_table(model_id: str, rows: Sequence[StatusChange]) -> None:
    table = Table("when", "from", "to", "actor", "reason", "rev", "offset", title=model_id)
    for c in rows:
        table.add_row(
            c.changed_at.isoformat(timespec="seconds"),
            str(c.from_status or "(new)"),
            str(c.to_status),
            c.actor,
            c.reason or "",
            str(c.revision),
            f"{c.partition}:{c.offset}",
        )
    _console().print(table)
