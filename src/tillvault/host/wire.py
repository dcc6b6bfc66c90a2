"""TCP framing for ISO 8583: each message is preceded by its length, 2 bytes big-endian.

Failure modes, stated once for the client and the server:

- the peer closes cleanly between frames: :func:`recv_frame` raises :class:`EOFError`;
- the peer closes inside a frame, or announces an empty or oversize frame:
  :class:`~tillvault.errors.HostProtocolError`;
- a socket timeout or OS error propagates unchanged (``TimeoutError``, ``OSError``).

TLS is optional and plain :mod:`ssl`: wrap the listening socket with
:func:`server_ssl_context` (certificate + key) and the client socket with a context from
:func:`client_ssl_context` (a CA file, or the system trust store).
"""

from __future__ import annotations

import socket
import ssl
import struct
from pathlib import Path

from tillvault.errors import HostProtocolError

__all__ = [
    "MAX_FRAME",
    "client_ssl_context",
    "recv_exactly",
    "recv_frame",
    "send_frame",
    "server_ssl_context",
]

#: Largest payload a 2-byte prefix can announce.
MAX_FRAME = 0xFFFF

_PREFIX = struct.Struct(">H")


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Send ``payload`` with its 2-byte big-endian length prefix, in one ``sendall``.

    :raises HostProtocolError: ``payload`` is empty or longer than 65,535 bytes.
    :raises OSError: the socket failed (``TimeoutError`` on a send timeout).
    """
    if not payload:
        raise HostProtocolError("refusing to send an empty frame")
    if len(payload) > MAX_FRAME:
        raise HostProtocolError(f"frame of {len(payload)} bytes exceeds the {MAX_FRAME}-byte limit")
    sock.sendall(_PREFIX.pack(len(payload)) + payload)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes, across short reads.

    :raises EOFError: the peer closed before the first byte.
    :raises HostProtocolError: the peer closed after some but not all bytes.
    :raises OSError: the socket failed (``TimeoutError`` on a receive timeout).
    """
    first = sock.recv(size)
    if len(first) == size:  # the usual case: the whole of it in one read
        return first
    if not first:
        raise EOFError("connection closed by peer")
    chunks = bytearray(first)
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            if not chunks:
                raise EOFError("connection closed by peer")
            raise HostProtocolError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def recv_frame(sock: socket.socket, *, max_size: int = 8192) -> bytes:
    """Receive one frame's payload.

    ``max_size`` (bytes) bounds what is accepted; a TillVault message is a few hundred bytes.

    :raises EOFError: the peer closed cleanly before a new frame began.
    :raises HostProtocolError: the peer closed mid-frame, or announced a frame of 0 bytes or
        more than ``max_size`` bytes.
    :raises OSError: the socket failed (``TimeoutError`` on a receive timeout).
    """
    (size,) = _PREFIX.unpack(recv_exactly(sock, 2))
    if size == 0:
        raise HostProtocolError("peer sent an empty frame")
    if size > max_size:
        raise HostProtocolError(f"peer announced a {size}-byte frame, over the {max_size}-byte limit")
    try:
        return recv_exactly(sock, size)
    except EOFError:
        raise HostProtocolError(f"connection closed after the length prefix of a {size}-byte frame") from None


def server_ssl_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 or later) using a PEM certificate and key.

    :raises OSError: a file cannot be read. :raises ssl.SSLError: they do not form a pair.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def client_ssl_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A TLS client context that verifies the host: against ``ca_file`` (PEM) or the system store.

    :raises OSError: ``ca_file`` cannot be read.
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
