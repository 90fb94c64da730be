# muxserver.tls_socketserver -- TLS for muxserver.socketserver servers (the blocking face).
"""A TLS mix-in for :mod:`muxserver.socketserver` servers.

``StreamRequestHandler`` code is blocking by nature, so here TLS is plain ``ssl.SSLSocket``
rather than the reactor's memory-BIO layer. What matters is *where* the handshake runs:
:meth:`TLSMixIn.get_request` only wraps the accepted socket (``do_handshake_on_connect=False``:
no I/O), and the handshake happens in :meth:`TLSMixIn.finish_request`, which
``ThreadingMixIn`` runs on the request's thread and ``ForkingMixIn`` in the child. So one slow
or silent client cannot stall accepts -- combine it with one of those mix-ins (a plain
synchronous server handles one client at a time anyway). The handshake is bounded by
``tls_handshake_timeout``; a failed handshake is logged in one line and the request dropped
without the handler running. The handler's ``self.request`` is the ``SSLSocket``;
``self.request.getpeercert()`` gives a verified client certificate.

Usage::

    class Server(TLSMixIn, socketserver.ThreadingTCPServer):
        ssl_context = muxserver.tls.server_context("cert.pem", "key.pem")
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

__all__ = ["TLSMixIn"]

log = logging.getLogger("muxserver.tls")


class TLSMixIn:
    """Serve a socketserver TCP server over TLS (put it first among the bases).

    Class or instance attributes:
        ssl_context: a server ``SSLContext`` (e.g. :func:`muxserver.tls.server_context`).
        tls_handshake_timeout: seconds a client may take to finish the handshake.
    """

    ssl_context: ssl.SSLContext | None = None
    tls_handshake_timeout: float = 10.0

    def get_request(self) -> tuple[Any, Any]:
        """Accept and wrap the socket for TLS without any I/O (the handshake comes later).

        Raises:
            ValueError: ``ssl_context`` is not set.
        """
        if self.ssl_context is None:
            raise ValueError(f"{type(self).__name__}.ssl_context must be a server SSLContext")
        sock, address = super().get_request()  # type: ignore[misc]
        wrapped = self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Complete the handshake (bounded by ``tls_handshake_timeout``), then handle."""
        previous = request.gettimeout()
        request.settimeout(self.tls_handshake_timeout)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            reason = "timed out" if isinstance(exc, socket.timeout) else str(exc)
            log.info("TLS handshake with %r failed: %s; dropping it", client_address, reason)
            return
        request.settimeout(previous)
        super().finish_request(request, client_address)  # type: ignore[misc]
