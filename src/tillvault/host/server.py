"""The reference acquirer + issuer host: ISO 8583 over TCP (optionally TLS), one thread a connection.

A connection carries any number of requests, answered in order. What each request gets is
decided in :mod:`.processing`; this module frames, decodes, applies faults (:mod:`.faults`)
and replies. A frame that does not decode is answered "30 format error" when its MTI can be
read (with its STAN and terminal id where readable), else the connection is closed. An
unexpected failure while processing is answered "96 system malfunction" (the SQLite
transaction rolled back: nothing was applied). Nothing that reaches a log names a PAN.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

from tillvault.domain import iso8583 as iso
from tillvault.errors import ConfigError, HostProtocolError, HostUnavailable, MessageError
from tillvault.host.client import parse_address
from tillvault.host.config import apply_config
from tillvault.host.faults import FAULTS_FILE, FaultInjector, FaultPlan
from tillvault.host.ledger import DEFAULT_CREDIT_LIMIT, HostLedger
from tillvault.host.processing import MessageProcessor
from tillvault.host.wire import recv_frame, send_frame

__all__ = ["AcquirerHost"]

log = logging.getLogger("tillvault.host")


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    # Non-daemon handler threads, so server_close() joins them before the ledger closes.
    daemon_threads = False
    block_on_close = True
    owner: AcquirerHost


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.owner._serve_connection(self.request)


class AcquirerHost:
    """The host, its ledger in ``data_dir`` and a listening socket on ``listen`` (``"host:port"``;
    port 0 lets the OS choose: read :attr:`address`).

    ``default_credit_limit`` and ``max_per_transaction`` are minor units (None: no
    per-transaction limit). ``ssl_context`` (from :func:`~tillvault.host.wire.server_ssl_context`)
    makes every connection TLS. ``faults`` is an initial fault configuration (see
    :mod:`.faults`); ``faults.json`` in ``data_dir`` is watched too. ``idle_timeout`` (seconds)
    closes connections that stay silent. ``config`` (the form of :mod:`.config`: fees, card
    types, calendar, merchant terms) is applied to the ledger's settings first. ``today``
    dates expiry checks and settlements (tests pin it). Use as a context manager, or :meth:`start` /
    :meth:`stop`, or :meth:`serve_forever` from a thread of your own.

    :raises OSError: the address cannot be bound.
    :raises ConfigError: the host secret does not match the ledger.
    :raises InvalidInput: ``config`` is invalid (nothing applied).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        listen: str = "127.0.0.1:0",
        default_credit_limit: int = DEFAULT_CREDIT_LIMIT,
        max_per_transaction: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        faults: Mapping[str, Any] | None = None,
        secret: bytes | None = None,
        config_dir: Path | None = None,
        idle_timeout: float = 300.0,
        today: Callable[[], date] = date.today,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.ledger = HostLedger(
            self.data_dir, secret=secret, config_dir=config_dir, default_credit_limit=default_credit_limit
        )
        if config:
            try:
                apply_config(self.ledger, config, today=today())
            except BaseException:
                self.ledger.close()
                raise
        self.processor = MessageProcessor(self.ledger, max_per_transaction=max_per_transaction, today=today)
        self.faults = FaultInjector(self.data_dir / FAULTS_FILE, faults)
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._serving = False
        host, port = _split_listen(listen)
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _Handler)
        except BaseException:
            self.ledger.close()
            raise
        self._server.owner = self

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The address actually listened on, ``"127.0.0.1:NNNNN"`` (``"[::1]:N"`` for IPv6)."""
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"

    def serve_forever(self) -> None:
        """Accept and serve connections until :meth:`stop` is called (from another thread)."""
        self._serving = True
        self._server.serve_forever(poll_interval=0.05)

    def start(self) -> AcquirerHost:
        """Serve in a background thread; returns self."""
        self._serving = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection, wait for handlers, close the ledger."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._serving:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        with self._conn_lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self.ledger.close()

    def set_faults(self, config: Mapping[str, Any] | None) -> None:
        """Replace the faults in force, in-process (see :mod:`.faults`)."""
        self.faults.set(config)

    def __enter__(self) -> AcquirerHost:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------------

    def _serve_connection(self, sock: socket.socket) -> None:
        with self._conn_lock:
            if self._stopping.is_set():
                sock.close()
                return
            self._connections.add(sock)
        conn = sock
        try:
            if self.ssl_context is not None:
                sock.settimeout(10.0)
                conn = self.ssl_context.wrap_socket(sock, server_side=True)
                with self._conn_lock:
                    self._connections.add(conn)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a reply is one write: send it now
            while not self._stopping.is_set():
                if conn.gettimeout() != self.idle_timeout:  # settimeout is a system call
                    conn.settimeout(self.idle_timeout)
                try:
                    payload = recv_frame(conn)
                except (EOFError, HostProtocolError, OSError):
                    return
                if not self._serve_one(conn, payload):
                    return
        except (OSError, ssl.SSLError) as exc:
            log.info("connection ended: %s", exc)
        finally:
            with self._conn_lock:
                self._connections.discard(sock)
                self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _serve_one(self, conn: socket.socket, payload: bytes) -> bool:
        """Answer one frame; False to close the connection."""
        request: dict[str, str] | None
        try:
            request = iso.decode(payload)
            mti: str | None = request["t"]
        except MessageError as exc:
            request = None
            salvaged = iso.salvage(payload)
            mti = salvaged.get("t")
            log.info("undecodable message (MTI %s): %s", mti, exc)
        plan = self.faults.plan(mti)
        if plan.close_before:
            return False
        if request is None:
            if mti is None:
                return False
            response = iso.response_for(salvaged, response_code="30", message="format error")
        elif mti not in iso.REQUEST_MTIS:
            return False
        else:
            response = self._respond(request, plan)
        if plan.delay and self._stopping.wait(plan.delay):
            return False
        if plan.close_after:
            return False
        if plan.drop:
            return True
        try:
            data = b"\xffnot iso 8583\xfe" + os.urandom(16) if plan.garbage else iso.encode(response)
        except MessageError:
            log.exception("could not encode a response")
            return False
        try:
            send_frame(conn, data)
        except OSError:
            return False
        return True

    def _respond(self, request: dict[str, str], plan: FaultPlan) -> dict[str, str]:
        if plan.decline:
            return iso.response_for(request, response_code="91", message="issuer unavailable")
        try:
            return self.processor.handle(request)
        except Exception:
            log.exception("processing failed for %s", iso.redacted(request))
            return iso.response_for(request, response_code="96", message="system malfunction")


def _split_listen(listen: str) -> tuple[str, int]:
    """``"host:port"``, port 0 allowed.

    :raises ConfigError: not ``host:port``.
    """
    host, sep, port = listen.rpartition(":")
    if sep and host and port == "0":
        return host.strip("[]"), 0
    try:
        return parse_address(listen)
    except HostUnavailable:
        raise ConfigError(f"listen address must be HOST:PORT, got {listen!r}") from None
