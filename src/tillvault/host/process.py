"""Run the reference host as a separate process (tests, the simulator, the demo).

``start_host_process`` launches ``tillvault host serve`` with the current interpreter, waits
for its ``listening on HOST:PORT`` line and hands back a :class:`HostProcess` that knows the
address, rewrites the host's ``faults.json`` and stops it (SIGTERM, then SIGKILL). The host's
stderr goes to ``host.log`` in its data dir.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tillvault.errors import HostUnavailable, InvalidInput
from tillvault.host.faults import write_faults_file

__all__ = ["HostProcess", "start_host_process"]

_LISTENING = re.compile(r"listening on (\S+)")
LOG_FILE = "host.log"


class HostProcess:
    """A running host process; :attr:`address` is ``"127.0.0.1:NNNNN"``."""

    def __init__(self, popen: subprocess.Popen[str], address: str, data_dir: Path, log: IO[str]) -> None:
        self.popen = popen
        self.address = address
        self.data_dir = data_dir
        self._log = log

    @property
    def pid(self) -> int:
        """The host's process id."""
        return self.popen.pid

    @property
    def log_path(self) -> Path:
        """Where the host's stderr goes."""
        return self.data_dir / LOG_FILE

    def set_faults(self, config: Mapping[str, Any] | None) -> None:
        """Replace the host's faults (see :mod:`tillvault.host.faults`); ``None``/``{}`` clears.

        The host applies the new file to the next request it reads.

        :raises InvalidInput: an invalid configuration (nothing is written).
        """
        write_faults_file(self.data_dir, config)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL at once (a crash), and reap."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.stop()

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_host_process(
    data_dir: str | Path,
    *,
    port: int = 0,
    default_credit_limit: str | int | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 20.0,
) -> HostProcess:
    """Start ``tillvault host serve --listen 127.0.0.1:PORT --data DATA_DIR`` and wait until it listens.

    ``port`` 0 lets the OS choose. ``default_credit_limit`` is a decimal string (``"500.00"``)
    or an int in minor units (``50_000``).
    ``extra_args`` go after the built-in ones (``["--max-per-transaction", "100.00"]``);
    ``env`` is added to this process's environment (``TILLVAULT_HOST_SECRET`` keeps the
    secret out of ``~/.config``).

    :raises HostUnavailable: the process exited or did not announce an address within
        ``startup_timeout`` seconds (its log is quoted).
    :raises InvalidInput: a negative ``default_credit_limit``.
    """
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-c",
        "from tillvault.cli.main import main; main()",
        "host",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data",
        str(data),
    ]
    if isinstance(default_credit_limit, int):
        if default_credit_limit < 0:
            raise InvalidInput("default_credit_limit must not be negative")
        default_credit_limit = f"{default_credit_limit // 100}.{default_credit_limit % 100:02d}"
    if default_credit_limit is not None:
        args += ["--default-credit-limit", default_credit_limit]
    args += list(extra_args)
    log = (data / LOG_FILE).open("a")
    popen = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert popen.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(popen.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + startup_timeout
    process = HostProcess(popen, "", data, log)
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.0)) if remaining > 0 else None
        except queue.Empty:
            line = None
        match = _LISTENING.search(line) if line else None
        if match:
            process.address = match.group(1)
            return process
        if line is None:
            process.stop()
            tail = (data / LOG_FILE).read_text(errors="replace")[-2000:]
            raise HostUnavailable(f"host process did not start listening: {tail.strip() or 'no output'}")


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Forward the host's stdout lines; keeps the pipe drained for the process's whole life."""
    with contextlib.suppress(ValueError, OSError):
        for line in stream:
            lines.put(line)
    lines.put(None)
    stream.close()
