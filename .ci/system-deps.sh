#!/usr/bin/env bash
# Installs the Debian programs that tests and benchmarks talk to (real peers, not mocks).
# Idempotent: only missing packages are installed. Without root or apt it says what is
# missing and exits 0 -- the tests that need a program skip with a reason naming it.
set -euo pipefail
packages=(
    redis-server redis-tools   # the kv differential test and redis-cli/redis-benchmark
    rpcbind rpcsvc-proto libtirpc-dev gcc   # rpcinfo, rpcbind, rpcgen, the C client
    haproxy                    # the load-balancer integration test
    chromium chromium-driver   # the status page test in a real headless browser
    openssl curl socat         # TLS certificates and real clients
)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-deps: not root or no apt-get; missing: ${missing[*]} (tests needing them skip)"
    exit 0
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
