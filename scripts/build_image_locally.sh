#!/usr/bin/env bash
# Build and smoke-test the Docker image with podman where no base image can be pulled and no Docker
# engine runs: bootstrap a Debian bookworm base (Python 3.11) with debootstrap, serve the local torch
# CPU wheel from a throwaway index, build, then run the image's start command with buildah.
#
#   sudo apt-get install -y podman buildah runc debootstrap
#   scripts/build_image_locally.sh /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl [MIRROR]
#
# MIRROR is the Debian archive debootstrap reads; by default the first one this host's own apt sources use
# for bookworm (/etc/apt/sources.list and /etc/apt/sources.list.d/), so the script works wherever apt works.
# The script stops exactly what it started (the wheel index, the container it runs), also when interrupted.
set -euo pipefail
WHEEL=${1:?path to a torch CPU wheel for Python 3.11}
MIRROR=${2:-${MIRROR:-}}
ROOTFS=${ROOTFS:-/tmp/layerscope-rootfs}
INDEX=${INDEX:-/tmp/layerscope-wheel-index}
PORT=${PORT:-8899}
APP_PORT=${APP_PORT:-8098}
HEALTH_WAIT_S=${HEALTH_WAIT_S:-180}
cd "$(dirname "$0")/.."

# ---------------------------------------------------------------- what this script started, stopped on any exit
index_pid=""
server_pgid=""
container=""
cleanup() {
    local status=$?
    if [ -n "$server_pgid" ] && kill -0 -- "-$server_pgid" 2>/dev/null; then
        kill -TERM -- "-$server_pgid" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 -- "-$server_pgid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$server_pgid" 2>/dev/null || true
    fi
    if [ -n "$index_pid" ]; then kill "$index_pid" 2>/dev/null || true; fi
    if [ -n "$container" ]; then buildah rm "$container" >/dev/null 2>&1 || true; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the Debian mirror, from this host's apt sources
host_mirror() {
    # deb822 files: a stanza whose Suites include bookworm; then one-line sources.
    local file
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             /Suites:[^\n]*bookworm([ \n]|$)/ && !/Suites:[^\n]*bookworm-security/ {
                 for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, parts, " "); print parts[2]; exit }
             }' "$file"
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$file"
    done
}
if [ -z "$MIRROR" ]; then
    MIRROR=$(host_mirror | head -n 1)
fi
if [ -z "$MIRROR" ]; then
    echo "no bookworm mirror in this host's apt sources: pass one as the second argument" >&2
    exit 2
fi

bootstrapped=no
if ! podman image exists localhost/bookworm-python:3.11; then
    bootstrapped=yes
    echo "bootstrapping Debian bookworm from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR"
    # Trust the same certificate authorities as this host (its package proxy may re-sign TLS).
    cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
    tar -C "$ROOTFS" -c . | podman import --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" - localhost/bookworm-python:3.11
fi

# ---------------------------------------------------------------- a throwaway index serving the local torch wheel
mkdir -p "$INDEX/torch"
cp "$WHEEL" "$INDEX/torch/"
name=$(basename "$WHEEL")
echo "<a href=\"${name}\">${name}</a>" > "$INDEX/torch/index.html"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$INDEX" >/dev/null 2>&1 &
index_pid=$!

podman build --format docker --isolation chroot --runtime runc --network host \
    --build-arg BASE_IMAGE=localhost/bookworm-python:3.11 \
    --build-arg "TORCH_CPU_INDEX=http://127.0.0.1:${PORT}/" \
    -t localhost/layerscope:cpu .
podman images localhost/layerscope:cpu
kill "$index_pid" 2>/dev/null || true
index_pid=""

# ---------------------------------------------------------------- smoke test
# runc cannot set rlimits inside some sandboxes: run the image's command through buildah's chroot instead,
# in a process group of its own, so that exactly this server (and nothing else on the machine) is stopped.
container=$(buildah from localhost/layerscope:cpu)
setsid buildah run --isolation chroot --env "LAYERSCOPE_PORT=${APP_PORT}" "$container" -- python3 -m app.cli serve &
server_pgid=$!

deadline=$((SECONDS + HEALTH_WAIT_S))
until curl -fsS "http://127.0.0.1:${APP_PORT}/api/health" >/dev/null 2>&1; do
    if ! kill -0 "$server_pgid" 2>/dev/null; then
        echo "the server exited before answering /api/health" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "no answer from /api/health within ${HEALTH_WAIT_S} s" >&2
        exit 1
    fi
    sleep 1
done
echo "health: $(curl -fsS "http://127.0.0.1:${APP_PORT}/api/health")"
params=$(curl -fsS -X POST "http://127.0.0.1:${APP_PORT}/api/summary" -H 'content-type: application/json' \
    -d '{"architecture": "alexnet"}' | python3 -c "import json, sys; print(json.load(sys.stdin)['totals']['params'])")
echo "AlexNet parameters: $params"
echo "explorer page: HTTP $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${APP_PORT}/")"
server_uids=$(pgrep -g "$server_pgid" -f "app.cli serve" | xargs -r ps -o uid=,comm= -p | awk '$2 != "buildah" { print $1 }' | sort -u | tr '\n' ' ')
echo "server process uid: ${server_uids:-unknown}"
echo "image size: $(podman image inspect localhost/layerscope:cpu --format '{{.Size}}' | awk '{ printf "%.2f GB", $1 / 1e9 }')"
echo "built and smoke-tested in $((SECONDS / 60)) min $((SECONDS % 60)) s (debootstrap included: ${bootstrapped})"
[ "$params" = "62378344" ]
