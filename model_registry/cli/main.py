"""``model-registry``: the entry point, its groups, and where each command comes from.

Every command is imported when it is used, not when the CLI starts (``lazy``): ``--help``
imports click and this package's light modules only, and ``models get`` no more than it
reads. The tables below name each command's module and its help's first paragraph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from model_registry.cli.errors import INVALID, RegistryGroup, fail
from model_registry.cli.lazy import Lazy, LazyGroup

__all__ = ["main"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Commands that run until stopped: their Kafka client logs are theirs to show. A one-shot
# command says in one sentence what went wrong; aiokafka's own lines (and asyncio's notes on
# clients a failed start left unclosed at exit) would only repeat it. --log-level info (or
# --debug) shows them.
PROCESSES = frozenset({"up", "demo", "decider", "projector", "predictor", "monitor", "api"})


def _load(module: str) -> None:
    """Import ``model_registry.cli.<module>`` and add its commands, once."""
    if module in _LOADED:
        return
    _LOADED.add(module)
    _import(module).register(main, models=models, ab=ab)


_LOADED: set[str] = set()


def _import(module: str) -> Any:
    # One import per branch: import-linter sees each of them, mypy too.
    if module == "api":
        from model_registry.cli import api

        return api
    if module == "audit_verify":
        from model_registry.cli import audit_verify

        return audit_verify
    if module == "monitor":
        from model_registry.cli import monitor

        return monitor
    if module == "predict":
        from model_registry.cli import predict

        return predict
    if module == "reads":
        from model_registry.cli import reads

        return reads
    if module == "up":
        from model_registry.cli import up

        return up
    if module == "writes":
        from model_registry.cli import writes

        return writes
    raise LookupError(f"no CLI module {module!r}")


# name -> (the modules whose register() adds it, its help's first paragraph): what --help
# lists without importing them. tests/model_registry/test_cli_startup.py checks each against
# the command itself.
MAIN_COMMANDS = {
    "api": Lazy(("api",), "Serve the HTTP API and web console (alone; `up` runs it too)."),
    "audit": Lazy(("reads", "audit_verify"), "Replay the registry's history for audit."),
    "decider": Lazy(("writes",), "Run the decider: the single writer of registry.events."),
    "demo": Lazy(
        ("up",),
        "Walk the spec's story: against a running `up` if there is one, else on its own "
        "embedded stack.",
    ),
    "identity": Lazy(
        ("audit_verify",),
        "Signing keys: every command is signed by its actor (docs/security.md).",
    ),
    "monitor": Lazy(
        ("monitor",),
        "Fold prediction results and outcomes into per-variant metrics until stopped.",
    ),
    "predict": Lazy(
        ("predict",),
        "Send a prediction request for MODEL_ID (or an alias, NAME@LABEL) and print its result "
        "(with the variant).",
    ),
    "predictor": Lazy(
        ("predict",),
        "Run the prediction consumer: requests in, results tagged champion/challenger out.",
    ),
    "projections": Lazy(("reads",), "The SQLite projection: rebuild it, inspect it."),
    "projector": Lazy(
        ("reads",),
        "Run the projector: registry.events -> the SQLite projection, until SIGINT/SIGTERM.",
    ),
    "up": Lazy(
        ("up",),
        "Run the whole registry: embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), "
        "decider, projector, prediction consumer, monitor, guard, and the HTTP API and console "
        "(127.0.0.1, port $REGISTRY_API_PORT or 8765).",
    ),
}
MODELS_COMMANDS = {
    "alias": Lazy(
        ("writes",),
        "Point ALIAS (NAME@LABEL) at MODEL_ID, an active model (moving it from any other).",
    ),
    "get": Lazy(("reads",), "One model: now, or as it was at a time or offset."),
    "history": Lazy(("reads",), "Every status transition of a model."),
    "list": Lazy(("reads",), "Models, optionally filtered."),
    "metrics": Lazy(
        ("writes",), "Record evaluation metrics for MODEL_ID (merged into its current set)."
    ),
    "register": Lazy(("writes",), "Register a model from a YAML/JSON file."),
    "release": Lazy(("writes",), "Release VERSION (same major, higher) under MODEL_ID."),
    "status": Lazy(("writes",), "Move MODEL_ID to STATUS."),
    "unalias": Lazy(("writes",), "Remove ALIAS from MODEL_ID, the model it names."),
    "unregister": Lazy(("writes",), "Unregister a deprecated MODEL_ID (its history stays)."),
    "update": Lazy(("writes",), "Change MODEL_ID's mutable fields (UpdateConfig)."),
    "versions": Lazy(("reads",), "Every version a model id has carried."),
}
AB_COMMANDS = {
    "promote": Lazy(
        ("writes",),
        "Promote CHALLENGER_ID: it serves everything addressed to its champion (its id and "
        "aliases), the test ends and the champion is deprecated, in one event. The monitor's "
        "report at this moment is kept in the event as evidence.",
    ),
    "report": Lazy(
        ("monitor",),
        "Champion vs challenger of a test (by test id, champion or challenger model id).",
    ),
    "rollback": Lazy(
        ("writes",),
        "Undo the promotion of MODEL_ID: the champion it replaced serves again (its id and "
        "aliases), MODEL_ID is deprecated and forwards to it, in one event.",
    ),
    "start": Lazy(
        ("writes",),
        "Start an A/B test: CHALLENGER_ID takes --traffic % of --champion's requests.",
    ),
    "stop": Lazy(("writes",), "Stop the challenger's running A/B test."),
    "traffic": Lazy(
        ("writes",), "Change the running test's split to PERCENTAGE for the challenger."
    ),
}


class RootGroup(LazyGroup, RegistryGroup):
    """``model-registry``: lazy commands; what a command lets through is told in words."""


@click.group(cls=RootGroup, lazy=MAIN_COMMANDS, load=_load)
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
    import logging

    from model_registry.cli.common import current_settings
    from registry.infra.logs import configure_logging

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


@main.group(cls=LazyGroup, lazy=MODELS_COMMANDS, load=_load)
def models() -> None:
    """Register, change and read models."""


@main.group(cls=LazyGroup, lazy=AB_COMMANDS, load=_load)
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
