"""The toolkit against deliberately buggy handlers, and the edges a review found in it.

Each oracle must fail, with a clear message, on a handler with one kind of real bug, and pass
correct built-in handlers; a stateful service, nested plain objects in events, a handler that
never ends after end of input or never stops producing events, and resources after failures.
"""

from __future__ import annotations

import enum
import gc
import importlib
import os
import socket
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from muxserver.handlers.base import (
    NEED_DATA,
    PAUSED,
    EndOfInput,
    Event,
    Handler,
    HandlerMisuseError,
    NeedData,
    Paused,
    ProtocolError,
    Request,
    Send,
)
from muxserver.handlers.echo import EchoHandler
from muxserver.handlers.lines import LineHandler
from muxserver.testing import (
    ContractViolationError,
    HandlerStateMachine,
    assert_chunking_invariant,
    check_contract,
    check_only_protocol_errors,
    chunkings,
    drive,
    mutations,
    split,
)
from muxserver.testing.live import ReactorThread, connect

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Few examples, always the same search: a check that finds a bug must find it on every run.
quick = settings(max_examples=60, deadline=None, database=None, derandomize=True)


# --- a small correct handler, and buggy variants of it ----------------------------------------


class St(enum.Enum):
    OPEN = "open"
    DONE = "done"


class Line(Request):
    def __init__(self, text: bytes) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return type(other) is Line and other.text == self.text

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Line({self.text!r})"


CAP = 8  # the longest line (delimiter excluded) a Lines handler accepts


class Lines(Handler):
    """Correct: one Line per ``\\n``-terminated line, at most CAP bytes each; EndOfInput once."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.eof = False
        self.ended = False
        self.error: ProtocolError | None = None

    @property
    def state(self) -> enum.Enum:
        return St.DONE if self.ended else St.OPEN

    @property
    def buffered(self) -> int:
        return len(self.buf)

    def receive_data(self, data: bytes) -> None:
        if self.eof:
            raise HandlerMisuseError("after end of input")
        self.eof = not data
        self.buf += data

    def fail(self, message: str) -> ProtocolError:
        self.error = ProtocolError(message, reply=b"-ERR " + message.encode() + b"\n")
        return self.error

    def next_event(self) -> Event | NeedData | Paused:
        if self.error is not None:
            raise self.error
        if self.ended:
            return NEED_DATA
        end = self.buf.find(b"\n", 0, CAP + 1)
        if end >= 0:
            line = bytes(self.buf[:end])
            del self.buf[: end + 1]
            return Line(line)
        if len(self.buf) > CAP:
            raise self.fail("line too long")
        if self.eof:
            self.ended = True
            return EndOfInput()
        return NEED_DATA

    def send(self, response: Any) -> bytes:
        return bytes(response) + b"\n"


def upper(request: Request, peer: Any) -> bytes:
    assert isinstance(request, Line)
    return request.text.upper()


class PerReadCap(Lines):
    """Bug: the cap is checked per read, so it fires only when one read is large enough."""

    def receive_data(self, data: bytes) -> None:
        if len(data) > 2 * CAP and self.error is None:
            self.fail("read too large")
        super().receive_data(data)


class UnboundedSearch(Lines):
    """Bug: the delimiter search is not bounded, so an over-long line passes when whole."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.error is None and not self.ended:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 1]
                return Line(line)
        return super().next_event()


class CrlfSplitBug(Lines):
    """Bug: a read starting with ``\\n`` just after a ``\\r`` drops the rest of that read."""

    def receive_data(self, data: bytes) -> None:
        if self.buf.endswith(b"\r") and data.startswith(b"\n"):
            data = b"\n"
        super().receive_data(data)


class RaisesOnBadInput(Lines):
    """Bug: a non-ASCII byte makes receive_data raise UnicodeDecodeError."""

    def receive_data(self, data: bytes) -> None:
        data.decode("ascii")
        super().receive_data(data)


class EndBeforeLastLine(Lines):
    """Bug: at end of input it says EndOfInput first, then delivers what was still buffered."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.eof and not self.ended and self.buf:
            self.ended = True
            return EndOfInput()
        if self.ended and self.buf:
            return Line(bytes(self.buf.split(b"\n")[0]))
        return super().next_event()


class EndTwice(Lines):
    """Bug: EndOfInput again on every pull after the first."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.ended:
            return EndOfInput()
        return super().next_event()


# --- passing: each oracle catches its kind of bug ---------------------------------------------


def test_a_limit_checked_per_read_is_caught_by_the_chunking_oracle() -> None:
    data = b"abc\ndef\nghi\njkl\nmno\n"  # 20 bytes: one piece trips the per-read check
    with pytest.raises(AssertionError, match="events depend on chunking") as caught:
        assert_chunking_invariant(PerReadCap, data, split(data, [4]), service=upper)
    assert "ProtocolError" in str(caught.value) and "read too large" in str(caught.value)


def test_a_limit_that_fires_only_when_split_is_caught_under_hypothesis() -> None:
    data = b"ok\n" + b"x" * (CAP + 4) + b"\nok\n"

    @quick
    @given(chunkings(data))
    def check(chunks: list[bytes]) -> None:
        assert_chunking_invariant(UnboundedSearch, data, chunks, service=upper)

    with pytest.raises(AssertionError, match="events depend on chunking"):
        check()


def test_chunkings_split_inside_a_two_byte_delimiter_often_enough_to_catch_a_bug() -> None:
    data = b"GET a\r\nSET b c\r\nQUIT\r\n"

    @quick
    @given(chunkings(data))
    def check(chunks: list[bytes]) -> None:
        assert_chunking_invariant(CrlfSplitBug, data, chunks, service=upper)

    with pytest.raises(AssertionError, match="depend on chunking"):
        check()


def test_a_non_protocol_error_from_receive_data_is_caught_with_its_cause() -> None:
    with pytest.raises(AssertionError, match="UnicodeDecodeError escaped") as caught:
        check_only_protocol_errors(RaisesOnBadInput, b"ab\xffc\n")
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)

    @quick
    @given(mutations(b"abc\ndef\n"))
    def check(data: bytes) -> None:
        check_only_protocol_errors(RaisesOnBadInput, data, service=upper)

    with pytest.raises(AssertionError, match="escaped"):
        check()


@pytest.mark.parametrize("factory", [EndBeforeLastLine, EndTwice])
def test_events_after_end_of_input_are_caught_by_the_probe(factory: type[Lines]) -> None:
    with pytest.raises(ContractViolationError, match="after EndOfInput"):
        check_contract(drive(factory, [b"a\nb"], service=upper))


def test_correct_handlers_pass_every_oracle() -> None:
    data = b"one\ntwo\n" + b"y" * (CAP + 3) + b"\n"

    @quick
    @given(chunkings(data))
    def check(chunks: list[bytes]) -> None:
        trace = assert_chunking_invariant(Lines, data, chunks, service=upper)
        assert trace[-1][0] == "ProtocolError"
        for factory in (Lines, LineHandler, EchoHandler):
            assert_chunking_invariant(factory, data, chunks)
            check_only_protocol_errors(factory, data, chunks)

    check()


class Hoarder(Lines):
    """Bug: after the first line it stops parsing and keeps everything (NEED_DATA forever)."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.buf.count(b"\n") > 1 or len(self.buf) > 2 * CAP:
            return NEED_DATA
        return super().next_event()


class _LinesMachine(HandlerStateMachine):
    max_buffered = CAP + 1

    def make_handler(self) -> Handler:
        return Lines()

    def messages(self) -> st.SearchStrategy[bytes]:
        return st.sampled_from([b"a\n", b"bb\n", b"ccc\n"])

    def respond(self, request: Request) -> Any:
        return b"ok"


def _run_machine(machine: type[HandlerStateMachine]) -> None:
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=150,
            stateful_step_count=30,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            derandomize=True,
        ),
    )


def test_the_state_machine_passes_a_correct_handler_and_catches_a_hoarder() -> None:
    _run_machine(_LinesMachine)

    class HoarderMachine(_LinesMachine):
        def make_handler(self) -> Handler:
            return Hoarder()

    with pytest.raises(AssertionError, match="bytes after pulling"):
        _run_machine(HoarderMachine)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("grace", [None, 1.0])
def test_reactor_thread_stop_leaves_no_thread_or_descriptor(grace: float | None) -> None:
    def count() -> tuple[int, int]:
        gc.collect()
        return len(os.listdir("/proc/self/fd")), threading.active_count()

    before = count()
    live = ReactorThread().start()
    _, tcp = live.serve(Lines, upper)
    _, unix = live.serve(Lines, upper, family="unix")
    clients = [connect(tcp), connect(unix)]
    for client in clients:
        client.sendall(b"hi\n")
        assert client.recv(10) == b"HI\n"
    live.stop(grace)  # with both clients still connected
    for client in clients:
        assert client.recv(10) == b""  # the server side was closed
        client.close()
    assert not os.path.exists(unix)
    assert count() == before


# --- defects ----------------------------------------------------------------------------------


class Part:
    """A plain value object with no __repr__, as users put inside their events."""

    def __init__(self, value: bytes) -> None:
        self.value = value


class Parts(Request):
    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts


class NestedEvents(Lines):
    """Correct: its requests carry a list of plain objects."""

    def next_event(self) -> Event | NeedData | Paused:
        event = super().next_event()
        return Parts([Part(event.text)]) if isinstance(event, Line) else event


def test_default_key_does_not_false_alarm_on_nested_plain_objects() -> None:
    assert_chunking_invariant(NestedEvents, b"a\n", [b"a\n"])


class Counter:
    """A service with state: numbers its answers."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, request: Request, peer: Any) -> bytes:
        self.count += 1
        return b"%d" % self.count


def test_a_stateful_service_does_not_make_a_correct_handler_fail() -> None:
    assert_chunking_invariant(Lines, b"a\nb\n", [b"a\n", b"b\n"], service=Counter())


class FreshNeedData(Lines):
    """Bug: returns a new NeedData() instead of the NEED_DATA sentinel; the reactor aborts."""

    def next_event(self) -> Event | NeedData | Paused:
        event = super().next_event()
        return NeedData() if event is NEED_DATA else event


class Greeting(Send):
    """A Send subclass: the reactor matches ``type(event) is Send`` and aborts on it."""


class GreetsWithSubclass(Lines):
    def __init__(self) -> None:
        super().__init__()
        self.greeted = False

    def next_event(self) -> Event | NeedData | Paused:
        if not self.greeted:
            self.greeted = True
            return Greeting(b"hello\n")
        return super().next_event()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("factory", [FreshNeedData, GreetsWithSubclass])
def test_the_reactor_serves_a_fresh_need_data_and_a_send_subclass(factory: type[Lines]) -> None:
    # What the toolkit accepts, the reactor must accept too: NeedData() is the one sentinel,
    # and the reactor matches event classes with isinstance off its fast path.
    check_contract(drive(factory, [b"a\n"], service=upper))
    with ReactorThread() as live:
        _, address = live.serve(factory, upper)
        with connect(address) as client:
            client.sendall(b"a\n")
            client.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := client.recv(100):
                received += chunk
    assert b"A\n" in received


class IgnoresEndOfInput(Lines):
    """Bug: never reports end of input, so the reactor never closes the half-closed peer."""

    def next_event(self) -> Event | NeedData | Paused:
        event = super().next_event()
        return NEED_DATA if isinstance(event, EndOfInput) else event


class PausesForNothing(Lines):
    """Bug: after one line it says PAUSED although nothing is waiting for an answer."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.buf.count(b"\n") and not self.buf.startswith(b"a"):
            return PAUSED
        return super().next_event()


@pytest.mark.parametrize("factory", [IgnoresEndOfInput, PausesForNothing])
def test_a_handler_that_never_ends_after_end_of_input_is_caught(factory: type[Lines]) -> None:
    with pytest.raises(ContractViolationError):
        check_contract(drive(factory, [b"a\n", b"b\n"], service=upper))


@pytest.mark.timeout(30)
def test_live_a_handler_ignoring_end_of_input_leaves_the_peer_hanging() -> None:
    # Why the check above matters: the reactor relies on the handler to end the connection.
    with ReactorThread() as live:
        _, address = live.serve(IgnoresEndOfInput, upper)
        with connect(address, timeout=0.5) as client:
            client.sendall(b"a\n")
            client.shutdown(socket.SHUT_WR)
            assert client.recv(10) == b"A\n"
            with pytest.raises(TimeoutError):
                client.recv(10)


class ErrorAfterEnd(Lines):
    """Bug: raises a ProtocolError when pulled after its EndOfInput."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.ended:
            raise ProtocolError("pulled after the end")
        return super().next_event()


def test_an_error_after_end_of_input_is_a_contract_violation() -> None:
    with pytest.raises(ContractViolationError, match="EndOfInput"):
        check_contract(drive(ErrorAfterEnd, [b"a\n"]))


class SpunError(Exception):
    pass


class Spinner(Lines):
    """Bug: on an empty line it produces empty Sends forever without consuming input.

    (Bounded here, so the test ends: after 200,000 events it raises SpunError.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.spins = 0

    def next_event(self) -> Event | NeedData | Paused:
        if self.buf.startswith(b"\n"):
            self.spins += 1
            if self.spins > 200_000:
                raise SpunError("the handler spun 200,000 times; the toolkit never stopped it")
            return Send(b"")
        return super().next_event()


def test_a_handler_that_never_returns_need_data_fails_instead_of_hanging() -> None:
    with pytest.raises(ContractViolationError):
        drive(Spinner, [b"a\n\n"])


def test_connect_to_a_missing_unix_path_does_not_leak_the_socket(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(OSError):
            connect(str(tmp_path / "missing.sock"), timeout=1.0)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


class _Crash(BaseException):
    pass


@pytest.mark.timeout(30)
def test_call_after_the_reactor_thread_died_raises() -> None:
    live = ReactorThread().start()
    try:
        live.reactor.call_soon_threadsafe(_raise_crash)
        assert live._thread is not None
        live._thread.join(10)
        assert not live._thread.is_alive()
        with pytest.raises(RuntimeError):
            live.call(threading.get_ident)
    finally:
        with pytest.raises(RuntimeError, match="stopped with an error"):
            live.stop()


def _raise_crash() -> None:
    raise _Crash("the reactor thread died")


# --- examples ---------------------------------------------------------------------------------


def _load_sqlite_jobs() -> Any:
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module("sqlite_jobs")
    finally:
        sys.path.remove(str(EXAMPLES))


def test_job_server_with_a_bad_database_path_releases_its_reactor(tmp_path: Path) -> None:
    sqlite_jobs = _load_sqlite_jobs()
    bad = str(tmp_path / "no-such-dir" / "jobs.db")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Exception, match="unable to open"):
            sqlite_jobs.JobServer(bad, sqlite_jobs.Square)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_single_mutation_can_append_a_stray_byte() -> None:
    find(
        mutations(b"ab\n", max_edits=1),
        lambda m: len(m) == 4 and m.startswith(b"ab\n"),
        settings=settings(max_examples=300, database=None, derandomize=True),
    )
