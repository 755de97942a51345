"""``audit verify`` (signatures and hash chain of the log) and ``identity`` (signing keys).

``audit verify`` exits 0 when every record verifies, 4 when one does not (naming the first
offset that fails), 2 on bad input and 3 when the broker cannot be reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from model_registry.cli.common import cli_settings, current_settings, run_reporting

__all__ = ["register"]

VERIFY_FAILED = 4


def _pin(text: str) -> tuple[tuple[int, int], str]:
    try:
        partition, offset, digest = text.split(":")
        if len(digest) != 64:
            raise ValueError
        int(digest, 16)
        return (int(partition), int(offset)), digest
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not PARTITION:OFFSET:SHA256 (as `audit verify` prints under 'head')"
        ) from None


@click.command("verify")
@click.option("--from-offset", type=click.IntRange(min=0), default=0, help="First offset.")
@click.option("--to-offset", type=click.IntRange(min=0), default=None, help="Last offset.")
@click.option(
    "--pin",
    "pins",
    multiple=True,
    help="PARTITION:OFFSET:SHA256 a previous run printed as the head (repeatable): the log "
    "must still hold that record.",
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
def verify_cmd(
    from_offset: int, to_offset: int | None, pins: tuple[str, ...], as_json: bool
) -> None:
    """Check every signature and hash-chain link of registry.events; name the first offset
    that fails."""
    from projections.verify import verify_log
    from registry.infra.identity import ActorsFile

    settings = cli_settings()
    pinned = dict(_pin(p) for p in pins)
    actors = ActorsFile(settings.actors_file).current()  # IdentityError: explained, exit 2
    report = run_reporting(
        verify_log(settings, actors, from_offset=from_offset, to_offset=to_offset, pins=pinned)
    )
    heads = {p: {"offset": o, "sha256": h} for p, (o, h) in sorted(report.heads.items())}
    if as_json:
        body = {
            "ok": report.ok,
            "checked": report.checked,
            "signed": report.signed,
            "legacy": report.legacy,
            "failures": [
                {"partition": f.partition, "offset": f.offset, "reason": f.reason}
                for f in report.failures
            ],
            "heads": heads,
        }
        click.echo(orjson.dumps(body).decode())
    else:
        click.echo(
            f"checked {report.checked} event(s): {report.signed} signed, "
            f"{report.legacy} from before the chain began"
        )
        for partition, head in heads.items():
            click.echo(f"head {partition}:{head['offset']}:{head['sha256']}")
        for f in report.failures[:20]:
            click.echo(f"FAILED partition {f.partition} offset {f.offset}: {f.reason}", err=True)
        if len(report.failures) > 20:
            click.echo(f"... and {len(report.failures) - 20} more", err=True)
    if not report.ok:
        sys.exit(VERIFY_FAILED)


@click.group("identity")
def identity_group() -> None:
    """Signing keys: every command is signed by its actor (docs/security.md)."""


@identity_group.command("create")
@click.argument("actor")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the key (0600). Give it only to ACTOR.",
)
def identity_create(actor: str, out: Path) -> None:
    """A new key for ACTOR; prints the actors-file entry the operator adds for it."""
    from registry.core.auth import valid_actor_name
    from registry.infra.identity import create_identity

    if out.exists():
        raise click.UsageError(f"{out} exists; choose another path (keys are never overwritten)")
    if not valid_actor_name(actor):
        raise click.BadParameter("letters, digits and ._@- only", param_hint="ACTOR")
    identity = create_identity(out, actor)
    entry = {"name": actor, "public_key": identity.public_key, "roles": ["author"]}
    click.echo(orjson.dumps(entry).decode())


@identity_group.command("show")
def identity_show() -> None:
    """The actor and public key this CLI signs with."""
    from registry.infra.identity import load_identity

    settings = current_settings()
    identity = load_identity(settings.identity_file)
    click.echo(f"{identity.actor} {identity.public_key} ({settings.identity_file})")


def register(main: click.Group, **groups: click.Group) -> None:
    audit = main.commands.get("audit")
    if isinstance(audit, click.Group):
        audit.add_command(verify_cmd)
    main.add_command(identity_group)
