"""The terminal's link: errors by outcome against a real host process with injected faults, reconnects,
mismatched replies and TLS."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.host.conftest import SECRET, TERMINAL, TODAY, next_stan, sale

from tillvault.domain import iso8583 as iso
from tillvault.errors import HostProtocolError, HostTimeout, HostUnavailable, MessageError
from tillvault.host.client import HostClient
from tillvault.host.process import HostProcess, start_host_process
from tillvault.host.server import AcquirerHost
from tillvault.host.wire import client_ssl_context, recv_frame, send_frame, server_ssl_context


@pytest.fixture
def faulty(host_process: HostProcess) -> Iterator[HostProcess]:
    """The module's host process, its faults cleared after each test."""
    yield host_process
    host_process.set_faults(None)


def echo() -> dict[str, str]:
    return iso.echo_request(stan=next_stan(), terminal_id=TERMINAL)


# --- faults in a separate host process ------------------------------------------------------------------


def test_delayed_reply_is_a_timeout_and_the_link_recovers(faulty: HostProcess) -> None:
    faulty.set_faults({"delay": {"seconds": 1.0, "count": 1}})
    with HostClient(faulty.address, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(HostTimeout, match="outcome unknown"):
            client.exchange(sale())
        assert time.monotonic() - started < 0.9
        assert client.exchange(echo())["39"] == "00"


def test_dropped_reply_is_a_timeout(faulty: HostProcess) -> None:
    faulty.set_faults({"drop": {"count": 1}})
    with HostClient(faulty.address, timeout=0.3) as client:
        with pytest.raises(HostTimeout):
            client.exchange(sale())
        assert client.exchange(echo())["39"] == "00"


@pytest.mark.parametrize("fault", ["close_before", "close_after"])
def test_connection_closed_after_sending_is_a_timeout(faulty: HostProcess, fault: str) -> None:
    faulty.set_faults({fault: {"count": 1}})
    with HostClient(faulty.address, timeout=2) as client:
        with pytest.raises(HostTimeout, match="closed the connection"):
            client.exchange(sale())
        assert client.exchange(echo())["39"] == "00"


def test_garbage_reply_is_a_protocol_error(faulty: HostProcess) -> None:
    faulty.set_faults({"garbage": {"count": 1}})
    with HostClient(faulty.address, timeout=2) as client:
        with pytest.raises(HostProtocolError, match="malformed"):
            client.exchange(sale())
        assert client.exchange(echo())["39"] == "00"


def test_decline_fault_answers_91(faulty: HostProcess) -> None:
    faulty.set_faults({"decline": True})
    with HostClient(faulty.address, timeout=2) as client:
        assert client.exchange(sale())["39"] == "91"


def test_faults_can_be_limited_to_mtis_and_probability(faulty: HostProcess) -> None:
    faulty.set_faults({"drop": {"mtis": ["0200"]}, "garbage": {"probability": 0.0}})
    with HostClient(faulty.address, timeout=0.3) as client:
        assert client.exchange(echo())["39"] == "00"
        with pytest.raises(HostTimeout):
            client.exchange(sale())
        faulty.set_faults({})
        assert client.exchange(sale())["39"] == "00"


def test_nothing_listening_is_host_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with HostClient(f"127.0.0.1:{port}", connect_timeout=1) as client, pytest.raises(HostUnavailable):
        client.exchange(sale())


def test_host_gone_between_exchanges_is_host_unavailable(tmp_path: Path) -> None:
    process = start_host_process(tmp_path / "h", env={"TILLVAULT_HOST_SECRET": SECRET.decode()})
    with HostClient(process.address, timeout=2, connect_timeout=1) as client:
        assert client.exchange(echo())["39"] == "00"
        assert process.stop() == 0  # clean shutdown on SIGTERM
        with pytest.raises(HostUnavailable):
            client.exchange(sale())


def test_unencodable_request_raises_message_error_and_sends_nothing(faulty: HostProcess) -> None:
    with HostClient(faulty.address) as client, pytest.raises(MessageError):
        client.exchange({"t": "0200", "4": "12"})


# --- connection reuse ------------------------------------------------------------------------------------


def test_connection_is_kept_between_exchanges(host: AcquirerHost) -> None:
    with HostClient(host.address, timeout=2) as client:
        client.exchange(echo())
        first = client._sock
        client.exchange(echo())
        assert client._sock is first


def test_connection_closed_by_the_host_while_idle_is_replaced_transparently(tmp_path: Path) -> None:
    with (
        AcquirerHost(tmp_path / "h", idle_timeout=0.2, today=lambda: TODAY) as host,
        HostClient(host.address, timeout=2) as client,
    ):
        assert client.exchange(echo())["39"] == "00"
        first = client._sock
        time.sleep(0.5)  # the host closes the idle connection
        assert client.exchange(sale())["39"] == "00"
        assert client._sock is not first
        assert len(host.ledger.authorizations()) == 1


def test_a_stray_byte_after_a_reply_is_never_read_as_the_next_reply() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[int] = []

    def serve() -> None:
        for n in range(2):
            conn, _ = listener.accept()
            connections.append(n)
            with conn:
                request = iso.decode(recv_frame(conn))
                # the reply, then one byte nobody asked for, on the first connection only
                send_frame(conn, iso.encode(iso.response_for(request, response_code="00")))
                if n == 0:
                    conn.sendall(b"\x00")
                with contextlib.suppress(EOFError, OSError):
                    recv_frame(conn)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    with listener, HostClient(f"127.0.0.1:{listener.getsockname()[1]}", timeout=2) as client:
        assert client.exchange(echo())["39"] == "00"
        time.sleep(0.1)  # the stray byte arrives while the link is idle
        first = client._sock
        assert client.exchange(echo())["39"] == "00"  # answered on a new connection
        assert client._sock is not first
        assert connections == [0, 1]


def test_idle_check_sees_a_closed_reset_or_readable_plain_socket() -> None:
    for action in ("close", "byte", "none"):
        a, b = socket.socketpair()
        with a, b:
            if action == "close":
                b.close()
            elif action == "byte":
                b.sendall(b"x")
            assert HostClient._alive(a) is (action == "none")
    closed = socket.socket()
    closed.close()
    assert HostClient._alive(closed) is False


# --- replies that do not match -------------------------------------------------------------------------------


def fake_host(reply: Callable[[dict[str, str]], bytes]) -> tuple[str, socket.socket]:
    """A one-connection server answering every request with ``reply(request)``."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            try:
                while True:
                    send_frame(conn, reply(iso.decode(recv_frame(conn))))
            except (EOFError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{listener.getsockname()[1]}", listener


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (lambda r: iso.encode(iso.response_for(r, response_code="00", f11="999999")), "STAN"),
        (lambda r: iso.encode({**iso.response_for(r, response_code="00"), "41": "OTHER   "}), "terminal id"),
        (lambda r: iso.encode({**iso.response_for(r, response_code="00"), "t": "0810"}), "MTI 0810"),
        (lambda r: iso.encode(iso.response_for(r)), "no response code"),
        (lambda r: b"\x00\x01\x02", "malformed"),
    ],
)
def test_mismatched_reply_is_a_protocol_error(reply: Callable[[dict[str, str]], bytes], reason: str) -> None:
    address, listener = fake_host(reply)
    with listener, HostClient(address, timeout=2) as client, pytest.raises(HostProtocolError, match=reason):
        client.exchange(sale())


# --- TLS -----------------------------------------------------------------------------------------------------


def test_tls_round_trip(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    context = server_ssl_context(cert, key)
    with (
        AcquirerHost(tmp_path / "h", ssl_context=context, today=lambda: TODAY) as host,
        HostClient(host.address, timeout=2, ssl_context=client_ssl_context(cert)) as client,
    ):
        assert client.exchange(sale())["39"] == "00"
        first = client._sock
        assert client.exchange(echo())["39"] == "00"
        assert client._sock is first  # the TLS connection is reused


def test_tls_host_process_and_untrusted_certificate(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    with start_host_process(
        tmp_path / "h",
        env={"TILLVAULT_HOST_SECRET": SECRET.decode()},
        extra_args=["--tls-cert", str(cert), "--tls-key", str(key)],
    ) as process:
        with HostClient(process.address, timeout=2, ssl_context=client_ssl_context(cert)) as client:
            assert client.exchange(sale())["39"] == "00"
        untrusting = HostClient(process.address, timeout=2, ssl_context=client_ssl_context())
        with untrusting, pytest.raises(HostUnavailable, match="TLS"):
            untrusting.exchange(sale())
