#!/usr/bin/env bash
# Idempotent set-up of everything `make bench` needs.
#
# - Debian programs used as load generators and C reference servers
#   (redis-benchmark, redis-server, wrk, nginx): installed with apt-get only
#   when one of them is missing, after an `apt-get update`.
# - The project's `bench` extra (uvloop, twisted, gevent, psutil, matplotlib)
#   installed into the project's .venv, which is created if it does not exist.
#
# Safe to run any number of times, from any directory, from a clean clone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

# program -> Debian package that provides it
declare -A PROVIDER=(
    [redis-benchmark]=redis-tools
    [redis-cli]=redis-tools
    [redis-server]=redis-server
    [wrk]=wrk
    [nginx]=nginx
)

missing=()
for prog in "${!PROVIDER[@]}"; do
    # nginx lives in /usr/sbin, which may not be on a non-root PATH.
    if ! command -v "$prog" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$prog" ]; then
        missing+=("${PROVIDER[$prog]}")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    # de-duplicate package names
    mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "bench/install.sh: installing ${packages[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    # --no-install-recommends keeps the image small; the packages above pull
    # in everything they need to run.  policy-rc.d-style service start-ups by
    # the packages are harmless: run.py starts its own instances on its own ports.
    $SUDO apt-get install -y -q --no-install-recommends "${packages[@]}"
    # Debian starts the packaged redis-server / nginx services where an init
    # system runs; they listen on 6379 / 80 and would only add noise to the
    # machine during benchmarks, so stop them if they are running.
    if command -v service >/dev/null 2>&1; then
        $SUDO service redis-server stop >/dev/null 2>&1 || true
        $SUDO service nginx stop >/dev/null 2>&1 || true
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

# pip is itself idempotent; skip the network round-trip when everything imports.
if ! "$VENV/bin/python" -c 'import uvloop, twisted, gevent, psutil, matplotlib, muxserver' \
        >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[bench]"
fi

echo "bench/install.sh: ready (venv: $VENV)"
