"""CLI for the write path: the decider process, ``models register|status|release|metrics|
unregister`` and ``ab start|traffic|stop``. Each prints the outcome or the rejection in words
and exits non-zero on a rejection or invalid input (2) or a timeout/unreachable broker (3).
Arguments are checked here, before anything is sent, with the core's own types."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import yaml

from model_registry.cli.common import cli_settings, run, run_until_signalled
from model_registry.cli.errors import INVALID, fail
from registry.core.errors import SecretInConfig, describe_validation_error
from registry.core.types import MODEL_ID_PATTERN, Metrics, SemVer, Status


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

    result = run(main())  # a rejection, timeout or unreachable broker: errors.explain
    if result.outcome == "duplicate":
        click.echo(f"{done} earlier (same command id); revision {result.revision}")
    elif not result.events:
        click.echo(
            f"no change: {result.model_id} is already like that (revision {result.revision})"
        )
    else:
        where = ", ".join(f"{e.type} at {e.partition}:{e.offset}" for e in result.events)
        click.echo(f"{done}: {result.model_id} now at revision {result.revision} ({where})")


def _load_config(path: Path) -> dict[str, Any]:
    """The model config in ``path`` (YAML, or JSON for a ``.json`` file), or a failure (2)
    saying what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not a UTF-8 text file; give a YAML or JSON model config.", INVALID)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}.", INVALID)
    if not text.strip():
        fail(f"{path} is empty; it should hold one model config (see the README).", INVALID)
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        fail(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "is it complete?",
            INVALID,
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        fail(f"{path} is not valid YAML ({problem}{where}).", INVALID)
    if not isinstance(data, dict):
        fail(f"{path} must hold one model config object (id, name, version, ...).", INVALID)
    return data


def _model_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A model id as the core's type takes it (letters, digits, ``._:-``; at most 128)."""
    if re.fullmatch(MODEL_ID_PATTERN, value) is None:
        raise click.BadParameter(
            "a model id is 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a "
            "letter or digit"
        )
    return value


def _version(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        SemVer(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


METRIC_NAMES = tuple(
    info.alias or name for name, info in Metrics.model_fields.items()
)  # accuracy, precision, recall, f1Score, mse, mae


def _metrics(pairs: tuple[str, ...]) -> dict[str, float]:
    """``--set NAME=VALUE`` pairs as the core's ``Metrics`` takes them."""
    if not pairs:
        raise click.BadParameter(
            f"give at least one, e.g. --set accuracy=87.5 (metrics: {', '.join(METRIC_NAMES)})",
            param_hint="--set",
        )
    metrics: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in METRIC_NAMES:
            raise click.BadParameter(
                f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}", param_hint="--set"
            )
        try:
            metrics[name] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{name} needs a number, e.g. {name}=87.5", param_hint="--set"
            ) from None
    try:
        Metrics.model_validate(metrics)
    except ValueError as exc:
        detail = describe_validation_error(exc)[0] if hasattr(exc, "errors") else str(exc)
        raise click.BadParameter(
            f"{detail} (percentages are 0 to 100, errors at least 0)", param_hint="--set"
        ) from None
    return metrics


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
        fail(f"rejected (SecretInConfig): {exc}", INVALID)
    except ValidationError as exc:
        fail(f"rejected (InvalidCommand): {path}: {describe_validation_error(exc)[0]}", INVALID)
    _write(lambda reg: reg.register(config), "registered")


@click.command("status")
@click.argument("model_id", callback=_model_id)
@click.argument(
    "status",
    type=click.Choice([s.value for s in Status if s is not Status.UNREGISTERED]),
    metavar="STATUS",
)
@click.option("--reason")
@click.option("--expected-revision", type=click.IntRange(min=0))
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
@click.argument("model_id", callback=_model_id)
@click.argument("version", callback=_version)
@click.option("--status", type=click.Choice(["training", "testing", "active"]))
def models_release(model_id: str, version: str, status: str | None) -> None:
    """Release VERSION (same major, higher) under MODEL_ID."""
    _write(lambda reg: reg.release_version(model_id, version, status=status), f"released {version}")


@click.command("metrics")
@click.argument("model_id", callback=_model_id)
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="e.g. --set accuracy=87.5 --set f1Score=85",
)
def models_metrics(model_id: str, pairs: tuple[str, ...]) -> None:
    """Record evaluation metrics for MODEL_ID."""
    metrics = _metrics(pairs)
    _write(lambda reg: reg.record_metrics(model_id, metrics), "metrics recorded")


@click.command("unregister")
@click.argument("model_id", callback=_model_id)
@click.option("--reason")
def models_unregister(model_id: str, reason: str | None) -> None:
    """Unregister a deprecated MODEL_ID (its history stays)."""
    _write(lambda reg: reg.unregister(model_id, reason=reason), "unregistered")


@click.command("start")
@click.argument("challenger_id", callback=_model_id)
@click.option("--champion", "champion_id", required=True, callback=_model_id)
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
@click.argument("challenger_id", callback=_model_id)
@click.argument("percentage", type=click.FloatRange(0, 100))
def ab_traffic(challenger_id: str, percentage: float) -> None:
    """Change the running test's split to PERCENTAGE for the challenger."""
    _write(
        lambda reg: reg.change_traffic(challenger_id, percentage), f"traffic set to {percentage}%"
    )


@click.command("stop")
@click.argument("challenger_id", callback=_model_id)
@click.option("--reason")
def ab_stop(challenger_id: str, reason: str | None) -> None:
    """Stop the challenger's running A/B test."""
    _write(lambda reg: reg.stop_ab_test(challenger_id, reason=reason), "A/B test stopped")
