"""Authenticated actors against a running decider: signatures, roles, four eyes, the chain.

Each attack of the threat model (docs/security.md) is reproduced and shown refused, with
nothing appended to registry.events.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from model_registry.client import ModelRegistry
from registry.core.auth import SIGNATURE_HEADER, SIGNER_HEADER, command_digest, signature_valid
from registry.core.chain import GENESIS, record_hash
from registry.core.errors import Rejected, RejectionCode
from registry.core.types import Status
from registry.decider.decider import Decider
from registry.infra.identity import Identity, create_identity, load_identity, write_actors
from registry.infra.settings import AuthSettings, Settings
from tests.helpers import eventually, model_config, read_topic, running_decider, signed


def _entry(identity: Identity, *roles: str, signs_for: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "name": identity.actor,
        "public_key": identity.public_key,
        "roles": list(roles),
        "signs_for": list(signs_for),
    }


@pytest.fixture
def people(settings: Settings, tmp_path: Path) -> dict[str, Identity]:
    """alice (author), bob (deployer), carol (author and deployer), root (admin); the
    actors file names them, without any right to sign for another."""
    out = {
        name: create_identity(tmp_path / f"{name}.json", name)
        for name in ("alice", "bob", "carol", "admin")
    }
    write_actors(
        settings.actors_file,
        [
            _entry(out["alice"], "author"),
            _entry(out["bob"], "deployer"),
            _entry(out["carol"], "author", "deployer"),
            _entry(out["admin"], "admin"),
        ],
    )
    return out


async def _produce(settings: Settings, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic("registry.commands"), value, key=b"m1", headers=headers
        )
    finally:
        await producer.stop()


async def _reply(settings: Settings, command_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        for r in await read_topic(settings, "registry.replies"):
            if r.key == command_id.encode():
                return dict(orjson.loads(r.value))
        return None

    return await eventually(find, what=f"a reply to {command_id}")


def _register(command_id: str, actor: str = "alice") -> bytes:
    return orjson.dumps(
        {
            "id": command_id,
            "type": "RegisterModel",
            "model_id": "m1",
            "actor": actor,
            "payload": model_config("m1"),
        }
    )


async def test_unsigned_forged_and_tampered_commands_are_refused(
    settings: Settings, people: dict[str, Identity]
) -> None:
    alice = people["alice"]
    mallory = create_identity(settings.data_dir / "mallory.json", "alice")  # a key not listed
    cases: dict[str, tuple[bytes, list[tuple[str, bytes]]]] = {}
    cid = str(uuid.uuid4())
    cases[cid] = (_register(cid), [])  # unsigned
    cid = str(uuid.uuid4())
    cases[cid] = (_register(cid), mallory.headers(_register(cid)))  # alice's name, not her key
    cid = str(uuid.uuid4())
    honest = _register(cid)
    tampered = honest.replace(b'"test model', b'"evil model')  # changed after signing
    assert tampered != honest
    cases[cid] = (tampered, alice.headers(honest))
    cid = str(uuid.uuid4())
    cases[cid] = (_register(cid), [(SIGNER_HEADER, b"nobody"), (SIGNATURE_HEADER, b"AAAA")])
    async with running_decider(settings) as decider:
        for value, headers in cases.values():
            await _produce(settings, value, headers)
        for cid in cases:
            reply = await _reply(settings, cid)
            assert reply["outcome"] == "rejected"
            assert reply["rejection"]["code"] == RejectionCode.UNAUTHENTICATED
        assert decider.stats.unauthenticated == len(cases)
    assert await read_topic(settings, "registry.events") == []


async def test_the_actor_is_the_signer_unless_the_actors_file_says_otherwise(
    settings: Settings, people: dict[str, Identity]
) -> None:
    alice = people["alice"]
    forged = str(uuid.uuid4())
    value = _register(forged, actor="mallory")  # alice signs, claims to be mallory
    async with running_decider(settings):
        await _produce(settings, value, alice.headers(value))
        reply = await _reply(settings, forged)
        assert reply["rejection"]["code"] == RejectionCode.FORBIDDEN
        assert await read_topic(settings, "registry.events") == []
        # a gateway the actors file lets sign for anyone: the event records both
        gateway = create_identity(settings.data_dir / "gw.json", "crm-gateway")
        entries = orjson.loads(settings.actors_file.read_bytes())["actors"]
        entries.append(_entry(gateway, "author", signs_for=("*",)))
        write_actors(settings.actors_file, entries)
        on_behalf = str(uuid.uuid4())
        value = _register(on_behalf, actor="dana@crm")
        await _produce(settings, value, gateway.headers(value))
        assert (await _reply(settings, on_behalf))["outcome"] == "accepted"
    (event,) = [orjson.loads(r.value) for r in await read_topic(settings, "registry.events")]
    assert event["actor"] == "dana@crm"
    assert event["signed_by"] == "crm-gateway"
    assert event["command_digest"] == command_digest(value)
    assert signature_valid(
        _actor(settings, "crm-gateway"), event["command_digest"], event["signature"]
    )
    assert event["prev"] == GENESIS


def _actor(settings: Settings, name: str) -> Any:
    from registry.infra.identity import ActorsFile

    actor = ActorsFile(settings.actors_file).current().get(name)
    assert actor is not None
    return actor


def _as(settings: Settings, identity: Identity) -> ModelRegistry:
    return ModelRegistry(settings, identity=identity)


async def test_roles_decide_who_may_do_what(
    settings: Settings, people: dict[str, Identity]
) -> None:
    async with (
        running_decider(settings),
        _as(settings, people["alice"]) as alice,
        _as(settings, people["bob"]) as bob,
    ):
        await alice.register(model_config("m1"))
        await alice.update_status("m1", Status.TESTING)
        with pytest.raises(Rejected) as refused:
            await alice.update_status("m1", Status.ACTIVE)  # an author does not activate
        assert refused.value.rejection.code == RejectionCode.FORBIDDEN
        assert "deployer" in refused.value.rejection.message
        with pytest.raises(Rejected) as refused:
            await bob.register(model_config("m2"))  # a deployer does not register
        assert refused.value.rejection.code == RejectionCode.FORBIDDEN
        with pytest.raises(Rejected):
            await alice.register(model_config("m3", status="active"))  # nor activate so
        await bob.update_status("m1", Status.ACTIVE)
        with pytest.raises(Rejected) as refused:
            await bob.clear(reason="oops")  # only an admin clears
        assert refused.value.rejection.code == RejectionCode.FORBIDDEN
        await bob.update_status("m1", Status.DEPRECATED)
        with pytest.raises(Rejected):
            await alice.unregister("m1")
        await bob.unregister("m1")
    actors = [orjson.loads(r.value)["actor"] for r in await read_topic(settings, "registry.events")]
    assert actors == ["alice", "alice", "bob", "bob", "bob"]


async def test_four_eyes_needs_another_actor_to_activate(
    settings: Settings, people: dict[str, Identity]
) -> None:
    four_eyes = settings.with_(auth=AuthSettings(four_eyes=True))
    async with (
        running_decider(four_eyes),
        _as(settings, people["carol"]) as carol,
        _as(settings, people["bob"]) as bob,
    ):
        await carol.register(model_config("m1", status="testing"))
        with pytest.raises(Rejected) as refused:
            await carol.update_status("m1", Status.ACTIVE)  # her own version
        assert "four eyes" in refused.value.rejection.message
        with pytest.raises(Rejected):
            await carol.register(model_config("m2", status="active"))
        await bob.update_status("m1", Status.ACTIVE)  # another pair of eyes
        await carol.release_version("m1", "1.1.0", status=Status.TESTING)
        await bob.update_status("m1", Status.ACTIVE)
    # and after a restart the decider still knows who authored each version
    async with running_decider(four_eyes), _as(settings, people["carol"]) as carol:
        await carol.update_status("m1", Status.DEPRECATED)  # only activation needs 4 eyes
        with pytest.raises(Rejected):
            await carol.update_status("m1", Status.ACTIVE)


async def test_events_form_a_hash_chain_across_restarts(
    settings: Settings, people: dict[str, Identity]
) -> None:
    for round_ in range(2):  # the second decider rebuilds and continues the chain
        async with running_decider(settings), _as(settings, people["alice"]) as alice:
            await alice.register(model_config(f"m{round_}"))
            await alice.update_status(f"m{round_}", Status.TESTING)
    records = await read_topic(settings, "registry.events")
    assert len(records) == 4
    prev = GENESIS
    for record in records:
        assert orjson.loads(record.value)["prev"] == prev
        prev = record_hash(record.value)


async def test_a_missing_actors_file_stops_the_decider_with_a_sentence(settings: Settings) -> None:
    settings.actors_file.unlink()
    from registry.infra.identity import IdentityError

    with pytest.raises(IdentityError, match="no actors file"):
        await Decider(settings).start()


async def test_the_client_signs_with_the_identity_of_the_settings(
    settings: Settings, decider: Decider
) -> None:
    identity = load_identity(settings.identity_file)
    async with ModelRegistry(settings) as reg:
        assert reg.actor == identity.actor
        result = await reg.register(model_config("m1"))
    (record,) = await read_topic(settings, "registry.events")
    event = orjson.loads(record.value)
    assert event["actor"] == event["signed_by"] == identity.actor
    assert result.revision == 1
    assert signed(settings, b"x")[0] == (SIGNER_HEADER, identity.actor.encode())


@pytest.mark.parametrize(
    "target",
    ["subprocess:getoutput", "os:system", "builtins:eval", "os:getenv", "pickle:loads"],
)
async def test_code_the_operator_did_not_grant_is_refused_at_registration(
    registry: ModelRegistry, target: str
) -> None:
    config = model_config("rules", provider="custom")
    config["providerConfig"] = {"provider": "custom", "callable": target}
    with pytest.raises(Rejected) as refused:
        await registry.register(config)
    assert refused.value.rejection.code == RejectionCode.FORBIDDEN
    assert refused.value.rejection.field == "providerConfig.callable"
    config["providerConfig"]["callable"] = "os.system; id"  # not even a name
    with pytest.raises(Rejected) as refused:
        await registry.register(config)
    assert refused.value.rejection.code == RejectionCode.FORBIDDEN


async def test_granted_code_is_accepted(settings: Settings) -> None:
    from registry.infra.settings import GrantSettings

    target = "tests.consumers.custom_models:score"
    granted = settings.with_(grants=GrantSettings(callables=(target,)))
    config = model_config("rules", provider="custom")
    config["providerConfig"] = {"provider": "custom", "callable": target}
    async with running_decider(granted), ModelRegistry(granted) as reg:
        assert (await reg.register(config)).revision == 1
        change = {"provider": "custom", "callable": "os:system"}
        with pytest.raises(Rejected):
            await reg.update_config("rules", provider_config=change)
