"""Connection churn load: a new TCP connection for every request.

Each request is: connect, send one RESP ``PING``, read ``+PONG``, close. ``bench/run.py``
starts several of these processes (all pinned to the load generator's CPU) so that the server
always has a connection arriving while one client is busy in its own kernel work; their counts
are summed. The loop is bounded both by ``--max`` connections and by ``--seconds``, and it
gives up after :data:`MAX_CONSECUTIVE_ERRORS` failures in a row (a dead server).

All processes start at the same wall-clock instant ``--start-at`` so they overlap fully.
Output: one JSON line ``{"connections": n, "errors": e, "elapsed": s}`` on stdout.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"
MAX_CONSECUTIVE_ERRORS = 100


def one_request(address: tuple[str, int]) -> None:
    """Open a connection, do one PING round trip, close it; raise OSError on any failure."""
    # hot path: once per connection
    with socket.create_connection(address, timeout=5.0) as sock:
        sock.sendall(PING)
        reply = b""
        while len(reply) < len(PONG):
            chunk = sock.recv(64)
            if not chunk:
                raise ConnectionResetError("server closed before replying")
            reply += chunk  # at most two tiny chunks
        if reply != PONG:
            raise ConnectionError(f"unexpected reply {reply!r}")


def churn(address: tuple[str, int], seconds: float, limit: int) -> dict[str, float]:
    """Run connections back to back for ``seconds`` or ``limit`` connections, whichever first."""
    done = errors = consecutive = 0
    start = time.monotonic()
    deadline = start + seconds
    while done < limit and time.monotonic() < deadline:
        try:
            one_request(address)
        except OSError:
            errors += 1
            consecutive += 1
            if consecutive >= MAX_CONSECUTIVE_ERRORS:
                break
            continue
        done += 1
        consecutive = 0
    return {"connections": done, "errors": errors, "elapsed": time.monotonic() - start}


def main() -> None:
    """Entry point: wait for the common start instant, churn, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max", type=int, default=100_000, help="connections at most")
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at")
    args = parser.parse_args()
    delay = args.start_at - time.time()
    if delay > 0:
        time.sleep(min(delay, 10.0))
    result = churn((args.host, args.port), args.seconds, args.max)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
