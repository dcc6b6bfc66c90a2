"""Settlement and payout commands of the reference host (S15), attached by :mod:`tillvault.cli.host`.

``tillvault payout`` (top level, the DESIGN contract) and ``tillvault host payout`` pay out one
business date; ``host fees``, ``host merchant``, ``host calendar``, ``host card-types`` keep
the settings in the host ledger; ``host batch`` shows the host's view of a terminal's batches.
Amounts typed on the command line are decimal major units (``299.00``); JSON gives minor units.
"""

from __future__ import annotations

import contextlib
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tillvault.cli.host import DEFAULT_DATA, ConfigDirOption, DataOption, _open_ledger, minor_units
from tillvault.cli.output import console, emit_json, guarded
from tillvault.errors import InvalidInput

__all__ = ["register"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
MerchantOption = Annotated[
    str | None, typer.Option("--merchant", help="Merchant id (field 42); without it, the host-wide default.")
]
DateOption = Annotated[str, typer.Option("--date", help="Business date to pay out, YYYY-MM-DD.")]
CsvOption = Annotated[
    Path | None,
    typer.Option("--csv-dir", help="Folder for the day's payout file payout-YYYY-MM-DD.csv (default DATA/payouts)."),
]
PreviewOption = Annotated[
    bool, typer.Option("--preview", help="Show the statements without paying out (writes nothing).")
]


def _money(minor: int | None, currency: str | None = None) -> str:
    """Minor units as the currency writes them (``994`` JPY is ``994``, ``12394`` KWD ``12.394``);
    two decimals where the currency is not known."""
    if minor is None:
        return "-"
    if currency:
        from tillvault.domain.money import format_amount

        with contextlib.suppress(InvalidInput):
            return format_amount(minor, currency)
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def _optional_amount(text: str | None, option: str, currency: str) -> Any:
    """``None`` → unchanged; ``"none"`` → cleared (None); else minor units of ``currency``."""
    from tillvault.host.merchants import UNCHANGED

    if text is None:
        return UNCHANGED
    if text.strip().lower() == "none":
        return None
    return minor_units(text, option, currency=currency)


def _print_payout(result: dict[str, Any]) -> None:
    state = "preview" if result.get("preview") else "paid out" if result.get("created") else "already paid out"
    console.print(
        f"business date {result['business_date']} ({state}), payout date {result['payout_date']}", highlight=False
    )
    table = Table("merchant", "cur", "sales", "refunds", "fees", "deposit refund", "net", "action")
    for st in result["merchants"]:
        table.add_row(
            st["merchant_id"],
            st["currency"],
            f"{st['sales_count']} / {_money(st['sales_amount'], st['currency'])}",
            f"{st['refunds_count']} / {_money(st['refunds_amount'], st['currency'])}",
            _money(st["fees_total"], st["currency"]),
            _money(st["deposit_refund"], st["currency"]),
            _money(st["net"], st["currency"]),
            st["action"],
        )
    console.print(table)
    for st in result["merchants"]:
        for line in st["fees"]:
            console.print(
                f"{st['merchant_id']} fee {line['name']}: {line['count']} tx, {_money(line['amount'], st['currency'])}",
                highlight=False,
                soft_wrap=True,
            )
        if st["deposit_refund"]:
            console.print(
                f"{st['merchant_id']} device deposit refund: {_money(st['deposit_refund'], st['currency'])}",
                highlight=False,
                soft_wrap=True,
            )
    if result.get("csv"):
        console.print(f"payout file: {result['csv']}", highlight=False, soft_wrap=True)


def register(app: typer.Typer, host_app: typer.Typer) -> None:
    """Attach ``payout`` to ``app`` and the settlement commands to the ``host`` group."""

    def payout_run(
        data: Path, config_dir: Path | None, when: str, csv_dir: Path | None, preview: bool, as_json: bool
    ) -> None:
        def run() -> dict[str, Any]:
            from tillvault.host.businessdays import parse_date
            from tillvault.host.payout import run_payout, write_payout_csv

            day = parse_date(when, "--date")
            with closing(_open_ledger(data, config_dir)) as ledger:
                result = run_payout(ledger, day, today=date.today(), preview=preview)
            result["csv"] = None if preview else str(write_payout_csv(result, csv_dir or data / "payouts"))
            return result

        result = guarded(run, as_json=as_json)
        if as_json:
            emit_json(result)
        else:
            _print_payout(result)

    @app.command("payout")
    def payout_top(
        when: DateOption,
        host_data: Annotated[
            Path,
            typer.Option("--host-data", envvar="TILLVAULT_HOST_DATA", help="The acquirer host's data folder."),
        ] = DEFAULT_DATA,
        csv_dir: CsvOption = None,
        preview: PreviewOption = False,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Pay each merchant its settled card money of one business date (T+1), fees named; idempotent."""
        payout_run(host_data, config_dir, when, csv_dir, preview, as_json)

    @host_app.command("payout")
    def payout_host(
        when: DateOption,
        data: DataOption = DEFAULT_DATA,
        csv_dir: CsvOption = None,
        preview: PreviewOption = False,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Pay out one business date: statements, ledger transfers, the CSV file (same as `tillvault payout`)."""
        payout_run(data, config_dir, when, csv_dir, preview, as_json)

    # -- fees ----------------------------------------------------------------------------------

    fees_app = typer.Typer(help="The merchant fee schedule (MDR): show or replace it.", no_args_is_help=True)
    host_app.add_typer(fees_app, name="fees")

    @fees_app.command("set")
    def fees_set(
        rate: Annotated[
            str | None, typer.Option("--rate", help="Rate for every card no other rule prices, e.g. 0.60%.")
        ] = None,
        cap: Annotated[
            str | None, typer.Option("--cap", help="Per-transaction cap of --rate's fee, e.g. 20.00.")
        ] = None,
        minimum: Annotated[
            str | None, typer.Option("--minimum", help="Per-transaction minimum of --rate's fee, e.g. 0.01.")
        ] = None,
        debit_rate: Annotated[
            str | None, typer.Option("--debit-rate", help="Rate for debit cards, e.g. 0.50%.")
        ] = None,
        debit_cap: Annotated[
            str | None, typer.Option("--debit-cap", help="Per-transaction cap of the debit fee, e.g. 20.00.")
        ] = None,
        credit_rate: Annotated[
            str | None, typer.Option("--credit-rate", help="Rate for credit cards, e.g. 0.60%.")
        ] = None,
        credit_cap: Annotated[
            str | None, typer.Option("--credit-cap", help="Per-transaction cap of the credit fee.")
        ] = None,
        refunds_return_fee: Annotated[
            bool,
            typer.Option("--refunds-return-fee/--refunds-keep-fee", help="Whether a refund returns its fee."),
        ] = False,
        currency: Annotated[
            str,
            typer.Option(
                "--currency",
                help="Currency of the caps and minimums (ISO 4217, e.g. 156 or JPY); a capped rule "
                "prices only that currency.",
            ),
        ] = "156",
        file: Annotated[
            Path | None,
            typer.Option("--file", help='Whole schedule as JSON: {"rules": [...], "refunds_return_fee": false}.'),
        ] = None,
        merchant: MerchantOption = None,
        default: Annotated[
            bool, typer.Option("--default", help="With --merchant: drop its own schedule, use the default.")
        ] = False,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Replace the fee schedule (host-wide or one merchant's); applies to batches settled from now on."""

        def run() -> dict[str, Any]:
            from tillvault.domain.money import currency_info, parse_amount
            from tillvault.host.config import load_config
            from tillvault.host.fees import FeeRule, FeeSchedule, parse_rate
            from tillvault.host.settings import fee_schedule, set_fee_schedule

            schedule: FeeSchedule | None
            if default:
                if merchant is None or file or rate or debit_rate or credit_rate:
                    raise InvalidInput("--default goes with --merchant alone")
                schedule = None
            elif file is not None:
                if rate or debit_rate or credit_rate:
                    raise InvalidInput("--file replaces the whole schedule: give no rates with it")
                schedule = FeeSchedule.from_dict(load_config(file))
            else:
                if rate is None:
                    raise InvalidInput("--rate is required (the rate of every card no other rule prices)")
                cur = currency_info(currency)

                def amount(text: str | None, option: str) -> int | None:
                    if not text:
                        return None
                    try:
                        return parse_amount(text, cur)
                    except InvalidInput as exc:
                        raise InvalidInput(f"{option}: {exc}") from None

                rules = []
                for card_type, r, c in (("debit", debit_rate, debit_cap), ("credit", credit_rate, credit_cap)):
                    if r is not None:
                        capped = amount(c, f"--{card_type}-cap")
                        rules.append(
                            FeeRule(
                                parse_rate(r),
                                cap=capped,
                                card_type=card_type,
                                currency=cur.numeric if capped is not None else None,
                            )
                        )
                        if capped is not None:  # the cap is of one currency; the card type's rate is not
                            rules.append(FeeRule(parse_rate(r), card_type=card_type))
                    elif c is not None:
                        raise InvalidInput(f"--{card_type}-cap needs --{card_type}-rate")
                cap_minor, min_minor = amount(cap, "--cap"), amount(minimum, "--minimum")
                in_one_currency = cap_minor is not None or min_minor is not None
                rules.append(
                    FeeRule(
                        parse_rate(rate),
                        cap=cap_minor,
                        minimum=min_minor,
                        currency=cur.numeric if in_one_currency else None,
                    )
                )
                if in_one_currency:
                    # A cap or minimum is an amount of one currency; cards in any other still have
                    # a price: the rate alone (every card has one).
                    rules.append(FeeRule(parse_rate(rate)))
                schedule = FeeSchedule(tuple(rules), refunds_return_fee)
            with closing(_open_ledger(data, config_dir)) as ledger:
                set_fee_schedule(ledger, schedule, merchant)
                return {"ok": True, "merchant": merchant, **fee_schedule(ledger, merchant).to_dict()}

        result = guarded(run, as_json=as_json)
        _print_schedule(result, as_json)

    @fees_app.command("show")
    def fees_show(
        merchant: MerchantOption = None,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Show the fee schedule that prices a merchant's transactions (or the host-wide default)."""

        def run() -> dict[str, Any]:
            from tillvault.host.settings import fee_schedule

            with closing(_open_ledger(data, config_dir)) as ledger:
                return {"ok": True, "merchant": merchant, **fee_schedule(ledger, merchant).to_dict()}

        _print_schedule(guarded(run, as_json=as_json), as_json)

    # -- merchants -----------------------------------------------------------------------------

    merchant_app = typer.Typer(
        help="Merchant terms: device deposit, activation, refund threshold.", no_args_is_help=True
    )
    host_app.add_typer(merchant_app, name="merchant")

    @merchant_app.command("set")
    def merchant_set(
        merchant: Annotated[str, typer.Option("--merchant", help="Merchant id (field 42).")],
        deposit: Annotated[
            str | None, typer.Option("--deposit", help="Device deposit, e.g. 299.00; collected when first set.")
        ] = None,
        activation_min: Annotated[
            str | None,
            typer.Option("--activation-min", help="Smallest first sale that activates the terminal ('none' clears)."),
        ] = None,
        refund_threshold: Annotated[
            str | None,
            typer.Option(
                "--refund-threshold", help="Net settled card volume that refunds the deposit ('none' clears)."
            ),
        ] = None,
        currency: Annotated[
            str | None,
            typer.Option("--currency", help="ISO 4217 currency of the terms: 156 or CNY, 392 or JPY... (default 156)."),
        ] = None,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Create or change a merchant's deposit, activation minimum and deposit-refund threshold."""

        def run() -> dict[str, Any]:
            from tillvault.domain.money import currency_info
            from tillvault.host.merchants import UNCHANGED, get_merchant, set_merchant

            # As field 49 carries it, whether typed as letters or digits (JPY is 392).
            numeric = currency_info(currency).numeric if currency is not None else None
            with closing(_open_ledger(data, config_dir)) as ledger:
                # Amounts are in the terms' currency: the one given, else the one already set (¥3000 is 3000 yen).
                current = get_merchant(ledger, merchant.strip()) if merchant.strip() else None
                cur = numeric or (current.currency if current is not None else "156")
                result = set_merchant(
                    ledger,
                    merchant,
                    today=date.today(),
                    currency=numeric,
                    deposit=minor_units(deposit, "--deposit", currency=cur) if deposit is not None else UNCHANGED,
                    activation_min=_optional_amount(activation_min, "--activation-min", cur),
                    refund_threshold=_optional_amount(refund_threshold, "--refund-threshold", cur),
                )
            return {"ok": True, **result.to_dict()}

        result = guarded(run, as_json=as_json)
        if as_json:
            emit_json(result)
        else:
            _print_merchants([result])

    @merchant_app.command("show")
    def merchant_show(
        merchant: Annotated[str | None, typer.Option("--merchant", help="Only this merchant id.")] = None,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """List merchants' terms and their deposit and activation state (minor units)."""

        def run() -> list[dict[str, Any]]:
            from tillvault.host.merchants import get_merchant, list_merchants

            with closing(_open_ledger(data, config_dir)) as ledger:
                if merchant is None:
                    return [m.to_dict() for m in list_merchants(ledger)]
                found = get_merchant(ledger, merchant)
                if found is None:
                    raise InvalidInput(f"merchant {merchant} has no terms on this host")
                return [found.to_dict()]

        rows = guarded(run, as_json=as_json)
        if as_json:
            emit_json(rows)
        else:
            _print_merchants(rows)

    # -- calendar and card types ---------------------------------------------------------------

    calendar_app = typer.Typer(help="The payout calendar: holidays and make-up working days.", no_args_is_help=True)
    host_app.add_typer(calendar_app, name="calendar")

    @calendar_app.command("set")
    def calendar_set(
        holiday: Annotated[
            list[str] | None, typer.Option("--holiday", help="A holiday YYYY-MM-DD (repeat the option).")
        ] = None,
        workday: Annotated[
            list[str] | None,
            typer.Option("--workday", help="A weekend day that is a working day, YYYY-MM-DD (repeatable)."),
        ] = None,
        file: Annotated[
            Path | None,
            typer.Option("--file", help='JSON {"holidays": [...], "workdays": [...]}, merged with the options.'),
        ] = None,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Replace the payout calendar (weekends are always off unless listed as working days)."""

        def run() -> dict[str, Any]:
            from tillvault.host.businessdays import BusinessCalendar
            from tillvault.host.config import load_config
            from tillvault.host.settings import set_calendar

            base = BusinessCalendar.from_dict(load_config(file)) if file is not None else BusinessCalendar()
            extra = BusinessCalendar.from_dict({"holidays": holiday or [], "workdays": workday or []})
            value = BusinessCalendar(base.holidays | extra.holidays, base.workdays | extra.workdays)
            with closing(_open_ledger(data, config_dir)) as ledger:
                set_calendar(ledger, value)
            return {"ok": True, **value.to_dict()}

        result = guarded(run, as_json=as_json)
        _print_calendar(result, as_json)

    @calendar_app.command("show")
    def calendar_show(
        when: Annotated[
            str | None, typer.Option("--date", help="Also give the payout date of this business date.")
        ] = None,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Show the holidays and working days; with --date, that business date's payout date (T+1)."""

        def run() -> dict[str, Any]:
            from tillvault.host.businessdays import parse_date
            from tillvault.host.settings import calendar

            with closing(_open_ledger(data, config_dir)) as ledger:
                value = calendar(ledger)
            out: dict[str, Any] = {"ok": True, **value.to_dict()}
            if when is not None:
                day = parse_date(when, "--date")
                out["business_date"] = day.isoformat()
                out["payout_date"] = value.next_business_day(day).isoformat()
            return out

        _print_calendar(guarded(run, as_json=as_json), as_json)

    card_types_app = typer.Typer(help="How the host tells debit from credit cards.", no_args_is_help=True)
    host_app.add_typer(card_types_app, name="card-types")

    @card_types_app.command("set")
    def card_types_set(
        default_type: Annotated[
            str, typer.Option("--default", help="Type of a card no prefix names: debit, credit or unknown.")
        ] = "unknown",
        prefix: Annotated[
            list[str] | None,
            typer.Option("--prefix", help="DIGITS=TYPE, e.g. 622202=debit (1-6 digits; repeatable)."),
        ] = None,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Replace the card-type rule (a card's own type, `host account set --card-type`, wins)."""

        def run() -> dict[str, Any]:
            from tillvault.host.settings import CardTypeRule, set_card_type_rule

            prefixes: dict[str, str] = {}
            for item in prefix or []:
                digits, sep, kind = item.partition("=")
                if not sep:
                    raise InvalidInput(f"--prefix must be DIGITS=TYPE, got {item!r}")
                prefixes[digits.strip()] = kind.strip()
            rule = CardTypeRule(default_type, prefixes)
            with closing(_open_ledger(data, config_dir)) as ledger:
                set_card_type_rule(ledger, rule)
            return {"ok": True, **rule.to_dict()}

        result = guarded(run, as_json=as_json)
        if as_json:
            emit_json(result)
        else:
            console.print(f"default {result['default']}; prefixes {result['prefixes'] or 'none'}", highlight=False)

    # -- the host's view of a terminal's batches ----------------------------------------------

    @host_app.command("batch")
    def batch_view(
        terminal: Annotated[str, typer.Option("--terminal", help="Terminal id (field 41).")],
        batch: Annotated[int | None, typer.Option("--batch", help="Only this batch number.")] = None,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """The host's rows of a terminal's batches and their payout statements (for reconciliation)."""

        def run() -> dict[str, Any]:
            from tillvault.host.payout import host_views

            with closing(_open_ledger(data, config_dir)) as ledger:
                rows, statements = host_views(ledger, terminal, None if batch is None else [batch])
            return {"ok": True, "terminal": terminal, "rows": rows, "payouts": statements}

        result = guarded(run, as_json=as_json)
        if as_json:
            emit_json(result)
            return
        table = Table("batch", "invoice", "stan", "kind", "amount", "status", "settled", "fee", "fee rule")
        for r in result["rows"]:
            table.add_row(
                str(r["batch"]),
                str(r["invoice"]),
                r["stan"],
                r["kind"],
                _money(r["amount"]),
                r["status"],
                r["settled_date"] or "",
                _money(r["fee"]) if r["fee"] is not None else "",
                r["fee_name"] or "",
            )
        console.print(table)


def _print_schedule(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    who = f"merchant {result['merchant']}" if result.get("merchant") else "default"
    if not result["rules"]:
        console.print(f"{who}: no fees", highlight=False)
    for rule in result["rules"]:
        console.print(f"{who}: {rule['name']}", highlight=False)
    console.print(f"refunds {'return' if result['refunds_return_fee'] else 'keep'} their fee", highlight=False)


def _print_merchants(rows: list[dict[str, Any]]) -> None:
    table = Table("merchant", "cur", "deposit", "status", "refund at", "activation min", "activated")
    for m in rows:
        deposit, activation = m["deposit"], m["activation"]
        table.add_row(
            m["merchant_id"],
            m["currency"],
            _money(deposit["amount"], m["currency"]),
            deposit["status"],
            _money(deposit["refund_threshold"], m["currency"]),
            _money(activation["min_amount"], m["currency"]),
            activation["activated_date"] or ("yes" if activation["activated"] else "no"),
        )
    console.print(table)


def _print_calendar(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    console.print(f"holidays: {', '.join(result['holidays']) or 'none'}", highlight=False)
    console.print(f"working weekend days: {', '.join(result['workdays']) or 'none'}", highlight=False)
    if "payout_date" in result:
        console.print(f"business date {result['business_date']} pays out on {result['payout_date']}", highlight=False)
