"""Folding records of ``registry.events`` into a ``RegistryState``: the one read loop.

``fold_records(records, state, on_bad=...)`` decodes each record (the strict fast check,
else the careful path through the pydantic models) and applies its fact with
``RegistryState.apply``. A record that cannot be folded never stops the loop and is never
believed: it goes to ``on_bad`` as an ``Unfolded`` saying why, one policy per reader (the
projector records it in ``projection_errors`` and dead-letters it, the others log and count
it; see ``registry.infra.kafka.follower``). Pure: records in, state changed, callbacks called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from registry.core.chain import Chain
from registry.core.codec import careful_fact, check
from registry.core.errors import DecodeError, RevisionGap
from registry.core.state import Change, Fact, RegistryState

__all__ = ["Applied", "BadRecord", "FoldCounts", "RecordLike", "Unfolded", "fold_records"]


class RecordLike(Protocol):
    """The parts of a Kafka record a reader uses (aiokafka's ``ConsumerRecord`` has them)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Unfolded:
    """A record the fold did not take: ``unreadable`` (no event in it), ``broken_link`` (its
    hash-chain link does not match: altered, inserted, dropped or reordered records) or
    ``revision_gap`` (an event that is not its model's next: a stray writer or a lost
    event)."""

    record: RecordLike
    kind: Literal["unreadable", "revision_gap", "broken_link"]
    reason: str
    fact: Fact | None = None  # the event of a revision gap or a broken link
    message_id: str | None = None  # an unreadable record's id, when it could be read


BadRecord = Callable[[Unfolded], None]
Applied = Callable[[RecordLike, Fact, list[Change]], None]


@dataclass(slots=True)
class FoldCounts:
    """What one call folded."""

    applied: int = 0
    careful: int = 0  # records the fast check left to the careful path
    bad: int = 0


def fold_records(
    records: Iterable[RecordLike],
    state: RegistryState,
    *,
    on_bad: BadRecord,
    on_applied: Applied | None = None,
    fast: bool = True,
    chain: Chain | None = None,
) -> FoldCounts:
    """Apply ``records`` (in log order) to ``state``; see the module doc. With ``chain``,
    a record whose hash-chain link does not match is not believed (``broken_link``)."""
    counts = FoldCounts()
    apply, fast_check = state.apply, check if fast else None
    applied = 0
    for record in records:
        value = record.value
        fact = fast_check(value) if fast_check is not None and value else None
        if fact is None:
            counts.careful += 1
            try:
                fact = careful_fact(value)
            except DecodeError as exc:
                counts.bad += 1
                on_bad(Unfolded(record, "unreadable", exc.reason, message_id=exc.message_id))
                continue
            except Exception as exc:  # noqa: BLE001 - a reader's bug must not stop the fold
                counts.bad += 1
                on_bad(Unfolded(record, "unreadable", f"unreadable ({type(exc).__name__})"))
                continue
        if chain is not None:
            broken = chain.link(record.partition, value, fact.prev)  # type: ignore[arg-type]
            if broken is not None:
                counts.bad += 1
                on_bad(Unfolded(record, "broken_link", broken, fact))
                continue
        try:
            changes = apply(fact)
        except RevisionGap as gap:
            counts.bad += 1
            on_bad(Unfolded(record, "revision_gap", f"{gap}; not applied", fact))
            continue
        applied += 1
        if on_applied is not None:
            on_applied(record, fact, changes)
    counts.applied = applied
    return counts
