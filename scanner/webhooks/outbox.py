"""The Redis side of webhook delivery: the outbox stream, one consumer group per target, and the
dead-letter stream.

* Outbox (``webhooks.outbox_stream``): the opportunity sink XADDs every event once (field ``data``,
  the event JSON, ``MAXLEN ~ webhooks.outbox_maxlen``); the fan-out per target is the consumer
  groups: group ``webhook:<target>`` per target, created at ``$`` when the scanner starts.
* Dead letters (``webhooks.dead_letter_stream``): one entry per (event, target) whose retry budget
  ran out, with fields ``target, webhook_id, entry, data, attempts, status, error, failed_ns``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

Entry = tuple[bytes, dict[bytes, bytes]]


def group_name(target: str) -> str:
    return f"webhook:{target}"


async def ensure_group(redis: Redis, stream: str, target: str, start: str = "$") -> None:
    """Create the target's group at ``$`` (new targets never receive old events); keep an existing one.
    ``start="0"`` re-creates a group Redis lost (restarted without persistence): every entry in the
    stream then was appended after the loss and is delivered."""
    try:
        await redis.xgroup_create(stream, group_name(target), id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def read(redis: Redis, stream: str, target: str, consumer: str, start: str, count: int,
               block_ms: int | None) -> list[Entry]:
    """XREADGROUP: ``start`` ``>`` for new entries, an id for this consumer's own pending ones."""
    got = cast(list[tuple[bytes, list[Entry]]],
               await redis.xreadgroup(group_name(target), consumer, {stream: start}, count=count, block=block_ms))
    return [e for _, entries in got or [] for e in entries]


async def autoclaim(redis: Redis, stream: str, target: str, consumer: str, min_idle_ms: int,
                    count: int) -> list[Entry]:
    """Take over entries other (crashed) consumers left pending for at least ``min_idle_ms``."""
    res = await redis.xautoclaim(stream, group_name(target), consumer, min_idle_ms, "0-0", count=count)
    return [(eid, fields) for eid, fields in cast(list[Entry], res[1])]


async def lag(redis: Redis, stream: str, target: str) -> int:
    """Entries the target has not acknowledged: pending (read, unacked) + never read."""
    for g in await redis.xinfo_groups(stream):
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group_name(target):
            return int(g.get("pending") or 0) + int(g.get("lag") or 0)
    return 0


@dataclass(frozen=True)
class DeadLetter:
    id: str  # the dead-letter stream entry id
    target: str
    webhook_id: str
    entry: str  # the outbox entry id
    data: bytes
    attempts: int
    status: str  # the last HTTP status, or "" when the last attempt got no answer
    error: str
    failed_ns: int


async def add_dead_letter(redis: Redis, dead_stream: str, outbox: str, target: str, entry_id: str,
                          fields: dict[Any, Any]) -> None:
    """XADD to the dead-letter stream and XACK the outbox entry, atomically (MULTI/EXEC)."""
    pipe = redis.pipeline(transaction=True)
    pipe.xadd(dead_stream, fields)
    pipe.xack(outbox, group_name(target), entry_id)
    await pipe.execute()


async def dead_letters(redis: Redis, dead_stream: str, target: str | None = None) -> list[DeadLetter]:
    out = []
    for eid, f in cast(list[Entry], await redis.xrange(dead_stream)):
        d = DeadLetter(eid.decode(), f[b"target"].decode(), f[b"webhook_id"].decode(), f[b"entry"].decode(),
                       f[b"data"], int(f[b"attempts"]), f.get(b"status", b"").decode(),
                       f.get(b"error", b"").decode(), int(f.get(b"failed_ns", b"0")))
        if target is None or d.target == target:
            out.append(d)
    return out
