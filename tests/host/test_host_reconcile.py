"""Three-way reconciliation: terminal journal vs host ledger vs payout, every difference named."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.host.conftest import TERMINAL, card
from tests.host.settle_driver import Driver

from tillvault.domain import iso8583 as iso
from tillvault.host.fees import FeeSchedule
from tillvault.host.payout import host_views
from tillvault.host.reconcile import compare_views
from tillvault.host.settings import set_fee_schedule

FRIDAY = date(2025, 6, 13)
_TERMINAL_STATUS = {"approved": "approved", "uploaded": "approved", "advised": "offline_approved"}


def as_terminal(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a terminal's journal holding the same transactions would list (tx list --json form)."""
    out = []
    for r in rows:
        out.append(
            {
                "invoice": r["invoice"],
                "batch": r["batch"],
                "stan": int(r["stan"]),
                "kind": r["kind"],
                "amount": r["amount"],
                "currency": "CNY" if r["currency"] == "156" else r["currency"],  # the terminal keeps alpha codes
                "status": _TERMINAL_STATUS.get(r["status"], r["status"]),
                "rrn": r["rrn"],
                "auth_code": r["auth_code"],
            }
        )
    return out


@pytest.fixture
def views(tmp_path: Path) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]]:
    """A settled and paid-out batch (sales, a refund, an advice, a reversed sale): terminal, host, payout views."""
    host = Driver(tmp_path / "host", FRIDAY)
    set_fee_schedule(host.ledger, FeeSchedule.uniform(6000))
    host.sale(10_000, invoice=1)
    host.sale(25_000, invoice=2)
    host.refund(3_000, invoice=3)
    host.advice(4_000, invoice=4)
    reversed_sale = iso.sale_request(**card(amount=7_000, invoice=5))
    host.send(reversed_sale)
    host.reverse(reversed_sale)
    host.sale(8_000, invoice=6, batch=2)  # batch 2: not settled
    assert host.settle(1)["39"] == "00"
    host.payout(FRIDAY)
    rows, statements = host_views(host.ledger, TERMINAL)
    host.close()
    yield as_terminal(rows), rows, statements


def types(differences: list[dict[str, Any]]) -> list[str]:
    return sorted(d["type"] for d in differences)


def test_three_views_of_the_same_money_agree(views: Any) -> None:
    terminal, host, payout = views
    assert len(payout) == 1 and payout[0]["batches"][0]["batch"] == 1
    assert compare_views(terminal, host, payout) == []
    assert compare_views(terminal, host) == []


def test_the_terminals_seven_digit_invoices_match_the_hosts_six(views: Any) -> None:
    # Field 62 carries six digits: the terminal's invoice 1,000,002 is 2 on the host.
    terminal, host, payout = views
    for row in terminal:
        row["invoice"] += 1_000_000
    assert compare_views(terminal, host, payout) == []


def test_host_rows_carry_what_reconciliation_needs(views: Any) -> None:
    _, host, _ = views
    by_invoice = {r["invoice"]: r for r in host}
    assert by_invoice[4]["kind"] == "offline_sale" and by_invoice[4]["status"] == "advised"
    assert by_invoice[5]["status"] == "reversed" and not by_invoice[5]["live"]
    assert by_invoice[1]["settled_date"] == "2025-06-13" and by_invoice[1]["fee"] == 60
    assert by_invoice[6]["settled_date"] is None
    for key in ("invoice", "stan", "date", "kind", "amount", "currency", "status", "rrn", "auth_code"):
        assert key in by_invoice[1]


def test_a_sale_live_on_the_terminal_but_reversed_on_the_host_is_named(views: Any) -> None:
    terminal, host, payout = views
    for row in terminal:
        if row["invoice"] == 5:
            row["status"] = "approved"
    diffs = compare_views(terminal, host, payout)
    assert types(diffs) == ["batch_totals_differ", "missing_on_host"]
    missing = next(d for d in diffs if d["type"] == "missing_on_host")
    assert (missing["invoice"], missing["terminal_amount"], missing["host_status"]) == (5, 7_000, "reversed")
    totals = next(d for d in diffs if d["type"] == "batch_totals_differ")
    assert totals["invoices"] == [5]
    assert totals["terminal_amount"] - totals["host_amount"] == 7_000


def test_a_sale_the_terminal_lacks_is_named(views: Any) -> None:
    terminal, host, payout = views
    terminal = [r for r in terminal if r["invoice"] != 2]
    diffs = compare_views(terminal, host, payout)
    missing = next(d for d in diffs if d["type"] == "missing_on_terminal")
    assert (missing["invoice"], missing["host_amount"], missing["terminal_status"]) == (2, 25_000, "absent")


def test_amount_kind_currency_and_reference_differences_are_named(views: Any) -> None:
    terminal, host, payout = views
    changed = {r["invoice"]: r for r in terminal}
    changed[1]["amount"] = 10_001
    changed[2]["kind"] = "refund"
    changed[4]["currency"] = "840"
    changed[6]["rrn"] = "999999999999"
    diffs = compare_views(terminal, host, payout)
    named = {(d["type"], d["invoice"]) for d in diffs}
    assert {("amount_differs", 1), ("kind_differs", 2), ("currency_differs", 4), ("reference_differs", 6)} <= named
    amount = next(d for d in diffs if d["type"] == "amount_differs")
    assert (amount["terminal_amount"], amount["host_amount"], amount["stan"]) == (10_001, 10_000, host[0]["stan"])
    assert any(d["type"] == "batch_totals_differ" and d["batch"] == 1 for d in diffs)


def test_a_duplicate_live_row_is_named(views: Any) -> None:
    terminal, host, payout = views
    terminal.append(dict(terminal[0]))
    assert "duplicate" in types(compare_views(terminal, host, payout))


def test_invoices_and_batches_as_text_match_numbers(views: Any) -> None:
    terminal, host, payout = views
    for row in terminal:
        row["invoice"] = f"{row['invoice']:06d}"
        row["batch"] = f"{row['batch']:06d}"
    assert compare_views(terminal, host, payout) == []


def test_a_payout_that_disagrees_with_the_host_is_named(views: Any) -> None:
    terminal, host, payout = views
    tampered = copy.deepcopy(payout)
    tampered[0]["batches"][0]["sales_amount"] += 1
    diffs = compare_views(terminal, host, tampered)
    assert "payout_differs" in types(diffs) and "payout_unbalanced" in types(diffs)
    differs = next(d for d in diffs if d["type"] == "payout_differs")
    assert sorted(differs["invoices"]) == [1, 2, 3, 4]

    missing_batch = copy.deepcopy(payout)
    missing_batch[0]["batches"] = []
    diffs = compare_views(terminal, host, missing_batch)
    assert any(d["type"] == "payout_differs" and "missing" in d["detail"] for d in diffs)


def test_an_unbalanced_statement_is_named(views: Any) -> None:
    terminal, host, payout = views
    tampered = copy.deepcopy(payout)
    tampered[0]["net"] += 1
    tampered[0]["fees"][0]["amount"] += 1
    details = [d["detail"] for d in compare_views(terminal, host, tampered) if d["type"] == "payout_unbalanced"]
    assert any("fee lines" in d for d in details) and any("net is" in d for d in details)


def test_a_settled_batch_not_yet_paid_out_is_not_compared_with_the_payout(views: Any) -> None:
    terminal, host, _ = views
    assert compare_views(terminal, host, []) == []


def test_declines_and_voids_do_not_count() -> None:
    terminal = [
        {"batch": 1, "invoice": 1, "kind": "sale", "amount": 500, "currency": "156", "status": "voided"},
        {"batch": 1, "invoice": 2, "kind": "void", "amount": 500, "currency": "156", "status": "approved"},
        {"batch": 1, "invoice": 3, "kind": "sale", "amount": 900, "currency": "156", "status": "declined"},
    ]
    host = [
        {"batch": 1, "invoice": 1, "kind": "sale", "amount": 500, "currency": "156", "status": "voided"},
        {"batch": 1, "invoice": 2, "kind": "void", "amount": 500, "currency": "156", "status": "approved"},
    ]
    assert compare_views(terminal, host) == []


def test_a_batch_number_a_replacement_device_used_again_is_reconciled_on_its_own_rows(tmp_path: Path) -> None:
    # Device A sells and settles batch 1; the device replacing it under the same terminal id
    # starts again at batch 1 and invoice 1, and settles: its batch is its own rows only.
    host = Driver(tmp_path / "host", FRIDAY)
    host.sale(100, invoice=1, batch=1)
    assert host.settle(1)["39"] == "00"
    host.sale(250, invoice=1, batch=1)
    assert host.settle(1)["39"] == "00"
    rows, _ = host_views(host.ledger, TERMINAL, [1])
    assert [(r["invoice"], r["amount"]) for r in rows] == [(1, 250)]
    mine = as_terminal(rows)
    assert compare_views(mine, rows) == []
    host.close()
