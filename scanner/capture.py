"""Streaming readers for recorded websocket traffic. Pure: no network, no clock.

Two formats are understood, optionally zstd-compressed (detected by the zstd magic
number, not the file name):

* **cryptofeed capture** (``format: 2``): JSON Lines whose first line is
  ``{"t":"header","format":2,"exchange":...,"config":{...},"recorded":...}``; every later
  line is one ``connect`` / ``send`` / ``recv`` / ``http`` record (see
  ``../shared/recorded/README.md``). Each becomes a frozen dataclass; binary ``recv``
  frames (``b64``) are decoded to ``bytes`` (still gzip for HTX, as the venue sent them).
  Captures written by ``scanner record`` also carry ``ns``, the collector's exact receive
  time (``time.time_ns()``); records without it have ``ns == 0`` (use :func:`ts_to_ns`).
* **raw frames**: one websocket text frame per line, exactly as received, no wrapper.

:func:`detect_format` peeks at the first line; :func:`read_records` yields typed records
for either format without loading the file; :func:`read_lines` loads a file of raw
frames into a ``list[str]`` (what the replay benchmark times against).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson
import zstandard

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
Format = Literal["cryptofeed", "frames"]


class CaptureError(ValueError):
    """A capture line that does not follow the format; names the file and line."""


@dataclass(frozen=True, slots=True)
class Header:
    """First line of a cryptofeed capture."""

    exchange: str
    format: int
    config: dict[str, list[str]]  # channel -> symbols, as cryptofeed named them
    recorded: float  # unix seconds
    extra: dict[str, Any] = field(default_factory=dict)  # any other header keys


@dataclass(frozen=True, slots=True)
class Connect:
    ts: float  # local time, unix seconds
    conn: str
    addr: str
    ns: int = 0  # exact local time in ns (scanner record), 0 when the capture has none


@dataclass(frozen=True, slots=True)
class Send:
    ts: float
    conn: str
    data: str
    addr: str = ""
    ns: int = 0


@dataclass(frozen=True, slots=True)
class Recv:
    """One received websocket frame: ``str`` for text frames, ``bytes`` for binary ones."""

    ts: float
    conn: str
    data: str | bytes
    ns: int = 0

    @property
    def binary(self) -> bool:
        return isinstance(self.data, bytes)


@dataclass(frozen=True, slots=True)
class Http:
    """A REST response the recorder fetched (instrument lists, book snapshots)."""

    ts: float
    conn: str
    url: str
    data: str
    ns: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """One line of a raw-frames file; ``index`` is 0-based over non-empty lines."""

    index: int
    data: str


Record = Header | Connect | Send | Recv | Http | Frame


def ts_to_ns(ts: float) -> int:
    """Capture seconds → integer ns, rounded to the µs the recorder actually had."""
    return round(ts * 1_000_000) * 1000


def record_ns(rec: Connect | Send | Recv | Http) -> int:
    """A record's receive time in ns: its exact ``ns`` (``scanner record``), else its ``ts``."""
    return rec.ns or ts_to_ns(rec.ts)


def _open_binary(path: str | Path) -> IO[bytes]:
    """Open ``path`` for reading, transparently decompressing zstd."""
    fh = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    try:
        magic = fh.peek(4)[:4] if isinstance(fh, io.BufferedReader) else b""
        if magic == ZSTD_MAGIC:
            reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True,
                                                                           closefd=True)
            return reader
    except BaseException:
        fh.close()
        raise
    return fh


def iter_lines(path: str | Path) -> Iterator[str]:
    """Lines of a (possibly zstd) UTF-8 file, streamed, without line terminators.

    Only ``\\n`` (and a ``\\r`` before it) ends a line, so frames that carry U+2028 or
    other Unicode line breaks inside JSON strings stay whole."""
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as text:
        for line in text:
            if line.endswith("\n"):
                line = line[:-1]
                if line.endswith("\r"):
                    line = line[:-1]
            yield line


def read_lines(path: str | Path) -> list[str]:
    """All non-empty lines of a raw-frames file, fully in memory (decompressed if zstd)."""
    with _open_binary(path) as raw:
        text = raw.read().decode("utf-8")
    lines = text.split("\n")
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines if ln and ln != "\r"]


def _is_header(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(d, dict) and d.get("t") == "header" and "format" in d


def detect_format(path: str | Path) -> Format:
    """``"cryptofeed"`` when the first non-empty line is a capture header, else ``"frames"``."""
    for line in iter_lines(path):
        if line:
            return "cryptofeed" if _is_header(line) else "frames"
    return "frames"


def read_records(path: str | Path) -> Iterator[Record]:
    """Typed records of either format, streamed (the format is detected first)."""
    if detect_format(path) == "cryptofeed":
        yield from read_cryptofeed(path)
        return
    index = 0
    for line in iter_lines(path):
        if line:
            yield Frame(index, line)
            index += 1


def read_cryptofeed(path: str | Path) -> Iterator[Header | Connect | Send | Recv | Http]:
    """Records of a cryptofeed capture: the :class:`Header`, then one record per line."""
    name = Path(path).name
    lines = iter_lines(path)
    first = next(lines, "")
    try:
        yield _header(_object(first))
    except (CaptureError, orjson.JSONDecodeError) as exc:
        raise CaptureError(f"{name}:1: not a cryptofeed capture header: {exc}") from None
    for lineno, line in enumerate(lines, start=2):
        if not line:
            continue
        try:
            yield _record(_object(line))
        except (CaptureError, orjson.JSONDecodeError, binascii.Error) as exc:
            raise CaptureError(f"{name}:{lineno}: {exc}") from None


def _object(line: str) -> dict[str, Any]:
    d = orjson.loads(line)
    if not isinstance(d, dict):
        raise CaptureError(f"expected a JSON object, got {type(d).__name__}")
    return d


def _get(d: dict[str, Any], key: str, typ: type[Any]) -> Any:
    v = d.get(key)
    if typ is float and type(v) is int:
        return float(v)
    if not isinstance(v, typ) or (typ is not bool and isinstance(v, bool)):
        raise CaptureError(f"{d.get('t')!r} record: {key!r} should be {typ.__name__}, got {type(v).__name__}")
    return v


def _header(d: dict[str, Any]) -> Header:
    if d.get("t") != "header":
        raise CaptureError(f"first record is {d.get('t')!r}, not 'header'")
    config = d.get("config") or {}
    if not isinstance(config, dict) or not all(isinstance(v, list) for v in config.values()):
        raise CaptureError("header 'config' should map channels to symbol lists")
    known = {"t", "exchange", "format", "config", "recorded"}
    return Header(
        exchange=_get(d, "exchange", str),
        format=_get(d, "format", int),
        config={str(k): [str(s) for s in v] for k, v in config.items()},
        recorded=_get(d, "recorded", float),
        extra={k: v for k, v in d.items() if k not in known},
    )


def _record(d: dict[str, Any]) -> Connect | Send | Recv | Http:
    kind = d.get("t")
    if kind not in ("recv", "http", "send", "connect"):
        raise CaptureError(f"unknown record kind {kind!r}")
    ts, conn = _get(d, "ts", float), _get(d, "conn", str)
    ns = _get(d, "ns", int) if "ns" in d else 0
    if kind == "recv":
        if "b64" in d:
            return Recv(ts, conn, base64.b64decode(_get(d, "b64", str), validate=True), ns)
        return Recv(ts, conn, _get(d, "data", str), ns)
    if kind == "http":
        return Http(ts, conn, _get(d, "url", str), _get(d, "data", str), ns)
    if kind == "send":
        addr = d.get("addr", "")
        return Send(ts, conn, _get(d, "data", str), addr if isinstance(addr, str) else "", ns)
    return Connect(ts, conn, _get(d, "addr", str), ns)
