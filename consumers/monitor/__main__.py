"""``python -m consumers.monitor``: the monitor process without the rest of the CLI.

Settings come from the environment (``KAFKA_BOOTSTRAP_SERVERS`` is required); the options
are those of ``model-registry monitor``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import click

from consumers.monitor.cli import DEFAULT_METRICS_PORT, run_monitor
from registry.settings import Settings


@click.command()
@click.option("--db", type=click.Path(path_type=Path), default=None)
@click.option(
    "--metrics-port",
    type=int,
    default=lambda: int(os.environ.get("REGISTRY_MONITOR_METRICS_PORT", DEFAULT_METRICS_PORT)),
)
@click.option("--metrics-host", default="127.0.0.1")
@click.option("--no-metrics", is_flag=True)
def main(db: Path | None, metrics_port: int, metrics_host: str, no_metrics: bool) -> None:
    """Run the monitor until SIGINT/SIGTERM."""
    logging.basicConfig(level=os.environ.get("REGISTRY_LOG_LEVEL", "warning").upper())
    settings = Settings.from_env()
    if not settings.bootstrap_servers:
        raise click.ClickException("set KAFKA_BOOTSTRAP_SERVERS")
    asyncio.run(run_monitor(settings, db, None if no_metrics else (metrics_host, metrics_port)))


if __name__ == "__main__":
    main()
