"""CLI for the write path: the decider process, ``models register|status|release|metrics|
update|unregister`` and ``ab start|traffic|stop``. Each prints the outcome or the rejection in
words and exits non-zero on a rejection or invalid input (2) or a timeout/unreachable broker
(3). Arguments are checked here, before anything is sent, with the core's own types.

Who acts: every write is signed with the key in ``--identity FILE`` (default
``REGISTRY_AUTH_IDENTITY_FILE``, else ``<data dir>/identity.json``) and is in the name of that
key's actor; ``--actor NAME`` sends it in another's name, which the decider accepts only when
the actors file lets the key sign for NAME (``signs_for``: a gateway)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from model_registry.cli.common import cli_settings, run, run_until_signalled
from model_registry.cli.errors import INVALID, fail
from registry.core.errors import Rejected, RejectionCode, SecretInConfig, describe_validation_error
from registry.core.types import MODEL_ID_PATTERN, Metrics, SemVer, Status

F = TypeVar("F", bound=Callable[..., Any])
_IDENTITY, _ACTOR = "model_registry.identity", "model_registry.actor"


def register(main: click.Group, *, models: click.Group, ab: click.Group) -> None:
    """Add the write-path commands to the CLI."""
    main.add_command(decider)
    for cmd in (
        models_register,
        models_status,
        models_release,
        models_metrics,
        models_update,
        models_unregister,
        models_alias,
        models_unalias,
    ):
        models.add_command(_signed(cmd))
    for cmd in (ab_start, ab_traffic, ab_stop, ab_promote, ab_rollback):
        ab.add_command(_signed(cmd))


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        ctx.meta[key] = value
        return value

    return callback


def _signed(cmd: click.Command) -> click.Command:
    """Add ``--identity`` and ``--actor`` to a write command (read by ``_write``)."""
    cmd.params += [
        click.Option(
            ["--identity"],
            type=click.Path(dir_okay=False, path_type=Path),
            expose_value=False,
            callback=_remember(_IDENTITY),
            help="Sign with the key in this file [default: $REGISTRY_AUTH_IDENTITY_FILE or "
            "<data dir>/identity.json]. The command is that key's actor's.",
        ),
        click.Option(
            ["--actor"],
            metavar="NAME",
            expose_value=False,
            callback=_remember(_ACTOR),
            help="Act in NAME's name: accepted only when the actors file lets the key sign "
            "for NAME (signs_for, a gateway).",
        ),
    ]
    return cmd


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
    """Run one write through a ModelRegistry, signed with ``--identity`` (in ``--actor``'s
    name), and report it in words."""
    from model_registry.client import ModelRegistry
    from registry.infra.identity import load_identity

    meta = click.get_current_context().meta
    path: Path | None = meta.get(_IDENTITY)
    actor: str | None = meta.get(_ACTOR)
    identity = load_identity(path) if path is not None else None
    settings = cli_settings()

    async def main() -> Any:
        async with ModelRegistry(settings, identity=identity, actor=actor) as reg:
            return await action(reg)

    try:
        result = run(main())  # a rejection, timeout or unreachable broker: errors.explain
    except Rejected as exc:
        signer = identity.actor if identity is not None else "your identity"
        key_file = path if path is not None else settings.identity_file
        if exc.rejection.code is RejectionCode.UNAUTHENTICATED:
            fail(
                f"rejected (Unauthenticated): {exc.rejection.message}: signed as {signer!r} "
                f"with the key in {key_file}; the operator must list that actor and its public "
                "key in the actors file.",
                INVALID,
            )
        raise
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
@click.option(
    "--replace",
    is_flag=True,
    help="These metrics become the whole set (default: merged into the current ones).",
)
def models_metrics(model_id: str, pairs: tuple[str, ...], replace: bool) -> None:
    """Record evaluation metrics for MODEL_ID (merged into its current set)."""
    metrics = _metrics(pairs)
    _write(lambda reg: reg.record_metrics(model_id, metrics, replace=replace), "metrics recorded")


def _json_option(text: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object given on the command line (``@FILE`` reads it from a file)."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {text[1:]}: {exc}", param_hint=option) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc.msg} at column {exc.colno})", param_hint=option
        ) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return value


def _pairs(pairs: tuple[str, ...], option: str, example: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON is that value (``5``, ``true``,
    ``["a"]``, ``null``), anything else is text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"{pair!r} is not KEY=VALUE, e.g. {example}", param_hint=option
            )
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _credentials(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--credential KEY=env:NAME`` (or ``file:/path``) pairs: references only."""
    from registry.core.types import is_secret_reference

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, ref = pair.partition("=")
        if not sep or not key or not is_secret_reference(ref):
            raise click.BadParameter(
                f"give KEY=env:NAME or KEY=file:/path, e.g. apiKey=env:MODEL_SECRET_OPENAI; "
                f"a credential is a reference, never the secret itself ({key or pair!r})",
                param_hint="--credential",
            )
        out[key] = ref
    return out


def _merged(current: dict[str, Any] | None, sets: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``sets`` applied; a ``null`` value removes the key."""
    merged = dict(current or {})
    for key, value in sets.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@click.command("update")
@click.argument("model_id", callback=_model_id)
@click.option("--name", help="A new display name.")
@click.option("--description", help="A new description.")
@click.option("--endpoint", help="A new endpoint URL (no user-info: no password in a URL).")
@click.option(
    "--provider-config",
    metavar="JSON",
    help="The whole new providerConfig (replaces the current one); @FILE reads it from a file.",
)
@click.option(
    "--set-provider",
    "provider_sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change one providerConfig setting, keeping the others (VALUE as JSON when it parses, "
    "else text; null removes the setting). Repeatable.",
)
@click.option(
    "--parameters",
    metavar="JSON",
    help="The new parameters object (replaces the current one); @FILE reads it from a file.",
)
@click.option(
    "--credential",
    "credential_pairs",
    multiple=True,
    metavar="KEY=env:NAME",
    help="Set one credential reference of the model (env:NAME or file:/path), keeping the "
    "others. Repeatable.",
)
@click.option(
    "--expected-revision",
    type=click.IntRange(min=0),
    help="Refuse the change (VersionConflict) unless the model is at this revision.",
)
def models_update(
    model_id: str,
    name: str | None,
    description: str | None,
    endpoint: str | None,
    provider_config: str | None,
    provider_sets: tuple[str, ...],
    parameters: str | None,
    credential_pairs: tuple[str, ...],
    expected_revision: int | None,
) -> None:
    """Change MODEL_ID's mutable fields (UpdateConfig).

    --set-provider and --credential change the current providerConfig and credentials: the
    model is read first, and the change is refused (VersionConflict) if the model changed
    since, unless --expected-revision says which revision to expect.
    """
    fields = {"name": name, "description": description, "endpoint": endpoint}
    update = _Update(
        changes={k: v for k, v in fields.items() if v is not None},
        provider_config=_json_option(provider_config, "--provider-config"),
        sets=_pairs(provider_sets, "--set-provider", "model=gpt-4o-mini"),
        credentials=_credentials(credential_pairs),
    )
    params = _json_option(parameters, "--parameters")
    if params is not None:
        update.changes["parameters"] = params
    if update.is_empty():
        raise click.UsageError(
            "give at least one change: --name, --description, --endpoint, --provider-config, "
            "--set-provider, --parameters or --credential."
        )
    if not update.needs_read():
        update.complete(None)  # checked before anything is sent

    async def send(reg: Any) -> Any:
        expected = expected_revision
        if update.needs_read():
            view = await reg.get_model(model_id)
            if view is None:
                fail(f"no model '{model_id}' to update.", INVALID)
            update.complete(view.config.wire())
            if expected is None:
                expected = view.revision  # read-modify-write: refused if it changed since
        return await reg.update_config(model_id, expected_revision=expected, **update.changes)

    _write(send, "updated")


@dataclass
class _Update:
    """The changes of ``models update``; those relative to the current config (``sets``,
    ``credentials``) are completed once it is read."""

    changes: dict[str, Any]
    provider_config: dict[str, Any] | None
    sets: dict[str, Any]
    credentials: dict[str, str]

    def is_empty(self) -> bool:
        return not (
            self.changes or self.provider_config is not None or self.sets or self.credentials
        )

    def needs_read(self) -> bool:
        return bool(self.credentials) or (self.provider_config is None and bool(self.sets))

    def complete(self, current: dict[str, Any] | None) -> None:
        """Fill in the providerConfig and credentials against ``current`` (the model's wire
        config; ``None`` when no read was needed) and check them as the core does."""
        from pydantic import ValidationError

        from registry.core.messages import ConfigChanges

        if self.provider_config is not None:
            self.changes["providerConfig"] = _merged(self.provider_config, self.sets)
        elif self.sets and current is not None:
            base = current.get("providerConfig") or {"provider": current["provider"]}
            self.changes["providerConfig"] = _merged(base, self.sets)
        if self.credentials and current is not None:
            self.changes["credentials"] = _merged(current.get("credentials"), self.credentials)
        try:
            ConfigChanges.model_validate(self.changes)
        except SecretInConfig as exc:
            fail(f"rejected (SecretInConfig): {exc}", INVALID)
        except ValidationError as exc:
            fail(f"rejected (InvalidCommand): {describe_validation_error(exc)[0]}", INVALID)


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
@click.option(
    "--mode",
    type=click.Choice(["split", "shadow"]),
    default="split",
    show_default=True,
    help="shadow: the challenger (testing or active) gets a mirrored copy of --traffic % of "
    "the champion's requests; its answers are compared, never returned.",
)
@click.option(
    "--guardrail",
    "guardrails",
    multiple=True,
    metavar="NAME=VALUE",
    help="Limits the monitor enforces: maxErrorRate=5 (percent), maxLatencyP99Ms=800, "
    "srmPValue=0.001, minQualityDelta=2 (points), minSamples=200, "
    "action=zero_traffic|stop, promoteWhenBetter=true.",
)
def ab_start(
    challenger_id: str,
    champion_id: str,
    traffic: float,
    routing: str,
    mode: str,
    guardrails: tuple[str, ...],
) -> None:
    """Start an A/B test: CHALLENGER_ID takes --traffic % of --champion's requests."""
    rails = _guardrails(guardrails) if guardrails else None
    _write(
        lambda reg: reg.start_ab_test(
            challenger_id, champion_id, traffic, routing=routing, mode=mode, guardrails=rails
        ),
        "shadow test started" if mode == "shadow" else "A/B test started",
    )


def _guardrails(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--guardrail NAME=VALUE`` pairs as a ``Guardrails`` (refused here when invalid)."""
    from pydantic import ValidationError

    from registry.core.types import Guardrails

    raw = _pairs(pairs, "--guardrail", "maxErrorRate=5")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        values[key] = value
    try:
        return Guardrails.model_validate(values).wire()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "guardrail"
        raise click.BadParameter(f"{where}: {first['msg']}", param_hint="--guardrail") from None


@click.command("traffic")
@click.argument("challenger_id", callback=_model_id)
@click.argument("percentage", type=click.FloatRange(0, 100))
@click.option("--reason")
def ab_traffic(challenger_id: str, percentage: float, reason: str | None) -> None:
    """Change the running test's split to PERCENTAGE for the challenger."""
    _write(
        lambda reg: reg.change_traffic(challenger_id, percentage, reason=reason),
        f"traffic set to {percentage}%",
    )


@click.command("promote")
@click.argument("challenger_id", callback=_model_id)
@click.option("--reason")
@click.option(
    "--no-evidence",
    is_flag=True,
    help="Do not attach the monitor's report (verdict and figures) to the event.",
)
def ab_promote(challenger_id: str, reason: str | None, no_evidence: bool) -> None:
    """Promote CHALLENGER_ID: it serves everything addressed to its champion (its id and
    aliases), the test ends and the champion is deprecated, in one event. The monitor's
    report at this moment is kept in the event as evidence."""
    evidence = None if no_evidence else _evidence(challenger_id)
    _write(lambda reg: reg.promote(challenger_id, reason=reason, evidence=evidence), "promoted")


def _evidence(challenger_id: str) -> dict[str, Any] | None:
    """The monitor's report of the challenger's running test, as promotion evidence."""
    from consumers.monitor.service import monitor_path
    from model_registry.evidence import evidence_of, running_report

    report = running_report(monitor_path(cli_settings()), challenger_id)
    return None if report is None else evidence_of(report)


@click.command("rollback")
@click.argument("model_id", callback=_model_id)
@click.option("--reason")
def ab_rollback(model_id: str, reason: str | None) -> None:
    """Undo the promotion of MODEL_ID: the champion it replaced serves again (its id and
    aliases), MODEL_ID is deprecated and forwards to it, in one event."""
    _write(lambda reg: reg.rollback(model_id, reason=reason), "rolled back")


def _alias(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from pydantic import TypeAdapter, ValidationError

    from registry.core.messages import Alias

    try:
        return str(TypeAdapter(Alias).validate_python(value))
    except ValidationError:
        raise click.BadParameter(
            "an alias is NAME@LABEL (e.g. lead-scoring@production)", param_hint="ALIAS"
        ) from None


@click.command("alias")
@click.argument("alias", callback=_alias)
@click.argument("model_id", callback=_model_id)
def models_alias(alias: str, model_id: str) -> None:
    """Point ALIAS (NAME@LABEL) at MODEL_ID, an active model (moving it from any other)."""
    _write(lambda reg: reg.assign_alias(alias, model_id), f"alias {alias} set")


@click.command("unalias")
@click.argument("alias", callback=_alias)
@click.argument("model_id", callback=_model_id)
def models_unalias(alias: str, model_id: str) -> None:
    """Remove ALIAS from MODEL_ID, the model it names."""
    _write(lambda reg: reg.remove_alias(alias, model_id), f"alias {alias} removed")


@click.command("stop")
@click.argument("challenger_id", callback=_model_id)
@click.option("--reason")
def ab_stop(challenger_id: str, reason: str | None) -> None:
    """Stop the challenger's running A/B test."""
    _write(lambda reg: reg.stop_ab_test(challenger_id, reason=reason), "A/B test stopped")
