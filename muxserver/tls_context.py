# muxserver.tls_context -- the server SSLContext and the facts read from a client certificate.
"""TLS configuration: a server ``SSLContext`` with muxserver's defaults, and certificate facts.

:func:`server_context` builds the context a :class:`~muxserver.tls.TLSAcceptor` uses; it
records the server name each client asks for (SNI), which :func:`requested_server_name` reads
back. :func:`format_subject` and :func:`common_name` turn a verified client certificate into
the ``client_subject`` and ``auth_user`` facts of ``Peer.extra``. Re-exported by
:mod:`muxserver.tls`.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["common_name", "format_subject", "requested_server_name", "server_context"]

_SERVER_NAME_ATTRIBUTE = "muxserver_server_name"

_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
    "userId": "UID",
    "streetAddress": "STREET",
}


def server_context(
    cert: str,
    key: str | None = None,
    *,
    client_ca: str | None = None,
    require_client_cert: bool = False,
    alpn: Iterable[str] | None = None,
    sni_callback: Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None] | None = None,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """A server ``SSLContext`` with muxserver's defaults.

    Args:
        cert: PEM file with the server certificate (and its chain).
        key: PEM file with the private key (``None``: it is in ``cert``).
        client_ca: PEM file of the CAs that sign acceptable client certificates; given alone,
            a client certificate is optional but verified when sent. No system CAs are ever
            trusted for clients.
        require_client_cert: mutual TLS: refuse clients without a valid certificate.
        alpn: protocols offered by ALPN, in order of preference (``["h2", "http/1.1"]``).
        sni_callback: ``(ssl_object, server_name, context)``, as ``SSLContext.sni_callback``
            (it may switch ``ssl_object.context`` to serve another certificate).
        minimum_version: the oldest TLS version accepted (TLS 1.2 by default).

    Raises:
        ValueError: ``require_client_cert`` without ``client_ca``.
        OSError / ssl.SSLError: the files cannot be read or do not match (from ``ssl``).
    """
    if require_client_cert and client_ca is None:
        raise ValueError(
            "require_client_cert=True needs client_ca: the PEM file of the CAs that sign "
            "your clients' certificates"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = minimum_version
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    if alpn is not None:
        context.set_alpn_protocols(list(alpn))
    context.sni_callback = _ServerNameRecorder(sni_callback)
    return context


class _ServerNameRecorder:
    """SNI callback that remembers the requested name on the SSLObject, then delegates."""

    def __init__(
        self,
        then: Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None] | None,
    ) -> None:
        self.then = then

    def __call__(
        self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> int | None:
        setattr(ssl_object, _SERVER_NAME_ATTRIBUTE, server_name)
        if self.then is None:
            return None
        return self.then(ssl_object, server_name, context)


def format_subject(peercert: Mapping[str, Any] | None) -> str | None:
    """A certificate subject as an RFC 4514 string (``"CN=alice,O=Example"``), or ``None``."""
    if not peercert or not peercert.get("subject"):
        return None
    parts = []
    for rdn in reversed(peercert["subject"]):
        parts.append(
            "+".join(f"{_SHORT_NAMES.get(name, name)}={_escape(value)}" for name, value in rdn)
        )
    return ",".join(parts)


def _escape(value: str) -> str:
    escaped = "".join("\\" + ch if ch in ',+"\\<>;=' else ch for ch in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def common_name(peercert: Mapping[str, Any]) -> str | None:
    """The first commonName of a certificate's subject, or ``None``."""
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def requested_server_name(ssl_object: ssl.SSLObject) -> str | None:
    """The server name (SNI) the client asked for, as recorded by a :func:`server_context`."""
    name: str | None = getattr(ssl_object, _SERVER_NAME_ATTRIBUTE, None)
    return name
