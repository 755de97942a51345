"""``model-registry api``: the HTTP API and console alone, and its bearer tokens.

::

    model-registry api [--host 127.0.0.1] [--port 8000] [--allow-remote]
    model-registry api token create ACTOR [--read-only]     # prints the token, once
    model-registry api token list [--json]
    model-registry api token revoke ID
"""

from __future__ import annotations

import asyncio

import click
import orjson

from model_registry.cli.common import current_settings, run, run_until_signalled
from model_registry.cli.errors import INVALID, fail
from model_registry.runtime import find_running
from registry.infra.identity import API_ACTOR, ActorsFile, IdentityError
from registry.infra.settings import Settings

__all__ = ["register"]


def register(main: click.Group, *, models: click.Group, ab: click.Group) -> None:
    """Add ``api`` (and ``api token ...``) to the CLI."""
    main.add_command(api)


@click.group(invoke_without_command=True)
@click.option(
    "--host", default=None, help="Address to bind [default: $REGISTRY_API_HOST or 127.0.0.1]."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port [default: $REGISTRY_API_PORT or 8765; 0 = any free port].",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a host other than loopback (put TLS in front: tokens travel in headers).",
)
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None, allow_remote: bool) -> None:
    """Serve the HTTP API and web console (alone; `up` runs it too)."""
    if ctx.invoked_subcommand is not None:
        return
    from model_registry.api.server import ApiServer, is_loopback

    settings = current_settings()
    host = host or settings.api.host
    if not is_loopback(host) and not allow_remote:
        fail(
            f"{host} is not a loopback address: pass --allow-remote to serve the API beyond "
            "this machine (and put TLS in front of it).",
            INVALID,
        )
    running = find_running(settings)
    if running is None:
        click.echo(
            "no registry runs on this data dir and KAFKA_BOOTSTRAP_SERVERS is not set: reads "
            "only (writes and /predict answer 503).",
            err=True,
        )
    settings = running or settings
    _warn_without_gateway(settings)
    server = ApiServer(settings, host=host, port=port, fallback=False)
    click.echo(f"API and console: {server.url}  (Ctrl-C stops it)")

    async def serve(stop: asyncio.Event) -> None:
        await server.run(stop)

    run(run_until_signalled(serve))


def _warn_without_gateway(settings: Settings) -> None:
    try:
        actors = ActorsFile(settings.actors_file).current()
    except IdentityError:
        return
    if actors.get(API_ACTOR) is None:
        click.echo(
            f"the actors file {settings.actors_file} has no '{API_ACTOR}' gateway: writes "
            "through the API will be refused. Add it (see docs/api.md#authentication).",
            err=True,
        )


@api.group()
def token() -> None:
    """Bearer tokens of the API (stored hashed; each bound to an actor of the actors file)."""


@token.command("create")
@click.argument("actor")
@click.option("--read-only", is_flag=True, help="The token may read only.")
def token_create(actor: str, read_only: bool) -> None:
    """Create a token for ACTOR and print it (once: only its hash is kept)."""
    from model_registry.api.tokens import TokenStore

    settings = current_settings()
    try:
        known = ActorsFile(settings.actors_file).current().get(actor)
    except IdentityError as exc:
        fail(str(exc), INVALID)
    if known is None:
        fail(
            f"'{actor}' is not in the actors file {settings.actors_file}: a token acts as an "
            "actor of that file, with its roles.",
            INVALID,
        )
    stored, secret = TokenStore(settings.api_tokens_file).create(actor, read_only=read_only)
    kind = "read-only token" if read_only else "token"
    click.echo(
        f"{kind} {stored.id} for '{actor}' (shown once; revoke with "
        f"`model-registry api token revoke {stored.id}`):",
        err=True,
    )
    click.echo(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(as_json: bool) -> None:
    """The tokens: id, actor, created, read-only (never the tokens themselves)."""
    from model_registry.api.tokens import TokenStore

    tokens = TokenStore(current_settings().api_tokens_file).tokens()
    if as_json:
        click.echo(orjson.dumps([t.public() for t in tokens], option=orjson.OPT_INDENT_2))
        return
    if not tokens:
        click.echo("no API tokens (create one with `model-registry api token create ACTOR`)")
    for t in tokens:
        click.echo(f"{t.id}  {t.actor}  {t.created_at}{'  read-only' if t.read_only else ''}")


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke the token TOKEN_ID (at once, also for a running service)."""
    from model_registry.api.tokens import TokenError, TokenStore

    try:
        stored = TokenStore(current_settings().api_tokens_file).revoke(token_id)
    except TokenError as exc:
        fail(str(exc), INVALID)
    click.echo(f"revoked token {stored.id} of '{stored.actor}'")
