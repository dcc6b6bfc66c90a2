"""Merchant payout, the 一清 model (S15): the acquirer pays each merchant directly.

Per merchant, currency and business date (the date its batches settled, see
:mod:`.settlement`), a **statement**: settled sales and refunds, every fee by name, a device
deposit refund when due (:mod:`.merchants`), and the net. Running the payout for a business
date posts the statement as ledger transfers in one SQLite transaction:

- each fee line: ``merchant_payable → fee_income`` (a returned fee the other way);
- a deposit refund: ``device_deposit → merchant_payable``;
- the net: ``merchant_payable → settlement:bank`` (kind ``payout``), or, when refunds and fees
  exceed the day's sales, ``settlement:bank → merchant_payable`` (``collection``: the acquirer
  debits the merchant's account), so each day stands alone.

So ``sales − refunds − fees + deposit refund = net`` for every statement, and the merchant
payable account keeps exactly the money of transactions not yet paid out (``check_payables``).
The payout date is the first business day after the business date on the host calendar (T+1).

Idempotent: a business date is paid out once (``payout_runs``); running it again returns the
stored statements and writes nothing. Running it closes the date (day cut), so no later
settlement can land on it. A date in the future is refused.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tillvault.domain.iso8583 import PROC_SALE
from tillvault.errors import InvalidInput
from tillvault.host.fees import FeeCharge, fee_lines
from tillvault.host.ledger import LIVE_STATUSES, HostLedger
from tillvault.host.merchants import DEPOSIT_REFUND_NAME, Merchant, get_merchant, list_merchants
from tillvault.host.settings import calendar
from tillvault.host.settlement import close_through

__all__ = [
    "CSV_COLUMNS",
    "check_payables",
    "compute_statements",
    "csv_name",
    "deposit_refund_date",
    "host_views",
    "payout_csv",
    "run_payout",
    "statements_for",
    "write_payout_csv",
]

#: Columns of the daily payout file, in order.
CSV_COLUMNS = ("business_date", "payout_date", "merchant_id", "currency", "item", "name", "count", "amount_minor")

_SIGNED = "CASE WHEN proc_code = ? THEN amount ELSE -amount END"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _volumes(ledger: HostLedger, merchant: Merchant) -> list[tuple[date, int]]:
    """(settled date, cumulative net settled volume through it), oldest first."""
    rows = ledger.rows(
        f"SELECT settled_date, SUM({_SIGNED}) AS volume FROM authorizations"
        " WHERE TRIM(merchant_id) = ? AND currency = ? AND settled_date IS NOT NULL"
        " GROUP BY settled_date ORDER BY settled_date",
        (PROC_SALE, merchant.merchant_id, merchant.currency),
    )
    out: list[tuple[date, int]] = []
    total = 0
    for row in rows:
        total += row["volume"]
        out.append((date.fromisoformat(row["settled_date"]), total))
    return out


def _volume_through(volumes: list[tuple[date, int]], day: date) -> int:
    total = 0
    for settled, cumulative in volumes:
        if settled > day:
            break
        total = cumulative
    return total


def deposit_refund_date(ledger: HostLedger, merchant: Merchant) -> date | None:
    """The business date whose payout refunds the merchant's deposit: the first date on or after
    collection at which cumulative net settled volume reaches the threshold; None if not (yet)."""
    if merchant.deposit_status != "held" or merchant.refund_threshold is None:
        return None
    assert merchant.deposit_collected_date is not None
    collected = date.fromisoformat(merchant.deposit_collected_date)
    volumes = _volumes(ledger, merchant)
    if _volume_through(volumes, collected) >= merchant.refund_threshold:
        return collected
    return next((d for d, total in volumes if d > collected and total >= merchant.refund_threshold), None)


def _terms(ledger: HostLedger, merchant_id: str, currency: str, day: date) -> dict[str, Any]:
    merchant = get_merchant(ledger, merchant_id)
    if merchant is None:
        return {
            "deposit": {
                "amount": 0,
                "status": "none",
                "collected_date": None,
                "refunded_date": None,
                "refund_threshold": None,
                "volume_to_date": None,
            },
            "activation": {"min_amount": None, "activated": True, "activated_date": None, "reference": None},
        }
    view = merchant.to_dict()
    view["deposit"]["volume_to_date"] = (
        _volume_through(_volumes(ledger, merchant), day) if merchant.currency == currency else None
    )
    return {"deposit": view["deposit"], "activation": view["activation"]}


def compute_statements(ledger: HostLedger, business_date: date) -> list[dict[str, Any]]:
    """The statements of ``business_date`` as they stand, without writing anything (a preview
    until the date is paid out). Sorted by merchant id and currency."""
    day = business_date.isoformat()
    rows = ledger.rows(
        "SELECT TRIM(merchant_id) AS merchant, currency, TRIM(terminal_id) AS terminal, batch, proc_code,"
        " amount, fee, fee_name FROM authorizations"
        " WHERE settled_date = ? AND proc_code IN (?, ?) ORDER BY id",
        (day, PROC_SALE, "200000"),
    )
    groups: dict[tuple[str, str], dict[str, Any]] = {}

    def statement(merchant: str, currency: str) -> dict[str, Any]:
        if (merchant, currency) not in groups:
            groups[(merchant, currency)] = {
                "merchant_id": merchant,
                "currency": currency,
                "business_date": day,
                "sales_count": 0,
                "sales_amount": 0,
                "refunds_count": 0,
                "refunds_amount": 0,
                "charges": [],
                "deposit_refund": 0,
                "batches": {},
            }
        return groups[(merchant, currency)]

    for row in rows:
        st = statement(row["merchant"] or "", row["currency"])
        batch = st["batches"].setdefault(
            (row["terminal"], row["batch"]),
            {
                "terminal_id": row["terminal"],
                "batch": row["batch"],
                "sales_count": 0,
                "sales_amount": 0,
                "refunds_count": 0,
                "refunds_amount": 0,
                "fees_total": 0,
            },
        )
        side = "sales" if row["proc_code"] == PROC_SALE else "refunds"
        for target in (st, batch):
            target[f"{side}_count"] += 1
            target[f"{side}_amount"] += row["amount"]
        batch["fees_total"] += row["fee"] or 0
        st["charges"].append(FeeCharge(row["fee_name"], row["fee"] or 0))
    paid_out: set[str] | None = None
    for merchant in list_merchants(ledger):
        # Due on the date the threshold was reached; when that date was paid out before the
        # threshold was set or lowered, on the next date paid out after it: never skipped.
        due = deposit_refund_date(ledger, merchant)
        if due is None or due > business_date:
            continue
        if due < business_date:
            if paid_out is None:
                paid_out = {r["business_date"] for r in ledger.rows("SELECT business_date FROM payout_runs")}
            if due.isoformat() not in paid_out:
                continue  # its own date is still to be paid out: the refund goes there
        statement(merchant.merchant_id, merchant.currency)["deposit_refund"] = merchant.deposit
    out = []
    for (merchant_id, currency), st in sorted(groups.items()):
        charges: list[FeeCharge] = st.pop("charges")
        st["fees"] = fee_lines(charges)
        st["fees_total"] = sum(c.amount for c in charges)
        st["deposit_refund_name"] = DEPOSIT_REFUND_NAME if st["deposit_refund"] else None
        st["net"] = st["sales_amount"] - st["refunds_amount"] - st["fees_total"] + st["deposit_refund"]
        st["action"] = "pay" if st["net"] > 0 else "collect" if st["net"] < 0 else "nothing"
        st["batches"] = [st["batches"][k] for k in sorted(st["batches"], key=lambda k: (k[0], k[1] or 0))]
        st.update(_terms(ledger, merchant_id, currency, business_date))
        out.append(st)
    return out


def _post(ledger: HostLedger, st: dict[str, Any], payout_date: date) -> list[int]:
    """Post one statement's transfers; their ids."""
    merchant, currency = st["merchant_id"], st["currency"]
    payable = ledger.system_account("merchant_payable", merchant, currency).id
    fee_income = ledger.system_account("fee_income", "fees", currency).id
    bank = ledger.system_account("settlement", "bank", currency).id
    reference = f"payout {merchant} {st['business_date']}"
    ids: list[int] = []
    for line in st["fees"]:
        if line["amount"] > 0:
            ids.append(
                ledger.post(payable, fee_income, line["amount"], currency, "fee", f"{reference}: {line['name']}")
            )
        elif line["amount"] < 0:
            ids.append(
                ledger.post(
                    fee_income, payable, -line["amount"], currency, "fee_returned", f"{reference}: {line['name']}"
                )
            )
    if st["deposit_refund"]:
        held = ledger.system_account("device_deposit", merchant, currency).id
        transfer = ledger.post(
            held, payable, st["deposit_refund"], currency, "deposit_refund", f"{reference}: {DEPOSIT_REFUND_NAME}"
        )
        ids.append(transfer)
        ledger.execute(
            "UPDATE merchants SET deposit_refunded_date = ?, deposit_refund_transfer = ?, updated_at = ?"
            " WHERE merchant_id = ?",
            (st["business_date"], transfer, _now(), merchant),
        )
        st["deposit"] = {**st["deposit"], "status": "refunded", "refunded_date": st["business_date"]}
    due = f"{reference} due {payout_date.isoformat()}"
    if st["net"] > 0:
        ids.append(ledger.post(payable, bank, st["net"], currency, "payout", due))
    elif st["net"] < 0:
        ids.append(ledger.post(bank, payable, -st["net"], currency, "collection", due))
    return ids


def _totals(statements: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    keys = ("sales_count", "sales_amount", "refunds_count", "refunds_amount", "fees_total", "deposit_refund", "net")
    for st in statements:
        line = totals.setdefault(st["currency"], {"currency": st["currency"], "merchants": 0, **dict.fromkeys(keys, 0)})
        line["merchants"] += 1
        for key in keys:
            line[key] += st[key]
    return [totals[c] for c in sorted(totals)]


def _result(business_date: date, payout_date: date, statements: list[dict[str, Any]], **flags: bool) -> dict[str, Any]:
    return {
        "ok": True,
        "business_date": business_date.isoformat(),
        "payout_date": payout_date.isoformat(),
        **flags,
        "merchants": statements,
        "totals": _totals(statements),
    }


def run_payout(ledger: HostLedger, business_date: date, *, today: date, preview: bool = False) -> dict[str, Any]:
    """Pay out ``business_date`` (or only show it with ``preview``); the JSON-ready result:
    ``{"ok", "business_date", "payout_date", "created", "preview", "merchants": [statement...],
    "totals": [per currency]}``. ``created`` is False when the date was already paid out (the
    stored statements are returned, nothing is written).

    :raises InvalidInput: ``business_date`` is after ``today``, or the calendar has no business
        day after it.
    """
    if business_date > today:
        raise InvalidInput(f"business date {business_date} has not begun (today is {today})")
    with ledger.atomic():
        stored = stored_payout(ledger, business_date)
        if stored is not None:
            return {**stored, "created": False, "preview": preview}
        payout_date = calendar(ledger).next_business_day(business_date)
        if preview:
            return _result(
                business_date, payout_date, compute_statements(ledger, business_date), created=False, preview=True
            )
        close_through(ledger, business_date)
        statements = compute_statements(ledger, business_date)
        now = _now()
        ledger.execute(
            "INSERT INTO payout_runs (business_date, payout_date, created_at) VALUES (?, ?, ?)",
            (business_date.isoformat(), payout_date.isoformat(), now),
        )
        for st in statements:
            st["payout_date"] = payout_date.isoformat()
            st["transfers"] = _post(ledger, st, payout_date)
            ledger.execute(
                "INSERT INTO payouts (business_date, merchant_id, currency, payout_date, net, statement, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    st["business_date"],
                    st["merchant_id"],
                    st["currency"],
                    st["payout_date"],
                    st["net"],
                    json.dumps(st, sort_keys=True),
                    now,
                ),
            )
        return _result(business_date, payout_date, statements, created=True, preview=False)


def stored_payout(ledger: HostLedger, business_date: date) -> dict[str, Any] | None:
    """The result of the payout run of ``business_date`` (``created`` True), or None if never run."""
    run = ledger.rows("SELECT payout_date FROM payout_runs WHERE business_date = ?", (business_date.isoformat(),))
    if not run:
        return None
    statements = statements_for(ledger, [business_date])
    return _result(business_date, date.fromisoformat(run[0]["payout_date"]), statements, created=True, preview=False)


def statements_for(
    ledger: HostLedger, business_dates: Iterable[date | str], merchant_id: str | None = None
) -> list[dict[str, Any]]:
    """Stored statements of those business dates (optionally one merchant's), by date, merchant,
    currency. Dates not paid out yet contribute nothing."""
    days = sorted({d if isinstance(d, str) else d.isoformat() for d in business_dates})
    if not days:
        return []
    sql = f"SELECT statement FROM payouts WHERE business_date IN ({','.join('?' * len(days))})"
    args: list[Any] = list(days)
    if merchant_id is not None:
        sql += " AND merchant_id = ?"
        args.append(merchant_id.strip())
    rows = ledger.rows(sql + " ORDER BY business_date, merchant_id, currency", args)
    return [json.loads(r["statement"]) for r in rows]


def csv_name(business_date: date | str) -> str:
    """The payout file's name for a business date: ``payout-2025-06-16.csv``."""
    day = business_date if isinstance(business_date, str) else business_date.isoformat()
    return f"payout-{day}.csv"


def payout_csv(result: dict[str, Any]) -> str:
    """The payout file's text (RFC 4180, CRLF): one line per statement item. ``amount_minor`` is
    the item's signed effect on the merchant (sales +, refunds −, fees −, returned fees +,
    deposit refund +), so a merchant's items sum to its ``net`` line."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for st in result["merchants"]:
        head = (st["business_date"], st.get("payout_date", result["payout_date"]), st["merchant_id"], st["currency"])
        writer.writerow((*head, "sales", "card sales", st["sales_count"], st["sales_amount"]))
        writer.writerow((*head, "refunds", "refunds", st["refunds_count"], -st["refunds_amount"]))
        for line in st["fees"]:
            writer.writerow((*head, "fee", line["name"], line["count"], -line["amount"]))
        if st["deposit_refund"]:
            writer.writerow((*head, "deposit_refund", DEPOSIT_REFUND_NAME, 1, st["deposit_refund"]))
        action = {"pay": "payout to merchant", "collect": "collection from merchant", "nothing": "nothing due"}
        writer.writerow((*head, "net", action[st["action"]], "", st["net"]))
    return out.getvalue()


def write_payout_csv(result: dict[str, Any], directory: str | Path) -> Path:
    """Write :func:`payout_csv` to ``directory``/:func:`csv_name` atomically (fsync, rename); its path.

    Rewriting a day gives the same bytes.

    :raises OSError: the directory cannot be created or written.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / csv_name(result["business_date"])
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(payout_csv(result))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def check_payables(ledger: HostLedger) -> list[str]:
    """Problems, if any, between the authorization log, the payouts and the balances of the
    ``merchant_payable`` and ``device_deposit`` accounts.

    A merchant payable must hold exactly the live sales minus refunds not yet paid out (unsettled,
    or settled on a date not paid out yet); a device deposit account exactly the deposit while it
    is held and nothing after its refund.
    """
    problems: list[str] = []
    paid = {r["business_date"] for r in ledger.rows("SELECT business_date FROM payout_runs")}
    marks = ",".join("?" * len(LIVE_STATUSES))
    rows = ledger.rows(
        f"SELECT TRIM(merchant_id) AS merchant, currency, settled_date, SUM({_SIGNED}) AS amount"
        f" FROM authorizations WHERE proc_code IN (?, ?) AND status IN ({marks})"
        " GROUP BY TRIM(merchant_id), currency, settled_date",
        (PROC_SALE, PROC_SALE, "200000", *LIVE_STATUSES),
    )
    expected: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["merchant"] or "", row["currency"])
        expected.setdefault(key, 0)
        if row["settled_date"] not in paid:
            expected[key] += row["amount"]
    for account in ledger.accounts("merchant_payable"):
        want = expected.pop((account.key, account.currency), 0)
        if account.balance != want:
            problems.append(
                f"merchant {account.key} ({account.currency}): payable balance {account.balance},"
                f" unpaid transactions {want}"
            )
    for (merchant, currency), want in sorted(expected.items()):
        if want:
            problems.append(f"merchant {merchant} ({currency}): unpaid transactions {want} but no payable account")
    held = {(a.key, a.currency): a.balance for a in ledger.accounts("device_deposit")}
    for terms in list_merchants(ledger):
        want = terms.deposit if terms.deposit_status == "held" else 0
        holds = held.get((terms.merchant_id, terms.currency), 0)
        if holds != want:
            problems.append(
                f"merchant {terms.merchant_id}: device deposit account holds {holds},"
                f" expected {want} ({terms.deposit_status})"
            )
    return problems


def host_views(
    ledger: HostLedger, terminal_id: str, batches: Iterable[int] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The host's two views for reconciling one terminal: its batch rows
    (:meth:`HostLedger.batch_view`) and the stored payout statements of the business dates those
    rows settled on. Pass them to :func:`tillvault.host.reconcile.compare_views`."""
    if batches is None:
        rows = ledger.batch_view(terminal_id)
    else:
        rows = [row for batch in sorted(set(batches)) for row in ledger.batch_view(terminal_id, batch)]
    days = {r["settled_date"] for r in rows if r["settled_date"]}
    merchants = {r["merchant_id"] for r in rows if r["settled_date"]}
    statements = [st for st in statements_for(ledger, days) if st["merchant_id"] in merchants]
    return rows, statements
