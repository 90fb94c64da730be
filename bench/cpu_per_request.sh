#!/bin/bash
# Server CPU per request (user and system µs), one server at a time, pinned apart:
# the server on CPU 0, the load generator on CPU 1. Compare servers in the same session,
# alternating runs (the machine is shared and noisy).
#
#   N=100000 bench/cpu_per_request.sh bench.peers.asyncio_protocol
#   bench/cpu_per_request.sh bench.servers.muxserver_server --handlers minimal
#   WORKLOAD=http bench/cpu_per_request.sh bench.servers.muxserver_server --handlers minimal
#
# Environment: PORT (default 23917), WORKLOAD (resp: redis-benchmark, default; http: wrk -c50),
# N requests per test (resp), T tests and P pipeline depth (resp), D seconds (http).
set -u
mod=$1; shift
port=${PORT:-23917}
workload=${WORKLOAD:-resp}
out=$(mktemp)
if [ "$workload" = http ]; then portopt=--http-port; else portopt=--resp-port; fi
taskset -c 0 .venv/bin/python -m "$mod" "$portopt" "$port" "$@" > "$out.srv" 2>&1 &
pid=$!
sleep 1.2
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
if [ "$workload" = http ]; then
    taskset -c 1 wrk -t1 -c50 -d"${D:-5}"s "http://127.0.0.1:$port/" > "$out" 2>&1
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
    n=$(awk '/requests in/ {print $1}' "$out")
else
    N=${N:-100000}
    taskset -c 1 redis-benchmark -p "$port" -c 50 -n "$N" -t "${T:-ping_mbulk,set,get}" \
        -P "${P:-1}" -q --csv > "$out" 2>/dev/null
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
    n=$(( ($(grep -c '"' "$out") - 1) * N ))
fi
kill $pid; wait $pid 2>/dev/null
rm -f "$out" "$out.srv"
python3 -c "t=$(getconf CLK_TCK); r=$n; print('%-48s %s user %.2f us  sys %.2f us per request (%d requests)' % ('$mod $*', '$workload', ($u1-$u0)/t/r*1e6, ($s1-$s0)/t/r*1e6, r))"
