"""The hash chain of ``registry.events`` (docs/security.md#the-audit-log).

Each event's ``prev`` is the SHA-256 of the bytes of the event before it in its partition
(``GENESIS`` for the first). Altering, dropping, inserting or reordering a record breaks the
link of the record after it. Readers keep a ``Chain`` per log and check every record with
``link``: a record whose link does not match is not believed, and the tip stays where it
was, so the honest records after a stray one still link (the decider builds on the tip it
believes; the projector and ``audit verify`` believe the same records).

Events written before the chain existed carry no ``prev``: they are accepted as *legacy*
until a partition's first linked event, whose ``prev`` covers them all (their hashes are
part of the tip it names). After that, an event without a link is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["GENESIS", "Chain", "Tip", "record_hash"]

GENESIS = "0" * 64
"""The ``prev`` of the first event of a partition."""


def record_hash(value: bytes) -> str:
    """The hex SHA-256 of a record's value (what the next event's ``prev`` names)."""
    return hashlib.sha256(value).hexdigest()


@dataclass(slots=True)
class Tip:
    """Where one partition's chain stands: the hash of the last believed record, and
    whether a linked event has been seen (after which every event must link)."""

    hash: str = GENESIS
    linked: bool = False
    legacy: int = 0  # events believed before the chain began


@dataclass(slots=True)
class Chain:
    """The tips of a log's partitions."""

    tips: dict[int, Tip] = field(default_factory=dict)

    def tip(self, partition: int) -> Tip:
        tip = self.tips.get(partition)
        if tip is None:
            tip = self.tips[partition] = Tip()
        return tip

    def link(self, partition: int, value: bytes, prev: str | None) -> str | None:
        """Check a record against its partition's tip; advance the tip when it links.

        Returns why the record does not link (``None``: it does)."""
        tip = self.tip(partition)
        if prev is None:
            if tip.linked:
                return "event without a hash-chain link after the chain began"
            tip.legacy += 1
        elif prev != tip.hash:
            return (
                f"hash chain broken: the event links to {prev[:12]}..., "
                f"the previous believed event is {tip.hash[:12]}..."
            )
        else:
            tip.linked = True
        tip.hash = record_hash(value)
        return None
