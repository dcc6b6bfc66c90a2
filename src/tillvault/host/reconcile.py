"""Three-way reconciliation: the terminal's journal, the host's ledger, the payout. Pure.

:func:`compare_views` takes the three views of one terminal and lists every difference; an
empty list means they agree to the minor unit. Only money counts: a transaction whose effect
stands (terminal: ``approved`` / ``offline_approved``; host: ``approved`` / ``advised`` /
``uploaded``) of kind sale, offline sale or refund. Voids and reversals count through the
status of the transaction they cancel, declines not at all.

Rows are matched by (batch, invoice); invoices and batches may be numbers or digit strings,
currencies ISO 4217 alphabetic or numeric. Each difference is a dict with ``type``, ``batch``,
``invoice``, ``stan``, the amounts each view holds (``terminal_amount``, ``host_amount``,
``payout_amount``: None when the view lacks it) and ``detail`` (one line for people); batch and
payout differences also name ``invoices``, the transactions involved. Types:

- ``missing_on_host`` / ``missing_on_terminal``: live on one side, absent or not live on the
  other (the other side's status is given).
- ``amount_differs``, ``kind_differs`` (sale against refund), ``currency_differs``,
  ``reference_differs`` (RRN or authorization code, when both sides hold one).
- ``duplicate``: two live rows with the same (batch, invoice) on one side.
- ``batch_totals_differ``: a batch's counts or amounts differ between terminal and host.
- ``payout_differs``: a settled batch's figures in its day's payout statement differ from the
  host's settled rows, or the statement lacks the batch.
- ``payout_unbalanced``: a statement whose fee lines do not sum to its fees, or whose
  ``sales − refunds − fees + deposit refund`` is not its ``net``, or whose batches do not sum
  to its totals.

A settled batch whose business date has no statement among ``payout_lines`` (not paid out yet)
is not compared with the payout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tillvault.domain.money import currency_info
from tillvault.errors import InvalidInput

__all__ = ["HOST_LIVE", "MONEY_KINDS", "TERMINAL_LIVE", "batch_figures", "compare_views"]

#: Statuses whose money effect stands, per view.
TERMINAL_LIVE = frozenset({"approved", "offline_approved"})
HOST_LIVE = frozenset({"approved", "advised", "uploaded"})
#: Kinds that move money, and their sign from the merchant's side.
MONEY_KINDS: Mapping[str, int] = {"sale": 1, "offline_sale": 1, "refund": -1, "offline_refund": -1}

Row = Mapping[str, Any]
_FIGURES = ("sales_count", "sales_amount", "refunds_count", "refunds_amount")


def _live(row: Row, statuses: frozenset[str]) -> bool:
    return row.get("status") in statuses and row.get("kind") in MONEY_KINDS


def _number(value: Any) -> Any:
    """``"000012"`` and ``12`` are the same invoice or batch."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _currency(value: Any) -> str:
    """``"CNY"``, ``"156"`` and ``156`` are the same currency (ISO 4217 numeric); unknown codes as given."""
    try:
        return currency_info(str(value)).numeric
    except InvalidInput:
        return str(value)


#: Fields 60 and 62 carry six digits: the host knows a batch or invoice number modulo this.
_WIRE_NUMBERS = 1_000_000


def _wire(value: Any) -> Any:
    """A batch or invoice number as the host holds it (the terminal's invoice 1,000,000 is 0 there;
    within one batch, six digits never repeat)."""
    number = _number(value)
    return number % _WIRE_NUMBERS if isinstance(number, int) and not isinstance(number, bool) else number


def _key(row: Row) -> tuple[Any, Any]:
    invoice = _wire(row.get("invoice"))
    return _wire(row.get("batch")), invoice if invoice is not None else f"stan:{row.get('stan')}"


def batch_figures(rows: Iterable[Row], statuses: frozenset[str]) -> dict[Any, dict[str, int]]:
    """Per batch: sales and refunds, counts and amounts (minor units), of the live rows."""
    out: dict[Any, dict[str, int]] = {}
    for row in rows:
        if not _live(row, statuses):
            continue
        figures = out.setdefault(_number(row.get("batch")), dict.fromkeys(_FIGURES, 0))
        side = "sales" if MONEY_KINDS[row["kind"]] > 0 else "refunds"
        figures[f"{side}_count"] += 1
        figures[f"{side}_amount"] += int(row["amount"])
    return out


def _diff(kind: str, *, batch: Any, detail: str, **fields: Any) -> dict[str, Any]:
    base = {
        "type": kind,
        "batch": batch,
        "invoice": None,
        "stan": None,
        "terminal_amount": None,
        "host_amount": None,
        "payout_amount": None,
    }
    return {**base, **fields, "detail": detail}


def _index(rows: Iterable[Row], statuses: frozenset[str], side: str, out: list[dict[str, Any]]) -> dict[Any, Row]:
    """The live rows by (batch, invoice); a second live row with the same key is reported."""
    index: dict[Any, Row] = {}
    for row in rows:
        if not _live(row, statuses):
            continue
        key = _key(row)
        if key in index:
            out.append(
                _diff(
                    "duplicate",
                    batch=row.get("batch"),
                    invoice=row.get("invoice"),
                    stan=row.get("stan"),
                    **{f"{side}_amount": row.get("amount")},
                    detail=f"{side} has two live rows for batch {row.get('batch')} invoice {row.get('invoice')}",
                )
            )
            continue
        index[key] = row
    return index


def _compare_rows(terminal: Row, host: Row, out: list[dict[str, Any]]) -> None:
    where = {
        "batch": host.get("batch"),
        "invoice": host.get("invoice"),
        "stan": host.get("stan") or terminal.get("stan"),
        "terminal_amount": terminal.get("amount"),
        "host_amount": host.get("amount"),
    }
    label = f"batch {host.get('batch')} invoice {host.get('invoice')}"
    if MONEY_KINDS[terminal["kind"]] != MONEY_KINDS[host["kind"]]:
        out.append(
            _diff("kind_differs", **where, detail=f"{label}: terminal has a {terminal['kind']}, host a {host['kind']}")
        )
    if int(terminal["amount"]) != int(host["amount"]):
        out.append(
            _diff("amount_differs", **where, detail=f"{label}: terminal {terminal['amount']}, host {host['amount']}")
        )
    if _currency(terminal.get("currency")) != _currency(host.get("currency")):
        out.append(
            _diff(
                "currency_differs",
                **where,
                detail=f"{label}: terminal currency {terminal.get('currency')}, host {host.get('currency')}",
            )
        )
    if str(terminal.get("stan") or "").lstrip("0") != str(host.get("stan") or "").lstrip("0") and terminal.get("stan"):
        out.append(
            _diff(
                "reference_differs",
                **where,
                detail=f"{label}: terminal STAN {terminal.get('stan')}, host {host.get('stan')}",
            )
        )
    for field in ("rrn", "auth_code"):
        mine, theirs = terminal.get(field), host.get(field)
        if mine and theirs and str(mine).strip() != str(theirs).strip():
            out.append(_diff("reference_differs", **where, detail=f"{label}: terminal {field} {mine}, host {theirs}"))


def _compare_payout(host_rows: list[Row], payout_lines: Iterable[Row], out: list[dict[str, Any]]) -> None:
    statements = {(s["merchant_id"], _currency(s["currency"]), s["business_date"]): s for s in payout_lines}
    for statement in statements.values():
        _check_statement(statement, out)
    settled: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in host_rows:
        if not row.get("settled_date") or row.get("kind") not in MONEY_KINDS:
            continue
        key = (
            row.get("merchant_id"),
            _currency(row.get("currency")),
            row["settled_date"],
            row.get("terminal_id"),
            row.get("batch"),
        )
        group = settled.setdefault(key, {**dict.fromkeys(_FIGURES, 0), "fees_total": 0, "invoices": []})
        side = "sales" if MONEY_KINDS[row["kind"]] > 0 else "refunds"
        group[f"{side}_count"] += 1
        group[f"{side}_amount"] += int(row["amount"])
        group["fees_total"] += int(row.get("fee") or 0)
        group["invoices"].append(row.get("invoice"))
    for (merchant, currency, day, terminal, batch), mine in sorted(settled.items(), key=lambda kv: str(kv[0])):
        st = statements.get((merchant, currency, day))
        if st is None:
            continue  # not paid out yet
        entry = next((b for b in st.get("batches", []) if (b["terminal_id"], b["batch"]) == (terminal, batch)), None)
        host_net = mine["sales_amount"] - mine["refunds_amount"]
        if entry is None:
            out.append(
                _diff(
                    "payout_differs",
                    batch=batch,
                    host_amount=host_net,
                    invoices=mine["invoices"],
                    detail=f"batch {batch} settled on {day} is missing from merchant {merchant}'s statement",
                )
            )
            continue
        differing = [k for k in (*_FIGURES, "fees_total") if int(entry.get(k, 0)) != mine[k]]
        if differing:
            out.append(
                _diff(
                    "payout_differs",
                    batch=batch,
                    host_amount=host_net,
                    payout_amount=int(entry["sales_amount"]) - int(entry["refunds_amount"]),
                    invoices=mine["invoices"],
                    detail=f"batch {batch} on {day}: payout and host differ in "
                    + ", ".join(f"{k} {entry.get(k)} vs {mine[k]}" for k in differing),
                )
            )


def _check_statement(st: Row, out: list[dict[str, Any]]) -> None:
    label = f"statement of {st['merchant_id']} for {st['business_date']}"
    fees = sum(int(line["amount"]) for line in st.get("fees", []))
    if fees != int(st["fees_total"]):
        out.append(
            _diff(
                "payout_unbalanced",
                batch=None,
                payout_amount=st["net"],
                detail=f"{label}: fee lines sum to {fees}, fees_total is {st['fees_total']}",
            )
        )
    expected = int(st["sales_amount"]) - int(st["refunds_amount"]) - int(st["fees_total"]) + int(st["deposit_refund"])
    if expected != int(st["net"]):
        out.append(
            _diff(
                "payout_unbalanced",
                batch=None,
                payout_amount=st["net"],
                detail=f"{label}: sales − refunds − fees + deposit refund = {expected}, net is {st['net']}",
            )
        )
    for key in (*_FIGURES, "fees_total"):
        summed = sum(int(b.get(key, 0)) for b in st.get("batches", []))
        if summed != int(st[key]):
            out.append(
                _diff(
                    "payout_unbalanced",
                    batch=None,
                    payout_amount=st["net"],
                    detail=f"{label}: batches sum to {key} {summed}, statement has {st[key]}",
                )
            )


def compare_views(
    terminal_rows: Iterable[Row], host_rows: Iterable[Row], payout_lines: Iterable[Row] = ()
) -> list[dict[str, Any]]:
    """Every difference between one terminal's journal rows, the host's rows of the same batches
    (:meth:`~tillvault.host.ledger.HostLedger.batch_view`) and the payout statements
    (:func:`~tillvault.host.payout.host_views`); ``[]`` when they agree exactly.

    Terminal rows need ``batch``, ``invoice``, ``kind``, ``amount``, ``currency``, ``status``
    and may carry ``stan``, ``rrn``, ``auth_code`` (as ``tillvault tx list --json`` gives them).
    Amounts are int minor units.
    """
    terminal_list, host_list = list(terminal_rows), list(host_rows)
    out: list[dict[str, Any]] = []
    mine = _index(terminal_list, TERMINAL_LIVE, "terminal", out)
    theirs = _index(host_list, HOST_LIVE, "host", out)
    host_any = {_key(r): r for r in host_list if r.get("kind") in MONEY_KINDS}
    terminal_any = {_key(r): r for r in terminal_list if r.get("kind") in MONEY_KINDS}
    for key, row in mine.items():
        other = theirs.get(key)
        if other is None:
            seen = host_any.get(key)
            status = seen.get("status") if seen else "absent"
            out.append(
                _diff(
                    "missing_on_host",
                    batch=row.get("batch"),
                    invoice=row.get("invoice"),
                    stan=row.get("stan"),
                    terminal_amount=row.get("amount"),
                    host_amount=seen.get("amount") if seen else None,
                    host_status=status,
                    detail=f"batch {key[0]} invoice {row.get('invoice')}: live on the terminal, {status} on the host",
                )
            )
        else:
            _compare_rows(row, other, out)
    for key, row in theirs.items():
        if key in mine:
            continue
        seen = terminal_any.get(key)
        status = seen.get("status") if seen else "absent"
        out.append(
            _diff(
                "missing_on_terminal",
                batch=row.get("batch"),
                invoice=row.get("invoice"),
                stan=row.get("stan"),
                host_amount=row.get("amount"),
                terminal_amount=seen.get("amount") if seen else None,
                terminal_status=status,
                detail=f"batch {key[0]} invoice {row.get('invoice')}: live on the host, {status} on the terminal",
            )
        )
    term_figures = batch_figures(terminal_list, TERMINAL_LIVE)
    host_figures = batch_figures(host_list, HOST_LIVE)
    for batch in sorted(set(term_figures) | set(host_figures), key=lambda b: (b is None, b or 0)):
        a = term_figures.get(batch, dict.fromkeys(_FIGURES, 0))
        b = host_figures.get(batch, dict.fromkeys(_FIGURES, 0))
        if a != b:
            involved = sorted(
                {k[1] for k in (set(mine) ^ set(theirs)) if k[0] == batch}
                | {k[1] for k in set(mine) & set(theirs) if k[0] == batch and mine[k]["amount"] != theirs[k]["amount"]},
                key=str,
            )
            out.append(
                _diff(
                    "batch_totals_differ",
                    batch=batch,
                    terminal_amount=a["sales_amount"] - a["refunds_amount"],
                    host_amount=b["sales_amount"] - b["refunds_amount"],
                    invoices=involved,
                    terminal_totals=a,
                    host_totals=b,
                    detail=f"batch {batch}: terminal {a}, host {b}",
                )
            )
    _compare_payout(host_list, payout_lines, out)
    return out
