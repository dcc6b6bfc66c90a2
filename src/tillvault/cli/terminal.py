"""Terminal commands: init, status, scrub, tx list (thin: parse, call the library, print)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tillvault.cli.main import state
from tillvault.cli.output import console, emit_json, guarded, redacted, styled
from tillvault.domain.emvqr import require_valid_qr
from tillvault.domain.money import format_amount, parse_amount
from tillvault.errors import InvalidInput
from tillvault.terminal.defaults import DEMO_HOST, DEMO_MERCHANT_QR, DEMO_TERMINAL_ID
from tillvault.terminal.terminal import Terminal

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _emit(run: Callable[[], Any], as_json: bool, text: Callable[[Any], str]) -> Any:
    """Run ``run`` guarded; print its result as JSON, or ``text(result)`` for a person."""
    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(text(out), highlight=False)
    return out


def _open() -> Terminal:
    return Terminal.open(state.data)


def init(
    terminal_id: Annotated[str, typer.Option("--terminal-id", help="Terminal id (ISO 8583 field 41, 8 chars).")] = (
        DEMO_TERMINAL_ID
    ),
    merchant_qr: Annotated[
        str, typer.Option("--merchant-qr", help="The merchant's EMV QR payload (merchant name, city, MCC, currency).")
    ] = DEMO_MERCHANT_QR,
    host: Annotated[str, typer.Option("--host", help="Acquirer host HOST:PORT.")] = DEMO_HOST,
    capacity: Annotated[
        str | None, typer.Option("--capacity", help="Storage quota, e.g. 64MiB (default: the filesystem's space).")
    ] = None,
    device_b: Annotated[
        Path | None, typer.Option("--device-b", help="A second storage device (folder on another filesystem).")
    ] = None,
    keyring: Annotated[
        Path | None,
        typer.Option("--keyring", envvar="TILLVAULT_KEYRING", help="Key ring folder (never inside the data folder)."),
    ] = None,
    archive: Annotated[
        str | None,
        typer.Option(
            "--archive",
            help="Archive for sealed segments: a folder (a NAS or USB disk) or the back office's http(s) URL.",
        ),
    ] = None,
    host_ca: Annotated[
        Path | None, typer.Option("--host-ca", help="CA certificate (PEM): reach the host over TLS.")
    ] = None,
    archive_ca: Annotated[
        Path | None,
        typer.Option("--archive-ca", help="CA certificate (PEM) of a back office with a private CA (https archive)."),
    ] = None,
    merchant_id: Annotated[
        str | None, typer.Option("--merchant-id", help="Override the merchant id (field 42).")
    ] = None,
    licence: Annotated[
        str, typer.Option("--licence", help="Business licence number (China unified social credit code).")
    ] = "",
    merchant_name: Annotated[
        str | None, typer.Option("--merchant-name", help="The merchant's name (instead of tag 59; needed without it).")
    ] = None,
    merchant_city: Annotated[
        str | None, typer.Option("--merchant-city", help="The merchant's city (instead of tag 60).")
    ] = None,
    mcc: Annotated[
        str | None, typer.Option("--mcc", help="Merchant category code, 4 digits (instead of tag 52).")
    ] = None,
    max_per_transaction: Annotated[
        str | None, typer.Option("--max-per-transaction", help="Largest sale, e.g. 50000.00 (default: by currency).")
    ] = None,
    max_per_card_per_day: Annotated[
        str | None, typer.Option("--max-per-card-per-day", help="A card's daily total (default: by currency).")
    ] = None,
    max_per_terminal_per_day: Annotated[
        str | None, typer.Option("--max-per-terminal-per-day", help="The daily total (default: by currency).")
    ] = None,
    floor_limit: Annotated[
        str | None, typer.Option("--floor-limit", help="Largest sale approved offline (default: by currency).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a terminal in the data folder: configuration, journal, reserve and key ring.

    Limits are amounts in the merchant's currency (from the QR code); left out, they default to
    figures sized for that currency.
    """

    def run() -> dict[str, Any]:
        limits: dict[str, int] = {}
        offline: dict[str, int] = {}
        given = {
            "--max-per-transaction": (limits, "max_per_transaction", max_per_transaction),
            "--max-per-card-per-day": (limits, "max_per_card_per_day", max_per_card_per_day),
            "--max-per-terminal-per-day": (limits, "max_per_terminal_per_day", max_per_terminal_per_day),
            "--floor-limit": (offline, "floor_limit", floor_limit),
        }
        if any(text is not None for _, _, text in given.values()):
            currency = require_valid_qr(merchant_qr).currency or ""
            for option, (target, key, text) in given.items():
                if text is not None:
                    try:
                        target[key] = parse_amount(text, currency)
                    except InvalidInput as exc:
                        raise InvalidInput(f"{option}: {exc}") from None
        t = Terminal.init(
            state.data,
            terminal_id=terminal_id,
            merchant_qr=merchant_qr,
            host=host,
            capacity=capacity,
            device_b=device_b,
            keyring_dir=keyring,
            merchant_id=merchant_id,
            licence_number=licence,
            archive=archive,
            host_tls_ca=host_ca,
            archive_tls_ca=archive_ca,
            merchant_name=merchant_name,
            merchant_city=merchant_city,
            mcc=mcc,
            limits=limits or None,
            offline=offline or None,
        )
        with t:
            return {
                "ok": True,
                "data": str(state.data),
                "terminal_id": t.config.terminal_id,
                "keyring": t.config.keyring,
                **t.status(),  # its "merchant" is the name, as in status --json
                "merchant_id": t.merchant.merchant_id,
                "merchant_details": t.merchant.to_dict(),
            }

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(
            styled(
                "Terminal ",
                (out["terminal_id"], "bold"),
                f" for {out['merchant']} created in {state.data} "
                f"(capacity {out['capacity_bytes']:,} B, settlement reserve {out['reserve_bytes']:,} B).",
            )
        )


def status(as_json: JsonOpt = False) -> None:
    """Show capacity, use, the settlement reserve, pressure and counts."""

    def run() -> dict[str, Any]:
        with _open() as t:
            return t.status()

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
        return
    table = Table(title=f"Terminal {out['terminal_id']} — {out['merchant']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in (
        "capacity_bytes",
        "used_bytes",
        "free_bytes",
        "reserve_bytes",
        "sales_possible",
        "pressure",
        "runway_days",
        "open_batch",
        "open_batch_count",
        "transactions",
        "pending_intents",
        "outbox_pending",
    ):
        value = out.get(key)
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


def scrub(as_json: JsonOpt = False) -> None:
    """Verify every record, checksum and the hash chain; report the first bad record."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:  # the lock holder may repair
            return t.scrub()

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    elif out["ok"]:
        archive = out.get("archive") or {}
        note = ""
        if archive.get("configured") and not archive.get("reachable"):
            note = " (the archive is not reachable: its copies were not checked)"
        elif archive.get("checked"):
            note = f", {archive['checked']:,} of them the archive's segment copies"
        console.print(styled(("ok", "green"), f": {out['checked']:,} records verified{note}"))
    else:
        first = out["problems"][0]["problem"]
        console.print(styled((f"{len(out['problems'])} problem(s)", "red"), f"; first: {first}"))
    if not out["ok"]:
        raise typer.Exit(3)


def runbook(
    no_probe: Annotated[
        bool, typer.Option("--no-probe", help="Do not send the host an echo test (no network use).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The emergency runbook: what is wrong now and the steps to put it right (changes nothing)."""
    from tillvault.terminal.runbook import assess, render

    def run() -> dict[str, Any]:
        with _open() as t:
            return assess(t, probe_host=not no_probe)

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(render(out), highlight=False, markup=False)
    if not out["ok"]:
        raise typer.Exit(3)  # something is urgent (as scrub exits 3 on a problem)


tx_app = typer.Typer(help="Transactions in the journal.", no_args_is_help=True)
archive_app = typer.Typer(help="Where settled batches are offloaded (a NAS or USB folder, or the back office).")
acquirer_app = typer.Typer(help="The acquirer host the terminal authorizes and settles with.")


@tx_app.command("list")
def tx_list(
    status_: Annotated[str | None, typer.Option("--status", help="Only this status (e.g. approved).")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Only this batch number.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 1000,
    day: Annotated[str | None, typer.Option("--date", help="Only this business date (YYYY-MM-DD).")] = None,
    archived: Annotated[
        bool,
        typer.Option(
            "--archived", help="Also the batches that left the terminal, read from the archive (nothing copied here)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List transactions (masked card numbers only)."""
    unread: list[str] = []

    def run() -> list[dict[str, Any]]:
        from datetime import date as _date

        business_date = None
        if day is not None:
            try:
                business_date = _date.fromisoformat(day).isoformat()  # 20261120 means 2026-11-20 too
            except ValueError:
                raise InvalidInput(f"--date must be YYYY-MM-DD, got {day!r}") from None
        if limit < 1:
            raise InvalidInput(f"--limit must be 1 or more, got {limit}")
        with _open() as t:
            status = status_.strip().lower() if status_ is not None else None
            return t.transactions(
                batch=batch, status=status, business_date=business_date, limit=limit, archived=archived, unread=unread
            )

    rows = guarded(run, as_json=as_json)
    damaged = [u for u in unread if u.endswith("(damaged on this device)")]
    away = [u for u in unread if u not in damaged]
    if away:
        print(
            f"note: {len(away)} batch segment(s) that left the terminal could not be read from the archive now "
            f"({', '.join(away[:3])}{'...' if len(away) > 3 else ''}): their transactions are not listed",
            file=sys.stderr,
        )
    if damaged:
        print(
            f"note: {len(damaged)} sealed batch segment(s) on this device cannot be read "
            f"({', '.join(damaged[:3])}{'...' if len(damaged) > 3 else ''}): their transactions are not listed; "
            "run tillvault scrub (it repairs from device B or the archive where a good copy is)",
            file=sys.stderr,
        )
    if as_json:
        emit_json([{k: v for k, v in r.items() if k not in ("card_token", "idem_key", "extra")} for r in rows])
        return
    table = Table()
    for col in ("invoice", "kind", "status", "amount", "currency", "masked_pan", "batch", "rrn"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            f"{r['invoice']:06d}",
            r["kind"],
            r["status"],
            format_amount(r["amount"], r["currency"]),
            r["currency"],
            r["masked_pan"] or "",
            str(r["batch"]),
            r["rrn"] or "",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Attach the terminal commands to the ``tillvault`` app."""
    app.command("init")(init)
    app.command("status")(status)
    app.command("scrub")(scrub)
    app.command("runbook")(runbook)
    app.add_typer(tx_app, name="tx")
    app.add_typer(archive_app, name="archive")
    app.add_typer(acquirer_app, name="acquirer")
    register_sales(app)


def _money(text: str, t: Terminal) -> int:
    from tillvault.domain.money import parse_transaction_amount

    return parse_transaction_amount(text, t.merchant.currency)


def _print_tx(out: dict[str, Any], as_json: bool) -> None:
    # A reason may quote what was typed; the receipt and the ids are the terminal's own.
    out = {**out, **redacted({k: out[k] for k in ("reason", "errors") if k in out})}
    if as_json:
        emit_json(out)
    else:
        colour = {"approved": "green", "offline_approved": "green", "declined": "red", "refused": "red"}.get(
            out["status"], "yellow"
        )
        console.print(styled((out["status"], f"bold {colour}"), f": {out['reason']}"), highlight=False)
        if out.get("receipt"):
            console.print(out["receipt"], highlight=False)
    # 0: the money moved; 1: declined, refused or not completed (a reason is always given).
    if out["status"] not in ("approved", "offline_approved"):
        raise typer.Exit(1)


PanOpt = Annotated[
    str,
    typer.Option(
        "--pan", help="Card number (never stored or printed in clear); '-' reads it from standard input, out of ps."
    ),
]


def _pan(value: str) -> str:
    """The card number given, or with ``-`` the first line of standard input (kept out of ``ps`` and history).

    :raises InvalidInput: ``-`` and nothing on standard input.
    """
    if value != "-":
        return value
    if sys.stdin.isatty():  # typed by hand: not echoed
        import getpass

        line = getpass.getpass("card number: ").strip()
    else:
        line = sys.stdin.readline().strip()
    if not line:
        raise InvalidInput("--pan -: no card number on standard input")
    return line


ExpiryOpt = Annotated[str | None, typer.Option("--expiry", help="Card expiry YYMM.")]
AmountOpt = Annotated[str, typer.Option("--amount", help="Amount in the merchant's currency, e.g. 12.34.")]
EntryOpt = Annotated[str, typer.Option("--entry", help="Entry mode: chip, contactless, swipe, keyed, qr.")]
IdemOpt = Annotated[
    str | None, typer.Option("--idempotency-key", help="Caller's key: a retry with it returns the first result.")
]
OperatorOpt = Annotated[str | None, typer.Option("--operator", help="Operator id.")]
PinOpt = Annotated[
    str | None,
    typer.Option(
        "--pin",
        envvar="TILLVAULT_OPERATOR_PIN",
        help="The operator's PIN once roles are on; better asked (not echoed) or from the environment: "
        "an option shows in ps.",
    ),
]


def _operator_pin(t: Terminal, operator: str | None, pin: str | None) -> str | None:
    """The PIN given, or asked on the terminal (not echoed) when operator roles are on."""
    if pin is not None or not operator or not sys.stdin.isatty() or not t.operators.enabled():
        return pin
    import getpass

    return getpass.getpass(f"PIN for {operator}: ")


def sale(
    amount: AmountOpt,
    pan: PanOpt,
    expiry: ExpiryOpt = None,
    entry: EntryOpt = "chip",
    operator: OperatorOpt = None,
    customer_phone: Annotated[
        str | None, typer.Option("--customer-phone", help="Member's phone (stored only as a keyed token).")
    ] = None,
    customer_name: Annotated[
        str | None, typer.Option("--customer-name", help="Member's name (stored encrypted).")
    ] = None,
    idempotency_key: IdemOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sell: card checks, limits, space admission, intent, authorization, outcome, receipt."""

    def run() -> dict[str, Any]:
        card = _pan(pan)  # read before the terminal is locked
        with Terminal.open(state.data, exclusive=True) as t:
            return t.sale(
                _money(amount, t),
                card,
                expiry,
                entry_mode=entry,
                operator_id=operator,
                customer_phone=customer_phone,
                customer_name=customer_name,
                idem_key=idempotency_key,
                pin=_operator_pin(t, operator, pin),
            ).to_dict()

    _print_tx(guarded(run, as_json=as_json), as_json)


def refund(
    amount: AmountOpt,
    pan: PanOpt,
    expiry: ExpiryOpt = None,
    original_invoice: Annotated[
        int | None, typer.Option("--original-invoice", help="Invoice of the sale being refunded.")
    ] = None,
    entry: EntryOpt = "chip",
    operator: OperatorOpt = None,
    idempotency_key: IdemOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refund an amount to the card (optionally against an earlier sale)."""

    def run() -> dict[str, Any]:
        card = _pan(pan)  # read before the terminal is locked
        with Terminal.open(state.data, exclusive=True) as t:
            return t.refund(
                _money(amount, t),
                card,
                expiry,
                original_invoice=original_invoice,
                entry_mode=entry,
                operator_id=operator,
                idem_key=idempotency_key,
                pin=_operator_pin(t, operator, pin),
            ).to_dict()

    _print_tx(guarded(run, as_json=as_json), as_json)


def void(
    invoice: Annotated[int, typer.Argument(help="Invoice number of the sale to void.")],
    operator: OperatorOpt = None,
    idempotency_key: IdemOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Void an approved sale of the open batch."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            return t.void(
                invoice, operator_id=operator, idem_key=idempotency_key, pin=_operator_pin(t, operator, pin)
            ).to_dict()

    _print_tx(guarded(run, as_json=as_json), as_json)


def flush(operator: OperatorOpt = None, pin: PinOpt = None, as_json: JsonOpt = False) -> None:
    """Deliver queued advices and reversals to the host now (store-and-forward)."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.check("flush", operator, _operator_pin(t, operator, pin))
            return t.drain_outbox(force=True).to_dict()

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(
            f"delivered {out['delivered']}, remaining {out['remaining']}"
            + (f" (last error: {out['last_error']})" if out["last_error"] else "")
        )
    if out["remaining"]:
        raise typer.Exit(1)


def settle(operator: OperatorOpt = None, pin: PinOpt = None, as_json: JsonOpt = False) -> None:
    """Close the batch with the host: drain, totals (0500), batch upload if out of balance, report."""

    def run() -> Any:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.check("settle", operator, _operator_pin(t, operator, pin))
            return t.settle()

    report = guarded(run, as_json=as_json)
    out = report.to_dict()
    if as_json:
        emit_json(out)
    else:
        table = Table(title=f"Settlement — batch {out['batch']:06d} ({out['currency']})")
        table.add_column("")
        table.add_column("count", justify="right")
        table.add_column("amount", justify="right")
        for what, count, amount in report.lines():
            table.add_row(what, count, amount)
        console.print(table)
        colour = "green" if out["balanced"] else "red"
        console.print(out["reason"], style=colour, highlight=False)
        for d in out["differences"]:
            console.print(f"  {d}", highlight=False)
    if not out["balanced"]:
        raise typer.Exit(3)


def cleanup(operator: OperatorOpt = None, pin: PinOpt = None, as_json: JsonOpt = False) -> None:
    """Free space now: clean caches, seal settled batches, purge by retention, offload and evict."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.check("cleanup", operator, _operator_pin(t, operator, pin))
            return t.cleanup().to_dict()

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
        return
    for action in out["actions"] or ["nothing to do"]:
        console.print(f"- {action}", highlight=False)
    console.print(f"freed {out['freed_bytes']:,} B; pressure {out['level_before']} -> {out['level_after']}")
    console.print(out["message"], highlight=False)
    console.print(out["message_zh"], highlight=False)


def reconcile(
    host_data: Annotated[Path, typer.Option("--host-data", help="The acquirer host's data folder.")] = Path(
        "tillvault-host"
    ),
    batch: Annotated[list[int] | None, typer.Option("--batch", help="Only these batches (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the terminal journal, the host's ledger and the payout; list every difference."""
    from tillvault.terminal.reconcile import reconcile as run_reconcile

    def run() -> dict[str, Any]:
        with Terminal.open(state.data) as t:
            return run_reconcile(t, host_data, batches=batch or None)

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(
            f"batches {out['batches']}: {out['terminal_rows']} terminal rows, {out['host_rows']} host rows, "
            f"{out['payout_statements']} payout statements"
        )
        for d in out["differences"]:
            console.print(styled(("difference", "red"), f": {d}"), highlight=False)
        if out["ok"]:
            console.print("the three views agree exactly", style="green")
    if not out["ok"]:
        raise typer.Exit(3)


PassOpt = Annotated[
    str,
    typer.Option(
        "--passphrase",
        envvar="TILLVAULT_BACKUP_PASSPHRASE",
        prompt=True,
        hide_input=True,
        help="Passphrase that protects the backup's key ring.",
    ),
]


def backup(
    dest: Annotated[Path, typer.Argument(help="A new or empty folder (another disk, a NAS, a USB key).")],
    passphrase: PassOpt,
    operator: OperatorOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a consistent, encrypted, versioned backup (sales may keep running meanwhile)."""
    from tillvault.store.backup import create_backup

    def run() -> dict[str, Any]:
        with Terminal.open(state.data) as t:
            t.operators.check("backup", operator, _operator_pin(t, operator, pin))
            return create_backup(t, dest, passphrase)

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json({"ok": True, **out})
    else:
        console.print(
            f"backup of {out['terminal_id']} written to {dest}: journal up to event "
            f"{out['journal_tip_seq']}, {len(out['segments'])} segment(s), {len(out['files'])} files"
        )


def restore(
    src: Annotated[Path, typer.Argument(help="A backup folder written by tillvault backup.")],
    passphrase: PassOpt,
    keyring: Annotated[
        Path | None,
        typer.Option("--keyring", envvar="TILLVAULT_KEYRING", help="Key ring folder for the restored terminal."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the terminal from a backup into the (empty) data folder and verify it."""
    from tillvault.store.backup import restore_backup

    out = guarded(lambda: restore_backup(src, state.data, passphrase, keyring), as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(
            f"restored {out['terminal_id']} into {out['restored_to']}: journal up to event "
            f"{out['journal_tip_seq']}, {out['segments']} segment(s); verify: "
            f"{'ok' if out['ok'] else 'PROBLEMS'}"
        )
    if not out["ok"]:
        raise typer.Exit(3)


operator_app = typer.Typer(
    help="Operators and their roles: cashier, supervisor, manager (off until the first is added).",
    no_args_is_help=True,
)
NewPinOpt = Annotated[
    str,
    typer.Option(
        "--new-pin",
        envvar="TILLVAULT_NEW_PIN",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="The operator's new PIN (4-12 digits).",
    ),
]
ByOpt = Annotated[str | None, typer.Option("--operator", help="The manager doing this (once roles are on).")]


@operator_app.command("add")
def operator_add(
    operator_id: Annotated[str, typer.Argument(help="The new operator's id.")],
    role: Annotated[str, typer.Option("--role", help="cashier, supervisor or manager (the first: manager).")],
    new_pin: NewPinOpt,
    by: ByOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add an operator; the first must be a manager, and from then on every action needs one."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            return t.operators.add(operator_id, role, new_pin, by=by, by_pin=_operator_pin(t, by, pin))

    _emit(run, as_json, lambda out: f"operator {out['operator_id']} added as {out['role']}" + _recovery_text(out))


def _recovery_text(out: dict[str, Any]) -> str:
    code = out.get("recovery_code")
    if not code:
        return ""
    return (
        f"\nRecovery code: {code}\nWrite it down and keep it away from the terminal: it is shown once, and it is "
        "the only way back if every manager PIN is lost (tillvault operator recover)."
    )


RecoveryCodeOpt = Annotated[
    str,
    typer.Option(
        "--code",
        envvar="TILLVAULT_RECOVERY_CODE",
        prompt="Recovery code",
        hide_input=True,
        help="The recovery code given when roles were turned on (asked, not echoed, or from the environment).",
    ),
]


@operator_app.command("recover")
def operator_recover(
    operator_id: Annotated[str, typer.Argument(help="The manager whose PIN is set anew.")],
    code: RecoveryCodeOpt,
    new_pin: NewPinOpt,
    as_json: JsonOpt = False,
) -> None:
    """Every manager PIN lost: give a manager a new PIN with the recovery code (prints the next code)."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            following = t.operators.recover(code, operator_id, new_pin)
            return {"ok": True, "operator_id": operator_id, "recovery_code": following}

    _emit(run, as_json, lambda out: f"new PIN set for {operator_id}" + _recovery_text(out))


@operator_app.command("recovery-code")
def operator_recovery_code(by: ByOpt = None, pin: PinOpt = None, as_json: JsonOpt = False) -> None:
    """Issue a new recovery code (a manager's act); the old one stops working."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            return {"ok": True, "recovery_code": t.operators.new_recovery_code(by=by, by_pin=_operator_pin(t, by, pin))}

    _emit(run, as_json, lambda out: "a new recovery code replaces the old one" + _recovery_text(out))


@operator_app.command("pin")
def operator_pin(
    operator_id: Annotated[str, typer.Argument(help="The operator whose PIN changes (unlocks it too).")],
    new_pin: NewPinOpt,
    by: ByOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set an operator's PIN (a manager's act); a locked operator is unlocked."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.set_pin(operator_id, new_pin, by=by, by_pin=_operator_pin(t, by, pin))
            return {"ok": True, "operator_id": operator_id}

    _emit(run, as_json, lambda out: f"new PIN set for {operator_id}")


@operator_app.command("remove")
def operator_remove(
    operator_id: Annotated[str, typer.Argument(help="The operator to remove.")],
    by: ByOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove an operator (a manager's act); removing the last one turns roles off."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.remove(operator_id, by=by, by_pin=_operator_pin(t, by, pin))
            return {"ok": True, "operator_id": operator_id, "roles_on": t.operators.enabled()}

    _emit(run, as_json, lambda out: f"operator {operator_id} removed")


@operator_app.command("list")
def operator_list(as_json: JsonOpt = False) -> None:
    """List the operators and their roles (never a PIN)."""

    def run() -> list[dict[str, Any]]:
        with _open() as t:
            return t.operators.list()

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
        return
    if not out:
        console.print("no operators: roles are off (anyone may sell, refund, void and settle)")
    for o in out:
        lock = " (locked)" if o["locked"] else ""
        console.print(f"{o['operator_id']}: {o['role']}{lock}, added {o['added']}", highlight=False)


update_app = typer.Typer(
    help="Software updates: signed by the vendor, incremental (bsdiff), admitted before a byte is written.",
    no_args_is_help=True,
)


@update_app.command("keygen")
def update_keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the vendor's private key (PEM, 0600).")],
    as_json: JsonOpt = False,
) -> None:
    """Make a vendor signing key (keep it off the terminals); prints the public key to trust."""
    from tillvault.terminal.updates import keygen

    def run() -> dict[str, Any]:
        if out.exists():
            raise InvalidInput(f"{out} exists already: refusing to overwrite a signing key")
        pem, public = keygen()
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return {"private_key": str(out), "public_key": public}

    _emit(run, as_json, lambda r: f"private key written to {r['private_key']}; public key:\n{r['public_key']}")


@update_app.command("make")
def update_make(
    target: Annotated[Path, typer.Argument(help="The new package.")],
    version: Annotated[str, typer.Option("--version", help="The new package's version, e.g. 2.4.1.")],
    signing_key: Annotated[Path, typer.Option("--signing-key", help="The vendor's private key (PEM).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the manifest and the patch.")],
    base: Annotated[
        Path | None, typer.Option("--base", help="The package installed now (omit for a first, full install).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a signed update: a manifest and a bsdiff patch from --base to the new package."""
    from tillvault.terminal.updates import make_update

    def run() -> dict[str, Any]:
        try:
            key = signing_key.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read the signing key {signing_key}: {exc}") from exc
        return make_update(target, version, key, out, base=base)

    _emit(
        run,
        as_json,
        lambda m: (
            f"update {m['update']}: patch {m['patch_size']:,} B for a package of {m['target_size']:,} B, "
            f"written to {out}"
        ),
    )


@update_app.command("trust")
def update_trust(
    public_key: Annotated[str, typer.Argument(help="The vendor's Ed25519 public key (64 hex digits).")],
    operator: OperatorOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Trust a vendor key for updates (a manager's act once operator roles are on)."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.check("update", operator, _operator_pin(t, operator, pin))
            t.updates.trust(public_key)
            return {"ok": True, "trusted_key": t.config.update_public_key}

    _emit(run, as_json, lambda r: f"updates must now be signed by {r['trusted_key']}")


@update_app.command("apply")
def update_apply(
    manifest: Annotated[Path, typer.Argument(help="The update's signed manifest.")],
    patch: Annotated[
        Path | None, typer.Option("--patch", help="The patch (default: <version>.patch beside the manifest).")
    ] = None,
    operator: OperatorOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check, admit and install an update; the previous package is kept for rollback."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.check("update", operator, _operator_pin(t, operator, pin))
            return dict(t.updates.apply(manifest, patch))

    _emit(run, as_json, lambda r: f"installed {r['version']} ({r['size']:,} B); previous: {r['previous'] or 'none'}")


@update_app.command("rollback")
def update_rollback(operator: OperatorOpt = None, pin: PinOpt = None, as_json: JsonOpt = False) -> None:
    """Go back to the package installed before the last update."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.check("update", operator, _operator_pin(t, operator, pin))
            return dict(t.updates.rollback())

    _emit(run, as_json, lambda r: f"rolled back to {r['version']}")


@update_app.command("status")
def update_status(as_json: JsonOpt = False) -> None:
    """The installed package, the trusted vendor key, and how much an update may take now."""

    def run() -> dict[str, Any]:
        with _open() as t:
            return dict(t.updates.status())

    _emit(
        run,
        as_json,
        lambda r: (
            f"installed: {r['version'] or 'nothing yet'}; an update may take {r['spare_bytes']:,} B now "
            f"(room for {r['keep_sales']:,} sales kept); trusted key: {r['trusted_key'] or 'none'}"
        ),
    )


def register_sales(app: typer.Typer) -> None:
    """Attach sale, refund, void, flush and settle."""
    app.command("settle")(settle)
    app.command("cleanup")(cleanup)
    app.command("reconcile")(reconcile)
    app.command("backup")(backup)
    app.command("restore")(restore)
    app.command("sale")(sale)
    app.command("refund")(refund)
    app.command("void")(void)
    app.command("flush")(flush)
    app.add_typer(operator_app, name="operator")
    app.add_typer(update_app, name="update")


@archive_app.command("set")
def archive_set(
    target: Annotated[
        str,
        typer.Argument(
            help="A folder on a NAS or USB disk, the back office's https URL, or 'none' to stop offloading."
        ),
    ],
    ca: Annotated[
        str | None, typer.Option("--ca", help="CA certificate (PEM) of a back office with a private CA.")
    ] = None,
    operator: OperatorOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give the terminal an archive after init (or change it): sealed batches leave for it at cleanup."""

    def run() -> dict[str, Any]:
        if not target.strip():
            raise InvalidInput("give the archive folder or URL, or 'none' to stop offloading (it was empty)")
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.check("archive", operator, _operator_pin(t, operator, pin))
            return t.set_archive(None if target.strip().lower() == "none" else target, ca=ca)

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    elif out["archive"]:
        console.print(f"archive: {out['archive']} (sealed batches leave for it at the next cleanup)", highlight=False)
    else:
        console.print("no archive: sealed batches stay on the device", highlight=False)


@acquirer_app.command("set")
def acquirer_set(
    address: Annotated[str, typer.Argument(help="The acquirer host as HOST:PORT (e.g. 10.0.0.5:8583).")],
    ca: Annotated[str | None, typer.Option("--ca", help="CA certificate (PEM) of a host with a private CA.")] = None,
    operator: OperatorOpt = None,
    pin: PinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point the terminal at another acquirer host (an address mistyped at init, a new one); waiting
    advices and the next settlement go there."""

    def run() -> dict[str, Any]:
        with Terminal.open(state.data, exclusive=True) as t:
            t.operators.check("acquirer", operator, _operator_pin(t, operator, pin))
            return t.set_host(address.strip(), ca=ca)

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(f"acquirer host: {out['host']}", highlight=False)
