"""A real acquirer host in its own process, and terminals wired to it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tillvault.host.ledger import HostLedger
from tillvault.host.process import HostProcess, start_host_process
from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.terminal import Terminal

HOST_SECRET = "terminal-tests-host-secret"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """The reference host as a separate process (per-transaction maximum 1,000.00)."""
    data = tmp_path_factory.mktemp("host")
    with start_host_process(
        data, env={"TILLVAULT_HOST_SECRET": HOST_SECRET}, extra_args=["--max-per-transaction", "1000.00"]
    ) as proc:
        yield proc


@pytest.fixture
def host_ledger(host: HostProcess) -> Iterator[HostLedger]:
    """A second connection to the host's ledger, to look at what the host recorded."""
    ledger = HostLedger(host.data_dir, secret=HOST_SECRET.encode())
    yield ledger
    ledger.close()


@pytest.fixture
def make_terminal(tmp_path: Path, host: HostProcess) -> Iterator[Callable[..., Terminal]]:
    """Build terminals wired to the host; closed at the end of the test."""
    made: list[Terminal] = []
    host.set_faults(None)

    def make(name: str = "data", *, terminal_id: str | None = None, timeout: float = 1.5, **kw: Any) -> Terminal:
        # Each terminal has its own id: the host rightly treats a reused id + STAN as a duplicate.
        terminal_id = terminal_id or f"TV{next(_ids):06d}"
        t = Terminal.init(
            tmp_path / name,
            terminal_id=terminal_id,
            merchant_qr=DEMO_MERCHANT_QR,
            host=kw.pop("host_address", host.address),
            **kw,
        )
        t.config.host_timeout_s = timeout
        made.append(t)
        return t

    yield make
    host.set_faults(None)
    for t in made:
        t.close()
