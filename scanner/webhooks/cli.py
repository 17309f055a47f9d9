"""``scanner webhooks test TARGET | dead [--target T] | replay [--target T] (--all | ID...)``.

``test`` sends a signed sample event to one target and prints the receiver's answer. ``dead`` lists
the dead-letter stream. ``replay`` re-sends dead letters (same ``webhook-id`` as the original, so
receivers can deduplicate), one attempt each, and removes each one the receiver answers with a 2xx.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import aiohttp
import orjson
from redis.asyncio import Redis

from scanner.config import Settings
from scanner.config_webhooks import WebhookTarget
from scanner.webhooks import outbox, signing
from scanner.webhooks.formats import render, sample_event
from scanner.webhooks.sender import Answer, post


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/default.yaml", help="YAML settings file (default: %(default)s)")
    sub = p.add_subparsers(dest="action", required=True)
    t = sub.add_parser("test", help="send a signed sample event to TARGET and print the answer")
    t.add_argument("target")
    d = sub.add_parser("dead", help="list dead letters")
    d.add_argument("--target", help="only this target's")
    r = sub.add_parser("replay", help="re-send dead letters; each one answered 2xx is removed")
    r.add_argument("--target", help="only this target's")
    r.add_argument("--all", action="store_true", help="every dead letter (of --target)")
    r.add_argument("ids", nargs="*", help="dead-letter entry ids (as listed by `scanner webhooks dead`)")


def main(args: argparse.Namespace) -> int:
    from scanner.app import load_settings

    settings = load_settings(args.config)
    if settings is None:
        return 2
    if args.action == "replay" and not args.all and not args.ids:
        print("replay: give dead-letter ids or --all", file=sys.stderr)
        return 2
    target = getattr(args, "target", None)
    if target is not None and target not in settings.webhooks.targets:
        print(f"unknown webhook target {target!r}; configured: {', '.join(settings.webhooks.targets) or 'none'}",
              file=sys.stderr)
        return 2
    if args.action == "test":
        return asyncio.run(send_test(settings.webhooks.targets[args.target]))
    if args.action == "dead":
        return asyncio.run(list_dead(settings, target))
    _, failed = asyncio.run(replay(settings, target, None if args.all else args.ids))
    return 0 if not failed else 1


async def send_test(target: WebhookTarget) -> int:
    rendered = render(target.format, sample_event(), target_name=target.name, chat_id=target.chat_id)
    msg_id = signing.webhook_id(f"test-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}", target.name)
    async with aiohttp.ClientSession() as session:
        answer = await post(session, target, msg_id, rendered)
    print(f"{target.name}: {_describe(answer)}")
    if answer.body and answer.status is not None:
        print(answer.body)
    return 0 if answer.ok else 1


def _describe(a: Answer) -> str:
    return f"HTTP {a.status}" if a.status is not None else f"no answer: {a.body}"


async def list_dead(settings: Settings, target: str | None) -> int:
    r = Redis.from_url(settings.redis.url, socket_timeout=10)
    try:
        letters = await outbox.dead_letters(r, settings.webhooks.dead_letter_stream, target)
    finally:
        await r.aclose()
    for d in letters:
        ev = orjson.loads(d.data)
        when = datetime.fromtimestamp(d.failed_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{d.id}  {d.target}  {when}Z  {ev.get('event')} {ev.get('id')}  attempts={d.attempts} "
              f"status={d.status or '-'}  {d.error[:120]}")
    print(f"{len(letters)} dead letter(s)")
    return 0


async def replay(settings: Settings, target: str | None, ids: list[str] | None) -> tuple[int, int]:
    """Re-send dead letters (all of ``target``'s, or ``ids``); returns (delivered, still failing)."""
    ws = settings.webhooks
    r = Redis.from_url(settings.redis.url, socket_timeout=10)
    ok = failed = 0
    try:
        letters = await outbox.dead_letters(r, ws.dead_letter_stream, target)
        if ids is not None:
            unknown = set(ids) - {d.id for d in letters}
            for i in sorted(unknown):
                print(f"{i}: no such dead letter", file=sys.stderr)
                failed += 1
            letters = [d for d in letters if d.id in set(ids)]
        async with aiohttp.ClientSession() as session:
            for d in letters:
                t = ws.targets.get(d.target)
                if t is None:
                    print(f"{d.id}: target {d.target} is no longer configured; kept", file=sys.stderr)
                    failed += 1
                    continue
                rendered = render(t.format, orjson.loads(d.data), target_name=t.name, chat_id=t.chat_id)
                answer = await post(session, t, d.webhook_id, rendered)
                if answer.ok:
                    await r.xdel(ws.dead_letter_stream, d.id)
                    ok += 1
                else:
                    failed += 1
                print(f"{d.id}  {d.target}: {_describe(answer)}{'; removed' if answer.ok else '; kept'}")
    finally:
        await r.aclose()
    print(f"replayed {ok}, still failing {failed}")
    return ok, failed
