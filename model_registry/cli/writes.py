"""CLI for the write path: the decider process, ``models register|status|release|metrics|
unregister`` and ``ab start|traffic|stop``. Each prints the outcome or the rejection in words
and exits non-zero on a rejection (2) or a timeout/unreachable broker (3)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from model_registry.cli.common import cli_settings, run, run_until_signalled
from registry.core.errors import (
    CommandTimeout,
    RegistryError,
    Rejected,
    SecretInConfig,
    describe_validation_error,
)
from registry.core.types import Status


def register(main: click.Group, *, models: click.Group, ab: click.Group) -> None:
    """Add the write-path commands to the CLI."""
    main.add_command(decider)
    for cmd in (models_register, models_status, models_release, models_metrics, models_unregister):
        models.add_command(cmd)
    for cmd in (ab_start, ab_traffic, ab_stop):
        ab.add_command(cmd)


@click.command()
@click.option(
    "--allow-clear", is_flag=True, default=None, help="Accept ClearRegistry (tests only)."
)
def decider(allow_clear: bool | None) -> None:
    """Run the decider: the single writer of registry.events."""
    from registry.decider.decider import Decider
    from registry.infra.kafka.topics import ensure_topics

    settings = cli_settings()

    async def main() -> None:
        await ensure_topics(settings)
        d = Decider(settings, allow_clear=allow_clear)
        await run_until_signalled(d.run)

    run(main())


def _write(action: Callable[[Any], Awaitable[Any]], done: str) -> None:
    """Run one write through a ModelRegistry and report it in words."""
    from model_registry.client import ModelRegistry

    settings = cli_settings()

    async def main() -> Any:
        async with ModelRegistry(settings) as reg:
            return await action(reg)

    try:
        result = run(main())
    except Rejected as exc:
        _exit(2, f"rejected ({exc.rejection.code}): {exc.rejection.message}")
    except CommandTimeout as exc:
        _exit(3, f"timeout: {exc}")
    except RegistryError as exc:
        _exit(3, f"error ({exc.code}): {exc}")
    if result.outcome == "duplicate":
        click.echo(f"{done} earlier (same command id); revision {result.revision}")
    elif not result.events:
        click.echo(
            f"no change: {result.model_id} is already like that (revision {result.revision})"
        )
    else:
        where = ", ".join(f"{e.type} at {e.partition}:{e.offset}" for e in result.events)
        click.echo(f"{done}: {result.model_id} now at revision {result.revision} ({where})")


def _exit(code: int, message: str) -> NoReturn:
    """Say why on stderr and exit: 2 for a rejection, 3 for a timeout or no broker."""
    click.echo(message, err=True)
    sys.exit(code)


def _load_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) if path.suffix.lower() in {".yaml", ".yml"} else json.loads(text)
    if not isinstance(data, dict):
        raise click.ClickException(f"{path} must hold one model config object")
    return data


@click.command("register")
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Model config as YAML or JSON (the spec's ModelConfig, camelCase).",
)
def models_register(path: Path) -> None:
    """Register a model from a YAML/JSON file."""
    from pydantic import ValidationError

    from registry.core.types import ModelConfig

    try:
        config = ModelConfig.model_validate(_load_config(path))
    except SecretInConfig as exc:
        _exit(2, f"rejected (SecretInConfig): {exc}")
    except ValidationError as exc:
        _exit(2, f"rejected (InvalidCommand): {describe_validation_error(exc)[0]}")
    _write(lambda reg: reg.register(config), "registered")


@click.command("status")
@click.argument("model_id")
@click.argument(
    "status", type=click.Choice([s.value for s in Status if s is not Status.UNREGISTERED])
)
@click.option("--reason")
@click.option("--expected-revision", type=int)
def models_status(
    model_id: str, status: str, reason: str | None, expected_revision: int | None
) -> None:
    """Move MODEL_ID to STATUS."""
    _write(
        lambda reg: reg.update_status(
            model_id, status, reason=reason, expected_revision=expected_revision
        ),
        f"{status}",
    )


@click.command("release")
@click.argument("model_id")
@click.argument("version")
@click.option("--status", type=click.Choice(["training", "testing", "active"]))
def models_release(model_id: str, version: str, status: str | None) -> None:
    """Release VERSION (same major, higher) under MODEL_ID."""
    _write(lambda reg: reg.release_version(model_id, version, status=status), f"released {version}")


@click.command("metrics")
@click.argument("model_id")
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="e.g. --set accuracy=87.5 --set f1Score=85",
)
def models_metrics(model_id: str, pairs: tuple[str, ...]) -> None:
    """Record evaluation metrics for MODEL_ID."""
    try:
        metrics = {k: float(v) for k, v in (p.split("=", 1) for p in pairs)}
    except ValueError:
        raise click.BadParameter(
            "use NAME=NUMBER, e.g. accuracy=87.5", param_hint="--set"
        ) from None
    _write(lambda reg: reg.record_metrics(model_id, metrics), "metrics recorded")


@click.command("unregister")
@click.argument("model_id")
@click.option("--reason")
def models_unregister(model_id: str, reason: str | None) -> None:
    """Unregister a deprecated MODEL_ID (its history stays)."""
    _write(lambda reg: reg.unregister(model_id, reason=reason), "unregistered")


@click.command("start")
@click.argument("challenger_id")
@click.option("--champion", "champion_id", required=True)
@click.option(
    "--traffic",
    type=click.FloatRange(0, 100),
    required=True,
    help="Percent of traffic to the challenger.",
)
@click.option("--routing", type=click.Choice(["hash", "random"]), default="hash", show_default=True)
def ab_start(challenger_id: str, champion_id: str, traffic: float, routing: str) -> None:
    """Start an A/B test: CHALLENGER_ID takes --traffic % of --champion's requests."""
    _write(
        lambda reg: reg.start_ab_test(challenger_id, champion_id, traffic, routing=routing),
        "A/B test started",
    )


@click.command("traffic")
@click.argument("challenger_id")
@click.argument("percentage", type=click.FloatRange(0, 100))
def ab_traffic(challenger_id: str, percentage: float) -> None:
    """Change the running test's split to PERCENTAGE for the challenger."""
    _write(
        lambda reg: reg.change_traffic(challenger_id, percentage), f"traffic set to {percentage}%"
    )


@click.command("stop")
@click.argument("challenger_id")
@click.option("--reason")
def ab_stop(challenger_id: str, reason: str | None) -> None:
    """Stop the challenger's running A/B test."""
    _write(lambda reg: reg.stop_ab_test(challenger_id, reason=reason), "A/B test stopped")
