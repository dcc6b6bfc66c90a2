"""The real acquirer host for a simulation, and the network between it and the terminal.

The host is :class:`~tillvault.host.server.AcquirerHost`, unmodified, on 127.0.0.1: either in
a thread of the simulator (the default, measured faster: a sale is strictly sequential, so a
second process only adds wake-ups) or in its own process. Either way its ``today`` is the
simulated date, so expiry checks and business dates follow the accelerated clock, and its
authorization codes come from a seeded generator, so the same seed gives the same bytes.

The network is cut the way a cable is pulled: the terminal is pointed (``Terminal.use_host``) at
a :class:`DeadPort`, where nothing listens (connection refused: the request never left, so the
terminal approves offline under its floor limit and queues an advice).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import IO, Any, Protocol

from tillvault.errors import HostUnavailable
from tillvault.host.faults import write_faults_file
from tillvault.host.ledger import HostLedger

_LISTENING = re.compile(r"listening on (\S+)")
#: Credit limit of a card the host has never seen (minor units): a regular's month of shopping fits.
SIM_CREDIT_LIMIT = 100_000_000


class SimHost(Protocol):
    """What the simulator needs of a running host."""

    address: str
    data_dir: Path

    def set_faults(self, config: Mapping[str, Any] | None) -> None:
        """Replace the host's fault injection."""

    def stop(self) -> Any:
        """Stop the host."""


def seeded_auth_codes(seed: int) -> Callable[[], str]:
    """Six-digit authorization codes from a generator seeded with ``seed``."""
    rng = random.Random(f"{seed}:auth-codes")
    return lambda: f"{rng.randrange(1_000_000):06d}"


def seeded_port(seed: int, salt: str) -> int:
    """A port number derived from ``seed``: addresses end up in journalled reasons, so they must repeat."""
    return random.Random(f"{seed}:{salt}").randrange(20_000, 60_000)


def _bind_host(data_dir: Path, today: Callable[[], date], secret: bytes | None, seed: int) -> Any:
    """An AcquirerHost on the seed's port (or the next free one)."""
    from tillvault.host.server import AcquirerHost

    port = seeded_port(seed, "host")
    for attempt in range(200):
        try:
            return AcquirerHost(
                data_dir,
                listen=f"127.0.0.1:{port + attempt}",
                secret=secret,
                today=today,
                default_credit_limit=SIM_CREDIT_LIMIT,
                idle_timeout=3600.0,
            )
        except OSError:
            continue
    return AcquirerHost(data_dir, secret=secret, today=today, default_credit_limit=SIM_CREDIT_LIMIT)


class ThreadHost:
    """The host in a thread of this process (no cross-process wake-ups: the faster mode)."""

    def __init__(self, data_dir: Path, today: Callable[[], date], *, secret: bytes, seed: int) -> None:
        self.data_dir = Path(data_dir)
        self._host = _bind_host(self.data_dir, today, secret, seed)
        self._host.ledger.new_auth_code = seeded_auth_codes(seed)
        self._host.start()
        self.address = self._host.address

    def set_faults(self, config: Mapping[str, Any] | None) -> None:
        """Replace the host's faults in force."""
        self._host.set_faults(config)

    def stop(self) -> None:
        """Stop serving and close the ledger."""
        self._host.stop()


class ProcessHost:
    """The host in its own process (``python -c 'from tillvault.sim.hostlink import main; main()'``)."""

    def __init__(self, data_dir: Path, clock_file: Path, *, secret: bytes, seed: int, startup_timeout: float = 20.0):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-c",
            "from tillvault.sim.hostlink import main; main()",
            "--data",
            str(self.data_dir),
            "--clock-file",
            str(clock_file),
            "--seed",
            str(seed),
        ]
        self._log: IO[str] = (self.data_dir / "host.log").open("a")
        env = {**os.environ, "TILLVAULT_HOST_SECRET": secret.decode()}
        self.popen = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True, env=env
        )
        assert self.popen.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=_pump, args=(self.popen.stdout, lines), daemon=True)
        self._pump.start()
        deadline = time.monotonic() + startup_timeout
        self.address = ""
        while not self.address:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=remaining) if remaining > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                tail = (self.data_dir / "host.log").read_text(errors="replace")[-2000:]
                raise HostUnavailable(f"the simulation's host did not start: {tail.strip() or 'no output'}")
            match = _LISTENING.search(line)
            if match:
                self.address = match.group(1)

    @property
    def pid(self) -> int:
        """The host's process id."""
        return self.popen.pid

    def set_faults(self, config: Mapping[str, Any] | None) -> None:
        """Replace the host's faults (``faults.json``, read before the next request)."""
        write_faults_file(self.data_dir, config)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._pump.join(timeout=5)  # it reads to the end of the host's output and closes the pipe
        self._log.close()


def start_host(
    data_dir: Path, *, clock_file: Path, today: Callable[[], date], secret: bytes, seed: int, mode: str = "process"
) -> SimHost:
    """Start the simulation's host: ``mode`` is ``"process"`` (second core) or ``"thread"``."""
    if mode == "thread":
        return ThreadHost(data_dir, today, secret=secret, seed=seed)
    if mode == "process":
        return ProcessHost(data_dir, clock_file, secret=secret, seed=seed)
    raise ValueError(f"host mode must be 'process' or 'thread', not {mode!r}")


def open_ledger(host: SimHost, secret: bytes) -> HostLedger:
    """A second connection to the host's ledger (what the host recorded; card set-up)."""
    return HostLedger(host.data_dir, secret=secret, default_credit_limit=SIM_CREDIT_LIMIT)


class DeadPort:
    """A local port where nothing listens: connecting is refused at once (the network is down).

    The port is bound and never listened on, so it stays ours and refuses; it is derived from
    ``seed`` because the refusal's text (with the address) is journalled with offline sales.
    """

    def __init__(self, seed: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        port = seeded_port(seed, "dead")
        for attempt in range(200):
            try:
                self._sock.bind(("127.0.0.1", port + attempt))
                break
            except OSError:
                continue
        else:
            self._sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        """Release the port."""
        self._sock.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the host process: serve until SIGTERM, dated by the shared simulated clock."""
    from tillvault.sim.clock import SharedClockReader
    from tillvault.sim.workload import SHOP_TZ

    parser = argparse.ArgumentParser(description="TillVault simulation host")
    parser.add_argument("--data", required=True)
    parser.add_argument("--clock-file", required=True)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    reader = SharedClockReader(Path(opts.clock_file), SHOP_TZ)
    host = _bind_host(Path(opts.data), reader.today, None, opts.seed)
    host.ledger.new_auth_code = seeded_auth_codes(opts.seed)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host.start()
    print(f"listening on {host.address}", flush=True)
    while not stop.wait(0.5):
        pass
    host.stop()


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    with contextlib.suppress(ValueError, OSError):
        for line in stream:
            lines.put(line)
    lines.put(None)
    stream.close()
