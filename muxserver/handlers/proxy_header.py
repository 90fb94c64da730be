"""The PROXY protocol header (versions 1 and 2): parsing, TLVs, CRC32C and encoders.

What :class:`~muxserver.handlers.proxy.ProxyProtocolHandler` reads, and what a client (or a
test) writes in front of a connection. :func:`parse_v1_line` and :func:`parse_v2_header` turn
a complete header into the PeerUpdate extra the handler reports; finding where a header ends
in a stream of bytes is the handler's job. :func:`encode_v1` and :func:`encode_v2` build
headers.

Addresses are ``(host, port)`` for IPv4 and IPv6 (the host as :func:`ipaddress.ip_address`
formats it), and for Unix sockets the path as ``str`` (``""`` for an unnamed socket) or, for a
Linux abstract name (leading NUL), ``bytes`` with the padding NULs stripped.

The specification is HAProxy's ``doc/proxy-protocol.txt``. This parser is strict where the
specification is: exactly one space between version 1 fields, no leading zeros, CRLF within
107 bytes, only the signature, versions, commands, families and transports it defines, and a
checked CRC32C TLV. Nothing is ever answered to a bad header: the specification says to drop
the connection, so :class:`~muxserver.handlers.base.ProtocolError` carries no reply.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
from collections.abc import Mapping
from typing import Any, TypeAlias

from muxserver.handlers.base import ProtocolError

__all__ = [
    "V1_MAX_LENGTH",
    "V1_PREFIX",
    "V2_FIXED_LENGTH",
    "V2_SIGNATURE",
    "Address",
    "SSLInfo",
    "TLVType",
    "crc32c_checksum",
    "encode_v1",
    "encode_v2",
    "parse_v1_line",
    "parse_v2_header",
]

V1_MAX_LENGTH = 107
"""The longest version 1 line, CRLF included (``PROXY UNKNOWN`` with two IPv6 addresses)."""

V1_PREFIX = b"PROXY "
"""The 6 bytes that open every version 1 line."""

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes that open every version 2 header."""

V2_FIXED_LENGTH = 16
"""The fixed part of a version 2 header: signature, version/command, family/transport, length."""

Address: TypeAlias = "tuple[str, int] | str | bytes"
"""An endpoint from a PROXY header: ``(host, port)``, or a Unix path (``str`` or ``bytes``)."""

_UNIX_PATH = 108  # sizeof(sun_path) in the specification's struct


class TLVType(enum.IntEnum):
    """Registered version 2 TLV types; ``proxy_tlvs`` is keyed by the plain integer."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    SSL_VERSION = 0x21
    SSL_CN = 0x22
    SSL_CIPHER = 0x23
    SSL_SIG_ALG = 0x24
    SSL_KEY_ALG = 0x25
    NETNS = 0x30


@dataclasses.dataclass(frozen=True)
class SSLInfo:
    """The value of a ``PP2_TYPE_SSL`` TLV: what the proxy knows about the client's TLS.

    ``client`` is the bit field (0x01 TLS used, 0x02 certificate on this connection, 0x04
    certificate in this session), ``verify`` is zero when a client certificate was verified,
    and ``sub_tlvs`` holds the nested TLVs (version, CN, cipher, ...) by type, as bytes.
    """

    client: int
    verify: int
    sub_tlvs: Mapping[int, bytes] = dataclasses.field(default_factory=dict)

    @property
    def ssl(self) -> bool:
        """Whether the client connected over TLS (``PP2_CLIENT_SSL``)."""
        return bool(self.client & 0x01)

    @property
    def version(self) -> str | None:
        """The TLS version name, e.g. ``"TLSv1.3"``, if the proxy sent it."""
        return self._text(TLVType.SSL_VERSION)

    @property
    def cn(self) -> str | None:
        """The Common Name of the client certificate, if any."""
        return self._text(TLVType.SSL_CN)

    @property
    def cipher(self) -> str | None:
        """The cipher name, e.g. ``"ECDHE-RSA-AES128-GCM-SHA256"``, if the proxy sent it."""
        return self._text(TLVType.SSL_CIPHER)

    def _text(self, subtype: int) -> str | None:
        value = self.sub_tlvs.get(subtype)
        return None if value is None else value.decode("utf-8", "replace")


# --- version 1 ---------------------------------------------------------------------------


def parse_v1_line(line: bytes) -> dict[str, Any]:
    """Parse what follows ``PROXY `` up to (not including) the CRLF.

    Returns the PeerUpdate extra described in :mod:`muxserver.handlers.proxy`.

    Raises:
        ProtocolError: the line is malformed (no reply).
    """
    fields = line.split(b" ")
    if fields[0] == b"UNKNOWN":
        # The specification says the receiver must ignore anything after UNKNOWN.
        return {"proxy_version": 1, "proxy_tlvs": {}}
    if fields[0] not in (b"TCP4", b"TCP6") or len(fields) != 5:
        raise ProtocolError(f"PROXY protocol: bad version 1 line {line[:60]!r}")
    version = 4 if fields[0] == b"TCP4" else 6
    src = _v1_host(fields[1], version)
    dst = _v1_host(fields[2], version)
    return {
        "proxy_address": (src, _v1_port(fields[3])),
        "proxy_destination": (dst, _v1_port(fields[4])),
        "proxy_version": 1,
        "proxy_tlvs": {},
    }


_V4_CHARS = frozenset(b"0123456789.")
_V6_CHARS = frozenset(b"0123456789abcdefABCDEF:.")  # dots: inet_ntop writes ::ffff:1.2.3.4


def _v1_host(field: bytes, version: int) -> str:
    # ipaddress alone would also take scope ids ("fe80::1%eth0"); the charset check stops that.
    allowed = _V4_CHARS if version == 4 else _V6_CHARS
    if not field or not set(field) <= allowed:
        raise ProtocolError(f"PROXY protocol: bad IPv{version} address {field[:40]!r}")
    try:
        address = ipaddress.ip_address(field.decode("ascii"))
    except ValueError:
        raise ProtocolError(f"PROXY protocol: bad IPv{version} address {field!r}") from None
    if address.version != version:
        raise ProtocolError(f"PROXY protocol: {field!r} is not an IPv{version} address")
    return str(address)


def _v1_port(field: bytes) -> int:
    # bytes.isdigit() is ASCII-only, unlike int(), which takes "+1", " 1" and "1_0".
    if not field.isdigit() or (len(field) > 1 and field[0] == 0x30) or int(field) > 65535:
        raise ProtocolError(f"PROXY protocol: bad port {field[:10]!r}")
    return int(field)


# --- version 2 ---------------------------------------------------------------------------

_V2_ADDRESS_LENGTHS = {0x1: 12, 0x2: 36, 0x3: 2 * _UNIX_PATH}


def parse_v2_header(header: bytes) -> dict[str, Any]:
    """Parse a complete version 2 header (signature already checked).

    Returns the PeerUpdate extra described in :mod:`muxserver.handlers.proxy`.

    Raises:
        ProtocolError: the header is malformed or its CRC32C does not match (no reply).
    """
    version, command = header[12] >> 4, header[12] & 0x0F
    family, transport = header[13] >> 4, header[13] & 0x0F
    if version != 2:
        raise ProtocolError(f"PROXY protocol: version nibble {version}, expected 2")
    if command > 1:
        raise ProtocolError(f"PROXY protocol: unknown version 2 command {command:#x}")
    if family > 3 or transport > 2:
        raise ProtocolError(f"PROXY protocol: unknown family/transport byte {header[13]:#04x}")
    extra: dict[str, Any] = {"proxy_version": 2, "proxy_tlvs": {}}
    # LOCAL: "discard the protocol block including the family"; UNSPEC: ignore the addresses,
    # and with no known layout there is no telling where TLVs would start.
    if command == 0 or family == 0 or transport == 0:
        return extra
    body = header[V2_FIXED_LENGTH:]
    needed = _V2_ADDRESS_LENGTHS[family]
    if len(body) < needed:
        raise ProtocolError(
            f"PROXY protocol: address block of {len(body)} bytes, family needs {needed}"
        )
    if family == 0x3:
        extra["proxy_address"] = _unix_path(body[:_UNIX_PATH])
        extra["proxy_destination"] = _unix_path(body[_UNIX_PATH:needed])
    else:
        size = 4 if family == 0x1 else 16
        ports = body[2 * size : needed]
        extra["proxy_address"] = (_ip(body[:size]), int.from_bytes(ports[:2], "big"))
        extra["proxy_destination"] = (_ip(body[size : 2 * size]), int.from_bytes(ports[2:], "big"))
    tlvs = _parse_tlvs(body[needed:])
    if TLVType.CRC32C in tlvs:
        _check_crc32c(header, V2_FIXED_LENGTH + needed)
    extra["proxy_tlvs"] = tlvs
    return extra


def _ip(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _unix_path(raw: bytes) -> str | bytes:
    name = raw.rstrip(b"\x00")
    if name[:1] == b"\x00":  # a Linux abstract name; its NUL padding is indistinguishable
        return name
    return os.fsdecode(raw.split(b"\x00", 1)[0])


def _split_tlvs(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split a TLV vector into (type, offset of the value, value); it must end exactly."""
    items = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ProtocolError("PROXY protocol: truncated TLV")
        kind = data[offset]
        length = int.from_bytes(data[offset + 1 : offset + 3], "big")
        start = offset + 3
        if start + length > len(data):
            raise ProtocolError(f"PROXY protocol: TLV {kind:#04x} overruns the header")
        items.append((kind, start, data[start : start + length]))
        offset = start + length
    return items


def _parse_tlvs(data: bytes) -> dict[int, Any]:
    tlvs: dict[int, Any] = {}
    for kind, _, value in _split_tlvs(data):
        if kind == TLVType.NOOP:
            continue  # padding, to be ignored by definition
        if kind in tlvs:
            # Two values for one type would let a client smuggle one past the proxy.
            raise ProtocolError(f"PROXY protocol: TLV {kind:#04x} appears twice")
        if kind == TLVType.CRC32C and len(value) != 4:
            raise ProtocolError("PROXY protocol: CRC32C TLV is not 4 bytes")
        if kind == TLVType.UNIQUE_ID and len(value) > 128:
            raise ProtocolError("PROXY protocol: UNIQUE_ID TLV longer than 128 bytes")
        tlvs[kind] = _parse_ssl(value) if kind == TLVType.SSL else value
    return tlvs


def _parse_ssl(value: bytes) -> SSLInfo:
    if len(value) < 5:
        raise ProtocolError("PROXY protocol: SSL TLV shorter than 5 bytes")
    sub: dict[int, bytes] = {}
    for kind, _, sub_value in _split_tlvs(value[5:]):
        if kind in sub:
            raise ProtocolError(f"PROXY protocol: SSL sub-TLV {kind:#04x} appears twice")
        sub[kind] = sub_value
    return SSLInfo(client=value[0], verify=int.from_bytes(value[1:5], "big"), sub_tlvs=sub)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c_checksum(data: bytes) -> int:
    """The CRC-32C (Castagnoli, RFC 4960 appendix B) of ``data``, as the checksum TLV holds it.

    Headers are small, so a byte-wise table is enough.
    """
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _check_crc32c(header: bytes, tlv_start: int) -> None:
    for kind, offset, value in _split_tlvs(header[tlv_start:]):
        if kind == TLVType.CRC32C:
            at = tlv_start + offset
            zeroed = header[:at] + b"\x00\x00\x00\x00" + header[at + 4 :]
            if crc32c_checksum(zeroed) != int.from_bytes(value, "big"):
                raise ProtocolError("PROXY protocol: CRC32C checksum mismatch")
            return


# --- encoding, for clients and tests -----------------------------------------------------


def encode_v1(src: tuple[str, int] | None, dst: tuple[str, int] | None) -> bytes:
    """A version 1 line for ``src`` -> ``dst``; ``None`` for both gives ``PROXY UNKNOWN``.

    Raises:
        ValueError: for a bad address or port, or addresses of two different families.
    """
    if src is None or dst is None:
        if src is not dst:
            raise ValueError("encode_v1 needs both addresses, or neither (UNKNOWN)")
        return b"PROXY UNKNOWN\r\n"
    src_ip, dst_ip = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if src_ip.version != dst_ip.version:
        raise ValueError(f"encode_v1: {src[0]} and {dst[0]} are of different families")
    _check_port(src[1])
    _check_port(dst[1])
    return f"PROXY TCP{src_ip.version} {src_ip} {dst_ip} {src[1]} {dst[1]}\r\n".encode("ascii")


def encode_v2(
    src: Address | None,
    dst: Address | None,
    tlvs: Mapping[int, bytes | SSLInfo] | None = None,
    *,
    dgram: bool = False,
    crc32c: bool = False,
) -> bytes:
    """A version 2 header for ``src`` -> ``dst``, with ``tlvs`` in the mapping's order.

    ``(host, port)`` pairs give TCP (or UDP with ``dgram``) over IPv4/IPv6; ``str``/``bytes``
    paths give AF_UNIX. ``None`` for both gives a LOCAL command (a health check). With
    ``crc32c`` a checksum TLV is appended.

    Raises:
        ValueError: for a bad address, port, TLV, mixed families, or a header over 64 KiB.
    """
    transport = 0x2 if dgram else 0x1
    if src is None or dst is None:
        if src is not dst:
            raise ValueError("encode_v2 needs both addresses, or neither (LOCAL)")
        command, family_byte, block = 0x20, 0x00, b""
    else:
        command = 0x21
        family, block = _v2_address_block(src, dst)
        family_byte = family << 4 | transport
    for kind, value in (tlvs or {}).items():
        if not 0 <= kind <= 0xFF or kind == TLVType.CRC32C:
            raise ValueError(f"encode_v2: bad TLV type {kind!r} (pass crc32c=True for 0x03)")
        block += _tlv(kind, _encode_ssl(value) if isinstance(value, SSLInfo) else value)
    if crc32c:
        block += _tlv(TLVType.CRC32C, b"\x00\x00\x00\x00")
    if len(block) > 0xFFFF:
        raise ValueError("encode_v2: header longer than 65535 + 16 bytes")
    header = V2_SIGNATURE + bytes((command, family_byte)) + len(block).to_bytes(2, "big") + block
    if crc32c:
        header = header[:-4] + crc32c_checksum(header).to_bytes(4, "big")
    return header


def _v2_address_block(src: Address, dst: Address) -> tuple[int, bytes]:
    if isinstance(src, tuple) and isinstance(dst, tuple):
        src_ip, dst_ip = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
        if src_ip.version != dst_ip.version:
            raise ValueError(f"encode_v2: {src[0]} and {dst[0]} are of different families")
        _check_port(src[1])
        _check_port(dst[1])
        ports = src[1].to_bytes(2, "big") + dst[1].to_bytes(2, "big")
        return (1 if src_ip.version == 4 else 2), src_ip.packed + dst_ip.packed + ports
    if isinstance(src, tuple) or isinstance(dst, tuple):
        raise ValueError("encode_v2: cannot mix an IP address and a Unix path")
    return 3, _pad_path(src) + _pad_path(dst)


def _pad_path(path: str | bytes) -> bytes:
    raw = os.fsencode(path)
    if len(raw) > _UNIX_PATH:
        raise ValueError(f"encode_v2: Unix path longer than {_UNIX_PATH} bytes")
    return raw.ljust(_UNIX_PATH, b"\x00")


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")


def _tlv(kind: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"TLV {kind:#04x} value longer than 65535 bytes")
    return bytes((kind,)) + len(value).to_bytes(2, "big") + value


def _encode_ssl(info: SSLInfo) -> bytes:
    sub = b"".join(_tlv(kind, value) for kind, value in info.sub_tlvs.items())
    return bytes((info.client,)) + info.verify.to_bytes(4, "big") + sub
