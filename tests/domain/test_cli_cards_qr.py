"""``tillvault card check`` and ``tillvault qr parse|make``: JSON contracts and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from tillvault.cli.main import app

runner = CliRunner()

PAYNOW = (
    "00020101021226560009SG.PAYNOW010120213201509555BNN1030100412230914205029520400005303702540450"
    ".05802SG5914DEV MERCHANT 56009SINGAPORE621601120870-0000VL663049149"
)


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def test_card_check_json_for_a_valid_card() -> None:
    code, out = run("card", "check", "4111111111111111", "--expiry", "4912", "--json")
    data = json.loads(out)
    assert code == 0
    assert {"valid", "brand", "masked", "errors"} <= set(data)
    assert (data["valid"], data["brand"], data["masked"], data["errors"]) == (
        True,
        "visa",
        "411111******1111",
        [],
    )


def test_card_check_invalid_exits_2_and_never_prints_the_pan() -> None:
    code, out = run("card", "check", "4111111111111112", "--json")
    assert code == 2
    data = json.loads(out)
    assert data["valid"] is False and data["errors"]
    assert "4111111111111112" not in out
    code, out = run("card", "check", "4111", "1111", "1111", "1112")
    assert code == 2 and "4111111111111112" not in out and "Luhn" in out


def test_card_check_accepts_the_pan_in_groups() -> None:
    code, out = run("card", "check", "6212", "3456", "7890", "1266", "--json")
    assert code == 0 and json.loads(out)["brand"] == "unionpay"


def test_card_check_expired_card_exits_2() -> None:
    code, out = run("card", "check", "5555555555554444", "--expiry", "2001", "--json")
    assert code == 2 and any("expired" in e for e in json.loads(out)["errors"])


def test_qr_parse_json_contract() -> None:
    code, out = run("qr", "parse", PAYNOW, "--json")
    data = json.loads(out)
    assert code == 0
    contract = {
        "valid", "crc_ok", "merchant_name", "merchant_city", "country", "currency", "mcc", "amount",
        "point_of_initiation", "accounts", "errors", "warnings",
    }  # fmt: skip
    assert contract <= set(data)
    assert (data["valid"], data["crc_ok"], data["merchant_name"], data["currency"]) == (
        True,
        True,
        "DEV MERCHANT 5",
        "SGD",
    )
    assert {"tag", "gui", "fields"} <= set(data["accounts"][0])
    assert data["accounts"][0]["gui"] == "SG.PAYNOW"


def test_qr_parse_invalid_exits_2_with_errors() -> None:
    code, out = run("qr", "parse", PAYNOW[:-1] + "0", "--json")
    data = json.loads(out)
    assert code == 2 and data["valid"] is False and data["errors"][0].startswith("tag 63: CRC is 9140")
    code, out = run("qr", "parse", "garbage")
    assert code == 2 and "error" in out


def test_qr_parse_table_and_stdin() -> None:
    code, out = run("qr", "parse", "-", stdin=PAYNOW + "\n")
    assert code == 0 and "DEV MERCHANT 5" in out and "trailing newline" in out


def test_qr_make_json_and_png(tmp_path: Path) -> None:
    png = tmp_path / "qr.png"
    code, out = run(
        "qr", "make", "--name", "北京朝阳区张三便利店", "--city", "北京", "--country", "CN",
        "--currency", "CNY", "--mcc", "5411", "--account", "A000000333:123456789012345",
        "--account", "br.gov.bcb.pix:key@example.com", "--amount", "12.34", "--reference", "INV1",
        "--png", str(png), "--json",
    )  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    assert data["ok"] and data["qr"]["valid"] and data["qr"]["amount"] == "12.34"
    assert data["qr"]["merchant_name"] == "北京朝阳区张三便利店"
    assert [a["tag"] for a in data["qr"]["accounts"]] == ["26", "27"]
    assert data["qr"]["additional_data"] == {"reference_label": "INV1"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qr_make_terminal_output_contains_the_payload() -> None:
    code, out = run(
        "qr", "make", "--name", "Shop", "--city", "Beijing", "--country", "CN", "--currency", "156",
        "--mcc", "5812", "--account", "29=A000000333:ABC",
    )  # fmt: skip
    assert code == 0
    assert "29210010A0000003330103ABC" in out and "6304" in out and "▀" in out


def test_qr_make_bad_input_exits_2_with_a_reason() -> None:
    code, out = run(
        "qr", "make", "--name", "x" * 30, "--city", "B", "--country", "CN", "--currency", "CNY",
        "--mcc", "5411", "--account", "A000000333:1", "--json",
    )  # fmt: skip
    assert code == 2 and "merchant name has 30 characters" in json.loads(out)["reason"]
    code, out = run(
        "qr", "make", "--name", "S", "--city", "B", "--country", "CN", "--currency", "CNY",
        "--mcc", "5411", "--account", "nocolon", "--json",
    )  # fmt: skip
    assert code == 2 and "GUI:ID" in json.loads(out)["reason"]
    code, out = run(
        "qr", "make", "--name", "S", "--city", "B", "--country", "CN", "--currency", "JPY",
        "--mcc", "5411", "--account", "A:1", "--amount", "1.5", "--json",
    )  # fmt: skip
    assert code == 2 and "JPY has no minor unit" in json.loads(out)["reason"]


def test_every_card_and_qr_command_and_option_has_help() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    for group_name in ("card", "qr"):
        group = root.commands[group_name]
        assert isinstance(group, TyperGroup) and group.help
        for name, command in group.commands.items():
            assert command.help, name
            for param in command.params:
                assert getattr(param, "help", None) or param.name == "help", f"{name} {param.name}"
