"""``scanner replay`` on every venue's real recording in ../shared/recorded/, one table.

Each venue runs in its own ``python -m scanner.replay`` process (fresh interpreter, the same
protocol as the peer benchmark: frames in memory first, warm-up, median of ``--runs``), so
the figures are comparable with ``make bench-replay``. The ccxt test extract (Hyperliquid)
is turned into a raw-frames file first. MEXC has no recording (its protobuf stream postdates
the public captures); its parser is measured in its own tests' benchmark note.

    python -m scanner.bench.recordings [--runs 5] [--recorded ../shared/recorded]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# venue, file under recorded/, channel (None: the venue's default)
RECORDINGS: list[tuple[str, str, str | None]] = [
    ("okx", "cryptofeed/OKX.jsonl.zst", "books"),
    ("binance", "cryptofeed/BINANCE.jsonl.zst", None),
    ("htx", "cryptofeed/HUOBI.jsonl.zst", "depth.step0"),
    ("bybit", "cryptofeed/BYBIT.jsonl.zst", "orderbook.200"),
    ("gate", "cryptofeed/GATEIO.jsonl.zst", "order_book_update"),
    ("kucoin", "cryptofeed/KUCOIN.jsonl.zst", None),
    ("kraken", "cryptofeed/KRAKEN.jsonl.zst", "book-v1"),
    ("coinbase", "cryptofeed/COINBASE.jsonl.zst", None),
    ("bitget", "cryptofeed/BITGET.jsonl.zst", None),
    ("hyperliquid", "ccxt/hyperliquid.watchOrderBook.extract.json", None),
]


def ccxt_frames(path: Path, out: Path) -> Path:
    """A ccxt ``*.extract.json`` → raw frames, one compact JSON message per line."""
    data = json.loads(path.read_text())
    lines = [json.dumps(msg, separators=(",", ":"))
             for case in data["methods"]["watchOrderBook"] for msg in case.get("messages", [])]
    out.write_text("\n".join(lines) + "\n")
    return out


def replay(venue: str, path: Path, channel: str | None, runs: int) -> dict[str, object]:
    cmd = [sys.executable, "-m", "scanner.replay", str(path), "--venue", venue, "--runs", str(runs),
           "--warmup-lines", "2000", "--levels"]
    if channel:
        cmd += ["--channel", channel]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--recorded", type=Path, default=ROOT.parent / "shared" / "recorded")
    args = ap.parse_args()
    print(f"{'venue':<12} {'channel':<20} {'frames':>7} {'levels':>8} {'applied':>8} {'crc ok':>7} {'errors':>6} "
          f"{'us/msg':>8} {'us/level':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for venue, rel, channel in RECORDINGS:
            path = args.recorded / rel
            if not path.exists():
                print(f"{venue:<12} missing recording {path}")
                continue
            if rel.endswith(".extract.json"):
                path = ccxt_frames(path, Path(tmp) / f"{venue}.frames")
            r = replay(venue, path, channel, args.runs)
            if "error" in r:
                print(f"{venue:<12} FAILED: {r['error']}")
                continue
            errors = r.get("errors")
            n_err = sum(errors.values()) if isinstance(errors, dict) else 0
            print(f"{venue:<12} {r['channel']!s:<20} {r['frames']:>7} {r['levels']:>8} {r['applied']:>8} "
                  f"{r['checksums_verified']:>7} {n_err:>6} {r['us_per_msg']:>8} {r['us_per_level']:>8}", flush=True)
            print(json.dumps({"bench": "replay", "venue": venue, "us_per_msg": r["us_per_msg"], "frames": r["frames"],
                              "levels": r["levels"], "us_per_level": r["us_per_level"],
                              "applied": r["applied"], "checksums_verified": r["checksums_verified"],
                              "errors": n_err}), flush=True)


if __name__ == "__main__":
    main()
