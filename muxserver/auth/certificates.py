# muxserver.auth.certificates -- client certificates (mutual TLS) as an authentication scheme.
"""Client certificates as an authentication scheme: which verified subjects may come in.

Mutual TLS itself is :func:`muxserver.tls.server_context` with ``client_ca`` and
``require_client_cert=True``: OpenSSL refuses a missing, expired or foreign certificate during
the handshake (with a TLS alert, the clear reply TLS allows). :class:`CertificateRules` adds the
authorization step for *valid* certificates: pass it as ``TLSAcceptor(authorize=...)``. It is
called once the handshake completes, before any plaintext reaches the handler; a refused
client gets close_notify, and the connection logs one line with the peer and the reason.

Services see the certificate as ``peer.extra["peercert"]`` (the dict of
``SSLObject.getpeercert()``), its subject as ``peer.extra["client_subject"]``
(``"CN=alice,O=Example"``) and its commonName as ``peer.extra["auth_user"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CertificateRules"]


class CertificateRules:
    """Admit TLS clients by certificate subject or commonName (a ``TLSAcceptor`` authorizer).

    With neither ``subjects`` nor ``common_names``, every verified certificate is admitted and
    only a missing one is refused.

    Args:
        subjects: full subjects as :func:`muxserver.tls.format_subject` writes them.
        common_names: commonName values.
    """

    def __init__(self, subjects: Iterable[str] = (), common_names: Iterable[str] = ()) -> None:
        self.subjects = frozenset(subjects)
        self.common_names = frozenset(common_names)

    def __call__(self, info: Mapping[str, Any]) -> str | None:
        """``None`` to admit the handshake's client, else the reason to refuse it."""
        subject = info.get("client_subject")
        if subject is None:
            return "no verified client certificate"
        if not self.subjects and not self.common_names:
            return None
        if subject in self.subjects or info.get("auth_user") in self.common_names:
            return None
        return f"client certificate {subject!r} is not allowed"
