"""The README's examples run as shown."""

import importlib.util
import os
import socket

from muxserver.testing import assert_chunking_invariant
from muxserver.testing.live import ReactorThread, connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name: str):
    path = os.path.join(ROOT, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shout_example_answers_lines_in_capitals_over_tcp():
    shout = load_example("shout")
    with ReactorThread() as live:
        _, address = live.serve(shout.ShoutHandler, lambda request, peer: request.text.upper())
        with connect(address) as client:
            client.sendall(b"hello\nwor")
            client.sendall(b"ld\n")
            client.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := client.recv(100):
                data += chunk
            assert data == b"HELLO\nWORLD\n"


def test_the_shout_handler_gives_the_same_events_for_any_chunking():
    shout = load_example("shout")
    data = b"one\ntwo\n\nthree\n"
    for cut in range(len(data) + 1):
        assert_chunking_invariant(
            shout.ShoutHandler, data, [data[:cut], data[cut:]], key=lambda e: getattr(e, "text", e)
        )
