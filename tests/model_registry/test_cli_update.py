"""``model-registry models update`` against a real broker, decider and projector; and who acts
(``--identity``, ``--actor``) on every write command."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from model_registry.cli.main import main
from projections import Projector
from projections.schema import projection_path
from registry.infra.identity import create_identity, load_identity, write_actors
from registry.infra.settings import GrantSettings, Settings
from tests.helpers import eventually, model_config, read_events, running_decider

ID = "lead-rules-v1"
CUSTOM = {"provider": "custom", "callable": "tests.consumers.custom_models:score"}


def _env(settings: Settings, **extra: str) -> dict[str, str | None]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_DATA_DIR": str(settings.data_dir),
        "REGISTRY_FETCH_MAX_WAIT_MS": "20",
        "REGISTRY_AUTH_IDENTITY_FILE": None,
        "REGISTRY_GRANTS_CALLABLES": None,
        **extra,
    }


async def cli(settings: Settings, *args: str) -> Result:
    """The CLI in a thread (it runs its own event loop), as a person would call it."""
    return await asyncio.to_thread(
        CliRunner().invoke, main, list(args), env=_env(settings), catch_exceptions=False
    )


@contextlib.asynccontextmanager
async def running_projector(settings: Settings) -> AsyncIterator[None]:
    projector = Projector(settings, projection_path(settings))
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        await asyncio.wait_for(projector.ready.wait(), 30)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
def bob(settings: Settings, tmp_path: Path) -> Path:
    """A second actor's key: an author who may sign for nobody else."""
    path = tmp_path / "bob.json"
    bob = create_identity(path, "bob")
    me = load_identity(settings.identity_file)
    write_actors(
        settings.actors_file,
        [
            {"name": me.actor, "public_key": me.public_key, "roles": ["admin"], "signs_for": ["*"]},
            {"name": "bob", "public_key": bob.public_key, "roles": ["author"]},
        ],
    )
    return path


@pytest.fixture
async def stack(settings: Settings, bob: Path) -> AsyncIterator[Settings]:
    """Decider and projector running, with one custom model registered."""
    granted = settings.with_(grants=GrantSettings(callables=(CUSTOM["callable"],)))
    async with running_decider(granted), running_projector(settings):
        config = settings.data_dir / "model.json"
        config.write_bytes(orjson.dumps(model_config(ID, provider="custom", providerConfig=CUSTOM)))
        result = await cli(settings, "models", "register", "-f", str(config))
        assert result.exit_code == 0, result.output
        yield settings


async def _model(settings: Settings, revision: int = 1) -> dict[str, Any]:
    """The model as ``models get`` shows it, once the projection has reached ``revision``
    (another process wrote it: the projector applies it a moment later)."""
    view: dict[str, Any] = {}

    async def projected() -> bool:
        result = await cli(settings, "models", "get", ID, "--json")
        assert result.exit_code == 0, result.output
        view.update(orjson.loads(result.stdout))
        return int(view["revision"]) >= revision

    await eventually(projected, timeout=20, interval=0.1, what=f"revision {revision}")
    return view


async def test_update_changes_the_fields_and_the_projection_shows_them(stack: Settings) -> None:
    result = await cli(
        stack,
        "models",
        "update",
        ID,
        "--name",
        "Lead rules",
        "--description",
        "scores leads by visits",
        "--parameters",
        '{"threshold": 0.6}',
        "--expected-revision",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert f"updated: {ID} now at revision 2 (ModelConfigUpdated" in result.stdout
    view = await _model(stack, revision=2)
    assert view["revision"] == 2
    config = view["config"]
    assert (config["name"], config["description"]) == ("Lead rules", "scores leads by visits")
    assert config["parameters"] == {"threshold": 0.6}

    # one setting changed, the others kept; a credential reference added
    result = await cli(
        stack,
        "models",
        "update",
        ID,
        "--set-provider",
        "batch=false",
        "--set-provider",
        "timeoutS=2.5",
        "--credential",
        "apiKey=env:MODEL_SECRET_RULES",
    )
    assert result.exit_code == 0, result.output
    config = (await _model(stack, revision=3))["config"]
    assert config["providerConfig"] == {**CUSTOM, "batch": False, "timeoutS": 2.5}
    assert config["credentials"] == {"apiKey": "env:MODEL_SECRET_RULES"}

    # the same change again is no change
    again = await cli(stack, "models", "update", ID, "--name", "Lead rules")
    assert again.exit_code == 0, again.output
    assert "no change" in again.stdout


async def test_a_stale_expected_revision_exits_with_the_conflict(stack: Settings) -> None:
    result = await cli(stack, "models", "update", ID, "--name", "x", "--expected-revision", "7")
    assert result.exit_code == 2, result.output
    assert "rejected (VersionConflict)" in result.stderr
    assert "revision 1, not the expected 7" in result.stderr
    assert (await _model(stack))["config"]["name"] != "x"


async def test_a_config_that_can_never_serve_is_refused_naming_the_setting(
    stack: Settings,
) -> None:
    rename = ["--set-provider", "callable=null", "--set-provider", "callabel=x:y"]
    result = await cli(stack, "models", "update", ID, *rename)
    assert result.exit_code == 2, result.output
    assert "rejected (InvalidCommand)" in result.stderr
    assert "providerConfig.callabel" in result.stderr
    assert "did you mean callable?" in result.stderr
    result = await cli(stack, "models", "update", ID, "--set-provider", "batch=yes")
    assert result.exit_code == 2, result.output
    assert "providerConfig.batch must be true or false" in result.stderr
    pc = '{"provider": "openai", "model": "gpt-4o-mini"}'
    result = await cli(stack, "models", "update", ID, "--provider-config", pc)
    assert result.exit_code == 2, result.output
    assert "providerConfig.provider is openai but the model's provider is custom" in result.stderr
    assert (await _model(stack))["revision"] == 1


async def test_bad_arguments_are_refused_before_anything_is_sent(stack: Settings) -> None:
    cases: list[tuple[list[str], str]] = [
        ([], "give at least one change"),
        (["--parameters", "[1, 2]"], "must be a JSON object"),
        (["--provider-config", "{not json"], "not valid JSON"),
        (["--credential", "apiKey=sk-live-1234567890"], "a credential is a reference"),
        (["--set-provider", "model"], "is not KEY=VALUE"),
        (["--endpoint", "https://user:pw@example.com/score"], "SecretInConfig"),
    ]
    for args, says in cases:
        result = await cli(stack, "models", "update", ID, *args)
        assert result.exit_code == 2, (args, result.output)
        assert says in result.stderr, (args, result.stderr)
    assert (await _model(stack))["revision"] == 1


async def test_identity_signs_and_its_actor_acts(stack: Settings, bob: Path) -> None:
    result = await cli(
        stack, "models", "update", ID, "--description", "by bob", "--identity", str(bob)
    )
    assert result.exit_code == 0, result.output
    last = (await read_events(stack))[-1]
    assert (last.type, last.actor) == ("ModelConfigUpdated", "bob")

    # the local key may sign for anyone (signs_for: *): the event is in alice's name
    result = await cli(stack, "models", "update", ID, "--description", "x", "--actor", "alice")
    assert result.exit_code == 0, result.output
    assert (await read_events(stack))[-1].actor == "alice"


async def test_a_key_the_actors_file_does_not_hold_is_refused(
    stack: Settings, tmp_path: Path
) -> None:
    eve = tmp_path / "eve.json"
    create_identity(eve, "eve")
    result = await cli(stack, "models", "update", ID, "--name", "eve's", "--identity", str(eve))
    assert result.exit_code == 2, result.output
    assert "rejected (Unauthenticated)" in result.stderr
    assert "does not verify against the actors file" in result.stderr
    assert f"signed as 'eve' with the key in {eve}" in result.stderr
    missing = await cli(
        stack, "models", "update", ID, "--name", "y", "--identity", str(tmp_path / "none.json")
    )
    assert missing.exit_code == 2, missing.output
    assert "no signing identity at" in missing.stderr
    assert (await _model(stack))["revision"] == 1


async def test_an_actor_the_key_cannot_sign_for_is_refused(stack: Settings, bob: Path) -> None:
    for args in (
        ["models", "update", ID, "--name", "m", "--identity", str(bob), "--actor", "mallory"],
        ["models", "status", ID, "testing", "--identity", str(bob), "--actor", "mallory"],
    ):
        result = await cli(stack, *args)
        assert result.exit_code == 2, result.output
        assert "rejected (Forbidden)" in result.stderr
        assert "'bob' may not sign for another actor" in result.stderr
    assert (await _model(stack))["revision"] == 1
