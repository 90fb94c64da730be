"""A drop-in for the standard library's ``socketserver``, built on muxserver's reactor.

Migrating is one import::

    from muxserver import socketserver        # instead of: import socketserver

or, for code that imports ``socketserver`` itself (``http.server``, ``xmlrpc.server``,
``wsgiref.simple_server``), alias it *before* those modules are imported::

    import sys, muxserver.socketserver
    sys.modules["socketserver"] = muxserver.socketserver
    import http.server                         # now serves on muxserver

Every class, method and attribute of the running interpreter's ``socketserver`` is here, with
the same behaviour (CPython's own ``test_socketserver`` passes against this package). The
differences are fixes, listed in the README: ``shutdown()`` returns within milliseconds
(``serve_forever`` waits in the reactor's poller together with its wake-up channel), it never
deadlocks when called from the serving thread or before serving starts, forked children are
reaped as soon as they exit and only the server's own children are waited for,
``max_children`` is a hard cap, and a peer that hangs up mid-request is reported in one line
instead of a traceback.

Layout: ``servers`` (BaseServer, TCP, UDP, Unix), ``mixins`` (threads, forks), ``handlers``
(the request handler classes). The mix-in must come first in the bases.
"""

from __future__ import annotations

import os
import socket
import sys

from muxserver.socketserver.handlers import (
    BaseRequestHandler,
    DatagramRequestHandler,
    StreamRequestHandler,
)
from muxserver.socketserver.handlers import _SocketWriter as _SocketWriter
from muxserver.socketserver.mixins import ForkingMixIn, ThreadingMixIn
from muxserver.socketserver.servers import BaseServer, TCPServer, UDPServer

__all__ = [
    "BaseRequestHandler",
    "BaseServer",
    "DatagramRequestHandler",
    "StreamRequestHandler",
    "TCPServer",
    "ThreadingMixIn",
    "ThreadingTCPServer",
    "ThreadingUDPServer",
    "UDPServer",
]

_HAVE_FORK = hasattr(os, "fork")
_HAVE_UNIX = hasattr(socket, "AF_UNIX")


class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    """A UDP server handling each datagram on its own thread."""


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    """A TCP server handling each connection on its own thread."""


if _HAVE_FORK:
    __all__ += ["ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer"]

    class ForkingUDPServer(ForkingMixIn, UDPServer):
        """A UDP server handling each datagram in a child process."""

    class ForkingTCPServer(ForkingMixIn, TCPServer):
        """A TCP server handling each connection in a child process."""

else:  # the standard library defines no ForkingMixIn without fork()
    del ForkingMixIn

if _HAVE_UNIX:
    from muxserver.socketserver.servers import UnixDatagramServer, UnixStreamServer

    __all__ += [
        "ThreadingUnixDatagramServer",
        "ThreadingUnixStreamServer",
        "UnixDatagramServer",
        "UnixStreamServer",
    ]

    class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
        """A Unix stream server handling each connection on its own thread."""

    class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
        """A Unix datagram server handling each datagram on its own thread."""

    # Python 3.12 added the forking Unix servers; older versions do not have them.
    if _HAVE_FORK and sys.version_info >= (3, 12):
        __all__ += ["ForkingUnixDatagramServer", "ForkingUnixStreamServer"]

        class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
            """A Unix stream server handling each connection in a child process."""

        class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
            """A Unix datagram server handling each datagram in a child process."""


# The public classes say they come from ``socketserver``, as the standard library's do: this
# package stands in for that module (often as ``sys.modules["socketserver"]``), and code that
# looks at ``cls.__module__`` -- CPython's test_socketserver checks ``__all__`` that way --
# must see the same names. The real location is ``muxserver.socketserver.<submodule>``.
for _name in __all__:
    globals()[_name].__module__ = "socketserver"
del _name
