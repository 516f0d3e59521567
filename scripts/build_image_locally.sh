#!/usr/bin/env bash
# Build and smoke-test the Docker image with podman where no base image can be pulled and no Docker
# engine runs: bootstrap a Debian bookworm base (Python 3.11) with debootstrap, serve the local torch
# CPU wheel from a throwaway index, build, then run the image's start command with buildah.
#
#   sudo apt-get install -y podman buildah runc debootstrap
#   scripts/build_image_locally.sh /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
set -euo pipefail
WHEEL=${1:?path to a torch CPU wheel for Python 3.11}
ROOTFS=${ROOTFS:-/tmp/layerscope-rootfs}
INDEX=${INDEX:-/tmp/layerscope-wheel-index}
PORT=${PORT:-8899}
cd "$(dirname "$0")/.."

if ! podman image exists localhost/bookworm-python:3.11; then
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" http://deb.debian.org/debian
    # Trust the same certificate authorities as this host (its package proxy may re-sign TLS).
    cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
    tar -C "$ROOTFS" -c . | podman import --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" - localhost/bookworm-python:3.11
fi

mkdir -p "$INDEX/torch"
cp "$WHEEL" "$INDEX/torch/"
name=$(basename "$WHEEL")
echo "<a href=\"${name}\">${name}</a>" > "$INDEX/torch/index.html"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$INDEX" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT

podman build --format docker --isolation chroot --runtime runc --network host \
    --build-arg BASE_IMAGE=localhost/bookworm-python:3.11 \
    --build-arg "TORCH_CPU_INDEX=http://127.0.0.1:${PORT}/" \
    -t localhost/layerscope:cpu .
podman images localhost/layerscope:cpu

# runc cannot set rlimits inside some sandboxes: run the image's command through buildah's chroot instead.
container=$(buildah from localhost/layerscope:cpu)
buildah run --isolation chroot --env LAYERSCOPE_PORT=8098 "$container" -- python3 -m app.cli serve &
sleep 20
curl -fsS http://127.0.0.1:8098/api/health && echo
curl -fsS -X POST http://127.0.0.1:8098/api/summary -H 'content-type: application/json' \
    -d '{"architecture": "alexnet"}' | python3 -c "import json, sys; print(json.load(sys.stdin)['totals']['params'])"
pkill -TERM -f "/opt/venv/bin/python3 -m app.cli serve" || true
sleep 3
buildah rm "$container" >/dev/null
