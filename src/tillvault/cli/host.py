"""``tillvault host ...``: run the reference acquirer host and administer its ledger.

The host has its own data folder, given on each subcommand with ``--data`` (default
``tillvault-host``); the global ``tillvault --data`` is the terminal's. Amounts on the command
line are decimal major units with at most 2 decimals (``50000.00``); JSON output gives minor
units (ints) and only masked PANs.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import threading
from contextlib import closing
from dataclasses import asdict
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from tillvault.cli.output import console, emit_json, fail, guarded
from tillvault.errors import ConfigError, InvalidInput

DataOption = Annotated[Path, typer.Option("--data", help="The host's data folder (ledger, faults.json, host.log).")]
ConfigDirOption = Annotated[
    Path | None,
    typer.Option(
        "--config-dir",
        envvar="TILLVAULT_HOST_CONFIG_DIR",
        help="Where host.secret lives (default ~/.config/tillvault/host/<hash of data dir>/); "
        "TILLVAULT_HOST_SECRET overrides the file.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DEFAULT_DATA = Path("tillvault-host")


def minor_units(text: str, option: str, *, allow_negative: bool = False, currency: str | None = None) -> int:
    """``"50000.00"`` → 5000000 in a 2-decimal currency; in ``currency`` (ISO 4217), by its own
    decimals: ``"3000"`` JPY → 3000, ``"29.900"`` KWD → 29900.

    :raises InvalidInput: not a decimal number with at most the currency's decimals (or negative
        when not allowed).
    """
    exponent = 2
    if currency is not None:
        from tillvault.domain.money import currency_info

        exponent = currency_info(currency).exponent
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text.strip()):  # not 1e3, not other scripts' digits
        raise InvalidInput(f"{option} must be a decimal amount like 50000.00, got {text!r}")
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidInput(f"{option} must be a decimal amount like 50000.00, got {text!r}") from None
    try:
        exact = value.is_finite() and value == value.quantize(Decimal(1).scaleb(-exponent))
    except InvalidOperation:  # more digits than any amount has
        exact = False
    if not exact or abs(value) >= 10**15:
        raise InvalidInput(f"{option} must be an amount with at most {exponent} decimals, got {text!r}")
    if value < 0 and not allow_negative:
        raise InvalidInput(f"{option} must not be negative, got {text!r}")
    return int(value.scaleb(exponent))


def _money(minor: int, currency: str | None) -> str:
    """``minor`` units shown in ``currency``'s own units (JPY 1234, KWD 1.234); in minor units,
    said so, when the currency is not one (a batch in several currencies)."""
    from tillvault.domain.money import currency_info, format_amount

    try:
        cur = currency_info(currency or "")
    except InvalidInput:
        return f"{minor} (minor units)"
    return f"{format_amount(minor, cur)} {cur.alpha}"


def _open_ledger(data: Path, config_dir: Path | None) -> Any:
    from tillvault.host.ledger import HostLedger

    if not (data / "host-ledger.sqlite3").exists():
        raise ConfigError(f"no host ledger in {data} (start one with: tillvault host serve --data {data})")
    return HostLedger(data, config_dir=config_dir)


def register(app: typer.Typer) -> None:
    """Attach the ``host`` command group to ``app``."""
    host_app = typer.Typer(
        help="The reference acquirer host (ISO 8583 over TCP): serve it, administer its ledger.",
        no_args_is_help=True,
    )
    account_app = typer.Typer(help="Change card accounts on the host.", no_args_is_help=True)
    host_app.add_typer(account_app, name="account")
    app.add_typer(host_app, name="host")
    from tillvault.cli import payout

    payout.register(app, host_app)

    @host_app.command("serve")
    def serve(
        listen: Annotated[
            str, typer.Option("--listen", help="HOST:PORT to listen on; port 0 lets the OS choose.")
        ] = "127.0.0.1:8583",
        data: DataOption = DEFAULT_DATA,
        default_credit_limit: Annotated[
            str,
            typer.Option("--default-credit-limit", help="Credit limit given to a card never seen before."),
        ] = "50000.00",
        max_per_transaction: Annotated[
            str | None,
            typer.Option("--max-per-transaction", help="Decline sales and refunds above this (code 61)."),
        ] = None,
        tls_cert: Annotated[
            Path | None, typer.Option("--tls-cert", help="PEM certificate: serve TLS (needs --tls-key).")
        ] = None,
        tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
        config_dir: ConfigDirOption = None,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="JSON settings applied to the ledger at start: fees, card_types, calendar, merchants "
                "(docs/settlement.md).",
            ),
        ] = None,
        verbose: Annotated[bool, typer.Option("--verbose", help="Log each connection problem.")] = False,
    ) -> None:
        """Serve the host until SIGTERM or Ctrl-C; prints 'listening on HOST:PORT' once ready."""
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

        def run() -> None:
            from tillvault.host.config import load_config
            from tillvault.host.server import AcquirerHost
            from tillvault.host.wire import server_ssl_context

            if (tls_cert is None) != (tls_key is None):
                raise ConfigError("--tls-cert and --tls-key go together")
            context = server_ssl_context(tls_cert, tls_key) if tls_cert and tls_key else None
            limit = minor_units(default_credit_limit, "--default-credit-limit")
            per_tx = minor_units(max_per_transaction, "--max-per-transaction") if max_per_transaction else None
            try:
                host = AcquirerHost(
                    data,
                    listen=listen,
                    default_credit_limit=limit,
                    max_per_transaction=per_tx,
                    ssl_context=context,
                    config_dir=config_dir,
                    config=load_config(config) if config is not None else None,
                )
            except OSError as exc:
                raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            host.start()
            sys.stdout.write(f"listening on {host.address}\n")
            sys.stdout.flush()
            try:
                while not stop.wait(0.5):
                    pass
            finally:
                host.stop()

        try:
            guarded(run, as_json=False)
        except OSError as exc:  # TLS files unreadable, etc.
            fail(str(exc), as_json=False, code=2)

    @account_app.command("set")
    def account_set(
        pan: Annotated[str, typer.Option("--pan", help="The card number (hashed at once; never stored).")],
        credit_limit: Annotated[
            str | None, typer.Option("--credit-limit", help="New credit limit, e.g. 500.00.")
        ] = None,
        balance: Annotated[
            str | None,
            typer.Option("--balance", help="New balance: funds the cardholder holds (negative: owed), e.g. 100.00."),
        ] = None,
        blocked: Annotated[
            bool | None,
            typer.Option("--blocked/--unblocked", help="Block the card (declined 62) or unblock it."),
        ] = None,
        card_type: Annotated[
            str | None,
            typer.Option(
                "--card-type",
                help="debit, credit or unknown: picks the card's fee rule; 'rule' goes back to the card-type rule.",
            ),
        ] = None,
        currency: Annotated[
            str, typer.Option("--currency", help="ISO 4217 currency of the account: 156 or CNY, 392 or JPY...")
        ] = "156",
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Create or change a card's account (credit limit, balance, blocked, card type), amounts in
        the currency's units (JPY has none: --credit-limit 100 is 100 yen)."""

        def run() -> dict[str, Any]:
            from tillvault.domain.money import currency_info

            info = currency_info(currency)
            ledger = _open_ledger(data, config_dir)
            try:
                account = ledger.set_card(
                    pan,
                    currency=info.numeric,  # as field 49 carries it: the account a sale will use
                    credit_limit=minor_units(credit_limit, "--credit-limit", currency=info.alpha)
                    if credit_limit
                    else None,
                    balance=minor_units(balance, "--balance", allow_negative=True, currency=info.alpha)
                    if balance
                    else None,
                    blocked=blocked,
                    card_type="" if card_type == "rule" else card_type,
                )
            finally:
                ledger.close()
            return {"ok": True, **account.to_dict()}

        result = guarded(run, as_json=as_json)
        if as_json:
            emit_json(result)
        else:
            cur = result["currency"]
            console.print(
                f"{result['masked_pan']}: limit {_money(result['credit_limit'], cur)}, "
                f"balance {_money(result['balance'], cur)}, available {_money(result['available'], cur)}"
                f"{', blocked' if result['blocked'] else ''}",
                highlight=False,
            )

    @host_app.command("accounts")
    def accounts(
        data: DataOption = DEFAULT_DATA,
        kind: Annotated[
            str | None,
            typer.Option("--kind", help="Only accounts of this kind (cardholder, merchant_payable, ...)."),
        ] = None,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """List the host's accounts (cards by masked PAN only), amounts in minor units."""

        def run() -> list[dict[str, Any]]:
            with closing(_open_ledger(data, config_dir)) as ledger:
                return [a.to_dict() for a in ledger.accounts(kind)]

        rows = guarded(run, as_json=as_json)
        if as_json:
            emit_json(rows)
            return
        table = Table("id", "kind", Column("key", no_wrap=True), "cur", "limit", "balance", "available", "blocked")
        for r in rows:
            table.add_row(
                str(r["id"]),
                r["kind"],
                str(r["key"]),
                r["currency"],
                _money(r["credit_limit"], r["currency"]),
                _money(r["balance"], r["currency"]),
                _money(r["available"], r["currency"]),
                "yes" if r["blocked"] else "",
            )
        console.print(table)

    @host_app.command("totals")
    def totals(
        terminal: Annotated[str, typer.Option("--terminal", help="Terminal id (field 41).")],
        batch: Annotated[int, typer.Option("--batch", help="Batch number (field 60).")],
        currency: Annotated[str | None, typer.Option("--currency", help="Only this ISO 4217 numeric currency.")] = None,
        data: DataOption = DEFAULT_DATA,
        config_dir: ConfigDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """The host's totals for one terminal's batch, as settlement compares them (minor units)."""

        def run() -> dict[str, Any]:
            from tillvault.domain.iso8583 import terminal_id_field

            with closing(_open_ledger(data, config_dir)) as ledger:
                figures = ledger.batch_totals(terminal_id_field(terminal), batch, currency)
                settled = ledger.batch_settled(terminal_id_field(terminal), batch)
                currencies = {
                    r[0]
                    for r in ledger.rows(
                        "SELECT DISTINCT currency FROM authorizations WHERE terminal_id = ? AND batch = ?",
                        (terminal_id_field(terminal), batch),
                    )
                }
            return {
                "terminal": terminal,
                "batch": batch,
                **asdict(figures),
                "net_amount": figures.net_amount,
                "settled": settled,
                "currency": currency or (currencies.pop() if len(currencies) == 1 else None),
            }

        result = guarded(run, as_json=as_json)
        if as_json:
            emit_json(result)
        else:
            cur = result["currency"]
            console.print(
                f"terminal {terminal} batch {batch}: {result['sales_count']} sales "
                f"{_money(result['sales_amount'], cur)}, {result['refunds_count']} refunds "
                f"{_money(result['refunds_amount'], cur)}, net {_money(result['net_amount'], cur)}",
                highlight=False,
            )

    @host_app.command("check")
    def check(data: DataOption = DEFAULT_DATA, config_dir: ConfigDirOption = None, as_json: JsonOption = False) -> None:
        """Prove the ledger: debits = credits = transfers, and payables and deposits match the log; exit 1 if not."""

        def run() -> dict[str, Any]:
            from tillvault.host.payout import check_payables

            with closing(_open_ledger(data, config_dir)) as ledger:
                result: dict[str, Any] = ledger.check_balanced()
                payables = check_payables(ledger)
            result["problems"] = [*result["problems"], *payables]
            result["payables_ok"] = not payables
            result["ok"] = not result["problems"]
            return result

        result = guarded(run, as_json=as_json)
        if as_json:
            emit_json(result)
        else:
            console.print("balanced" if result["ok"] else "; ".join(result["problems"]), highlight=False)
        if not result["ok"]:
            raise typer.Exit(1)

    @host_app.command("faults")
    def faults(
        config: Annotated[
            str | None,
            typer.Argument(help='Fault configuration as JSON, e.g. \'{"delay": 3, "drop": {"count": 1}}\'.'),
        ] = None,
        clear: Annotated[bool, typer.Option("--clear", help="Remove every fault.")] = False,
        data: DataOption = DEFAULT_DATA,
        as_json: JsonOption = False,
    ) -> None:
        """Set (or --clear) the faults of a running host via its faults.json; without CONFIG, show them."""

        def run() -> dict[str, Any]:
            from tillvault.host.faults import FAULTS_FILE, write_faults_file

            if clear or config is not None:
                try:
                    parsed = {} if clear else json.loads(config or "{}")
                except ValueError as exc:
                    raise InvalidInput(f"fault configuration is not JSON: {exc}") from None
                write_faults_file(data, parsed)
            path = data / FAULTS_FILE
            current = json.loads(path.read_text() or "{}") if path.exists() else {}
            return {"ok": True, "faults": current}

        result = guarded(run, as_json=as_json)
        if as_json:
            emit_json(result)
        else:
            console.print(json.dumps(result["faults"]) if result["faults"] else "no faults", highlight=False)
