"""A line server in a process of its own, for tests that need signals or resource limits.

Usage: python -m tests.reactor.serve_lines [--nofile N] [--delay SECONDS]
Prints ``PORT <n>`` once listening; stops gracefully on SIGTERM/SIGINT and prints the report.
"""

import argparse
import logging
import resource
import sys

from muxserver.handlers.lines import LineHandler
from muxserver.reactor import Reactor, StreamServer
from tests.reactor.support import DelayedStrategy, upper


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int)
    parser.add_argument("--delay", type=float)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if args.nofile:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    reactor = Reactor()
    strategy = DelayedStrategy(args.delay) if args.delay else None
    server = StreamServer(reactor, LineHandler, upper, strategy=strategy)
    listener = server.listen_tcp("127.0.0.1", 0)
    print(f"PORT {listener.address[1]}", flush=True)
    reactor.stop_on_signals(grace=5.0)
    reactor.run()
    print(f"STOPPED {reactor.shutdown_report}", flush=True)
    reactor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
