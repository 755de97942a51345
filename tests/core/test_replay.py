"""``fold_records``: the one read loop folds what it can and routes the rest to one policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from registry.core import codec
from registry.core import messages as m
from registry.core.replay import Unfolded, fold_records
from registry.core.rules import decide
from registry.core.state import Change, Fact, RegistryState
from registry.core.types import ModelConfig, ModelType, Provider, Status

NOW = datetime(2026, 5, 1, tzinfo=UTC)


@dataclass
class Record:
    value: bytes | None
    offset: int
    topic: str = "registry.events"
    partition: int = 0
    timestamp: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


def _events() -> list[m.EventBase]:
    """register -> testing -> active, as the rules decide them."""
    state = RegistryState()
    cfg = ModelConfig(
        id="m1", name="n", version="1.0.0", type=ModelType.NLP, provider=Provider.OPENAI
    )
    out: list[m.EventBase] = []
    for command in (
        m.RegisterModel(model_id="m1", payload=cfg),
        m.ChangeStatus(model_id="m1", payload=m.ChangeStatusPayload(status=Status.TESTING)),
        m.ChangeStatus(model_id="m1", payload=m.ChangeStatusPayload(status=Status.ACTIVE)),
    ):
        decision = decide(command, state, now=NOW)
        assert isinstance(decision, tuple)
        for event in decision:
            state.apply_event(event)
            out.append(event)
    return out


def test_bad_records_go_to_the_policy_and_the_fold_goes_on() -> None:
    registered, testing, active = (codec.encode(e) for e in _events())
    stray = orjson.loads(testing)
    stray["revision"] = 7  # a stray writer's event: not the model's next
    records = [
        Record(registered, 0),
        Record(b"{not json", 1),
        Record(None, 2),
        Record(orjson.dumps(stray), 3),
        Record(testing, 4),
        Record(active, 5),
    ]
    bad: list[Unfolded] = []
    applied: list[tuple[int, Fact, list[Change]]] = []
    state = RegistryState()
    counts = fold_records(
        records,
        state,
        on_bad=bad.append,
        on_applied=lambda r, f, changes: applied.append((r.offset, f, changes)),
    )
    assert (counts.applied, counts.bad) == (3, 3)
    assert [(b.record.offset, b.kind) for b in bad] == [
        (1, "unreadable"),
        (2, "unreadable"),
        (3, "revision_gap"),
    ]
    assert "malformed JSON" in bad[0].reason
    assert "null value" in bad[1].reason
    assert bad[2].fact is not None
    assert "expected revision 2, got 7" in bad[2].reason
    assert [offset for offset, _, _ in applied] == [0, 4, 5]
    assert state.models["m1"].status is Status.ACTIVE  # the gap was not believed
    ((before, after),) = applied[-1][2]
    assert before is not None
    assert before.status is Status.TESTING
    assert after.revision == 3


def test_fast_and_careful_paths_count_and_agree() -> None:
    records = [Record(codec.encode(e), i) for i, e in enumerate(_events())]
    fast, careful = RegistryState(), RegistryState()
    a = fold_records(records, fast, on_bad=lambda b: None)
    b = fold_records(records, careful, on_bad=lambda b: None, fast=False)
    assert (a.careful, b.careful) == (0, 3)
    assert fast.models == careful.models
