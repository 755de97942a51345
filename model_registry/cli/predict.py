"""CLI of the prediction path: ``model-registry predictor`` and ``model-registry predict``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from model_registry.cli.common import cli_settings, run, run_until_signalled
from model_registry.cli.errors import FAILED

__all__ = ["register"]


def register(main: click.Group, *, models: click.Group, ab: click.Group) -> None:
    """Add ``predictor`` and ``predict`` to the CLI."""
    main.add_command(predictor)
    main.add_command(predict)


@click.command()
@click.option(
    "--mock-fallback",
    is_flag=True,
    default=False,
    help="Answer failed provider calls with mock predictions "
    "(development only; results say fallback: mock).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Requests per batch (the bound on work in flight).",
)
@click.option(
    "--cache-ttl",
    type=click.FloatRange(0),
    default=None,
    help="Seconds a cached result lives; 0 disables the cache.",
)
@click.option("--group-id", default=None, help="Consumer group (after the topic prefix).")
def predictor(
    mock_fallback: bool, max_batch: int | None, cache_ttl: float | None, group_id: str | None
) -> None:
    """Run the prediction consumer: requests in, results tagged champion/challenger out."""
    from consumers.predictor import PredictionConsumer
    from registry.infra.kafka.topics import ensure_topics

    overrides: dict[str, Any] = {}
    if max_batch is not None:
        overrides["max_batch"] = max_batch
    if cache_ttl is not None:
        overrides["cache_ttl_s"] = cache_ttl
    if group_id:
        overrides["group_id"] = group_id
    settings = cli_settings()
    config = settings.predictor.with_(**overrides)

    async def main() -> None:
        await ensure_topics(settings)
        consumer = PredictionConsumer(settings, mock_fallback=mock_fallback, config=config)
        await run_until_signalled(consumer.run)

    run(main())  # a failure is told in words by the root group (errors.explain)


def _parse_input(text: str) -> Any:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {text[1:]}: {exc.strerror}", param_hint="--input"
            ) from None
        except UnicodeDecodeError:
            raise click.BadParameter(
                f"cannot read {text[1:]}: not UTF-8 text", param_hint="--input"
            ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not JSON ({exc.msg} at column {exc.colno})", param_hint="--input"
        ) from None
    if not isinstance(value, dict | list | str):
        raise click.BadParameter("must be a JSON object, array or string", param_hint="--input")
    return value


TOP_FACTORS = 5


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def _factors(explanation: Any) -> list[str]:
    """The explanation's top factors: feature, input value, signed contribution."""
    head = f"why       {explanation.method}"
    if explanation.target is not None:
        head += f": {explanation.target}"
        if explanation.target_value is not None:
            head += f" = {explanation.target_value:.4g}"
    if explanation.baseline is not None:
        head += f" (baseline {explanation.baseline:+.4g})"
    lines = [head]
    top = explanation.contributions[:TOP_FACTORS]
    width = max((len(c.feature) for c in top), default=0)
    for c in top:
        lines.append(f"  {c.feature:<{width}}  = {_number(c.value):<12} {c.contribution:+.4g}")
    hidden = len(explanation.contributions) - len(top) + explanation.omitted_features
    if hidden:
        lines.append(f"  ({hidden} smaller factor{'s' if hidden > 1 else ''} not shown)")
    return lines


def _describe(result: Any) -> str:
    lines = [f"request   {result.request_id}", f"variant   {result.variant}"]
    if result.alias:
        lines.append(f"alias     {result.alias} -> {result.resolved_model_id}")
    elif result.resolved_model_id and result.resolved_model_id != result.requested_model_id:
        lines.append(f"resolved  {result.requested_model_id} -> {result.resolved_model_id}")
    if result.test_id:
        lines.append(f"test      {result.test_id} (split v{result.split_version})")
    if result.served_model_id:
        lines.append(
            f"served by {result.served_model_id} {result.served_version} ({result.provider})"
        )
    if result.fallback:
        lines.append(f"fallback  {result.fallback}: {result.fallback_reason}")
    if result.error is not None:
        lines.append(f"error     {result.error.code}: {result.error.message}")
    else:
        lines.append(f"output    {json.dumps(result.output)}")
        if result.explanation is not None:
            lines.extend(_factors(result.explanation))
        elif result.explanation_error is not None:
            lines.append(f"why       no explanation: {result.explanation_error}")
    lines.append(f"latency   {result.latency_ms:.1f} ms{' (cached)' if result.cached else ''}")
    return "\n".join(lines)


@click.command()
@click.argument("model_id")
@click.option("--input", "input_text", required=True, help="The input as JSON (or @file.json).")
@click.option(
    "--unit",
    "unit_id",
    default=None,
    help="Unit id (e.g. the lead id) that keeps a unit on one variant.",
)
@click.option("--request-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the result.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--explain",
    is_flag=True,
    help=f"Ask why: print the top {TOP_FACTORS} factors (feature, value, signed contribution).",
)
def predict(
    model_id: str,
    input_text: str,
    unit_id: str | None,
    request_id: str | None,
    timeout: float,
    as_json: bool,
    explain: bool,
) -> None:
    """Send a prediction request for MODEL_ID (or an alias, NAME@LABEL) and print its result
    (with the variant).

    With --explain, the request asks for an explanation and the top factors are printed
    after the prediction (or why there is none).

    Exits 1 when the result carries an error, 2 on bad input, 3 when the broker cannot be
    reached or no result arrives in time.
    """
    from pydantic import ValidationError

    from consumers.client import PredictionClient
    from registry.core.errors import describe_validation_error
    from registry.core.predictions import PredictionRequest
    from registry.core.types import ALIAS_PATTERN, MODEL_ID_PATTERN

    if re.fullmatch(MODEL_ID_PATTERN, model_id) is None and (
        re.fullmatch(ALIAS_PATTERN, model_id) is None
    ):
        raise click.BadParameter(
            "model_id: a model id is 1 to 128 letters, digits, '.', '_', ':' or '-'; an alias "
            "is NAME@LABEL (e.g. lead-scoring@production)",
            param_hint="MODEL_ID",
        )
    value = _parse_input(input_text)
    settings = cli_settings()

    async def main() -> Any:
        client = PredictionClient(settings)
        try:  # not `async with`: a failed start must stop what it started too
            fields: dict[str, Any] = {"model_id": model_id, "input": value, "unit_id": unit_id}
            if request_id is not None:
                fields["id"] = request_id
            if explain:
                fields["explain"] = True
            request = PredictionRequest(**fields)
            await client.start()
            await client.send(request)
            return await client.wait_for(request.id, timeout)
        finally:
            await client.stop()

    try:
        result = run(main())  # unreachable, timed out: told in words by errors.explain
    except ValidationError as exc:
        raise click.BadParameter(describe_validation_error(exc)[0]) from None
    click.echo(result.model_dump_json(exclude_none=True) if as_json else _describe(result))
    if result.error is not None:
        sys.exit(FAILED)
