"""The key-value demo: an in-memory store speaking RESP, enough for ``redis-cli``.

Theory of operation
-------------------
:class:`KVService` answers the :class:`~muxserver.handlers.resp.Command` events of a
:class:`~muxserver.handlers.resp.RespHandler`. It must run inline (the default strategy): the
store is a dict owned by the reactor thread, and so is the expiry sweep.

Dispatch is one dict lookup on the command name (exact bytes first, then lower-cased), an
arity check, and a call. :data:`COMMANDS` is the whole protocol as a table of name -> arity and
function, with Redis's arity convention (``3``: exactly three words, the name included;
``-2``: at least two). Container commands (``CLIENT``, ``COMMAND``, ``CONFIG``) carry a
sub-table. Errors are reply *values* (:class:`~muxserver.handlers.resp.RespError`) worded as
Redis 7.0 words them, never exceptions.

Time. The service reads an injectable clock (seconds; the reactor's monotonic clock in the
demo), handlers never do. Deadlines are integer milliseconds on that clock, as in Redis; a key
is expired once ``now > deadline``. Expiry (in :mod:`~muxserver.services.keyspace`) is lazy,
plus a periodic sweep (:meth:`KVService.start_expiry`) that looks at ``sweep_limit`` due
deadlines at most per run, so one sweep never stalls the reactor.

Deliberate differences from Redis 7.0 (see the README): strings only; one database
(``SELECT 0`` only); RESP2 only (``HELLO 3`` is refused with ``NOPROTO``); ``COMMAND`` and
``COMMAND DOCS`` answer an empty list; ``SET`` knows EX, PX, NX, XX, GET and KEEPTTL (not EXAT,
PXAT); ``CLIENT SETINFO`` (Redis 7.2) is accepted; text echoed in error replies is cut at a NUL
byte as Redis cuts it, and non-UTF-8 bytes in it are replaced.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from typing import Any, Final, NamedTuple, TypeAlias

from muxserver import __version__
from muxserver.handlers.base import Request
from muxserver.handlers.resp import OK, RespError, RespValue, SimpleString
from muxserver.reactor.loop import Reactor
from muxserver.reactor.timers import Timer
from muxserver.service import Peer, Service
from muxserver.services.keyspace import KeySpace

__all__ = ["COMMANDS", "CommandSpec", "KVService"]

LLONG_MAX: Final = 2**63 - 1
LLONG_MIN: Final = -(2**63)
_SECONDS_MAX: Final = LLONG_MAX // 1000
"""The largest second count that fits in milliseconds (C truncation; symmetric for minus)."""

_PONG: Final = SimpleString("PONG")
_SYNTAX: Final = RespError("ERR syntax error")
_NOT_INT: Final = RespError("ERR value is not an integer or out of range")
_OVERFLOW: Final = RespError("ERR increment or decrement would overflow")


def _parse_int(text: bytes) -> int | None:
    """``text`` as Redis's ``string2ll`` reads it (no sign but ``-``, no leading zeros), or None."""
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or (digits[0] == 0x30 and len(text) > 1) or len(digits) > 19:
        return None
    number = int(text)
    return number if LLONG_MIN <= number <= LLONG_MAX else None


def _c_text(arg: bytes, limit: int = 128) -> bytes:
    """``arg`` as C's ``%.128s`` prints it: cut at the first NUL and at ``limit`` bytes."""
    return arg.split(b"\0", 1)[0][:limit]


def _error(text: bytes) -> RespError:
    return RespError(text.decode("utf-8", "replace"))


CommandFunction: TypeAlias = Callable[[KeySpace, list[bytes], Peer], RespValue]
"""A command: ``(keyspace, args, peer) -> reply``; ``args[0]`` is the command name."""


class CommandSpec(NamedTuple):
    """One row of :data:`COMMANDS`: Redis's arity, the function, and any subcommands."""

    arity: int
    function: CommandFunction | None
    subcommands: dict[str, CommandSpec] | None = None


# ---- the commands: keys and values ----------------------------------------------------------


def ping(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """PING [message]."""
    if len(args) > 2:
        return _wrong_arity("ping")
    return _PONG if len(args) == 1 else args[1]


def echo(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """ECHO message."""
    return args[1]


def get(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """GET key."""
    # hot path: while no key has a deadline, KeySpace.get is this one dict read
    return db.data.get(args[1]) if not db.expires else db.get(args[1])


def set_(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """SET key value [NX|XX] [GET] [EX seconds|PX milliseconds|KEEPTTL]."""
    if len(args) == 3:
        # hot path: while no key has a deadline, KeySpace.set is this one dict write
        if db.expires:
            db.set(args[1], args[2])
        else:
            db.data[args[1]] = args[2]
        return OK
    nx = xx = want_old = keep_ttl = False
    unit = b""
    amount = b""
    at, end = 3, len(args)
    # The same acceptance rules, in the same order, as Redis's option parser.
    while at < end:
        option = args[at].upper()
        has_next = at + 1 < end
        if option == b"NX" and not xx:
            nx = True
        elif option == b"XX" and not nx:
            xx = True
        elif option == b"GET":
            want_old = True
        elif option == b"KEEPTTL" and not unit:
            keep_ttl = True
        elif option in (b"EX", b"PX") and not keep_ttl and unit in (b"", option) and has_next:
            unit, amount = option, args[at + 1]
            at += 1
        else:
            return _SYNTAX
        at += 1
    when = 0
    if unit:
        number = _parse_int(amount)
        if number is None:
            return _NOT_INT
        now = db.now_ms()
        if number <= 0 or (unit == b"EX" and number > _SECONDS_MAX):
            return _expire_error("set")
        when = number * 1000 if unit == b"EX" else number
        if when > LLONG_MAX - now:
            return _expire_error("set")
        when += now
    key = args[1]
    old = db.get(key)
    if (nx and old is not None) or (xx and old is None):
        return old if want_old else None
    db.set(key, args[2], keep_ttl)
    if unit:
        db.set_deadline(key, when)
    return old if want_old else OK


def delete(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """DEL key [key ...]."""
    return sum(db.delete(key) for key in args[1:])


def exists(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """EXISTS key [key ...] (a key named twice counts twice)."""
    return sum(db.get(key) is not None for key in args[1:])


def _add(db: KeySpace, key: bytes, increment: int) -> RespValue:
    old = db.get(key)
    current = 0 if old is None else _parse_int(old)
    if current is None:
        return _NOT_INT
    new = current + increment
    if not LLONG_MIN <= new <= LLONG_MAX:
        return _OVERFLOW
    db.set(key, b"%d" % new, keep_ttl=True)
    return new


def incr(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """INCR key."""
    return _add(db, args[1], 1)


def decr(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """DECR key."""
    return _add(db, args[1], -1)


def incrby(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """INCRBY key increment."""
    increment = _parse_int(args[2])
    return _NOT_INT if increment is None else _add(db, args[1], increment)


def decrby(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """DECRBY key decrement."""
    decrement = _parse_int(args[2])
    if decrement is None:
        return _NOT_INT
    if decrement == LLONG_MIN:
        return RespError("ERR decrement would overflow")
    return _add(db, args[1], -decrement)


def mget(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """MGET key [key ...]."""
    return [db.get(key) for key in args[1:]]


def mset(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """MSET key value [key value ...]."""
    if len(args) % 2 == 0:
        return _wrong_arity("mset")
    for at in range(1, len(args), 2):
        db.set(args[at], args[at + 1])
    return OK


def expire(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """EXPIRE key seconds [NX|XX|GT|LT]; a time in the past deletes the key."""
    flags: set[bytes] = set()
    for option in args[3:]:
        flag = option.upper()
        if flag not in (b"NX", b"XX", b"GT", b"LT"):
            return _error(b"ERR Unsupported option " + _c_text(option, 1 << 20))
        flags.add(flag)
    if b"NX" in flags and len(flags) > 1:
        return RespError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in flags and b"LT" in flags:
        return RespError("ERR GT and LT options at the same time are not compatible")
    seconds = _parse_int(args[2])
    if seconds is None:
        return _NOT_INT
    now = db.now_ms()
    if not -_SECONDS_MAX <= seconds <= _SECONDS_MAX or seconds * 1000 > LLONG_MAX - now:
        return _expire_error("expire")
    when = seconds * 1000 + now
    key = args[1]
    if db.get(key) is None:
        return 0
    current = db.expires.get(key)
    if (
        (b"NX" in flags and current is not None)
        or (b"XX" in flags and current is None)
        or (b"GT" in flags and (current is None or when <= current))
        or (b"LT" in flags and current is not None and when >= current)
    ):
        return 0
    if when <= now:
        db.delete(key)
    else:
        db.set_deadline(key, when)
    return 1


def ttl(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """TTL key: seconds left (rounded), -1 without a deadline, -2 without the key."""
    left = _left_ms(db, args[1])
    return left if left < 0 else (left + 500) // 1000


def pttl(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """PTTL key: like TTL, in milliseconds."""
    return _left_ms(db, args[1])


def _left_ms(db: KeySpace, key: bytes) -> int:
    if db.get(key) is None:
        return -2
    when = db.expires.get(key)
    return -1 if when is None else max(when - db.now_ms(), 0)


def persist(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """PERSIST key: 1 if a deadline was removed."""
    return int(db.persist(args[1]))


def dbsize(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """DBSIZE (as in Redis, counts expired keys not removed yet)."""
    return len(db)


def flushdb(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """FLUSHDB [ASYNC|SYNC] (both are synchronous here)."""
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        return _SYNTAX
    db.flush()
    return OK


# ---- the commands: the connection -------------------------------------------------------------


def quit_(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """QUIT: answer OK, then close."""
    if peer.connection is not None:
        peer.connection.close()
    return OK


def select(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """SELECT index: only database 0 exists."""
    index = _parse_int(args[1])
    if index is None:
        return _NOT_INT
    if not -(2**31) <= index < 2**31:
        return RespError("ERR value is out of range, value must between -2147483648 and 2147483647")
    return OK if index == 0 else RespError("ERR DB index is out of range")


_WRONGPASS = RespError("WRONGPASS invalid username-password pair or user is disabled.")


def auth(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """AUTH [username] password, as a default Redis answers it: no password is configured,
    and ``default`` (a user without a password) is the only user."""
    if len(args) == 2:
        return RespError(
            "ERR AUTH <password> called without any password configured for the default user. "
            "Are you sure your configuration is correct?"
        )
    if len(args) == 3:
        return OK if args[1] == b"default" else _WRONGPASS
    return RespError("ERR syntax error")


def hello(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """HELLO [protover [AUTH username password] [SETNAME name]]: RESP2 only."""
    if len(args) > 1:
        version = _parse_int(args[1])
        if version is None:
            return RespError("ERR Protocol version is not an integer or out of range")
        if version != 2:
            return RespError("NOPROTO unsupported protocol version")
    at = 2
    name: bytes | None = None
    while at < len(args):  # every option is checked before any takes effect
        option = args[at].upper()
        if option == b"AUTH" and at + 2 < len(args):
            if args[at + 1] != b"default":
                return _WRONGPASS
            at += 3
        elif option == b"SETNAME" and at + 1 < len(args):
            name = args[at + 1]
            at += 2
        else:
            return _error(b"ERR Syntax error in HELLO option '" + _c_text(args[at]) + b"'")
    if name is not None:
        reply = _set_name(peer, name)
        if reply is not OK:
            return reply
    fields: dict[str, RespValue] = {"server": "muxserver", "version": __version__, "proto": 2}
    fields |= {"id": peer.connection_id, "mode": "standalone", "role": "master", "modules": []}
    return [item for pair in fields.items() for item in pair]


def _set_name(peer: Peer, name: bytes) -> RespValue:
    if any(byte < 0x21 or byte > 0x7E for byte in name):
        return RespError("ERR Client names cannot contain spaces, newlines or special characters.")
    peer.extra["client_name"] = name or None
    return OK


def client_setname(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """CLIENT SETNAME name (kept in ``peer.extra["client_name"]``)."""
    return _set_name(peer, args[2])


def client_getname(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """CLIENT GETNAME."""
    name: bytes | None = peer.extra.get("client_name")
    return name


def client_id(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """CLIENT ID: the connection's number."""
    return peer.connection_id


def client_setinfo(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """CLIENT SETINFO LIB-NAME|LIB-VER value (sent by Redis 7.2 clients): accepted."""
    if args[2].upper() not in (b"LIB-NAME", b"LIB-VER"):
        return _error(b"ERR Unrecognized option '" + _c_text(args[2]) + b"'")
    return OK


def command_list(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """COMMAND and COMMAND DOCS: an empty list (clients fall back to their own help)."""
    return []


def command_count(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """COMMAND COUNT: how many top-level commands there are."""
    return len(COMMANDS)


CONFIG: Final = {"save": b"", "appendonly": b"no", "databases": b"1"}
"""What CONFIG GET reports (redis-benchmark asks for ``save`` and ``appendonly``)."""


def config_get(db: KeySpace, args: list[bytes], peer: Peer) -> RespValue:
    """CONFIG GET pattern [pattern ...]: flat name/value pairs of :data:`CONFIG`."""
    patterns = [arg.decode("latin-1").lower() for arg in args[2:]]
    reply: list[RespValue] = []
    for name, value in CONFIG.items():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            reply += [name, value]
    return reply


# ---- the table -------------------------------------------------------------------------------

COMMANDS: Final[dict[str, CommandSpec]] = {
    # name      arity  function
    "ping": CommandSpec(-1, ping),
    "echo": CommandSpec(2, echo),
    "get": CommandSpec(2, get),
    "set": CommandSpec(-3, set_),
    "del": CommandSpec(-2, delete),
    "exists": CommandSpec(-2, exists),
    "incr": CommandSpec(2, incr),
    "incrby": CommandSpec(3, incrby),
    "decr": CommandSpec(2, decr),
    "decrby": CommandSpec(3, decrby),
    "mget": CommandSpec(-2, mget),
    "mset": CommandSpec(-3, mset),
    "expire": CommandSpec(-3, expire),
    "ttl": CommandSpec(2, ttl),
    "pttl": CommandSpec(2, pttl),
    "persist": CommandSpec(2, persist),
    "dbsize": CommandSpec(1, dbsize),
    "flushdb": CommandSpec(-1, flushdb),
    "flushall": CommandSpec(-1, flushdb),
    "quit": CommandSpec(-1, quit_),
    "select": CommandSpec(2, select),
    "auth": CommandSpec(-2, auth),
    "hello": CommandSpec(-1, hello),
    "client": CommandSpec(
        -2,
        None,
        {
            "setname": CommandSpec(3, client_setname),
            "getname": CommandSpec(2, client_getname),
            "id": CommandSpec(2, client_id),
            "setinfo": CommandSpec(4, client_setinfo),
        },
    ),
    "command": CommandSpec(
        -1,
        command_list,
        {"docs": CommandSpec(-2, command_list), "count": CommandSpec(2, command_count)},
    ),
    "config": CommandSpec(-2, None, {"get": CommandSpec(-3, config_get)}),
}
"""Every command: lower-case name -> Redis arity, function, subcommands."""


class _Entry(NamedTuple):
    arity: int
    function: CommandFunction | None
    name: str  # as Redis names it in errors: "get", "client|setname"
    subcommands: dict[bytes, _Entry] | None


def _compile(table: dict[str, CommandSpec], parent: str = "") -> dict[bytes, _Entry]:
    """The lookup dict: each name in lower and upper case, so most lookups need no ``lower()``."""
    compiled: dict[bytes, _Entry] = {}
    for name, spec in table.items():
        full = f"{parent}|{name}" if parent else name
        subs = None if spec.subcommands is None else _compile(spec.subcommands, full)
        entry = _Entry(spec.arity, spec.function, full, subs)
        compiled[name.encode()] = compiled[name.upper().encode()] = entry
    return compiled


_LOOKUP: Final = _compile(COMMANDS)


def _wrong_arity(name: str) -> RespError:
    return RespError(f"ERR wrong number of arguments for '{name}' command")


def _expire_error(name: str) -> RespError:
    return RespError(f"ERR invalid expire time in '{name}' command")


def _unknown_command(args: list[bytes]) -> RespError:
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + _c_text(arg, 128 - len(shown)) + b"' "
    return _error(
        b"ERR unknown command '%s', with args beginning with: %s" % (_c_text(args[0]), shown)
    )


class KVService(Service):
    """The key-value store as a service. Run it inline; see the module docstring.

    Args:
        clock: seconds on any steady clock (the reactor's ``time`` in the demo); tests pass a
            fake one to drive expiry.
        sweep_limit: most deadlines one expiry sweep looks at.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, sweep_limit: int = 200
    ) -> None:
        self.keys = KeySpace(clock)
        """The data (for tests and the status page; reactor thread only)."""
        self.sweep_limit = sweep_limit
        self._timer: Timer | None = None

    def handle(self, request: Request, peer: Peer) -> Any:
        """Run one command and return its reply (a RESP value; errors are RespError values)."""
        # hot path: one dict lookup (two for mixed-case names), an arity check, a call
        args: list[bytes] = request.args  # type: ignore[attr-defined]  # RespHandler: Commands
        entry = _LOOKUP.get(args[0]) or _LOOKUP.get(args[0].lower())
        if entry is None:
            return _unknown_command(args)
        arity, function, name, subcommands = entry
        if subcommands is not None and len(args) > 1:
            sub = subcommands.get(args[1].lower())
            if sub is None:
                return _error(
                    b"ERR unknown subcommand '%s'. Try %s HELP."
                    % (_c_text(args[1]), name.upper().encode())
                )
            arity, function, name, _ = sub
        if (len(args) != arity) if arity > 0 else (len(args) < -arity):
            return _wrong_arity(name)
        assert function is not None  # every container's arity demands a subcommand
        return function(self.keys, args, peer)

    def sweep(self) -> bool:
        """Remove expired keys (at most ``sweep_limit`` looked at); whether more are due."""
        return self.keys.sweep(self.sweep_limit)

    def start_expiry(self, reactor: Reactor, interval: float = 0.1) -> None:
        """Sweep every ``interval`` seconds on ``reactor`` (sooner while a backlog is due)."""

        def run() -> None:
            more = self.sweep()
            self._timer = reactor.call_later(0.0 if more else interval, run)

        self.stop_expiry()
        self._timer = reactor.call_later(interval, run)

    def stop_expiry(self) -> None:
        """Stop the periodic sweep started by :meth:`start_expiry`."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
