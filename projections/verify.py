"""``audit verify``: check every signature and hash-chain link of ``registry.events``.

Reads the log itself (through the ``LogFollower``), from the beginning or from an offset,
to the high watermark seen when it started. For each record, in order:

1. it is a readable event;
2. its ``prev`` names the hash of the last believed record of its partition (the chain,
   ``registry.core.chain``): an altered, dropped, inserted or reordered record breaks it;
3. once the chain has begun, it is signed: ``signed_by`` is in the actors file, the
   signature over ``command_digest`` verifies with that actor's key, and the signer may sign
   for the event's ``actor``.

Events written before the chain existed (no ``prev``) are counted as *legacy*: readable,
covered by the first link, but without a signature to check. ``pins`` (partition, offset,
hash) hold the log to hashes recorded earlier (the ``head`` a previous run printed), which
catches a log rewritten from the beginning with a recomputed chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from registry.core.auth import Actors, signature_valid
from registry.core.chain import Chain, record_hash
from registry.core.codec import decode_fact
from registry.core.errors import DecodeError
from registry.infra.kafka.follower import LogFollower
from registry.infra.settings import Settings

__all__ = ["Finding", "VerifyReport", "verify_log"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A record that does not verify, and why."""

    partition: int
    offset: int
    reason: str


@dataclass(slots=True)
class VerifyReport:
    """What ``verify_log`` checked and found."""

    checked: int = 0
    signed: int = 0
    legacy: int = 0
    failures: list[Finding] = field(default_factory=list)
    heads: dict[int, tuple[int, str]] = field(default_factory=dict)
    """Per partition: the offset and hash of the last believed record (pin it)."""

    @property
    def ok(self) -> bool:
        return not self.failures


def _check_signature(obj: dict[str, object], actors: Actors) -> str | None:
    signer_name, signature, digest = (
        obj.get("signed_by"),
        obj.get("signature"),
        obj.get("command_digest"),
    )
    actor = obj.get("actor")
    if not isinstance(signer_name, str) or not isinstance(signature, str):
        return "unsigned event after the chain began"
    if not isinstance(digest, str):
        return "signed event without its command digest"
    signer = actors.get(signer_name)
    if signer is None:
        return f"signed by '{signer_name}', who is not in the actors file"
    if not signature_valid(signer, digest, signature):
        return f"the signature of '{signer_name}' does not verify"
    if not isinstance(actor, str) or not signer.may_sign_for(actor):
        return f"'{signer_name}' may not sign for the event's actor"
    return None


async def verify_log(
    settings: Settings,
    actors: Actors,
    *,
    topic: str | None = None,
    from_offset: int = 0,
    to_offset: int | None = None,
    partitions: Sequence[int] | None = None,
    pins: Mapping[tuple[int, int], str] | None = None,
    max_failures: int = 100,
) -> VerifyReport:
    """Verify ``registry.events`` (or ``topic``) from ``from_offset`` (inclusive) to
    ``to_offset`` (inclusive) or the high watermark. A range that starts past 0 trusts the
    ``prev`` of its first record as the starting point."""
    name = topic or settings.topic("registry.events")
    report = VerifyReport()
    chain = Chain()
    pins = dict(pins or {})
    follower = LogFollower(
        settings,
        [name],
        name="audit verify",
        partitions=partitions,
        poll_ms=500,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await follower.start()
    try:
        tps = follower.partitions
        await follower.seek({tp: from_offset for tp in tps})
        ends = await follower.consumer.end_offsets(tps)
        stop_at = {
            tp: ends[tp] if to_offset is None else min(ends[tp], to_offset + 1) for tp in tps
        }
        pending = [tp for tp in tps if from_offset < stop_at[tp]]
        first = {tp.partition: True for tp in pending} if from_offset > 0 else {}
        while pending:
            batch = await follower.poll(only=pending)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= stop_at[tp]:
                        break
                    _verify_one(record, chain, actors, report, first, pins)
            if len(report.failures) >= max_failures:
                break
            pending = [tp for tp in pending if await follower.consumer.position(tp) < stop_at[tp]]
    finally:
        await follower.stop()
    for (partition, offset), _ in pins.items():
        report.failures.append(Finding(partition, offset, "pinned record not found in the log"))
    report.failures.sort(key=lambda f: (f.partition, f.offset))
    return report


def _verify_one(
    record: object,
    chain: Chain,
    actors: Actors,
    report: VerifyReport,
    first: dict[int, bool],
    pins: dict[tuple[int, int], str],
) -> None:
    partition: int = record.partition  # type: ignore[attr-defined]
    offset: int = record.offset  # type: ignore[attr-defined]
    value: bytes = record.value or b""  # type: ignore[attr-defined]
    report.checked += 1
    pinned = pins.pop((partition, offset), None)
    if pinned is not None and pinned != record_hash(value):
        report.failures.append(Finding(partition, offset, "does not match its pinned hash"))
    try:
        fact = decode_fact(value)
        obj = orjson.loads(value)
    except (DecodeError, orjson.JSONDecodeError) as exc:
        reason = exc.reason if isinstance(exc, DecodeError) else "malformed JSON"
        report.failures.append(Finding(partition, offset, f"unreadable event: {reason}"))
        return
    if first.pop(partition, False) and fact.prev is not None:
        tip = chain.tip(partition)  # a range from the middle: start from the first link
        tip.hash, tip.linked = fact.prev, True
    broken = chain.link(partition, value, fact.prev)
    if broken is not None:
        report.failures.append(Finding(partition, offset, broken))
        return
    if fact.prev is None:
        report.legacy += 1
    else:
        unsigned = _check_signature(obj, actors)
        if unsigned is not None:
            report.failures.append(Finding(partition, offset, unsigned))
            return
        report.signed += 1
    report.heads[partition] = (offset, chain.tip(partition).hash)
