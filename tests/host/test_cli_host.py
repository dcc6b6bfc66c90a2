"""``tillvault host ...``: serve, account admin, accounts, totals, check, faults; help everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from tests.host.conftest import SECRET, TERMINAL, TODAY, VISA, sale
from typer.testing import CliRunner

from tillvault.cli.host import minor_units
from tillvault.cli.main import app
from tillvault.errors import InvalidInput
from tillvault.host.client import HostClient
from tillvault.host.process import start_host_process
from tillvault.host.server import AcquirerHost

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["host", *args])
    return result.exit_code, result.stdout


def host_group() -> Any:
    """The click group behind ``tillvault host`` (typer vendors click: duck-typed here)."""
    return typer.main.get_command(app).commands["host"]  # type: ignore[attr-defined]


def all_commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        out.append((f"{prefix}{name}", command))
        if hasattr(command, "commands"):
            out += all_commands(command, f"{prefix}{name} ")
    return out


def test_every_host_command_and_option_has_help() -> None:
    commands = all_commands(host_group())
    names = {name for name, _ in commands}
    assert {"serve", "account set", "accounts", "totals", "check", "faults"} <= names
    for name, command in commands:
        assert (command.help or "").strip(), f"host {name} has no help"
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert (param.help or "").strip(), f"host {name} {param.opts} has no help"
        code, _ = run(*name.split(), "--help")
        assert code == 0


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A host data dir holding two approved sales for TERMINAL in batch 4."""
    directory = tmp_path / "host"
    with AcquirerHost(directory, today=lambda: TODAY) as host, HostClient(host.address) as client:
        for amount in (1_000, 250):
            assert client.exchange(sale(amount=amount, batch=4))["39"] == "00"
    return directory


def test_account_set_then_accounts_show_only_the_masked_pan(data: Path) -> None:
    code, out = run("account", "set", "--pan", VISA, "--credit-limit", "500.00", "--balance=-12.50",
                    "--blocked", "--data", str(data), "--json")  # fmt: skip
    assert code == 0, out
    account = json.loads(out)
    assert account["credit_limit"] == 50_000 and account["balance"] == -1_250 and account["blocked"] is True
    assert account["available"] == 48_750
    code, out = run("accounts", "--data", str(data), "--json")
    assert code == 0
    cards = [a for a in json.loads(out) if a["kind"] == "cardholder"]
    assert [c["masked_pan"] for c in cards] == ["411111******1111"]
    assert VISA not in out
    code, out = run("accounts", "--data", str(data))
    assert code == 0 and "411111******1111" in out and VISA not in out


def test_account_set_unblocks(data: Path) -> None:
    run("account", "set", "--pan", VISA, "--blocked", "--data", str(data), "--json")
    code, out = run("account", "set", "--pan", VISA, "--unblocked", "--data", str(data), "--json")
    assert code == 0 and json.loads(out)["blocked"] is False


def test_account_set_refuses_a_bad_amount(data: Path) -> None:
    code, out = run("account", "set", "--pan", VISA, "--credit-limit", "12.345", "--data", str(data), "--json")
    assert code == 2 and "at most 2 decimals" in json.loads(out)["reason"]


def test_totals_and_check(data: Path) -> None:
    code, out = run("totals", "--terminal", TERMINAL, "--batch", "4", "--data", str(data), "--json")
    assert code == 0
    totals = json.loads(out)
    assert (totals["sales_count"], totals["sales_amount"], totals["net_amount"]) == (2, 1_250, 1_250)
    assert totals["settled"] is False
    code, out = run("check", "--data", str(data), "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_admin_commands_need_an_existing_ledger(tmp_path: Path) -> None:
    code, out = run("accounts", "--data", str(tmp_path / "none"), "--json")
    assert code == 2 and "no host ledger" in json.loads(out)["reason"]


def test_faults_set_show_and_clear(tmp_path: Path) -> None:
    code, out = run("faults", '{"drop": {"count": 1}}', "--data", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)["faults"] == {"drop": {"count": 1}}
    code, out = run("faults", "--data", str(tmp_path), "--json")
    assert json.loads(out)["faults"] == {"drop": {"count": 1}}
    code, out = run("faults", '{"explode": true}', "--data", str(tmp_path), "--json")
    assert code == 2 and "unknown fault" in json.loads(out)["reason"]
    code, out = run("faults", "--clear", "--data", str(tmp_path), "--json")
    assert json.loads(out)["faults"] == {}


def test_serve_uses_the_default_credit_limit_and_per_transaction_limit(tmp_path: Path) -> None:
    with start_host_process(
        tmp_path / "h",
        default_credit_limit=1_000,  # minor units: 10.00
        extra_args=["--max-per-transaction", "8.00"],
        env={"TILLVAULT_HOST_SECRET": SECRET.decode()},
    ) as process:
        assert process.address.startswith("127.0.0.1:")
        with HostClient(process.address, timeout=2) as client:
            assert client.exchange(sale(amount=801, expiry="4912"))["39"] == "61"
            assert client.exchange(sale(amount=800, expiry="4912"))["39"] == "00"
            assert client.exchange(sale(amount=201, expiry="4912"))["39"] == "51"
        assert process.stop() == 0
    assert VISA not in process.log_path.read_text()


def test_serve_refuses_a_half_tls_configuration(tmp_path: Path) -> None:
    code, _ = run("serve", "--listen", "127.0.0.1:0", "--data", str(tmp_path), "--tls-cert", "x.pem")
    assert code == 2


@pytest.mark.parametrize(("text", "minor"), [("50000.00", 5_000_000), ("0.5", 50), ("7", 700), ("-1.25", -125)])
def test_minor_units(text: str, minor: int) -> None:
    assert minor_units(text, "--x", allow_negative=True) == minor


@pytest.mark.parametrize("text", ["abc", "1.001", "-1", "inf", "NaN"])
def test_minor_units_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        minor_units(text, "--x")


def test_account_amounts_are_in_the_accounts_currency_and_bad_ones_are_named(data: Path, tmp_path: Path) -> None:
    # JPY has no decimals: a limit of 100 is 100 yen (it was stored as 10,000).
    code, out = run("account", "set", "--pan", VISA, "--currency", "JPY", "--credit-limit", "100",
                    "--data", str(data), "--json")  # fmt: skip
    assert code == 0, out
    account = json.loads(out)
    assert account["credit_limit"] == 100 and account["currency"] == "392"
    code, out = run("account", "set", "--pan", VISA, "--currency", "392", "--credit-limit", "2500", "--data", str(data))
    assert code == 0 and "limit 2500 JPY" in out, out
    code, out = run("accounts", "--data", str(data))
    assert "2500" in out and "25.00" not in out
    for args, message in (
        (("--currency", "abc", "--credit-limit", "1"), "currency 'abc' is not an ISO 4217 code"),
        (("--credit-limit", "1e3"), "must be a decimal amount like 50000.00"),
        (("--credit-limit", "١٠٠"), "must be a decimal amount like 50000.00"),
    ):
        code, out = run("account", "set", "--pan", VISA, *args, "--data", str(data), "--json")
        assert code == 2 and message in json.loads(out)["reason"], out
    # A mistyped data folder is named, not made into a new empty ledger.
    code, out = run("account", "set", "--pan", VISA, "--blocked", "--data", str(tmp_path / "typo"), "--json")
    assert code != 0 and "no host ledger in" in json.loads(out)["reason"]
    assert not (tmp_path / "typo").exists()
