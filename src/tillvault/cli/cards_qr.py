"""``tillvault card ...`` and ``tillvault qr ...``: local card checks and merchant QR codes.

Thin: parse the arguments, call :mod:`tillvault.domain.cards` / :mod:`tillvault.domain.emvqr`,
print JSON or a rich table. A full PAN is never printed: only the masked form leaves here.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tillvault.cli.output import console, emit_json, fail
from tillvault.domain.cards import check_card
from tillvault.domain.emvqr import MerchantAccount, QRParseResult, build_qr, parse_qr
from tillvault.domain.money import currency_info, parse_amount
from tillvault.errors import InvalidInput

card_app = typer.Typer(help="Check payment cards locally (brand, length, Luhn, expiry).", no_args_is_help=True)
qr_app = typer.Typer(help="Parse and make EMVCo merchant-presented QR codes.", no_args_is_help=True)

#: Exit code for a card or QR code that fails its checks.
EXIT_INVALID = 2

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    """Attach the ``card`` and ``qr`` command groups to the main application."""
    app.add_typer(card_app, name="card")
    app.add_typer(qr_app, name="qr")


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


@card_app.command("check")
def card_check(
    pan: Annotated[
        list[str],
        typer.Argument(
            help="Card number; spaces and dashes are ignored (it may be given in groups).", show_default=False
        ),
    ],
    expiry: Annotated[
        str | None, typer.Option("--expiry", help="Expiry date as YYMM (year, month), e.g. 2712.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a card number (and expiry): brand by IIN, length, Luhn (UnionPay exempt), expiry.

    Exits 2 when the card is invalid. Only the masked number (first 6 / last 4) is printed.
    """
    result = check_card(" ".join(pan), expiry)
    if as_json:
        emit_json({"ok": result.valid, **result.to_dict()})
        if not result.valid:
            raise typer.Exit(EXIT_INVALID)
        return
    rows = [
        ("valid", "yes" if result.valid else "no"),
        ("brand", result.brand_name or "unknown"),
        ("masked", result.masked),
        ("Luhn", "ok" if result.luhn_ok else "fails"),
    ]
    if result.expiry:
        rows.append(("expiry", result.expiry))
    rows += [("error", e) for e in result.errors] + [("warning", w) for w in result.warnings]
    console.print(_table("Card check", rows))
    if not result.valid:
        fail("; ".join(result.errors), as_json=False, code=EXIT_INVALID)


def _read_payload(payload: str) -> str | bytes:
    if payload == "-":  # the bytes as they are: the parser names a byte that is not UTF-8
        return sys.stdin.buffer.read()
    return payload


def _print_qr(result: QRParseResult) -> None:
    rows = [
        ("valid", "yes" if result.valid else "no"),
        ("CRC", "ok" if result.crc_ok else "bad or missing"),
        ("merchant", result.merchant_name or "-"),
        ("city", result.merchant_city or "-"),
        ("country", result.country or "-"),
        ("currency", result.currency or "-"),
        ("MCC", result.mcc or "-"),
        ("amount", result.amount or "-"),
        ("initiation", result.point_of_initiation or "-"),
    ]
    for acc in result.accounts:
        detail = acc.value if acc.value is not None else " ".join(f"{k}={v}" for k, v in acc.fields.items())
        label = f"{acc.scheme or acc.gui or 'unknown'}"
        rows.append((f"account {acc.tag}", f"{label}: {detail}"))
    for key, value in result.additional_data.items():
        rows.append((key, value))
    if result.alternate_language:
        alt = result.alternate_language
        rows.append(
            (
                f"name ({alt.get('language', '')})",
                " / ".join(filter(None, [alt.get("name"), alt.get("city")])),
            )
        )
    rows += [("error", e) for e in result.errors] + [("warning", w) for w in result.warnings]
    console.print(_table("Merchant QR code", rows))


@qr_app.command("parse")
def qr_parse(
    payload: Annotated[
        str, typer.Argument(help="The QR code's text (quote it), or '-' to read it from standard input.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Parse and check an EMVCo merchant QR payload (structure, CRC, fields). Exits 2 if invalid."""
    result = parse_qr(_read_payload(payload))
    if as_json:
        emit_json(result.to_dict())
        if not result.valid:
            raise typer.Exit(EXIT_INVALID)
        return
    _print_qr(result)
    if not result.valid:
        fail(result.errors[0], as_json=False, code=EXIT_INVALID)


def _parse_account(spec: str) -> MerchantAccount:
    tag: str | None = None
    body = spec
    if len(spec) > 3 and spec[2] == "=" and spec[:2].isdigit():
        tag, body = spec[:2], spec[3:]
    gui, sep, ident = body.partition(":")
    if not sep or not gui or not ident:
        raise InvalidInput(f"--account {spec!r} must look like GUI:ID (optionally TAG=GUI:ID), e.g. br.gov.bcb.pix:KEY")
    return MerchantAccount(tag=tag, gui=gui, fields={"01": ident})


@qr_app.command("make")
def qr_make(
    name: Annotated[str, typer.Option("--name", help="Merchant name (tag 59, at most 25 characters).")],
    city: Annotated[str, typer.Option("--city", help="Merchant city (tag 60, at most 15 characters).")],
    country: Annotated[str, typer.Option("--country", help="Country, ISO 3166-1 alpha-2 (tag 58), e.g. CN.")],
    currency: Annotated[str, typer.Option("--currency", help="Currency, ISO 4217 alpha or numeric (tag 53).")],
    mcc: Annotated[str, typer.Option("--mcc", help="Merchant category code, 4 digits (tag 52).")],
    account: Annotated[
        list[str],
        typer.Option(
            "--account",
            help="Payment account as GUI:ID (sub-tags 00 and 01), optionally TAG=GUI:ID; repeat for more.",
        ),
    ],
    amount: Annotated[
        str | None, typer.Option("--amount", help="Amount in major units, e.g. 12.34 (makes a dynamic code).")
    ] = None,
    reference: Annotated[str | None, typer.Option("--reference", help="Reference label (tag 62, sub-tag 05).")] = None,
    bill_number: Annotated[str | None, typer.Option("--bill-number", help="Bill number (tag 62, sub-tag 01).")] = None,
    terminal_label: Annotated[
        str | None, typer.Option("--terminal-label", help="Terminal label (tag 62, sub-tag 07).")
    ] = None,
    postal_code: Annotated[str | None, typer.Option("--postal-code", help="Postal code (tag 61).")] = None,
    alt_language: Annotated[
        str | None, typer.Option("--alt-language", help="Alternate language code (tag 64), e.g. ZH.")
    ] = None,
    alt_name: Annotated[str | None, typer.Option("--alt-name", help="Merchant name in the alternate language.")] = None,
    alt_city: Annotated[str | None, typer.Option("--alt-city", help="Merchant city in the alternate language.")] = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="Also write the QR code as a PNG image to this file.")
    ] = None,
    scale: Annotated[int, typer.Option("--scale", min=1, max=40, help="Pixels per module in the PNG.")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Make an EMVCo merchant QR code with a correct CRC; show it in the terminal or save a PNG."""
    import segno

    try:
        cur = currency_info(currency)
        additional = {
            k: v
            for k, v in (
                ("bill_number", bill_number),
                ("reference_label", reference),
                ("terminal_label", terminal_label),
            )
            if v
        }
        alternate = None
        if alt_language or alt_name or alt_city:
            if not (alt_language and alt_name):
                raise InvalidInput("--alt-language and --alt-name go together (--alt-city is optional)")
            alternate = {
                "language": alt_language,
                "name": alt_name,
                **({"city": alt_city} if alt_city else {}),
            }
        payload = build_qr(
            name=name,
            city=city,
            country=country.upper(),
            currency=cur.alpha,
            mcc=mcc,
            accounts=[_parse_account(a) for a in account],
            amount=parse_amount(amount, cur) if amount is not None else None,
            postal_code=postal_code,
            additional_data=additional or None,
            alternate_language=alternate,
        )
    except InvalidInput as exc:
        fail(str(exc), as_json=as_json, code=EXIT_INVALID, extra={"error": type(exc).__name__})
    code = segno.make(payload, error="m", micro=False)
    if png is not None:
        try:
            code.save(str(png), kind="png", scale=scale, border=4)
        except OSError as exc:
            fail(f"cannot write {png}: {exc.strerror or exc}", as_json=as_json)
    if as_json:
        emit_json(
            {
                "ok": True,
                "payload": payload,
                "png": str(png) if png else None,
                "qr": parse_qr(payload).to_dict(),
            }
        )
        return
    buffer = io.StringIO()
    code.terminal(out=buffer, compact=True)
    sys.stdout.write(buffer.getvalue())
    console.print(payload, highlight=False, soft_wrap=True)
    if png is not None:
        console.print(f"PNG written to {png}", highlight=False)
