"""``model-registry monitor`` and ``model-registry ab report``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from model_registry.cli.common import cli_settings, current_settings, run
from model_registry.cli.errors import FAILED, UNREACHABLE, fail
from registry.infra.settings import Settings

__all__ = ["register", "run_monitor"]


@click.command("monitor")
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=None,
    help="Database file [default: <data dir>/monitor.db].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the Prometheus endpoint (0: any free port) "
    "[default: $REGISTRY_MONITOR_METRICS_PORT or 9466].",
)
@click.option(
    "--metrics-host",
    default=None,
    help="Bind address of /metrics [default: $REGISTRY_MONITOR_METRICS_HOST or 127.0.0.1].",
)
@click.option("--no-metrics", is_flag=True, help="Do not serve /metrics.")
def monitor_cmd(
    db: Path | None, metrics_port: int | None, metrics_host: str | None, no_metrics: bool
) -> None:
    """Fold prediction results and outcomes into per-variant metrics until stopped."""
    settings = cli_settings()
    host = metrics_host if metrics_host is not None else settings.monitor.metrics_host
    port = metrics_port if metrics_port is not None else settings.monitor.metrics_port
    run(run_monitor(settings, db, None if no_metrics else (host, port)))


async def run_monitor(settings: Settings, db: Path | None, metrics: tuple[str, int] | None) -> None:
    """Run a monitor (and its metrics endpoint when ``metrics`` is (host, port)) until a signal."""
    from consumers.monitor.metrics import MetricsServer
    from consumers.monitor.service import Monitor

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    monitor = Monitor(settings, db)
    server = None
    if metrics is not None:
        server = MetricsServer(monitor, *metrics)
        port = await server.start()
        click.echo(f"monitor metrics: http://{metrics[0]}:{port}/metrics", err=True)
    click.echo(f"monitor database: {monitor.db_path}", err=True)
    try:
        await monitor.run(stop)
    finally:
        if server is not None:
            await server.stop()


@click.command("report")
@click.argument("ref", metavar="CHAMPION_OR_TEST")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw latency and quality over time into this PNG.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Monitor database [default: <data dir>/monitor.db].",
)
@click.option(
    "--min-requests",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Requests per variant before a verdict.",
)
@click.option(
    "--min-scored",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Scored outcomes per variant before a quality verdict.",
)
def report_cmd(
    ref: str, as_json: bool, plot: Path | None, db: Path | None, min_requests: int, min_scored: int
) -> None:
    """Champion vs challenger of a test (by test id, champion or challenger model id)."""
    import orjson

    from consumers.monitor.errors import TestNotFound
    from consumers.monitor.report import build_report
    from consumers.monitor.service import monitor_path

    # The report reads only the database: no broker needed, so no cli_settings() here.
    path = db or monitor_path(current_settings())
    try:
        report = build_report(path, ref, min_requests=min_requests, min_scored=min_scored)
    except TestNotFound as exc:
        fail(str(exc), FAILED)
    except FileNotFoundError as exc:
        fail(str(exc), UNREACHABLE)
    if plot is not None:
        from consumers.monitor.plot import plot_report

        try:
            plot_report(path, report, plot)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "matplotlib":
                raise
            fail("--plot needs matplotlib: pip install 'model-registry[sklearn]'.", FAILED)
        click.echo(f"wrote {plot}", err=True)
    if as_json:
        click.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        from model_registry.render.report import print_report

        print_report(report)


def register(main: click.Group, *, models: click.Group, ab: click.Group) -> None:
    """Add ``monitor`` and ``ab report`` to the CLI."""
    main.add_command(monitor_cmd)
    ab.add_command(report_cmd)
