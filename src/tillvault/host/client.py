"""The terminal's link to the acquirer host: one request, one matching reply, errors by outcome.

The three errors say what the terminal knows about the money:

- :class:`~tillvault.errors.HostUnavailable`: the request never reached the host whole (no
  connection, or the send failed part way, so the host cannot have acted). Not authorized.
- :class:`~tillvault.errors.HostTimeout`: the request was sent whole but no reply came (time
  out, or the host closed or reset the connection). The outcome is unknown: reverse it.
- :class:`~tillvault.errors.HostProtocolError`: a reply came but is garbage or does not match
  (MTI + 10, same STAN, same terminal id). The outcome is unknown: reverse it.

The connection is kept between exchanges. Before reusing it the client checks that the host
has not closed it; a dead connection, or a send that fails, is replaced once, transparently,
because nothing reached the host. After any failure once the request was sent the connection
is dropped, so a late reply can never be mistaken for the answer to the next request.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Mapping
from types import TracebackType

from tillvault.domain import iso8583
from tillvault.errors import HostProtocolError, HostTimeout, HostUnavailable, MessageError
from tillvault.host.wire import recv_frame, send_frame

__all__ = ["HostClient", "parse_address"]


def parse_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[::1]:8583"`` for IPv6) into a host and an int port.

    :raises HostUnavailable: the address is not ``host:port`` with a port from 1 to 65535.
    """
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HostUnavailable(f"host address must be HOST:PORT, got {address!r}")
    return host, int(port)


class HostClient:
    """A persistent ISO 8583 link to the host at ``address`` (``"host:port"``).

    ``timeout`` (seconds) bounds the wait for a reply once a request is sent;
    ``connect_timeout`` (seconds) bounds connecting (and the TLS handshake). With
    ``ssl_context`` the link is TLS; ``server_hostname`` defaults to the address's host.
    Safe to share between threads: exchanges are serialized.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.address = address
        self._host, self._port = parse_address(address)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname or self._host
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    # -- public --------------------------------------------------------------------------------

    def exchange(self, request_fields: Mapping[str, str]) -> dict[str, str]:
        """Send one request and return the host's matching reply, decoded.

        :raises MessageError: ``request_fields`` cannot be encoded (nothing was sent).
        :raises HostUnavailable: the request did not reach the host (outcome known: nothing done).
        :raises HostTimeout: sent, but no reply in ``timeout`` seconds or the link broke
            (outcome unknown).
        :raises HostProtocolError: the reply is malformed or does not match the request
            (outcome unknown).
        """
        payload = iso8583.encode(request_fields)
        with self._lock:
            sock = self._send(payload)
            try:
                reply = self._receive(sock)
                response = self._match(request_fields, reply)
            except BaseException:
                self._drop()
                raise
            return response

    def reachable(self) -> bool:
        """True when a connection to the host is open or can be opened now (nothing is sent)."""
        with self._lock:
            if self._sock is not None and self._alive(self._sock):
                return True
            self._drop()
            try:
                self._sock = self._connect()
            except HostUnavailable:
                return False
            return True

    def close(self) -> None:
        """Close the connection (the next exchange reconnects)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> HostClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _send(self, payload: bytes) -> socket.socket:
        """Deliver ``payload`` on a live connection, replacing a dead reused one once."""
        reused = self._sock is not None and self._alive(self._sock)
        if self._sock is not None and not reused:
            self._drop()
        for attempt in (1, 2):
            if self._sock is None:
                self._sock = self._connect()
            try:
                _set_timeout(self._sock, self.timeout)
                send_frame(self._sock, payload)
                return self._sock
            except OSError as exc:
                # sendall failed, so the frame is incomplete on the host's side: not processed.
                self._drop()
                if not reused or attempt == 2:
                    raise HostUnavailable(f"could not send to host {self.address}: {exc}") from None
                reused = False
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self.connect_timeout)
        except OSError as exc:
            raise HostUnavailable(f"cannot connect to host {self.address}: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self._server_hostname)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise HostUnavailable(f"TLS handshake with host {self.address} failed: {exc}") from None
        return sock

    @staticmethod
    def _alive(sock: socket.socket) -> bool:
        """False when the host closed the connection (or sent something unasked for)."""
        if _poll is not None and not isinstance(sock, ssl.SSLSocket):
            # One poll instead of a non-blocking recv between two mode switches: a plain socket
            # with anything to read (a close, a reset, a stray byte) is not to be reused either way.
            # TLS keeps the recv: a session ticket makes its socket readable while it is idle.
            try:
                poller = _poll()
                poller.register(sock, select.POLLIN)
                return not poller.poll(0)
            except (OSError, ValueError):
                return False
        try:
            sock.setblocking(False)
            try:
                data = sock.recv(1)
            finally:
                sock.setblocking(True)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True  # nothing to read: the connection is open and idle
        except OSError:
            return False
        # b"" is a close; a byte would be a stray reply, never to be taken for the next answer.
        del data
        return False

    def _receive(self, sock: socket.socket) -> bytes:
        _set_timeout(sock, self.timeout)
        try:
            return recv_frame(sock)
        except TimeoutError:
            raise HostTimeout(f"no reply from host {self.address} within {self.timeout:g} s; outcome unknown") from None
        except EOFError:
            raise HostTimeout(
                f"host {self.address} closed the connection after the request was sent; outcome unknown"
            ) from None
        except HostProtocolError:
            raise
        except OSError as exc:
            raise HostTimeout(
                f"connection to host {self.address} failed after the request was sent ({exc}); outcome unknown"
            ) from None

    @staticmethod
    def _match(request: Mapping[str, str], reply: bytes) -> dict[str, str]:
        try:
            response = iso8583.decode(reply)
        except MessageError as exc:
            raise HostProtocolError(f"host sent a malformed reply: {exc}") from None
        expected = f"{int(request['t']) + 10:04d}"
        if response.get("t") != expected:
            raise HostProtocolError(f"host replied with MTI {response.get('t')}, expected {expected}")
        for key, name in (("11", "STAN"), ("41", "terminal id")):
            if response.get(key) != request.get(key):
                raise HostProtocolError(
                    f"host reply {name} {response.get(key)!r} does not match the request's {request.get(key)!r}"
                )
        if "39" not in response:
            raise HostProtocolError("host reply has no response code (field 39)")
        return response

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


#: ``select.poll`` where the platform has it (not Windows): the idle check then costs one call.
_poll = getattr(select, "poll", None)


def _set_timeout(sock: socket.socket, timeout: float) -> None:
    """``sock.settimeout(timeout)`` unless it is already so (each call is a system call)."""
    if sock.gettimeout() != timeout:
        sock.settimeout(timeout)
