#!/usr/bin/env bash
# Builds the scanner image with podman (make image). No public registry is reachable here, so the base
# image is the local one ../shared/tools/container-base.sh builds (needs root; once). Elsewhere set
# BASE_IMAGE=python:3.12-slim (the Dockerfile's default) or build with docker:
#   docker build -f deploy/Dockerfile -t scanner:local .
#   usage: deploy/image-build.sh            env: IMAGE (scanner:local), BASE_IMAGE, PODMAN_FLAGS
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-scanner:local}
base=${BASE_IMAGE:-localhost/python-base:bookworm}
flags=${PODMAN_FLAGS:---runtime runc --cgroup-manager cgroupfs}
if [ "$base" = localhost/python-base:bookworm ] && ! podman image exists "$base" 2>/dev/null; then
  ../shared/tools/container-base.sh "$base"
fi
# shellcheck disable=SC2086
podman $flags build --format docker --network host -v /etc/ssl/certs:/etc/ssl/certs:ro \
  --build-arg BASE_IMAGE="$base" -f deploy/Dockerfile -t "$image" .
# shellcheck disable=SC2086
podman $flags image inspect "$image" --format '{{.Size}}' | awk -v i="$image" '{printf "%s: %.0f MB\n", i, $1/1e6}'
