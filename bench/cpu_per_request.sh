#!/bin/bash
# Server CPU per request (user and system µs): the server on CPU 0, the load on CPU 1.
#
#   bench/cpu_per_request.sh bench.peers.asyncio_protocol
#   bench/cpu_per_request.sh bench.servers.muxserver_server --handlers minimal
#   VS=bench.peers.asyncio_protocol bench/cpu_per_request.sh bench.servers.muxserver_server \
#       --handlers minimal
#
# Alone, run each server 3+ times, alternating: the machine is shared and noisy, and runs
# differ by ±0.3 µs. With VS="module args", both servers run *at the same time* on CPU 0
# (ports PORT and PORT+1), each loaded by its own client on CPU 1, so they see the same
# noise; the ratio of the two is good to a few percent. VSDIR runs the VS server from
# another checkout (e.g. an export of an older commit, with a .venv symlink).
#
# Environment: PORT (default 23917), WORKLOAD (resp: redis-benchmark -c50, default; http:
# wrk -c50), N requests per test, T tests and P pipeline depth (resp), D seconds (http).
set -u
port=${PORT:-23917}
workload=${WORKLOAD:-resp}
N=${N:-100000}
if [ "$workload" = http ]; then portopt=--http-port; else portopt=--resp-port; fi

start() {  # start DIR PORT MODULE ARGS...: a server on CPU 0; prints its pid
    local dir=$1 p=$2; shift 2
    (cd "$dir" && exec taskset -c 0 .venv/bin/python -m "$@" "$portopt" "$p") >/dev/null 2>&1 &
    echo $!
}
load() {  # load PORT OUTFILE: the client on CPU 1 (in the background)
    if [ "$workload" = http ]; then
        taskset -c 1 wrk -t1 -c50 -d"${D:-5}"s "http://127.0.0.1:$1/" > "$2" 2>&1 &
    else
        taskset -c 1 redis-benchmark -p "$1" -c 50 -n "$N" -t "${T:-ping_mbulk,set,get}" \
            -P "${P:-1}" -q --csv > "$2" 2>/dev/null &
    fi
}
served() {  # served OUTFILE: requests the client completed
    if [ "$workload" = http ]; then
        awk '/requests in/ {print $1}' "$1"
    else
        echo $(( ($(grep -c '"' "$1") - 1) * N ))
    fi
}
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
report() {  # report NAME PID_TICKS_BEFORE TICKS_AFTER REQUESTS
    python3 -c "
t = $(getconf CLK_TCK); u0, s0 = map(int, '$2'.split()); u1, s1 = map(int, '$3'.split())
print('%-48s %s user %.2f us  sys %.2f us per request (%d requests)'
      % ('$1'[:48], '$workload', (u1 - u0) / t / $4 * 1e6, (s1 - s0) / t / $4 * 1e6, $4))"
}

out=$(mktemp)
pid=$(start . "$port" "$@")
if [ -n "${VS:-}" ]; then
    # shellcheck disable=SC2086  # VS is a module and its arguments
    vpid=$(start "${VSDIR:-.}" $((port + 1)) $VS)
fi
sleep 1.5
before=$(ticks "$pid")
[ -n "${VS:-}" ] && vbefore=$(ticks "$vpid")
load "$port" "$out"
[ -n "${VS:-}" ] && load $((port + 1)) "$out.vs"
wait  # for the clients (the servers were started in subshells: not our jobs)
report "$*" "$before" "$(ticks "$pid")" "$(served "$out")"
[ -n "${VS:-}" ] && report "$VS" "$vbefore" "$(ticks "$vpid")" "$(served "$out.vs")"
kill "$pid" ${vpid:-}
while kill -0 "$pid" ${vpid:-} 2>/dev/null; do sleep 0.1; done
rm -f "$out" "$out.vs"
