"""Captures as backtest sources: which venue and channel a capture is, its instrument -> symbol map, and
its records as a stream of (receive ns, frame or REST snapshot) sorted by receive time.

A capture made by ``scanner record`` (header ``"ns": true``) is in receive order as a whole: the recorder
appends every record from the one event loop as it arrives, so it is streamed in one pass. The cryptofeed
sample captures interleave their connections in blocks (the shared recordings jump back in time by up to
40 s between blocks), but each connection's records are in receive order: such a capture is read once to
learn its connections, then each relevant connection is streamed on its own (the file reopened) and the
connections are merged by receive time with :func:`heapq.merge`. Nothing is loaded whole.

The receive time is the record's ``ns`` (captures made by ``scanner record``) or its ``ts`` in ns.
A capture made by ``scanner record`` names its ``venue``, ``channel`` and ``symbols`` (instrument ->
unified symbol) in the header; for others (the cryptofeed sample captures) the exchange name, the channel
the recordings are known to use (:data:`scanner.bench.recordings.RECORDINGS`), the shipped market lists
and the capture's own symbol list (``config.l2_book``) stand in.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import zstandard

from scanner.bench.recordings import RECORDINGS
from scanner.capture import CaptureError, Connect, Header, Http, Recv, read_cryptofeed, record_ns
from scanner.replay import cached_markets, snapshot_inst
from scanner.venues import VENUES

# one record of a source: (receive ns, frame or REST snapshot body, instrument for a snapshot else None)
Event = tuple[int, "str | bytes", "str | None"]

# cryptofeed exchange name -> (venue, channel the shared recordings carry)
EXCHANGES: dict[str, tuple[str, str | None]] = {
    Path(rel).name.split(".")[0]: (venue, channel)
    for venue, rel, channel in RECORDINGS if rel.startswith("cryptofeed/")
}
CAPTURE_SUFFIXES = (".jsonl.zst", ".jsonl", ".zst")
_SEPARATORS = re.compile(r"[-_/]")


class SourceError(ValueError):
    """A file that cannot be backtested (not a capture, unknown exchange...): the message says which and why."""


@dataclass(slots=True)
class Source:
    """One capture: the venue and channel it is replayed as, its connections worth reading, its symbols."""

    path: Path
    venue: str
    channel: str
    conns: list[str]  # REST connections first (a snapshot goes before a frame of the same time)
    symbols: dict[str, str] = field(default_factory=dict)  # instrument -> unified symbol, as far as known
    fallback: dict[str, str] = field(default_factory=dict)  # the capture's own symbols, see fallback_symbols
    unmapped: set[str] = field(default_factory=set)  # instruments seen that map to no symbol
    in_order: bool = False  # the whole file is in receive order (scanner record): one pass, no per-connection merge

    @property
    def name(self) -> str:
        return self.path.name


def capture_files(inputs: list[Path]) -> list[Path]:
    """Directories expand to their capture files (``*.jsonl.zst``, ``*.jsonl``), sorted; files stay as given."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(CAPTURE_SUFFIXES))
            if not found:
                raise SourceError(f"{p}: no capture files (*.jsonl.zst, *.jsonl) in this directory")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise SourceError(f"{p}: no such file or directory")
    return out


def open_source(path: Path, venue_map: dict[str, str], channels: dict[str, str]) -> Source:
    """Read ``path`` once (streaming) to learn its venue, channel, connections and symbols.

    ``venue_map`` maps a file name (or its name without suffixes) to a venue and wins over the header;
    ``channels`` are the configured channels per venue, used when neither the header nor the known
    recordings say which channel the capture holds."""
    try:
        records = read_cryptofeed(path)
        header = next(records)
        assert isinstance(header, Header)
        venue, channel = _venue_channel(path, header, venue_map, channels)
        spec = VENUES[venue]
        addr: dict[str, str] = {}
        frames: list[str] = []
        rest: list[str] = []
        for rec in records:
            if isinstance(rec, Connect):
                addr[rec.conn] = rec.addr
            elif isinstance(rec, Recv):
                if rec.conn not in frames and (not spec.capture_url_part or spec.capture_url_part in
                                               addr.get(rec.conn, "")):
                    frames.append(rec.conn)
            elif isinstance(rec, Http) and rec.conn not in rest and snapshot_inst(spec, rec.url) is not None:
                rest.append(rec.conn)
    except CaptureError as exc:
        raise SourceError(f"{path}: not a capture: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    except zstandard.ZstdError as exc:
        raise SourceError(f"{path}: damaged zstd data: {exc}") from None
    return Source(path, venue, channel, rest + frames, symbol_map(venue, header), fallback_symbols(header),
                  in_order=header.extra.get("ns") is True)


def _venue_channel(path: Path, header: Header, venue_map: dict[str, str],
                   channels: dict[str, str]) -> tuple[str, str]:
    stem = path.name.split(".")[0]
    extra_venue, extra_channel = header.extra.get("venue"), header.extra.get("channel")
    known = EXCHANGES.get(header.exchange.upper())
    venue = venue_map.get(path.name) or venue_map.get(stem)
    if venue is None:
        if isinstance(extra_venue, str):
            venue = extra_venue
        elif known is not None:
            venue = known[0]
        elif header.exchange.lower() in VENUES:
            venue = header.exchange.lower()
    if venue is None:
        raise SourceError(f"{path}: unknown exchange {header.exchange!r}; name its venue with --venue-map "
                          f"{path.name}=VENUE (one of {', '.join(sorted(VENUES))})")
    if venue not in VENUES:
        raise SourceError(f"{path}: unknown venue {venue!r} (one of {', '.join(sorted(VENUES))})")
    spec = VENUES[venue]
    if isinstance(extra_channel, str):
        channel = extra_channel
    elif known is not None and known[0] == venue and known[1]:
        channel = known[1]
    else:
        channel = channels.get(venue) or spec.channels[0]
    if channel not in spec.channels:
        raise SourceError(f"{path}: {venue} has no book channel {channel!r} (one of {', '.join(spec.channels)})")
    return venue, channel


def _norm(s: str) -> str:
    return _SEPARATORS.sub("", s).upper().replace("XBT", "BTC")


def symbol_map(venue: str, header: Header) -> dict[str, str]:
    """Instrument id -> unified symbol: the header's ``symbols`` (``scanner record``), else the shipped market
    list (ids and stream ids), else the capture's own ``BASE-QUOTE`` symbols matched by letters (XBT = BTC)."""
    out: dict[str, str] = {}
    given = header.extra.get("symbols")
    if isinstance(given, dict):
        out.update({str(k): str(v) for k, v in given.items()})
    for m in cached_markets(VENUES[venue]):
        out.setdefault(m.venue_id, m.symbol)
        if m.stream_id:
            out.setdefault(m.stream_id, m.symbol)
    return out


def fallback_symbols(header: Header) -> dict[str, str]:
    """The capture's spot ``BASE-QUOTE`` book symbols keyed by their letters (``NKNUSDT`` -> ``NKN/USDT``)."""
    out: dict[str, str] = {}
    for sym in header.config.get("l2_book", []):
        parts = sym.split("-")
        if len(parts) == 2:
            out[_norm(sym)] = f"{parts[0]}/{parts[1]}"
    return out


def resolve(source: Source, inst: str) -> str | None:
    """The unified symbol of ``inst`` (remembered), or None (counted in ``source.unmapped``)."""
    sym = source.symbols.get(inst)
    if sym is None:
        sym = source.fallback.get(_norm(inst))
        if sym is None:
            source.unmapped.add(inst)
            return None
        source.symbols[inst] = sym
    return sym


def _conn_events(path: Path, conns: set[str], venue: str) -> Iterator[Event]:
    """The frames and REST snapshots of ``conns``, in file order."""
    spec = VENUES[venue]
    for rec in read_cryptofeed(path):
        if isinstance(rec, Header) or rec.conn not in conns:
            continue
        if isinstance(rec, Recv):
            yield record_ns(rec), rec.data, None
        elif isinstance(rec, Http):
            inst = snapshot_inst(spec, rec.url)
            if inst is not None:
                yield record_ns(rec), rec.data.encode(), inst


def events(source: Source) -> Iterator[Event]:
    """The source's frames and REST snapshots in receive order (ties: the earlier connection first)."""
    if source.in_order:
        return _conn_events(source.path, set(source.conns), source.venue)
    return heapq.merge(*(_conn_events(source.path, {c}, source.venue) for c in source.conns), key=itemgetter(0))
