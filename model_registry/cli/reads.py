"""CLI of the read side: ``projector``, ``projections rebuild|status``, ``audit replay|show``
and the reads of the ``models`` group (``get``, ``list``, ``versions``, ``history``).

Commands that only read the SQLite file need no broker: they take the data dir from the
environment (``REGISTRY_DATA_DIR``) or ``--db``.

Each command imports what it uses when it runs, and the filters' known values are read when
an option is parsed or shown: ``models get`` reads its row with sqlite3 and prints it without
building a pydantic model (``_fast_detail``), unless it asks for more than that path prints.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from model_registry.cli.common import (
    cli_settings,
    current_settings,
    run_reporting,
    run_until_signalled,
)
from model_registry.cli.errors import FAILED, INVALID, UNREACHABLE, fail

if TYPE_CHECKING:
    from projections.reader import ProjectionReader

__all__ = ["register"]

T = TypeVar("T")

db_option = click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=None,
    help="Projection file [default: <data dir>/projection.db].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


class _LazyChoice(click.Choice[str]):
    """A ``click.Choice`` whose values are read when first needed (an option given or
    shown), not when the CLI starts: the enums live with the pydantic models."""

    def __init__(self, values: Callable[[], Iterable[Any]]) -> None:
        self._values = values
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            self._choices = tuple(str(v) for v in self._values())
        return self._choices

    @choices.setter
    def choices(self, values: Iterable[str]) -> None:
        self._choices = tuple(values)


def _choice(values: Callable[[], Iterable[Any]]) -> click.Choice[str]:
    """The known values of an enum (or names), as a click choice: any other exits 2 naming
    them all."""
    return _LazyChoice(values)


def _event_types() -> list[str]:
    from registry.core.messages import EVENTS

    return sorted(EVENTS)


def _model_types() -> Iterable[Any]:
    from registry.core.types import ModelType

    return ModelType


def _statuses() -> Iterable[Any]:
    from registry.core.types import Status

    return Status


def _providers() -> Iterable[Any]:
    from registry.core.types import Provider

    return Provider


def _db(db: Path | None) -> Path:
    # projections.schema.projection_path(settings), without importing the read side
    # (tests/model_registry/test_cli_startup.py holds them equal).
    return db or current_settings().data_dir / "projection.db"


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


def parse_as_of(text: str | None) -> datetime | int | None:
    """``--as-of``: an offset (digits) or an ISO-8601 time (``Z`` or an offset; naive = UTC)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"'{text}' is neither an offset nor an ISO-8601 time (e.g. 2026-11-01T00:00:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --------------------------------------------------------------------------- processes


@click.command("projector")
@db_option
@click.option(
    "--max-records",
    type=int,
    default=None,
    help="Records per batch (one transaction) [default: $REGISTRY_PROJECTOR_MAX_RECORDS or 20000].",
)
def projector_cmd(db: Path | None, max_records: int | None) -> None:
    """Run the projector: registry.events -> the SQLite projection, until SIGINT/SIGTERM."""
    from projections.projector import Projector
    from projections.schema import projection_path

    settings = cli_settings()
    path = db or projection_path(settings)

    async def go() -> None:
        projector = Projector(settings, path, max_records=max_records)
        click.echo(f"projector: {settings.topic('registry.events')} -> {path}", err=True)
        await run_until_signalled(projector.run)
        click.echo(f"projector stopped after {projector.stats.records} records", err=True)

    run_reporting(go())


@click.group("projections")
def projections_group() -> None:
    """The SQLite projection: rebuild it, inspect it."""


@projections_group.command("rebuild")
@db_option
def rebuild_cmd(db: Path | None) -> None:
    """Replay registry.events from offset 0 into a new file and swap it in atomically."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from projections.projector import rebuild
    from projections.schema import projection_path

    settings = cli_settings()
    path = db or projection_path(settings)
    with Progress(
        TextColumn("rebuilding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("rebuild", total=None, rate="")

        def progress(done: int, behind: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:,.0f} events/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=done + behind, rate=rate)

        result = run_reporting(rebuild(settings, path, progress=progress))
    click.echo(
        f"rebuilt {path}: {result.records} records ({result.events_applied} events applied, "
        f"{result.errors} refused) "
        f"in {result.seconds:.2f}s ({result.rate:,.0f}/s)"
    )


def _status_of(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        info: dict[str, Any] = {
            "path": str(path),
            "meta": dict(conn.execute("SELECT key, value FROM projection_meta")),
        }
        info["checkpoints"] = [
            {"topic": t, "partition": p, "next_offset": o}
            for t, p, o in conn.execute("SELECT * FROM checkpoints")
        ]
        info["rows"] = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
            for t in (
                "models",
                "model_versions",
                "status_history",
                "ab_tests",
                "events",
                "projection_errors",
            )
        }
    finally:
        conn.close()
    return info


@projections_group.command("status")
@db_option
@json_option
def status_cmd(db: Path | None, as_json: bool) -> None:
    """Where the projection is: schema, source, positions, row counts, refused records."""
    path = _db(db)
    if not path.exists():
        fail(
            f"no projection at {path}: start the stack (`model-registry up`) or the projector, "
            "or give --db.",
            UNREACHABLE,
        )
    try:
        info = _status_of(path)
    except sqlite3.DatabaseError as exc:
        fail(f"{path} is not a projection the registry can read ({exc}).", INVALID)
    if as_json:
        _echo_json(info)
        return
    for key, value in info["meta"].items():
        click.echo(f"{key:18} {value}")
    for cp in info["checkpoints"]:
        click.echo(
            f"position           {cp['topic']}[{cp['partition']}] next offset {cp['next_offset']}"
        )
    for table, count in info["rows"].items():
        click.echo(f"{table:18} {count} rows")


# --------------------------------------------------------------------------- audit


@click.group("audit")
def audit_group() -> None:
    """Replay the registry's history for audit."""


@audit_group.command("replay")
@click.option(
    "--from-offset", type=click.IntRange(min=0), default=None, help="First offset (inclusive)."
)
@click.option(
    "--to-offset", type=click.IntRange(min=0), default=None, help="Last offset (inclusive)."
)
@click.option("--since", default=None, help="ISO-8601 time: events that occurred at or after it.")
@click.option("--until", default=None, help="ISO-8601 time: events that occurred at or before it.")
@click.option(
    "--model",
    "model_id",
    default=None,
    help="Only this model (and registry-wide events naming it).",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=_choice(_event_types),
    help="Only this event type (repeatable).",
)
@click.option("--actor", default=None, help="Only events by this actor.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def replay_cmd(
    from_offset: int | None,
    to_offset: int | None,
    since: str | None,
    until: str | None,
    model_id: str | None,
    types: tuple[str, ...],
    actor: str | None,
    as_json: bool,
) -> None:
    """Events of registry.events by offset or time range, filtered, from the log itself."""
    from model_registry.render.reads import audit_table
    from projections.audit import dumps, replay

    since_at, until_at = (_time(v, name) for v, name in ((since, "--since"), (until, "--until")))
    if from_offset is not None and to_offset is not None and from_offset > to_offset:
        raise click.BadParameter("comes before --from-offset", param_hint="--to-offset")
    if since_at is not None and until_at is not None and since_at > until_at:
        raise click.BadParameter("comes before --since", param_hint="--until")
    settings = cli_settings()

    async def go() -> list[Any]:
        out = []
        async for entry in replay(
            settings,
            from_offset=from_offset,
            to_offset=to_offset,
            since=since_at,
            until=until_at,
            model_id=model_id,
            types=types,
            actor=actor,
        ):
            if as_json:
                click.echo(dumps(entry))
            else:
                out.append(entry)
        return out

    entries = run_reporting(go())
    if not as_json:
        audit_table(entries)


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    value = parse_as_of(text)
    if not isinstance(value, datetime):
        raise click.BadParameter(
            "takes an ISO-8601 time, e.g. 2026-11-01T00:00:00Z", param_hint=name
        )
    return value


@audit_group.command("show")
@click.argument("model_id")
@db_option
def show_cmd(model_id: str, db: Path | None) -> None:
    """A model's full history, newest first, like `git log`."""
    from model_registry.render.reads import git_log

    entries = _read(db, lambda r: r.model_events(model_id))
    if not entries:
        fail(f"no events for model '{model_id}' in the projection.", FAILED)
    git_log(model_id, entries)


# --------------------------------------------------------------------------- models reads


def _read(db: Path | None, query: Callable[[ProjectionReader], Coroutine[Any, Any, T]]) -> T:
    from projections.reader import ProjectionReader

    async def go() -> T:
        async with ProjectionReader(_db(db)) as reader:
            return await query(reader)

    return run_reporting(go())


@click.command("get")
@click.argument("model_id")
@click.option("--as-of", default=None, help="An ISO-8601 time or an offset of registry.events.")
@db_option
@json_option
def get_cmd(model_id: str, as_of: str | None, db: Path | None, as_json: bool) -> None:
    """One model: now, or as it was at a time or offset."""
    when = parse_as_of(as_of)
    if when is None and not as_json:
        found = _fast_detail(_db(db), model_id)
        if found is not None:
            if not found:
                fail(f"no model '{model_id}'.", FAILED)
            return
    from model_registry.render.reads import model_detail

    view = _read(db, lambda r: r.get_model(model_id, as_of=when))
    if view is None:
        fail(f"no model '{model_id}'" + (f" as of {as_of}" if as_of else "") + ".", FAILED)
    if as_json:
        _echo_json(view.to_dict())
    else:
        model_detail(view)


# `models get` without --as-of or --json: the row, read with sqlite3 and printed as
# model_registry.render.reads.model_detail prints a ModelView, without building a pydantic
# model (the decider validated the config before it entered the log). Whatever this path does
# not print the same way (an unreadable file, a value of an unexpected shape) goes to the full
# path, which answers or fails as it always did; tests/model_registry/test_cli_startup.py
# compares the two on the same projections.

_DETAIL = (
    "model_id, version, type, provider, status, config, revision, registered_at, updated_at, "
    "aliases, served_by, replaces, ab_test_id, ab_mode, traffic_percentage, champion_model_id, "
    "split_version, ab_routing, ab_guardrails"
)
_GET_DETAIL = f"SELECT {_DETAIL} FROM models WHERE model_id = ?"  # noqa: S608 - fixed columns
_PERCENT_METRICS = ("accuracy", "precision", "recall", "f1Score")
_METRICS = (*_PERCENT_METRICS, "mse", "mae")  # Metrics' fields, in their order


def _fast_detail(path: Path, model_id: str) -> bool | None:
    """Print ``models get MODEL_ID``; False: no such model; None: not answered here."""
    import json
    import os
    from urllib.parse import quote

    try:
        os.stat(path)
        conn = sqlite3.connect(
            f"file:{quote(str(path.resolve()))}?mode=rw",  # as ProjectionReader: never create
            uri=True,
            isolation_level=None,
        )
    except (OSError, sqlite3.Error):
        return None
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        if (
            conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
            ).fetchone()
            is None
        ):
            return None
        if "@" in model_id:  # an alias: the model it names now
            named = conn.execute(
                "SELECT model_id FROM model_aliases WHERE alias = ?", (model_id,)
            ).fetchone()
            if named is None:
                return False
            model_id = str(named[0])
        cursor = conn.execute(_GET_DETAIL, (model_id,))
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
        if row is None:
            return False
        view = dict(zip(names, row, strict=True))
        config = json.loads(view["config"])
        lines = _detail_lines(view, config, json.loads)
    except (sqlite3.Error, ValueError, TypeError, KeyError, OverflowError):
        return None
    finally:
        conn.close()
    if lines is None:
        return None
    from model_registry.render import console as _console

    console = _console()
    for line in lines:
        console.print(line)
    return True


def _shown_metrics(metrics: Any) -> list[str] | None:
    """``key=value`` of each metric as ``Metrics`` dumps them (floats, in its field order)."""
    import math

    if metrics is None:
        return []
    if not isinstance(metrics, dict) or not set(metrics) <= set(_METRICS):
        return None
    shown = []
    for key in _METRICS:
        value = metrics.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        number = float(value)
        if not math.isfinite(number) or number < 0 or key in _PERCENT_METRICS and number > 100:
            return None
        shown.append(f"{key}={number}")
    return shown


def _detail_lines(v: dict[str, Any], cfg: Any, loads: Callable[[str], Any]) -> list[str] | None:
    """``model_detail``'s lines for a row and its config; None when a value is not of the
    shape the config's model would hold (the full path then decides)."""
    if not isinstance(cfg, dict):
        return None
    name, description, endpoint = cfg.get("name"), cfg.get("description", ""), cfg.get("endpoint")
    metrics = _shown_metrics(cfg.get("metrics"))
    texts = [v[c] for c in ("model_id", "version", "type", "provider", "status")]
    if (
        metrics is None
        or not all(isinstance(t, str) for t in (name, description, *texts))
        or not isinstance(endpoint, str | None)
    ):
        return None
    lines = [
        f"[bold]{v['model_id']}[/] {v['version']} ({v['type']}, {v['provider']})  status "
        f"[cyan]{v['status']}[/]",
        f"  name         {name}",
    ]
    if description:
        lines.append(f"  description  {description}")
    lines += [
        f"  revision     {int(v['revision'])}",
        f"  registered   {datetime.fromisoformat(v['registered_at']).isoformat()}",
        f"  updated      {datetime.fromisoformat(v['updated_at']).isoformat()}",
    ]
    if endpoint:
        lines.append(f"  endpoint     {endpoint}")
    if metrics:
        lines.append("  metrics      " + ", ".join(metrics))
    aliases = () if v["aliases"] is None else tuple(loads(v["aliases"]))
    if aliases:
        lines.append(f"  aliases      {', '.join(aliases)}")
    if v["served_by"]:
        lines.append(f"  served by    {v['served_by']} (promoted over this model)")
    if v["replaces"]:
        lines.append(f"  replaces     {v['replaces']} (ab rollback restores it)")
    return lines + _ab_lines(v, loads) if v["ab_test_id"] else lines


def _ab_lines(v: dict[str, Any], loads: Callable[[str], Any]) -> list[str]:
    shadow = v["ab_mode"] == "shadow"
    kind, share = ("shadow test", "mirrored") if shadow else ("A/B test", "traffic")
    lines = [
        f"  {kind:<12} {v['ab_test_id']}: {v['traffic_percentage']}% of "
        f"{v['champion_model_id']}'s {share} (split v{v['split_version']}, {v['ab_routing']})"
    ]
    guardrails = None if v["ab_guardrails"] is None else dict(loads(v["ab_guardrails"]))
    if guardrails:
        rails = ", ".join(f"{k}={x}" for k, x in guardrails.items())
        lines.append(f"  guardrails   {rails}")
    return lines


@click.command("list")
@click.option("--type", "type_", type=_choice(_model_types), default=None, help="Filter by type.")
@click.option("--status", type=_choice(_statuses), default=None, help="Filter by status.")
@click.option("--provider", type=_choice(_providers), default=None, help="Filter by provider.")
@click.option("--all", "include_all", is_flag=True, help="Include unregistered models.")
@db_option
@json_option
def list_cmd(
    type_: str | None,
    status: str | None,
    provider: str | None,
    include_all: bool,
    db: Path | None,
    as_json: bool,
) -> None:
    """Models, optionally filtered."""
    from model_registry.render.reads import models_table

    views = _read(
        db,
        lambda r: r.list_models(
            type=type_, status=status, provider=provider, include_unregistered=include_all
        ),
    )
    if as_json:
        _echo_json([v.to_dict() for v in views])
    else:
        models_table(views)


@click.command("versions")
@click.argument("model_id")
@db_option
@json_option
def versions_cmd(model_id: str, db: Path | None, as_json: bool) -> None:
    """Every version a model id has carried."""
    from model_registry.render.reads import versions_table

    rows = _read(db, lambda r: r.list_versions(model_id))
    if not rows:
        fail(f"no model '{model_id}' in the projection.", FAILED)
    if as_json:
        _echo_json(
            [
                {
                    **{k: getattr(v, k) for k in v.__slots__ if k != "config"},
                    "config": v.config.wire(),
                }
                for v in rows
            ]
        )
    else:
        versions_table(model_id, rows)


@click.command("history")
@click.argument("model_id")
@db_option
@json_option
def history_cmd(model_id: str, db: Path | None, as_json: bool) -> None:
    """Every status transition of a model."""
    from model_registry.render.reads import history_table

    rows = _read(db, lambda r: r.status_history(model_id))
    if not rows:
        fail(f"no model '{model_id}' in the projection.", FAILED)
    if as_json:
        _echo_json([{k: getattr(c, k) for k in c.__slots__} for c in rows])
    else:
        history_table(model_id, rows)


def register(main: click.Group, *, models: click.Group, ab: click.Group) -> None:
    """Add the read side's commands to ``model-registry``."""
    main.add_command(projector_cmd)
    main.add_command(projections_group)
    main.add_command(audit_group)
    for command in (get_cmd, list_cmd, versions_cmd, history_cmd):
        models.add_command(command)
