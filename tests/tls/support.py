"""Test support shared by tests/tls and tests/auth: certificates made with ``openssl`` at test
time in a temporary directory (no private key is ever committed), and a reactor running a
:class:`~muxserver.reactor.server.StreamServer` on a thread, stopped and joined on exit."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from muxserver.auth import CertificateRules
from muxserver.handlers.base import Handler
from muxserver.reactor.loop import Reactor
from muxserver.reactor.server import StreamServer
from muxserver.service import Peer, PushTarget, Service
from muxserver.tls import TLSAcceptor, server_context

OPENSSL = "/usr/bin/openssl"

_CA_CONFIG = """\
[ca]
default_ca = test
[test]
database = {db}/index.txt
new_certs_dir = {db}
serial = {db}/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = copy
x509_extensions = leaf
[any]
commonName = supplied
organizationName = optional
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclasses.dataclass(frozen=True)
class Certificates:
    """Paths of every PEM file a test needs."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path
    stranger_key: Path
    expired_client_cert: Path
    expired_client_key: Path
    wrong_host_cert: Path
    wrong_host_key: Path
    expired_server_cert: Path
    expired_server_key: Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _run(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _make_leaf(
    directory: Path,
    name: str,
    ca: tuple[Path, Path],
    subject: str,
    *,
    server_names: list[str] | None = None,
    expired: bool = False,
) -> tuple[Path, Path]:
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    _run(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", subject,
        cwd=directory,
    )  # fmt: skip
    db = directory / f"db-{name}"
    db.mkdir()
    (db / "index.txt").write_text("")
    (db / "serial").write_text("1000\n")
    config = _CA_CONFIG.format(db=db)
    if server_names is not None:
        config = config.replace("extendedKeyUsage = clientAuth", "extendedKeyUsage = serverAuth")
        config += "subjectAltName = " + ",".join(server_names) + "\n"
    (db / "ca.cnf").write_text(config)
    dates = (
        ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"]
        if expired
        else ["-days", "2"]
    )
    _run(
        "ca", "-batch", "-notext", "-config", str(db / "ca.cnf"),
        "-cert", str(ca[0]), "-keyfile", str(ca[1]), "-in", str(csr), "-out", str(cert), *dates,
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """Create a CA, server and client certificates, and the bad ones, in ``directory``."""
    ca = _make_ca(directory, "test-ca")
    other = _make_ca(directory, "other-ca")
    local = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    server = _make_leaf(directory, "server", ca, "/CN=localhost", server_names=local)
    client = _make_leaf(directory, "alice", ca, "/O=Example/CN=alice")
    stranger = _make_leaf(directory, "mallory", other, "/CN=mallory")
    expired = _make_leaf(directory, "old-alice", ca, "/CN=alice", expired=True)
    wrong = _make_leaf(directory, "wrong", ca, "/CN=elsewhere", server_names=["DNS:elsewhere"])
    old_server = _make_leaf(directory, "old-server", ca, "/CN=localhost", server_names=local,
                            expired=True)  # fmt: skip
    return Certificates(
        ca=ca[0],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        other_ca=other[0],
        stranger_cert=stranger[0],
        stranger_key=stranger[1],
        expired_client_cert=expired[0],
        expired_client_key=expired[1],
        wrong_host_cert=wrong[0],
        wrong_host_key=wrong[1],
        expired_server_cert=old_server[0],
        expired_server_key=old_server[1],
    )


def client_context(certs: Certificates, *, cert: Path | None = None, key: Path | None = None,
                   alpn: list[str] | None = None) -> ssl.SSLContext:  # fmt: skip
    """A client context trusting the test CA, optionally presenting a certificate."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context


class RunningServer:
    """A reactor thread serving ``StreamServer(reactor, handler_factory, service, **options)``.

    ``address`` is where it listens (TCP on 127.0.0.1, or the Unix path given). Leaving the
    ``with`` block stops the reactor, joins the thread and closes everything.
    """

    def __init__(
        self,
        handler_factory: Callable[[], Handler],
        service: Any = None,
        *,
        unix_path: str | None = None,
        **options: Any,
    ) -> None:
        self.reactor = Reactor()
        self.server = StreamServer(self.reactor, handler_factory, service, **options)
        if unix_path is None:
            listener = self.server.listen_tcp("127.0.0.1", 0)
        else:
            listener = self.server.listen_unix(unix_path)
        self.address: Any = listener.address
        self._thread = threading.Thread(target=self.reactor.run, name="test-reactor")

    def __enter__(self) -> RunningServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reactor.stop_threadsafe()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "reactor thread did not stop"
        self.reactor.close()

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """A blocking client socket connected to the server."""
        family = socket.AF_UNIX if isinstance(self.address, str) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.address)
        return sock


def recv_until(
    sock: socket.socket | ssl.SSLSocket, terminator: bytes, limit: int = 1 << 20
) -> bytes:
    """Read until ``terminator`` has arrived (or EOF); return everything read."""
    data = b""
    while terminator not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class Recorder(Service):
    """Records the lifecycle calls; greets on connection_made, echoes lines."""

    def __init__(self) -> None:
        self.made: list[tuple[Any, dict[str, Any]]] = []
        self.lost: list[int] = []

    def connection_made(self, connection: PushTarget, peer: Peer) -> None:
        self.made.append((peer.client_address, dict(peer.extra)))
        connection.push(b"welcome")

    def connection_lost(self, connection: PushTarget, peer: Peer) -> None:
        self.lost.append(connection.id)

    def handle(self, request: Any, peer: Peer) -> bytes:
        return bytes(request.line)


def mutual_tls_acceptor(certs: Certificates, *common_names: str) -> TLSAcceptor:
    """An acceptor that requires a client certificate from the test CA naming one of
    ``common_names``."""
    context = server_context(
        str(certs.server_cert), str(certs.server_key), client_ca=str(certs.ca),
        require_client_cert=True,
    )  # fmt: skip
    return TLSAcceptor(context, authorize=CertificateRules(common_names=list(common_names)))
