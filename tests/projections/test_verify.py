"""The verifiable audit log: ``audit verify`` passes an honest log and names each tampering;
the projector does not believe an event whose hash-chain link does not match.

The honest log is written by a real decider from signed commands; each tampering is made
in a *copy* of it (a fresh topic prefix), as someone with write access to the topic could.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from model_registry.cli.main import main
from model_registry.client import ModelRegistry
from projections import Projector
from projections.schema import projection_path
from projections.verify import verify_log
from registry.core.auth import Actors
from registry.core.chain import record_hash
from registry.core.types import Metrics, Status
from registry.infra.identity import ActorsFile, create_identity, load_identity
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import Settings
from tests.helpers import model_config, read_topic, running_decider

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


@pytest.fixture
async def honest(settings: Settings) -> list[Record]:
    """Eight events written by the decider from signed commands."""
    async with running_decider(settings), ModelRegistry(settings) as reg:
        await reg.register(model_config("a"))
        await reg.register(model_config("b"))
        await reg.update_status("a", Status.TESTING)
        await reg.record_metrics("a", Metrics(accuracy=90))
        await reg.update_status("a", Status.ACTIVE)
        await reg.update_status("b", Status.TESTING, reason="ready")
        await reg.record_metrics("b", Metrics(accuracy=80))
        await reg.update_status("b", Status.ACTIVE)
    records = await read_topic(settings, "registry.events")
    assert len(records) == 8
    return [(r.key, r.value, list(r.headers)) for r in records]


async def _copy(settings: Settings, name: str, records: list[Record]) -> Settings:
    """``records`` written to a fresh ``registry.events``: a copy of the log to tamper with."""
    copy = settings.with_(topic_prefix=f"{settings.topic_prefix}{name}.")
    await ensure_topics(copy)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(
                copy.topic("registry.events"), value, key=key, headers=headers, partition=0
            )
    finally:
        await producer.stop()
    return copy


def _edit(value: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    obj = orjson.loads(value)
    change(obj)
    return orjson.dumps(obj)


async def test_an_honest_log_verifies(settings: Settings, honest: list[Record]) -> None:
    report = await verify_log(settings, ActorsFile(settings.actors_file).current())
    assert report.ok, report.failures
    assert (report.checked, report.signed, report.legacy) == (8, 8, 0)
    assert report.heads == {0: (7, record_hash(honest[-1][1]))}


def _altered(records: list[Record]) -> list[Record]:
    out = list(records)
    key, value, headers = out[3]
    out[3] = (key, _edit(value, lambda o: o["payload"]["metrics"].update(accuracy=99)), headers)
    return out


def _forged_actor(records: list[Record]) -> list[Record]:
    out = list(records)
    key, value, headers = out[4]
    out[4] = (key, _edit(value, lambda o: o.update(actor="mallory")), headers)
    return out


def _inserted(records: list[Record]) -> list[Record]:
    """A forged event that links correctly (its prev is right) but has no valid signature."""
    key, value, headers = records[2]

    def forge(o: dict[str, Any]) -> None:
        o["id"] = "forged"
        o["prev"] = record_hash(records[1][1])
        o["signature"] = o["signature"][::-1]

    return [*records[:2], (key, _edit(value, forge), headers), *records[2:]]


CASES: dict[str, tuple[Callable[[list[Record]], list[Record]], int, str]] = {
    # name: (tampering, first offset that must fail, words of its reason)
    "altered": (_altered, 4, "hash chain broken"),
    "dropped": (lambda r: r[:2] + r[3:], 2, "hash chain broken"),
    "reordered": (lambda r: [*r[:5], r[6], r[5], r[7]], 5, "hash chain broken"),
    "forged actor": (_forged_actor, 4, "may not sign for"),
    "inserted": (_inserted, 2, "does not verify"),
    "unsigned": (
        lambda r: [*r[:-1], (r[-1][0], _edit(r[-1][1], _unsign), r[-1][2])],
        7,
        "unsigned",
    ),
}


def _own_name_only(settings: Settings) -> Actors:
    """The test identity without its right to sign for others (the fixture's has it)."""
    identity = load_identity(settings.identity_file)
    return Actors.parse(
        {"actors": [{"name": identity.actor, "public_key": identity.public_key, "roles": []}]}
    )


def _unsign(o: dict[str, Any]) -> None:
    del o["signature"], o["signed_by"]


@pytest.mark.parametrize("case", sorted(CASES))
async def test_verify_names_the_offset_of_each_tampering(
    settings: Settings, honest: list[Record], case: str
) -> None:
    tamper, offset, words = CASES[case]
    copy = await _copy(settings, case.replace(" ", "-"), tamper(honest))
    report = await verify_log(copy, _own_name_only(settings))
    assert not report.ok
    first = report.failures[0]
    assert (first.partition, first.offset) == (0, offset), report.failures
    assert words in first.reason


async def test_a_recomputed_chain_is_caught_by_a_pinned_head(
    settings: Settings, honest: list[Record]
) -> None:
    """Someone who rewrites the whole log can recompute every link; a head pinned by an
    earlier run of ``verify`` still catches it."""
    honest_report = await verify_log(settings, ActorsFile(settings.actors_file).current())
    offset, head = honest_report.heads[0]
    rewritten, prev = [], "0" * 64
    for i, (key, value, headers) in enumerate(honest):

        def relink(o: dict[str, Any], i: int = i, prev: str = prev) -> None:
            o["prev"] = prev
            if i == 3:
                o["payload"]["metrics"]["accuracy"] = 99

        value = _edit(value, relink)
        prev = record_hash(value)
        rewritten.append((key, value, headers))
    copy = await _copy(settings, "rewritten", rewritten)
    actors = ActorsFile(settings.actors_file).current()
    assert (await verify_log(copy, actors)).ok  # the links alone cannot tell
    pinned = await verify_log(copy, actors, pins={(0, offset): head})
    assert [(f.offset, f.reason) for f in pinned.failures] == [
        (offset, "does not match its pinned hash")
    ]


async def test_a_key_not_in_the_actors_file_fails_verification(
    settings: Settings, honest: list[Record]
) -> None:
    stranger = create_identity(settings.data_dir / "other.json", "someone")
    other_actors = Actors.parse(
        {"actors": [{"name": stranger.actor, "public_key": stranger.public_key, "roles": []}]}
    )
    report = await verify_log(settings, other_actors)
    assert [f.offset for f in report.failures] == list(range(8))
    assert "not in the actors file" in report.failures[0].reason


async def test_the_projector_does_not_believe_a_broken_link(
    settings: Settings, honest: list[Record]
) -> None:
    copy = await _copy(settings, "dropped", honest[:2] + honest[3:])
    db = projection_path(copy)
    await Projector(copy, db).catch_up()
    with sqlite3.connect(db) as conn:
        errors = conn.execute(
            "SELECT offset, kind FROM projection_errors ORDER BY offset"
        ).fetchall()
        events = [o for (o,) in conn.execute("SELECT offset FROM events ORDER BY offset")]
        status = dict(conn.execute("SELECT model_id, status FROM models").fetchall())
    # every event after the gap links to the dropped one: none is believed
    assert errors == [(o, "broken_link") for o in range(2, 7)]
    assert events == [0, 1]
    assert status == {"a": "training", "b": "training"}


async def test_audit_verify_cli_exit_codes(settings: Settings, honest: list[Record]) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_DATA_DIR": str(settings.data_dir),
    }
    ok = await asyncio.to_thread(CliRunner().invoke, main, ["audit", "verify"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "checked 8 event(s): 8 signed" in ok.output
    assert f"head 0:7:{record_hash(honest[-1][1])}" in ok.output
    copy = await _copy(settings, "cli", honest[:2] + honest[3:])
    env["REGISTRY_TOPIC_PREFIX"] = copy.topic_prefix
    bad = await asyncio.to_thread(CliRunner().invoke, main, ["audit", "verify"], env=env)
    assert bad.exit_code == 4
    assert "FAILED partition 0 offset 2: hash chain broken" in bad.output
