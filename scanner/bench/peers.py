"""OKX ``books`` peer benchmark: ccxt.pro, cryptofeed and orjson against ``scanner replay``.

Drives the shared harness in ``../shared/bench`` (read its README.md) from the project:

1. creates a separate venv for the peers (``.venv-peers``: ccxt==4.5.90, cryptofeed==2.4.1,
   orjson, uvloop) unless it already imports them;
2. generates the deterministic bench file with ``gen_okx_books.py`` into ``.bench/``
   (git-ignored) unless a file with a matching ``expected_top.json`` sidecar is there;
3. runs ``peers_okx.py`` with ``--project-cmd`` pointing at this project's replay, which
   reports its own timing and final top of book for the harness to check.

Usage: ``.venv/bin/python -m scanner.bench.peers [--runs 3] [--only ...] [-- extra harness args]``.
Standard library only; the peers never run in the project's venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEER_PACKAGES = ("ccxt==4.5.90", "cryptofeed==2.4.1", "orjson", "uvloop")


def run(cmd: list[str], **kw: object) -> int:
    print("+", shlex.join(cmd), flush=True)
    return subprocess.call(cmd, **kw)  # type: ignore[arg-type]


def ensure_peers_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import ccxt, cryptofeed, orjson, uvloop; assert ccxt.__version__ == '4.5.90'"]
    if py.exists() and subprocess.call(probe, stderr=subprocess.DEVNULL) == 0:
        return py
    if run([sys.executable, "-m", "venv", str(venv)]) != 0:
        raise SystemExit(f"could not create {venv}")
    if run([str(py), "-m", "pip", "install", "-q", *PEER_PACKAGES]) != 0:
        raise SystemExit(f"pip install into {venv} failed")
    return py


def file_sha256(path: Path) -> str:
    """The file's sha256, as the shared harness writes it into expected_top.json."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def ensure_data(py: Path, bench_dir: Path, data_dir: Path) -> tuple[Path, Path]:
    data, expected = data_dir / "okx_books.jsonl", data_dir / "expected_top.json"
    if data.exists() and expected.exists():
        try:
            if json.loads(expected.read_text()).get("sha256") == file_sha256(data):
                return data, expected
        except (OSError, ValueError):
            pass
    data_dir.mkdir(parents=True, exist_ok=True)
    gen = [str(py), str(bench_dir / "gen_okx_books.py"), "--out", str(data), "--expected", str(expected)]
    if run(gen) != 0:
        raise SystemExit("gen_okx_books.py failed")
    return data, expected


def project_cmd(root: Path) -> str:
    """``scanner replay`` through the CLI; ``python -m scanner.replay`` if the CLI cannot load."""
    scanner = root / ".venv" / "bin" / "scanner"
    ok = scanner.exists() and subprocess.call(
        [str(scanner), "replay", "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    if ok:
        return f"{shlex.quote(str(scanner))} replay --venue okx {{file}}"
    print("note: `scanner replay` does not start (see scanner/cli.py); using python -m scanner.replay",
          file=sys.stderr)
    py = root / ".venv" / "bin" / "python"
    return f"{shlex.quote(str(py))} -m scanner.replay --venue okx {{file}}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared folder (../shared)")
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".bench", help="where the bench file goes")
    ap.add_argument("--peers-venv", type=Path, default=ROOT / ".venv-peers")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=None, help="harness --only (project always runs)")
    ap.add_argument("--project-cmd", default=None, help="override the project command ({file} is replaced)")
    ap.add_argument("extra", nargs="*", help="more peers_okx.py arguments (after --)")
    args = ap.parse_args(argv)
    bench_dir = args.shared / "bench"
    if not (bench_dir / "peers_okx.py").exists():
        raise SystemExit(f"no peer harness at {bench_dir}")
    py = ensure_peers_venv(args.peers_venv)
    data, expected = ensure_data(py, bench_dir, args.data_dir)
    cmd = [str(py), str(bench_dir / "peers_okx.py"), "--file", str(data), "--expected", str(expected),
           "--runs", str(args.runs), "--project-cmd", args.project_cmd or project_cmd(ROOT)]
    if args.only:
        cmd += ["--only", args.only]
    return run(cmd + list(args.extra), cwd=str(bench_dir))


if __name__ == "__main__":
    sys.exit(main())
