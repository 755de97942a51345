"""``model-registry up`` (the whole system) and ``model-registry demo`` (the spec's story)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from model_registry.cli.common import cli_settings, current_settings
from model_registry.cli.errors import fail
from model_registry.runtime import read_runtime
from registry.infra.settings import Settings

if TYPE_CHECKING:  # the stack imports every component: loaded only by the commands that run it
    from model_registry.stack import Factory, Stack
    from model_registry.supervisor import Crash

__all__ = ["register", "run_stack"]


def register(main: click.Group, *, models: click.Group, ab: click.Group) -> None:
    """Add ``up`` and ``demo`` to the CLI."""
    main.add_command(up)
    main.add_command(demo)


def _status_line(stack: Stack) -> str:
    parts = []
    for name, health in stack.health.items():
        r = health.report()
        counters = ", ".join(f"{k}={v}" for k, v in r.items() if k in _COUNTERS)
        if stack.restarts.get(name):
            counters += f", restarts={stack.restarts[name]}"
        mark = "ok" if r["healthy"] else "UNHEALTHY"
        parts.append(f"{name}[{mark}] {counters}")
    return " | ".join(parts)


_COUNTERS = {
    "accepted",
    "rejected",
    "events_applied",
    "results",
    "requests",
    "outcomes",
    "lag",
    "errors",
}


def _banner(stack: Stack, not_ready: list[str]) -> str:
    s = stack.settings
    lines = [
        "model-registry is up",
        f"  broker      {s.bootstrap_servers} "
        f"({'embedded Tansu, loopback only' if stack.embedded else 'external Kafka'})",
        f"  data dir    {s.data_dir.resolve()}",
        f"  projection  {(s.data_dir / 'projection.db').resolve()}  (query it with sqlite3)",
        f"  monitor db  {(s.data_dir / 'monitor.db').resolve()}",
    ]
    if stack.api_port_bound:
        lines.append(f"  API and console: http://127.0.0.1:{stack.api_port_bound}/")
    if stack.health_port_bound:
        lines.append(f"  health      http://127.0.0.1:{stack.health_port_bound}/healthz")
    if stack.metrics_port_bound:
        lines.append(f"  metrics     http://127.0.0.1:{stack.metrics_port_bound}/metrics")
    if stack.restored:
        lines.append(f"  restored    {stack.restored} registry events from the local copy")
    if not_ready:
        lines.append(
            f"  not ready   {', '.join(not_ready)} (crashed: see above; restarted until it runs)"
        )
    lines.append("  Ctrl-C stops everything.")
    return "\n".join(lines)


def _reporter(debug: bool) -> Callable[[Crash], None]:
    """Print a component's crash on stderr: its cause, never a record's value."""

    def report(crash: Crash) -> None:
        click.echo(time.strftime("%H:%M:%S ") + crash.describe(), err=True)
        if debug and crash.exception is not None:
            trace = traceback.format_exception(crash.exception)
            click.echo("".join(trace).rstrip(), err=True)

    return report


async def run_stack(
    settings: Settings,
    *,
    run_demo: bool,
    health_port: int | None,
    status_every: float,
    options: dict[str, Any],
    components: tuple[str, ...] | None = None,
    stop: asyncio.Event | None = None,
    factories: dict[str, Factory] | None = None,
) -> int:
    """Run the stack until a signal (or ``stop``); returns the exit code.

    A component that crashes is reported and restarted (``model_registry.supervisor``): the
    stack, and the embedded broker with the prediction topics it holds in memory, go on.
    A failure to start (the broker unreachable, a port taken, the data dir in use) raises.
    """
    from model_registry.stack import COMPONENTS, Stack

    stack = Stack(
        settings,
        components=components or COMPONENTS,
        health_port=health_port,
        options=options,
        # JSON logs: the crash is a structured log record (the stack's default), else a line
        on_crash=None if settings.json_logs else _reporter(settings.debug),
    )
    if factories is not None:
        stack.factories.update(factories)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stack.start()
        not_ready = await stack.wait_ready(until_crash=True)
        click.echo(_banner(stack, not_ready), err=False)
        if run_demo and not_ready:
            click.echo("the demo needs every component ready: skipped", err=True)
        elif run_demo:
            from model_registry.demo import run_demo as demo_story

            await demo_story(stack.settings, stop=stop)
        last = 0.0
        while not stop.is_set():
            if status_every and time.monotonic() - last >= status_every:
                click.echo(time.strftime("%H:%M:%S ") + _status_line(stack))
                last = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        return 0
    finally:
        click.echo("stopping...", err=True)
        await stack.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)
        click.echo("stopped.", err=True)


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Default: $REGISTRY_DATA_DIR or ./.model-registry",
)
@click.option(
    "--demo",
    "run_demo",
    is_flag=True,
    help="Run the demo story once the stack is up, then keep running.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /healthz on 127.0.0.1:PORT (0 = any free port).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Prometheus endpoint of the monitor on 127.0.0.1:PORT.",
)
@click.option(
    "--status-every",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between status lines (0 = none).",
)
@click.option(
    "--mock-fallback",
    is_flag=True,
    help="Allow mock predictions when a provider fails (development only).",
)
@click.option(
    "--only",
    default=None,
    help="Comma-separated components to run, of decider, projector, predictor, monitor, "
    "guard, api "
    "(e.g. one per container, with --health-port) [default: all].",
)
def up(
    data_dir: Path | None,
    run_demo: bool,
    health_port: int | None,
    metrics_port: int | None,
    status_every: float,
    mock_fallback: bool,
    only: str | None,
) -> None:
    """Run the whole registry: embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set),
    decider, projector, prediction consumer, monitor, guard, and the HTTP API and console
    (127.0.0.1, port $REGISTRY_API_PORT or 8765)."""
    from model_registry.stack import COMPONENTS

    settings = current_settings()
    if data_dir is not None:
        settings = settings.with_(data_dir=data_dir)
    components = (
        COMPONENTS if only is None else tuple(c.strip() for c in only.split(",") if c.strip())
    )
    unknown = set(components) - set(COMPONENTS)
    if unknown or not components:
        raise click.BadParameter(f"choose from {', '.join(COMPONENTS)}", param_hint="--only")
    options = {"mock_fallback": mock_fallback, "metrics_port": metrics_port}
    code = asyncio.run(
        run_stack(
            settings,
            run_demo=run_demo,
            health_port=health_port,
            status_every=status_every,
            options=options,
            components=components,
        )
    )
    sys.exit(code)


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--requests",
    "n_requests",
    type=click.IntRange(min=1),
    default=3000,
    show_default=True,
    help="Prediction requests to stream.",
)
def demo(data_dir: Path | None, n_requests: int) -> None:
    """Walk the spec's story: against a running `up` if there is one, else on its own
    embedded stack."""
    from model_registry.demo import run_demo as demo_story
    from model_registry.stack import COMPONENTS, Stack

    settings = current_settings()
    if data_dir is not None:
        settings = settings.with_(data_dir=data_dir)
    if settings.bootstrap_servers or read_runtime(settings.data_dir) is not None:
        settings = cli_settings(data_dir=settings.data_dir)
        asyncio.run(demo_story(settings, n_requests=n_requests))
        return

    async def own_stack() -> None:
        stack = Stack(settings, components=COMPONENTS, on_crash=_reporter(settings.debug))
        try:
            await stack.start()
            not_ready = await stack.wait_ready(until_crash=True)
            if not_ready:
                fail(f"the demo needs every component; not ready: {', '.join(not_ready)}.")
            await demo_story(stack.settings, n_requests=n_requests)
        finally:
            await stack.stop()

    asyncio.run(own_stack())
