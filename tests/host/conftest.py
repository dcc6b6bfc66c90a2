"""Fixtures for the ISO 8583 wire and the reference host: in-process hosts, a host process, clients."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tillvault.domain import iso8583 as iso
from tillvault.host.client import HostClient
from tillvault.host.process import HostProcess, start_host_process
from tillvault.host.server import AcquirerHost

VISA = "4111111111111111"  # Luhn-valid test PAN
MASTERCARD = "5555555555554444"
UNIONPAY_NO_LUHN = "6212345678901235"  # fails Luhn; exempt as UnionPay
BAD_LUHN = "4111111111111112"
TERMINAL = "T0000001"
MERCHANT = "M00000000000001"
TODAY = date(2025, 6, 15)
WHEN = datetime(2025, 6, 15, 10, 30, 0, tzinfo=UTC)
SECRET = b"test-host-secret"

_stans = itertools.count(1)


def next_stan() -> int:
    """A STAN unused in this test session (keys never collide between tests by accident)."""
    return next(_stans) % 999_999 + 1


def card(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for a card request builder, with sensible test values."""
    args: dict[str, Any] = {
        "pan": VISA,
        "expiry": "2712",
        "amount": 1_000,
        "currency": "156",
        "stan": next_stan(),
        "terminal_id": TERMINAL,
        "merchant_id": MERCHANT,
        "batch": 1,
        "invoice": 1,
        "when": WHEN,
    }
    args.update(overrides)
    return args


def sale(**overrides: Any) -> dict[str, str]:
    """A 0200 sale request built from :func:`card`."""
    return iso.sale_request(**card(**overrides))


@pytest.fixture(autouse=True)
def _host_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches ~/.config: the secret comes from the environment."""
    monkeypatch.setenv("TILLVAULT_HOST_SECRET", SECRET.decode())


@pytest.fixture
def host(tmp_path: Path) -> Iterator[AcquirerHost]:
    """An in-process host on an OS-chosen port, with its date pinned to ``TODAY``."""
    with AcquirerHost(tmp_path / "host", today=lambda: TODAY, max_per_transaction=1_000_000) as h:
        yield h


@pytest.fixture
def client(host: AcquirerHost) -> Iterator[HostClient]:
    """A client connected to :func:`host` (2 s reply timeout)."""
    with HostClient(host.address, timeout=2.0) as c:
        yield c


@pytest.fixture(scope="module")
def host_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """One separate host process per test module."""
    data = tmp_path_factory.mktemp("host-process")
    with start_host_process(
        data, env={"TILLVAULT_HOST_SECRET": SECRET.decode()}, extra_args=["--max-per-transaction", "10000.00"]
    ) as process:
        yield process
