"""The ``model-registry`` command line.

Subcommand groups live next to the code they drive: the write path here and in
``registry/cli_writes.py``, reads/projector/audit in ``projections/cli.py``, predictor/monitor
in ``consumers/cli.py``; each package exposes ``register(main)`` which adds its commands.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from registry.settings import Settings

T = TypeVar("T")

RUNTIME_FILE = "runtime.json"  # written by `model-registry up` (registry.stack): where its broker is


def cli_settings(**overrides: Any) -> Settings:
    """Settings from the environment; without ``KAFKA_BOOTSTRAP_SERVERS``, the address of a
    running ``model-registry up`` found in the data dir."""
    settings = Settings.from_env(**overrides)
    if not settings.bootstrap_servers:
        runtime = settings.data_dir / RUNTIME_FILE
        info = json.loads(runtime.read_text()) if runtime.exists() else None
        if info and not _pid_alive(int(info.get("pid", 0))):
            info = None  # left behind by an `up` that was killed
        if info:
            settings = settings.with_(bootstrap_servers=info["bootstrap_servers"], topic_prefix=info.get("topic_prefix", settings.topic_prefix))
        else:
            raise click.ClickException(
                "no Kafka to talk to: set KAFKA_BOOTSTRAP_SERVERS, or start the stack with `model-registry up`"
            )
    return settings


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a click command."""
    return asyncio.run(coro)


def configure_logging(level: str, json_logs: bool) -> None:
    """Plain or JSON-lines logs on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        from registry.logs import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


@click.group()
@click.option("--log-level", default=lambda: os.environ.get("REGISTRY_LOG_LEVEL", "warning"), show_default="warning")
@click.option("--json-logs", is_flag=True, default=lambda: os.environ.get("REGISTRY_JSON_LOGS") == "1", help="Structured (JSON) logs.")
def main(log_level: str, json_logs: bool) -> None:
    """Event-sourced AI model registry."""
    configure_logging(log_level, json_logs)


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
    from registry.schemas import export_schemas

    files = export_schemas(out)
    click.echo(f"wrote {len(files)} schemas under {out}/")


def _load_plugins() -> None:
    for name in ("registry.cli_writes", "registry.cli_up", "projections.cli", "consumers.cli", "consumers.monitor.cli"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if name.startswith(str(exc.name)):
                continue  # that part is not built yet
            raise
        module.register(main)


_load_plugins()
