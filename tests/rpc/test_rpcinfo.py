"""Acceptance: Debian's ``rpcinfo`` (and ``rpcbind``) talk to the RPC demo on the reactor.

The last test also builds a C client from ``examples/demo.x`` with ``rpcgen`` and libtirpc
(the client shown in the README) and runs it against the demo, found through rpcbind.

This ``rpcinfo`` ignores ``-n PORT`` and always asks rpcbind, so the direct tests address the
server by its *universal address*, ``h1.h2.h3.h4.p1.p2`` (the port's high and low bytes).
The registration test needs a portmapper on 127.0.0.1:111: it uses one that is already
running (and leaves it running), or starts ``rpcbind -f`` as a child -- without ``-w``, so no
state from an earlier run is loaded -- and stops and reaps it afterwards. Everything skips,
saying why, when the tools are not installed (Debian package ``rpcbind``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxserver.rpc.client import RPCError
from muxserver.rpc.demo import DEMO_PROGRAM
from muxserver.rpc.program import Program, RPCService, Version
from muxserver.rpc.rpcbind import PortmapperClient
from muxserver.rpc.server import RPCServer
from muxserver.services.rpc_demo import start_rpc_demo
from muxserver.testing.live import ReactorThread

_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
RPCINFO = shutil.which("rpcinfo", path=_SEARCH_PATH)
RPCBIND = shutil.which("rpcbind", path=_SEARCH_PATH)
DEMO_X = Path(__file__).resolve().parents[2] / "examples" / "demo.x"
DEMO = str(DEMO_PROGRAM.number)  # rpcinfo takes the program number in decimal: 536870913

pytestmark = pytest.mark.skipif(
    RPCINFO is None, reason="rpcinfo is not installed (Debian package rpcbind)"
)


def rpcinfo(*args: str) -> subprocess.CompletedProcess[str]:
    """Run rpcinfo with ``args``; bounded, output captured as text."""
    assert RPCINFO is not None
    return subprocess.run([RPCINFO, *args], check=False, capture_output=True, text=True, timeout=10)


def universal_address(port: int) -> str:
    """The universal address of ``port`` on 127.0.0.1."""
    return f"127.0.0.1.{port >> 8}.{port & 255}"


def start_demo(live: ReactorThread, *, register: bool = False) -> int:
    """Serve the demo on a free port (before the reactor runs); return the port."""
    lines = start_rpc_demo(live.reactor, "127.0.0.1", 0, register=register)
    live.start()
    return int(lines[0].rsplit(":", 1)[1])


# -- straight to the server's port -------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rpcinfo_pings_the_demo_at_its_universal_address(
    live: ReactorThread, transport: str
) -> None:
    port = start_demo(live)
    result = rpcinfo("-a", universal_address(port), "-T", transport, DEMO, "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"program {DEMO} version 1 ready and waiting"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rpcinfo_version_probe_finds_the_demos_only_version(
    live: ReactorThread, transport: str
) -> None:
    port = start_demo(live)
    result = rpcinfo("-a", universal_address(port), "-T", transport, DEMO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"program {DEMO} version 1 ready and waiting"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rpcinfo_version_probe_reports_the_range_from_prog_mismatch(
    live: ReactorThread, transport: str
) -> None:
    # Versions 1 and 3 served, 2 not: rpcinfo learns 1..3 from PROG_MISMATCH, then pings each.
    program = Program(0x2000_0F01, "GAPPY", [Version(1, "V1", []), Version(3, "V3", [])])
    service = RPCService()
    service.register(program, 1, {})
    service.register(program, 3, {})
    server = RPCServer(live.reactor, service)
    live.start()
    result = rpcinfo("-a", universal_address(server.port), "-T", transport, str(program.number))
    assert "Program/version mismatch; low version = 1, high version = 3" in result.stderr
    assert result.stdout.splitlines() == [
        f"program {program.number} version 1 ready and waiting",
        f"program {program.number} version 2 is not available",
        f"program {program.number} version 3 ready and waiting",
    ]


def test_rpcinfo_reports_an_unserved_program_as_unavailable(live: ReactorThread) -> None:
    port = start_demo(live)
    result = rpcinfo("-a", universal_address(port), "-T", "tcp", str(0x2000_0F02), "1")
    assert result.returncode != 0
    assert "Program unavailable" in result.stderr


# -- through rpcbind ----------------------------------------------------------------------------


def _portmapper_answers() -> bool:
    try:
        with PortmapperClient(transport="tcp", timeout=1.0) as portmapper:
            portmapper.dump()
    except (OSError, RPCError):
        return False
    return True


@pytest.fixture(scope="module")
def rpcbind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A portmapper on 127.0.0.1:111: the host's own if one runs, else our child rpcbind."""
    if _portmapper_answers():
        yield  # not ours: use it, never stop it
        return
    if RPCBIND is None:
        pytest.skip("rpcbind is not installed (Debian package rpcbind)")
    log = tmp_path_factory.mktemp("rpcbind") / "rpcbind.log"
    with log.open("wb") as output:
        child = subprocess.Popen([RPCBIND, "-f"], stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 5.0
        while not _portmapper_answers():
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"could not start rpcbind -f (root needed?): {_tail(log)}")
            time.sleep(0.05)
        yield
    finally:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace").strip()[-300:] or "no output"


def _listed(port: int) -> list[str]:
    """The ``rpcinfo -p 127.0.0.1`` lines for the demo program on ``port``."""
    result = rpcinfo("-p", "127.0.0.1")
    assert result.returncode == 0, result.stderr
    return sorted(
        " ".join(line.split())
        for line in result.stdout.splitlines()
        if line.split()[:1] == [DEMO] and line.split()[3:4] == [str(port)]
    )


@pytest.mark.usefixtures("rpcbind")
def test_a_registered_demo_is_listed_reached_through_rpcbind_and_unlisted_on_stop() -> None:
    live = ReactorThread()
    try:
        port = start_demo(live, register=True)
        assert _listed(port) == [f"{DEMO} 1 tcp {port}", f"{DEMO} 1 udp {port}"]
        for flag in ("-t", "-u"):
            result = rpcinfo(flag, "127.0.0.1", DEMO, "1")
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == f"program {DEMO} version 1 ready and waiting"
    finally:
        live.stop(grace=2.0)
    assert _listed(port) == []


C_CLIENT = r"""
#include <stdio.h>
#include "demo.h"   /* rpcgen demo.x */

int main(int argc, char **argv)
{
    char *host = argc > 1 ? argv[1] : "localhost";
    char *transport = argc > 2 ? argv[2] : "tcp";
    CLIENT *clnt = clnt_create(host, DEMO_PROG, DEMO_VERS, transport);  /* asks rpcbind */
    if (clnt == NULL) {
        clnt_pcreateerror(host);
        return 1;
    }
    demo_put_args put = {"colour", {4, "blue"}};
    demo_key key = "colour";
    figure box = {"box", {SHAPE_RECT}, 0.0};
    box.outline.shape_u.box.width = 3;
    box.outline.shape_u.box.height = 4;
    demo_optvalue *value;
    figure *measured;
    if (demo_put_1(&put, clnt) == NULL || (value = demo_get_1(&key, clnt)) == NULL
        || (measured = demo_measure_1(&box, clnt)) == NULL) {
        clnt_perror(clnt, host);
        return 1;
    }
    if (*value != NULL)
        printf("colour = %.*s\n", (int)(*value)->demo_value_len, (*value)->demo_value_val);
    printf("%s has area %g\n", measured->name, measured->area);
    clnt_destroy(clnt);
    return 0;
}
"""

_TIRPC = Path("/usr/include/tirpc/rpc/rpc.h")


@pytest.fixture(scope="module")
def c_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C client above, built with rpcgen stubs for examples/demo.x and libtirpc."""
    rpcgen, cc = shutil.which("rpcgen"), shutil.which("cc")
    if rpcgen is None or cc is None or not _TIRPC.exists():
        pytest.skip("building the C client needs rpcgen, a C compiler and libtirpc-dev")
    build = tmp_path_factory.mktemp("c-client")
    shutil.copy(DEMO_X, build / "demo.x")
    (build / "demo_client.c").write_text(C_CLIENT)
    subprocess.run([rpcgen, "demo.x"], cwd=build, check=True, capture_output=True, timeout=30)
    sources = ["demo_client.c", "demo_clnt.c", "demo_xdr.c"]
    compiled = subprocess.run(
        [cc, "-w", f"-I{_TIRPC.parent.parent}", "-o", "demo_client", *sources, "-ltirpc"],
        cwd=build,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert compiled.returncode == 0, compiled.stderr
    return build / "demo_client"


@pytest.mark.usefixtures("rpcbind")
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_an_rpcgen_c_client_calls_the_demo_through_rpcbind(c_client: Path, transport: str) -> None:
    live = ReactorThread()
    try:
        start_demo(live, register=True)
        result = subprocess.run(
            [str(c_client), "127.0.0.1", transport],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    finally:
        live.stop(grace=2.0)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["colour = blue", "box has area 12"]
