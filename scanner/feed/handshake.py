"""Connect handshakes: venues that hand out the websocket URL per connection (KuCoin's
``bullet-public`` token). The venue module parses the response; this does the HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from scanner.book.errors import ParseError
from scanner.config import VenueSettings
from scanner.venues.spec import ConnectInfo, VenueSpec

Resolver = Callable[[], Awaitable[ConnectInfo]]


class HandshakeFailed(ConnectionError):
    """The venue did not give us a websocket endpoint; the connection loop backs off and retries."""


def connect_resolver(spec: VenueSpec, settings: VenueSettings) -> Resolver:
    """An async function that POSTs the venue's connect endpoint and returns where to connect."""
    parse = spec.parse_connect
    if not spec.connect_path or parse is None:
        raise ValueError(f"{spec.name} has no connect handshake")
    url = settings.rest_url + spec.connect_path

    async def resolve() -> ConnectInfo:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                    session.post(url) as resp:
                status, body = resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise HandshakeFailed(f"{spec.name}: POST {url} failed: {exc}") from None
        if status != 200:  # outside the try: HandshakeFailed is an OSError, which it would re-wrap
            raise HandshakeFailed(f"{spec.name}: POST {url} answered HTTP {status}")
        try:
            return parse(body, settings.ws_url)
        except ParseError as exc:
            raise HandshakeFailed(f"{spec.name}: unusable connect response: {exc}") from None

    return resolve
