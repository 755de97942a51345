"""``model-registry``: the entry point, its groups, and where each command comes from."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from model_registry.cli import api, audit_verify, monitor, predict, reads, up, writes
from model_registry.cli.common import current_settings
from model_registry.cli.errors import INVALID, RegistryGroup, fail
from registry.infra.logs import configure_logging

__all__ = ["main"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Commands that run until stopped: their Kafka client logs are theirs to show. A one-shot
# command says in one sentence what went wrong; aiokafka's own lines (and asyncio's notes on
# clients a failed start left unclosed at exit) would only repeat it. --log-level info (or
# --debug) shows them.
PROCESSES = frozenset({"up", "demo", "decider", "projector", "predictor", "monitor", "api"})


@click.group(cls=RegistryGroup)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Log level [default: $REGISTRY_LOG_LEVEL or warning].",
)
@click.option("--json-logs", is_flag=True, default=None, help="Structured (JSON) logs.")
@click.option(
    "--debug",
    is_flag=True,
    default=False,
    help="Show the traceback of an unexpected error [default: $REGISTRY_DEBUG or off].",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None, json_logs: bool | None, debug: bool) -> None:
    """Event-sourced AI model registry.

    Exit codes: 0 success; 1 nothing found, a prediction's error, or an unexpected error;
    2 rejected or invalid input; 3 broker, stack or projection unreachable, or timed out.
    """
    settings = current_settings()
    flags = {"debug": debug, "json_logs": bool(json_logs)}
    if any(flags.values()):  # the command line adds to the environment's settings
        ctx.obj = settings = settings.with_(**{k: True for k, v in flags.items() if v})
    level = (log_level or settings.log_level).lower()
    if level not in LOG_LEVELS:
        fail(f"REGISTRY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {level!r}.", INVALID)
    configure_logging(level, settings.json_logs)
    one_shot = ctx.invoked_subcommand not in PROCESSES
    if one_shot and not settings.debug and logging.getLogger().level > logging.INFO:
        for name in ("aiokafka", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


@main.group()
def models() -> None:
    """Register, change and read models."""


@main.group()
def ab() -> None:
    """Champion/challenger A/B tests."""


@main.group()
def schemas() -> None:
    """JSON Schemas of the wire contract, and the HTTP API's OpenAPI document."""


@schemas.command("export")
@click.option("--out", type=click.Path(path_type=Path), default=Path("schemas"), show_default=True)
def schemas_export(out: Path) -> None:
    """Write the JSON Schema of every command, event and reply under OUT, and the HTTP API's
    OpenAPI document (OUT/openapi.json)."""
    from model_registry.schemas import export_schemas

    try:
        files = export_schemas(out)
    except OSError as exc:
        fail(f"cannot write the schemas under {out}: {exc.strerror or exc}.", INVALID)
    click.echo(f"wrote {len(files)} schemas under {out}/")


for _commands in (writes, reads, predict, monitor, up, audit_verify, api):
    _commands.register(main, models=models, ab=ab)
