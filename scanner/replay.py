"""``scanner replay``: feed recorded frames through a venue's real parser and synced books.

Input is either a file of raw websocket frames (one per line, optionally zstd) or a
cryptofeed capture (``.jsonl.zst``; see :mod:`scanner.capture`). Every frame goes through
``VENUES[venue].make_parser(channel)`` and one ``make_book(channel)`` per instrument, with
all validation on: checksums (when non-zero), the sequence chain, crossed books. A
:class:`~scanner.book.errors.BookError` is counted by reason; the book has then dropped
itself and buffers later diffs until a snapshot arrives. From a capture, only ``recv``
records are frames; ``http`` records of the venue's REST book snapshot URL are fed through
``parse_snapshot`` into ``SyncedBook.on_snapshot`` at their place in time, which bridges
them to the buffered diffs.

The engine (:class:`Replayer`, :func:`replay_frames`, :func:`replay_capture`) is pure;
:func:`main` adds the benchmark protocol of ``../shared/bench/README.md``: frames are in
memory as ``str`` before the clock starts, each run starts from fresh state (a new parser and books,
made with the venue's markets loaded once, before the clock starts), ``gc.collect()``
runs first, ``us_per_msg`` is loop time over all frames (acks included), the median of
``--runs`` is reported, and one JSON line is printed. An input shorter than ``--min-run-lines``
is replayed several times per run, each time from fresh state made before its clock starts.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson

from scanner.book.errors import BookError, ParseError
from scanner.book.sync import SyncedBook
from scanner.capture import Connect, Http, Recv, detect_format, read_cryptofeed, read_lines, record_ns
from scanner.markets import Market, shipped_markets_dir
from scanner.model import BookMsg, Control
from scanner.venues import VENUES
from scanner.venues.spec import VenueSpec

# Reasons reported even when zero, so the JSON line always has the same keys.
ERROR_REASONS = ("seq_gap", "checksum", "crossed", "snapshot_too_old", "bad_level")
_PLACEHOLDER = "REPLAYINSTPLACEHOLDER"
MARKETS_DIR = shipped_markets_dir()


@dataclass(slots=True)
class ReplayResult:
    """Books and counters after a replay."""

    venue: str
    channel: str
    books: dict[str, SyncedBook] = field(default_factory=dict)
    frames: int = 0  # raw frames given to the parser
    book_msgs: int = 0  # BookMsg the parser produced
    applied: int = 0  # BookMsg that changed a valid book (on_message/on_snapshot returned True)
    checksums_verified: int = 0  # applied BookMsg whose non-zero checksum the book verified
    controls: int = 0  # acks, pongs, ignored channels, notices
    snapshots: int = 0  # REST snapshots fed from a capture
    parse_errors: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_REASONS, 0))
    error_log: list[tuple[str, str, str]] = field(default_factory=list)  # (inst, reason, message)

    def invalid(self) -> list[str]:
        """Instruments whose book is not valid now (waiting for a snapshot)."""
        return sorted(inst for inst, b in self.books.items() if not b.valid)

    def top(self) -> dict[str, list[str]]:
        """``inst -> [bid_px, bid_sz, ask_px, ask_sz]`` as the book holds them, valid books only."""
        out: dict[str, list[str]] = {}
        for inst in sorted(self.books):
            sb = self.books[inst]
            bid, ask = sb.book.bids.best(), sb.book.asks.best()
            if sb.valid and bid is not None and ask is not None:
                out[inst] = [bid[0], bid[1], ask[0], ask[1]]
        return out

    def summary(self) -> dict[str, object]:
        return {
            "venue": self.venue,
            "channel": self.channel,
            "frames": self.frames,
            "book_msgs": self.book_msgs,
            "applied": self.applied,
            "checksums_verified": self.checksums_verified,
            "controls": self.controls,
            "snapshots": self.snapshots,
            "errors": dict(self.errors),
            "parse_errors": self.parse_errors,
            "invalid": self.invalid(),
            "top": self.top(),
        }


@dataclass(frozen=True, slots=True)
class RestSnapshot:
    """A REST book snapshot taken from a capture's ``http`` record."""

    inst: str
    body: bytes
    recv_ns: int


class Replayer:
    """Replay state for one venue/channel: a parser, books per instrument, counters."""

    __slots__ = ("channel", "parser", "result", "spec")

    def __init__(self, venue: str, channel: str, markets: Sequence[Market] | None = None) -> None:
        """``markets`` default to the venue's cached market list in ``configs/markets/`` (if any)."""
        self.spec: VenueSpec = VENUES[venue]
        self.channel = channel
        self.parser = self.spec.make_parser(channel, cached_markets(self.spec) if markets is None else markets)
        self.result = ReplayResult(venue, channel)

    def feed(self, frames: Sequence[str | bytes], recv_ns: int = 0, stamps: Sequence[int] | None = None) -> None:
        """Parse and apply frames in order, received at ``recv_ns`` or at ``stamps[i]`` each. This is the
        timed loop of ``scanner replay``: nothing is allocated per frame beyond what the parser and books
        make (counters aside; the frame count is ``len(frames)``)."""
        parse = self.parser.parse
        make_book: Callable[[str], SyncedBook] = self.spec.make_book
        channel = self.channel
        res = self.result
        books, errors = res.books, res.errors
        n_msgs = n_applied = n_crc = n_ctl = n_perr = 0
        item: BookMsg | Control | None = None
        for line, ns in zip(frames, repeat(recv_ns) if stamps is None else stamps, strict=False):
            try:
                for item in parse(line, ns):
                    if type(item) is BookMsg:
                        n_msgs += 1
                        book = books.get(item.inst)
                        if book is None:
                            book = books[item.inst] = make_book(channel)
                        if book.on_message(item):
                            n_applied += 1
                            if item.checksum and book.checksum is not None:
                                n_crc += 1
                    else:
                        n_ctl += 1
                        if type(item) is Control and item.kind == "resync":
                            self.stream_resync(item)
            except BookError as exc:
                # The SyncedBook has invalidated itself: later diffs buffer until a snapshot.
                errors[exc.reason] = errors.get(exc.reason, 0) + 1
                res.error_log.append((item.inst if item is not None else "", exc.reason, str(exc)))
            except ParseError:
                n_perr += 1
        res.frames += len(frames)
        res.book_msgs += n_msgs
        res.applied += n_applied
        res.checksums_verified += n_crc
        res.controls += n_ctl
        res.parse_errors += n_perr

    def stream_resync(self, ctl: Control) -> None:
        """The parser says the stream lost data (Coinbase's per-connection ``sequence_num`` skipped):
        as the collector does, drop ``ctl.inst``'s book, or every book when it is "", and count one
        error under ``ctl.detail``. The books then buffer diffs until their next snapshot."""
        res = self.result
        for inst, book in res.books.items():
            if not ctl.inst or inst == ctl.inst:
                book.invalidate()
        reason = ctl.detail or "stream_gap"
        res.errors[reason] = res.errors.get(reason, 0) + 1
        res.error_log.append((ctl.inst, reason, "the stream lost data"))

    def feed_snapshot(self, inst: str, body: bytes, recv_ns: int) -> None:
        """Load a REST snapshot into ``inst``'s book, bridging the diffs it buffered."""
        parse_snapshot = self.spec.parse_snapshot
        res = self.result
        if parse_snapshot is None:
            raise ValueError(f"{self.spec.name} has no REST snapshots")
        try:
            snap = parse_snapshot(inst, body, recv_ns)
        except ParseError:
            res.parse_errors += 1
            return
        book = res.books.get(inst)
        if book is None:
            book = res.books[inst] = self.spec.make_book(self.channel)
        res.snapshots += 1
        try:
            if book.on_snapshot(snap):
                res.applied += 1
        except BookError as exc:
            res.errors[exc.reason] = res.errors.get(exc.reason, 0) + 1
            res.error_log.append((inst, exc.reason, str(exc)))

    def play(self, events: Iterable[Recv | RestSnapshot]) -> None:
        """Feed capture events (frames and REST snapshots) in the given order."""
        self.play_segments(segments(events))

    def play_segments(self, segs: Sequence[Segment]) -> None:
        """:meth:`play` of events already grouped by :func:`segments` (the timed loop for captures)."""
        for seg in segs:
            if isinstance(seg, RestSnapshot):
                self.feed_snapshot(seg.inst, seg.body, seg.recv_ns)
            else:
                self.feed(seg[0], stamps=seg[1])


Segment = RestSnapshot | tuple[list[str | bytes], list[int]]


def segments(events: Iterable[Recv | RestSnapshot]) -> list[Segment]:
    """Capture events with each run of frames between two snapshots as one (frames, receive ns) pair."""
    out: list[Segment] = []
    datas: list[str | bytes] = []
    stamps: list[int] = []
    for ev in events:
        if isinstance(ev, RestSnapshot):
            if datas:
                out.append((datas, stamps))
                datas, stamps = [], []
            out.append(ev)
        else:
            datas.append(ev.data)
            stamps.append(record_ns(ev))
    if datas:
        out.append((datas, stamps))
    return out


def cached_markets(spec: VenueSpec, cache_dir: Path = MARKETS_DIR) -> list[Market]:
    """The venue's markets from the shipped cache; [] when there is none or it is unreadable."""
    try:
        return spec.parse_instruments((cache_dir / f"{spec.name}.json").read_bytes())
    except (OSError, ParseError):
        return []


def replay_frames(venue: str, channel: str, frames: Iterable[str | bytes]) -> ReplayResult:
    """Raw frames → books and counters, from fresh state."""
    r = Replayer(venue, channel)
    r.feed(frames if isinstance(frames, Sequence) else list(frames))
    return r.result


def snapshot_inst(spec: VenueSpec, url: str) -> str | None:
    """The instrument when ``url`` is ``spec``'s REST book snapshot request, else None.

    The URL shape comes from ``spec.snapshot_request``, so no venue is named here; the
    host and the other query parameters (``limit``, ``sz``) may differ."""
    if spec.snapshot_request is None:
        return None
    want = urlsplit(spec.snapshot_request(spec.rest_url, _PLACEHOLDER).url)
    keys = [k for k, v in parse_qs(want.query).items() if v == [_PLACEHOLDER]]
    got = urlsplit(url)
    if not keys or (got.path != want.path and got.path not in spec.snapshot_alt_paths):
        return None
    vals = parse_qs(got.query).get(keys[0])
    return vals[0] if vals else None


def capture_events(venue: str, path: str | Path) -> list[Recv | RestSnapshot]:
    """A cryptofeed capture as replay events: ``recv`` frames in file order, with the
    venue's REST book snapshots merged in by timestamp (ties: snapshot first). With
    ``spec.capture_url_part`` set, frames of connections to other URLs are left out."""
    spec = VENUES[venue]
    frames: list[Recv] = []
    snaps: list[RestSnapshot] = []
    url_part = spec.capture_url_part
    conn_url: dict[str, str] = {}  # connection -> URL, from its connect record
    for rec in read_cryptofeed(path):
        if isinstance(rec, Recv):
            if not url_part or url_part in conn_url.get(rec.conn, ""):
                frames.append(rec)
        elif isinstance(rec, Connect):
            conn_url[rec.conn] = rec.addr
        elif isinstance(rec, Http):
            inst = snapshot_inst(spec, rec.url)
            if inst is not None:
                snaps.append(RestSnapshot(inst, rec.data.encode(), record_ns(rec)))
    snaps.sort(key=lambda s: s.recv_ns)
    events: list[Recv | RestSnapshot] = []
    i = 0
    for fr in frames:
        ns = record_ns(fr)
        while i < len(snaps) and snaps[i].recv_ns <= ns:
            events.append(snaps[i])
            i += 1
        events.append(fr)
    events.extend(snaps[i:])
    return events


def replay_capture(venue: str, channel: str, path: str | Path) -> ReplayResult:
    """A cryptofeed capture → books and counters, from fresh state."""
    r = Replayer(venue, channel)
    r.play(capture_events(venue, path))
    return r.result


# ---------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="raw frames, one per line (optionally .zst), or a cryptofeed capture")
    p.add_argument("--venue", required=True, choices=sorted(VENUES), help="venue whose parser and books to use")
    p.add_argument("--channel", default=None,
                   help="book channel (default: the venue's first, e.g. okx=books, binance=depth@100ms)")
    p.add_argument("--runs", type=int, default=3, help="timed runs; the median is reported (default 3)")
    p.add_argument("--warmup-lines", type=int, default=50_000,
                   help="untimed warm-up over this many frames first, as the peer harness does; a shorter input "
                   "is replayed until it has fed that many (0: none)")
    p.add_argument("--min-run-lines", type=int, default=2_000,
                   help="an input shorter than this is replayed several times per timed run, each time from fresh "
                        "state made before its clock starts, until the run has fed this many frames (default 2000)")
    p.add_argument("--levels", action="store_true",
                   help="also count the price levels in the input (untimed) and report us_per_level")
    p.add_argument("--strict", action="store_true", help="exit 1 if any book or parse error occurred")


def count_levels(venue: str, channel: str, path: Path) -> int:
    """Price levels the input carries (every BookMsg row and REST snapshot row), counted in a
    separate untimed pass: the benchmark's per-level figure divides loop time by this."""
    spec = VENUES[venue]
    parser = spec.make_parser(channel, cached_markets(spec))
    n = 0

    def frame(data: str | bytes, recv_ns: int) -> None:
        nonlocal n
        try:
            for item in parser.parse(data, recv_ns):
                if type(item) is BookMsg:
                    n += len(item.bids) + len(item.asks)
        except ParseError:
            pass

    if detect_format(path) == "frames":
        for line in read_lines(path):
            frame(line, 0)
        return n
    for ev in capture_events(venue, path):
        if isinstance(ev, RestSnapshot):
            if spec.parse_snapshot is not None:
                try:
                    snap = spec.parse_snapshot(ev.inst, ev.body, ev.recv_ns)
                except ParseError:
                    continue
                n += len(snap.bids) + len(snap.asks)
        else:
            frame(ev.data, record_ns(ev))
    return n


def _runners(venue: str, path: Path, warmup_lines: int
             ) -> tuple[int, Callable[[Replayer], None], Callable[[Replayer], None]]:
    """Load the input into memory (untimed) and return (frame count, full run, warm-up run); each run
    feeds a fresh :class:`Replayer` made before the clock starts."""
    if detect_format(path) == "frames":
        lines: list[str] = read_lines(path)
        warm = lines[: max(0, warmup_lines)]
        return len(lines), lambda r: r.feed(lines), lambda r: r.feed(warm)
    events = capture_events(venue, path)
    segs, warm_segs = segments(events), segments(events[: max(0, warmup_lines)])
    return (sum(1 for e in events if isinstance(e, Recv)), lambda r: r.play_segments(segs),
            lambda r: r.play_segments(warm_segs))


def main(args: argparse.Namespace) -> int:
    venue: str = args.venue
    channel: str = args.channel or VENUES[venue].channels[0]
    path: Path = args.file
    if not path.is_file():
        print(f"replay: no such file: {path}", file=sys.stderr)
        return 2
    n, run, warmup = _runners(venue, path, args.warmup_lines)
    markets = cached_markets(VENUES[venue])  # set-up, not per-frame work: outside the clock, like the input
    if args.warmup_lines > 0:
        # at least --warmup-lines frames: an input shorter than that is replayed until it has been
        # (a 3-frame recording warmed by 3 frames times cold caches, not the parser)
        for _ in range(min(1000, -(-args.warmup_lines // max(n, 1)))):
            warmup(Replayer(venue, channel, markets))
    runs_ns: list[float] = []
    res = ReplayResult(venue, channel)
    # a short input (Hyperliquid's recording is 3 frames, ~60 us) is replayed several times per run, so that a
    # run is not one timer read and the cache misses right after gc.collect(); each replay from fresh state
    reps = max(1, -(-getattr(args, "min_run_lines", 0) // max(n, 1)))
    for _ in range(max(1, args.runs)):
        gc.collect()
        spent = 0
        for _ in range(reps):
            replayer = Replayer(venue, channel, markets)  # fresh parser and books for every replay
            t0 = time.perf_counter_ns()
            run(replayer)
            spent += time.perf_counter_ns() - t0
        runs_ns.append(spent / reps)
        res = replayer.result
    per_msg = [ns / 1000 / max(n, 1) for ns in runs_ns]
    median = statistics.median(per_msg)
    want_levels = bool(getattr(args, "levels", False))
    levels = count_levels(venue, channel, path) if want_levels else 0
    out: dict[str, object] = {
        "us_per_msg": round(median, 4),
        "msgs_per_s": round(1e6 / median) if median > 0 else 0,
        "runs_us": [round(x, 4) for x in per_msg],
        **({"levels": levels, "us_per_level": round(median * n / levels, 4) if levels else None}
           if want_levels else {}),
        **res.summary(),
    }
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    sys.stdout.flush()
    failed = res.parse_errors > 0 or any(res.errors.values())
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    _ap = argparse.ArgumentParser(prog="python -m scanner.replay", description=__doc__)
    add_arguments(_ap)
    sys.exit(main(_ap.parse_args()))
