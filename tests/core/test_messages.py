"""Each message is declared once; everything that lists messages derives from that."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from model_registry.schemas import render_schemas
from registry.core import codec, fastcheck, rules
from registry.core import messages as m
from registry.core.state import CROSS_EFFECTS, EFFECTS


def _concrete(base: type[Any]) -> set[type[Any]]:
    out: set[type[Any]] = set()
    for cls in base.__subclasses__():
        if cls.TYPE:
            out.add(cls)
        out |= _concrete(cls)
    return out


def test_the_registries_hold_every_declared_message() -> None:
    assert set(m.COMMANDS.values()) == _concrete(m.CommandBase)
    assert set(m.EVENTS.values()) == _concrete(m.EventBase)
    for name, cls in (*m.COMMANDS.items(), *m.EVENTS.items()):
        assert cls.TYPE == name == cls.__name__ == cls.model_fields["type"].default


def test_every_table_derives_from_the_registries() -> None:
    assert set(rules._RULES) == set(m.COMMANDS.values())  # a rule per command
    assert set(EFFECTS) | set(CROSS_EFFECTS) | {"ModelRegistered", "RegistryCleared"} == set(
        m.EVENTS
    )
    assert not set(EFFECTS) & set(CROSS_EFFECTS)
    assert set(codec.CURRENT_SCHEMA_VERSIONS) == set(m.COMMANDS) | set(m.EVENTS)
    assert set(fastcheck._PAYLOADS) == set(m.EVENTS)
    schemas = render_schemas()
    for name in m.COMMANDS:
        assert f"v1/commands/{name}.json" in schemas
    for name in m.EVENTS:
        assert f"v1/events/{name}.json" in schemas


def test_the_adapters_pick_the_class_by_type() -> None:
    event = m.EVENT_ADAPTER.validate_python(
        {"type": "ABTestStopped", "model_id": "a", "revision": 2, "payload": {"testId": "t"}}
    )
    assert isinstance(event, m.ABTestStopped)
    assert event.type == "ABTestStopped"
    command = m.COMMAND_ADAPTER.validate_python(
        {"type": "StopABTest", "model_id": "a", "payload": {}}
    )
    assert isinstance(command, m.StopABTest)


def test_a_message_is_named_by_its_class() -> None:
    with pytest.raises(TypeError, match="use its class name"):

        class Misnamed(m.EventBase):
            type: Literal["SomethingElse"] = "SomethingElse"

    assert "SomethingElse" not in m.EventBase.registered()
