"""``tillvault payout`` and ``tillvault host payout|fees|merchant|calendar|card-types|batch``: JSON contracts."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.host.conftest import MERCHANT, SECRET, TERMINAL
from tests.host.settle_driver import UNIONPAY_DEBIT, Driver
from typer.testing import CliRunner

from tillvault.cli.main import app
from tillvault.errors import InvalidInput
from tillvault.host.config import apply_config, load_config
from tillvault.host.merchants import set_merchant
from tillvault.host.process import start_host_process

runner = CliRunner()
FRIDAY = date(2025, 6, 13)


def run(*args: str) -> tuple[int, Any]:
    """Invoke the CLI; (exit code, parsed JSON stdout)."""
    result = runner.invoke(app, list(args))
    try:
        return result.exit_code, json.loads(result.stdout)
    except ValueError:
        return result.exit_code, result.stdout


def host(*args: str, data: Path) -> tuple[int, Any]:
    return run("host", *args, "--data", str(data), "--json")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A host ledger with fees and a calendar set through the CLI, a merchant's deposit, and one
    settled batch on Friday 2025-06-13: a 100.00 credit sale and a 1,000.00 debit sale."""
    directory = tmp_path / "host"
    Driver(directory).close()  # create the ledger
    code, fees = host("fees", "set", "--rate", "0.60%", "--debit-rate", "0.50%", "--debit-cap", "20.00", data=directory)
    assert code == 0, fees
    assert [r["name"] for r in fees["rules"]] == ["MDR debit 0.50% cap 20.00 CNY", "MDR debit 0.50%", "MDR 0.60%"]
    code, out = host("account", "set", "--pan", UNIONPAY_DEBIT, "--card-type", "debit", data=directory)
    assert code == 0 and out["card_type"] == "debit", out
    code, cal = host("calendar", "set", "--holiday", "2025-06-16", data=directory)
    assert code == 0 and cal["holidays"] == ["2025-06-16"]
    driver = Driver(directory, FRIDAY)
    try:
        set_merchant(
            driver.ledger, MERCHANT, today=FRIDAY, deposit=29_900, refund_threshold=50_000, activation_min=1_000
        )
        assert driver.sale(10_000)["39"] == "00"
        assert driver.sale(100_000, pan=UNIONPAY_DEBIT)["39"] == "00"
        assert driver.settle()["39"] == "00"
    finally:
        driver.close()
    return directory


def test_payout_json_statement_csv_and_idempotence(data: Path, tmp_path: Path) -> None:
    csv_dir = tmp_path / "csv"
    code, result = run("payout", "--date", "2025-06-13", "--host-data", str(data), "--csv-dir", str(csv_dir), "--json")
    assert code == 0, result
    assert (result["ok"], result["created"], result["payout_date"]) == (True, True, "2025-06-17")  # Mon is a holiday
    [statement] = result["merchants"]
    assert statement["fees"] == [
        {"name": "MDR 0.60%", "count": 1, "amount": 60},
        {"name": "MDR debit 0.50% cap 20.00 CNY", "count": 1, "amount": 500},
    ]
    assert statement["deposit_refund"] == 29_900  # 1,100.00 ≥ 500.00
    assert statement["net"] == 110_000 - 560 + 29_900
    assert statement["activation"]["activated"] is True
    assert Path(result["csv"]) == csv_dir / "payout-2025-06-13.csv"
    first_csv = Path(result["csv"]).read_bytes()
    assert b"device deposit refund" in first_csv

    code, again = run(
        "host", "payout", "--date", "2025-06-13", "--data", str(data), "--csv-dir", str(csv_dir), "--json"
    )
    assert code == 0 and again["created"] is False
    assert again["merchants"] == result["merchants"]
    assert Path(again["csv"]).read_bytes() == first_csv

    code, check = host("check", data=data)
    assert code == 0 and check["ok"] is True and check["payables_ok"] is True
    code, accounts = host("accounts", "--kind", "fee_income", data=data)
    assert accounts[0]["balance"] == 560


def test_payout_default_csv_dir_and_preview(data: Path) -> None:
    code, preview = run("payout", "--date", "2025-06-13", "--host-data", str(data), "--preview", "--json")
    assert code == 0 and preview["preview"] is True and preview["csv"] is None
    assert not (data / "payouts").exists()
    code, paid = run("payout", "--date", "2025-06-13", "--host-data", str(data), "--json")
    assert code == 0 and Path(paid["csv"]).parent == data / "payouts"
    assert [s["net"] for s in paid["merchants"]] == [s["net"] for s in preview["merchants"]]


def test_payout_human_output_names_every_fee(data: Path) -> None:
    result = runner.invoke(app, ["payout", "--date", "2025-06-13", "--host-data", str(data)])
    assert result.exit_code == 0
    assert "MDR debit 0.50% cap 20.00 CNY" in result.stdout and "payout date 2025-06-17" in result.stdout


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--date", "2999-01-01"], "has not begun"),
        (["--date", "13/06/2025"], "YYYY-MM-DD"),
    ],
)
def test_payout_refuses_bad_dates(data: Path, args: list[str], reason: str) -> None:
    code, out = run("payout", *args, "--host-data", str(data), "--json")
    assert code == 2 and out["ok"] is False and reason in out["reason"]


def test_payout_needs_a_host_ledger(tmp_path: Path) -> None:
    code, out = run("payout", "--date", "2025-06-13", "--host-data", str(tmp_path / "none"), "--json")
    assert code == 2 and "no host ledger" in out["reason"]


def test_batch_view_lists_rows_with_fees_and_the_payout(data: Path) -> None:
    run("payout", "--date", "2025-06-13", "--host-data", str(data), "--json")
    code, out = host("batch", "--terminal", TERMINAL, "--batch", "1", data=data)
    assert code == 0
    assert sorted(r["fee"] for r in out["rows"]) == [60, 500]
    assert {r["settled_date"] for r in out["rows"]} == {"2025-06-13"}
    assert len(out["payouts"]) == 1
    assert "6212345678901235" not in json.dumps(out)


def test_fees_show_merchant_override_and_back(data: Path) -> None:
    code, out = host("fees", "set", "--merchant", MERCHANT, "--rate", "0.38%", "--refunds-return-fee", data=data)
    assert code == 0 and out["rules"][0]["rate_ppm"] == 3800 and out["refunds_return_fee"] is True
    code, out = host("fees", "show", "--merchant", MERCHANT, data=data)
    assert out["rules"][0]["name"] == "MDR 0.38%"
    code, out = host("fees", "set", "--merchant", MERCHANT, "--default", data=data)
    assert code == 0 and [r["rate_ppm"] for r in out["rules"]] == [5000, 5000, 6000]


def test_fees_set_from_a_file_and_refusals(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "fees.json"
    path.write_text(json.dumps({"rules": [{"rate": "0.55%", "name": "统一费率"}]}), encoding="utf-8")
    code, out = host("fees", "set", "--file", str(path), data=data)
    assert code == 0 and out["rules"] == [{"name": "统一费率", "rate_ppm": 5500, "rate": "0.55%"}]
    code, out = host("fees", "set", "--debit-rate", "0.5%", data=data)
    assert code == 2 and "--rate is required" in out["reason"]
    code, out = host("fees", "set", "--rate", "12.00001%", data=data)
    assert code == 2


def test_merchant_set_collects_the_deposit_and_shows_the_terms(data: Path) -> None:
    code, merchant = host(
        "merchant", "set", "--merchant", "M2", "--deposit", "299.00", "--refund-threshold", "50000.00",
        "--activation-min", "100.00", data=data,
    )  # fmt: skip
    assert code == 0, merchant
    assert merchant["deposit"] == {
        "amount": 29_900,
        "status": "held",
        "collected_date": date.today().isoformat(),
        "refunded_date": None,
        "refund_threshold": 5_000_000,
    }
    assert merchant["activation"]["min_amount"] == 10_000 and merchant["activation"]["activated"] is False
    code, accounts = host("accounts", "--kind", "device_deposit", data=data)
    assert {a["key"]: a["balance"] for a in accounts}["M2"] == 29_900
    code, check = host("check", data=data)
    assert check["ok"] is True
    # A currency by its letters, as the account and fee commands take it: JPY terms, in yen.
    code, jpy = host("merchant", "set", "--merchant", "M3", "--currency", "JPY", "--deposit", "3000", data=data)
    assert code == 0, jpy
    assert jpy["currency"] == "392" and jpy["deposit"]["amount"] == 3_000


def test_merchant_show_and_refusals(data: Path) -> None:
    code, out = host("merchant", "show", data=data)
    assert code == 0 and [m["merchant_id"] for m in out] == [MERCHANT]
    code, out = host("merchant", "set", "--merchant", MERCHANT, "--deposit", "199.00", data=data)
    assert code == 2 and "cannot change" in out["reason"]
    code, out = host("merchant", "set", "--merchant", MERCHANT, "--activation-min", "none", data=data)
    assert code == 0 and out["activation"]["min_amount"] is None
    code, out = host("merchant", "show", "--merchant", "NOPE", data=data)
    assert code == 2


def test_calendar_show_gives_the_payout_date(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "holidays.json"
    path.write_text(json.dumps({"holidays": ["2025-10-01", "2025-10-02"], "workdays": ["2025-09-28"]}))
    code, out = host("calendar", "set", "--file", str(path), "--holiday", "2025-10-03", data=data)
    assert code == 0 and out["holidays"] == ["2025-10-01", "2025-10-02", "2025-10-03"]
    code, out = host("calendar", "show", "--date", "2025-09-30", data=data)
    assert out["payout_date"] == "2025-10-06"
    code, out = host("calendar", "show", "--date", "2025-09-27", data=data)
    assert out["payout_date"] == "2025-09-28"


def test_card_types_set(data: Path) -> None:
    code, out = host("card-types", "set", "--default", "credit", "--prefix", "622202=debit", data=data)
    assert code == 0 and out == {"ok": True, "default": "credit", "prefixes": {"622202": "debit"}}
    code, out = host("card-types", "set", "--prefix", "62x=debit", data=data)
    assert code == 2


def test_apply_config_checks_everything_before_applying(tmp_path: Path) -> None:
    driver = Driver(tmp_path / "host")
    try:
        bad = {"fees": {"rules": [{"rate": "0.6%"}]}, "merchants": {MERCHANT: {"deposit": -5}}}
        with pytest.raises(InvalidInput):
            apply_config(driver.ledger, bad, today=FRIDAY)
        assert driver.ledger.setting("fees") is None and driver.ledger.transfers() == []
        with pytest.raises(InvalidInput, match="unknown host config keys"):
            apply_config(driver.ledger, {"feez": {}}, today=FRIDAY)
    finally:
        driver.close()


def test_serve_applies_a_config_file(tmp_path: Path) -> None:
    config = {
        "fees": {"rules": [{"card_type": "debit", "rate": "0.50%", "cap": 2000}, {"rate": "0.60%"}]},
        "card_types": {"default": "credit", "prefixes": {"621234": "debit"}},
        "calendar": {"holidays": ["2025-10-01"]},
        "merchants": {MERCHANT: {"deposit": 29_900, "activation_min": 10_000, "refund_threshold": 5_000_000}},
    }
    path = tmp_path / "host.json"
    path.write_text(json.dumps(config))
    assert load_config(path) == config
    data = tmp_path / "h"
    with start_host_process(data, extra_args=["--config", str(path)], env={"TILLVAULT_HOST_SECRET": SECRET.decode()}):
        code, fees = host("fees", "show", data=data)
        assert code == 0 and [r["rate_ppm"] for r in fees["rules"]] == [5000, 6000]
        code, merchants = host("merchant", "show", data=data)
        assert merchants[0]["deposit"]["status"] == "held"
        assert merchants[0]["activation"]["min_amount"] == 10_000


def test_every_settlement_command_is_in_the_docs() -> None:
    text = (Path(__file__).parents[2] / "docs" / "settlement.md").read_text(encoding="utf-8")
    for command in (
        "tillvault payout --date",
        "tillvault host payout --date",
        "host fees set",
        "host fees show",
        "host merchant set",
        "host merchant show",
        "host calendar set",
        "host calendar show",
        "host card-types set",
        "host account set --pan ... --card-type",
        "host batch --terminal",
        "tillvault host check",
        "host serve --config",
    ):
        assert command in text, command


def test_fee_caps_are_read_in_the_currency_given(tmp_path: Path) -> None:
    directory = tmp_path / "host"
    Driver(directory).close()
    code, fees = host("fees", "set", "--rate", "0.60%", "--cap", "2000", "--currency", "JPY", data=directory)
    assert code == 0 and fees["rules"][0]["cap"] == 2000 and fees["rules"][0]["name"].endswith("cap 2000 JPY")
    code, out = host("fees", "set", "--rate", "0.60%", "--cap", "20.00", "--currency", "JPY", data=directory)
    assert code == 2 and "--cap" in out["reason"]
    code, fees = host("fees", "set", "--rate", "0.60%", "--cap", "2.000", "--currency", "KWD", data=directory)
    assert code == 0 and fees["rules"][0]["cap"] == 2000 and fees["rules"][0]["currency"] == "414"
    # The cap is in dinars: cards in any other currency are still priced, at the rate alone.
    assert fees["rules"][1] == {"name": "MDR 0.60%", "rate_ppm": 6000, "rate": "0.60%"}  # any currency, no cap


def test_merchant_amounts_are_read_and_shown_in_the_terms_currency(data: Path) -> None:
    # Yen have no decimals, dinars three: "3000" JPY is 3,000 minor units, not 300,000.
    code, jpy = host(
        "merchant", "set", "--merchant", "MJP", "--currency", "392", "--deposit", "3000",
        "--activation-min", "10000", data=data,
    )  # fmt: skip
    assert code == 0, jpy
    assert jpy["deposit"]["amount"] == 3_000 and jpy["activation"]["min_amount"] == 10_000
    code, out = host("merchant", "set", "--merchant", "MJP", "--refund-threshold", "50000.5", data=data)
    assert code == 2 and "at most 0 decimals" in out["reason"]  # the currency already set decides
    code, kwd = host("merchant", "set", "--merchant", "MKW", "--currency", "414", "--deposit", "29.900", data=data)
    assert code == 0 and kwd["deposit"]["amount"] == 29_900, kwd
    result = runner.invoke(app, ["host", "merchant", "show", "--data", str(data)])
    assert result.exit_code == 0
    row = next(line for line in result.stdout.splitlines() if "MJP" in line)
    assert "3000" in row and "30.00" not in row
    assert "29.900" in next(line for line in result.stdout.splitlines() if "MKW" in line)
