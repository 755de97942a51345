"""A model's state at a past moment, folded from its stored events with the one fold.

``as_of`` is a time (events with ``occurred_at <= as_of``) or an offset in the model's own
partition (events at offsets ``<= as_of``). Registry-wide events (``RegistryCleared``) count
when they fall before the cut: by offset in the same partition, else by time (with several
partitions there is no order between partitions but time). Another model's event that
changes this one (a promotion deprecates its champion, an alias moves away) makes the reader
fold every event up to the cut (``others``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from projections.views import ModelView
from registry.core.codec import decode_fact
from registry.core.state import RegistryState, iso

__all__ = ["fold_as_of"]

Row = Sequence[Any]  # (partition, offset, occurred_at, value)


def fold_as_of(
    model_id: str,
    own: Sequence[Row],
    clears: Sequence[Row],
    as_of: datetime | int,
    *,
    others: Sequence[Row] = (),
) -> ModelView | None:
    """Fold ``own`` (the model's applied events), ``clears`` and ``others`` (other models'
    events, when theirs changed this one: a promotion, an alias move) up to ``as_of``."""
    if not own:
        return None
    home = own[0][0]
    clears = [*clears, *others]
    if isinstance(as_of, datetime):
        cut = iso(as_of) or ""
        mine = [r for r in own if r[2] <= cut]
        theirs = [r for r in clears if r[2] <= cut]
    else:
        mine = [r for r in own if r[1] <= as_of]
        last_time = mine[-1][2] if mine else ""
        theirs = [r for r in clears if (r[1] <= as_of if r[0] == home else r[2] <= last_time)]
    if not mine:
        return None
    if all(r[0] == home for r in theirs):
        rows = sorted([*mine, *theirs], key=lambda r: r[1])
    else:
        rows = sorted([*mine, *theirs], key=lambda r: (r[2], r[0], r[1]))
    state = RegistryState()
    position = (home, mine[0][1])
    for partition, offset, _, value in rows:
        before = state.models.get(model_id)
        state.apply(decode_fact(value))
        if state.models.get(model_id) is not before:
            position = (partition, offset)
    current = state.models.get(model_id)
    return None if current is None else ModelView.from_state(current, *position)
