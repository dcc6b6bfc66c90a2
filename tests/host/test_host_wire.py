"""TCP framing: 2-byte big-endian length prefix, short reads, clean and unclean ends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tillvault.errors import HostProtocolError
from tillvault.host.wire import recv_frame, send_frame


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def test_frame_is_length_prefixed_big_endian(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    send_frame(a, b"x" * 300)
    assert b.recv(2) == b"\x01\x2c"


def test_frames_survive_one_byte_writes(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    payloads = [b"first", b"\x00" * 1000, b"third"]
    wire = b"".join(len(p).to_bytes(2, "big") + p for p in payloads)

    def trickle() -> None:
        for i in range(len(wire)):
            a.sendall(wire[i : i + 1])

    writer = threading.Thread(target=trickle)
    writer.start()
    assert [recv_frame(b, max_size=2000) for _ in payloads] == payloads
    writer.join()


def test_clean_close_between_frames_is_eof(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    send_frame(a, b"one")
    a.close()
    assert recv_frame(b) == b"one"
    with pytest.raises(EOFError):
        recv_frame(b)


@pytest.mark.parametrize("sent", [b"\x00", b"\x00\x10abc"])
def test_close_inside_a_frame_is_a_protocol_error(pair: tuple[socket.socket, socket.socket], sent: bytes) -> None:
    a, b = pair
    a.sendall(sent)
    a.close()
    with pytest.raises(HostProtocolError, match="closed"):
        recv_frame(b)


def test_oversize_and_empty_frames_are_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(b"\xff\xff")
    with pytest.raises(HostProtocolError, match="over the 8192-byte limit"):
        recv_frame(b)
    a.sendall(b"\x00\x00")
    with pytest.raises(HostProtocolError, match="empty frame"):
        recv_frame(b)
    with pytest.raises(HostProtocolError, match="exceeds"):
        send_frame(a, b"x" * 70_000)
    with pytest.raises(HostProtocolError, match="empty"):
        send_frame(a, b"")


def test_receive_timeout_propagates(pair: tuple[socket.socket, socket.socket]) -> None:
    _, b = pair
    b.settimeout(0.05)
    with pytest.raises(TimeoutError):
        recv_frame(b)
