"""``model-registry``: the entry point, its groups, and where each command comes from."""

from __future__ import annotations

from pathlib import Path

import click

from model_registry.cli import audit_verify, monitor, predict, reads, up, writes
from model_registry.cli.common import current_settings
from registry.infra.logs import configure_logging

__all__ = ["main"]


@click.group()
@click.option(
    "--log-level", default=None, help="Log level [default: $REGISTRY_LOG_LEVEL or warning]."
)
@click.option("--json-logs", is_flag=True, default=None, help="Structured (JSON) logs.")
def main(log_level: str | None, json_logs: bool | None) -> None:
    """Event-sourced AI model registry."""
    settings = current_settings()
    configure_logging(log_level or settings.log_level, bool(json_logs or settings.json_logs))


@main.group()
def models() -> None:
    """Register, change and read models."""


@main.group()
def ab() -> None:
    """Champion/challenger A/B tests."""


@main.group()
def schemas() -> None:
    """JSON Schemas of the wire contract."""


@schemas.command("export")
@click.option("--out", type=click.Path(path_type=Path), default=Path("schemas"), show_default=True)
def schemas_export(out: Path) -> None:
    """Write the JSON Schema of every command, event and reply under OUT."""
    from model_registry.schemas import export_schemas

    files = export_schemas(out)
    click.echo(f"wrote {len(files)} schemas under {out}/")


for _commands in (writes, reads, predict, monitor, up, audit_verify):
    _commands.register(main, models=models, ab=ab)
