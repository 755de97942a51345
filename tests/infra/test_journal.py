"""The event journal: fsynced lines, a torn last line skipped, compaction by position."""

from __future__ import annotations

from pathlib import Path

from registry.infra.journal import EventJournal, JournalRecord


def _rec(p: int, o: int) -> JournalRecord:
    return JournalRecord(
        p, o, f"m{o}".encode(), f'{{"n":{o}}}'.encode(), (("type", b"ModelRegistered"),)
    )


def test_round_trip_torn_tail_and_compaction(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path / "events.journal")
    assert journal.records() == []
    journal.append([_rec(0, 0), _rec(0, 1)])
    journal.append([_rec(1, 0), _rec(0, 2)])
    with open(journal.path, "ab") as f:
        f.write(b'{"p": 0, "o": 3, "k"')  # a crash mid-write
    assert journal.records() == [_rec(0, 0), _rec(0, 1), _rec(1, 0), _rec(0, 2)]
    assert journal.after({0: 2}) == [_rec(0, 2), _rec(1, 0)]
    journal.compact({0: 2, 1: 1})
    assert journal.records() == [_rec(0, 2)]
