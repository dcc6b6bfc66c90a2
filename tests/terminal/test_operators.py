"""Operators and roles (S10): off until the first manager is added; then every money-moving act
needs an operator whose role reaches it, proven by a PIN that is never stored in clear."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from tillvault.errors import InvalidInput, PermissionDenied
from tillvault.terminal.terminal import Terminal

VISA = "4111111111111111"
EXPIRY = "3012"
MANAGER_PIN = "918273645"


def _with_roles(t: Terminal) -> Terminal:
    t.operators.add("mia", "manager", MANAGER_PIN)
    t.operators.add("ann", "cashier", "2468", by="mia", by_pin=MANAGER_PIN)
    t.operators.add("sam", "supervisor", "1357", by="mia", by_pin=MANAGER_PIN)
    return t


def test_roles_are_off_until_the_first_operator_and_that_one_must_be_a_manager(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal()
    assert not t.operators.enabled() and t.operators.list() == []
    assert t.sale(1_000, VISA, EXPIRY).status == "approved", "no operators: anyone sells, as before"
    with pytest.raises(InvalidInput, match="first operator must be a manager"):
        t.operators.add("ann", "cashier", "2468")
    with pytest.raises(InvalidInput, match="4 to 12 digits"):
        t.operators.add("mia", "manager", "12a4")
    with pytest.raises(InvalidInput, match="role 'owner'"):
        t.operators.add("mia", "owner", "1234")
    with pytest.raises(InvalidInput, match="operator id"):
        t.operators.add("mia smith", "manager", "1234")
    assert not t.operators.enabled()
    t.operators.add("mia", "manager", MANAGER_PIN)
    with pytest.raises(PermissionDenied, match="managing operators needs an operator and a PIN"):
        t.operators.add("ann", "cashier", "2468")
    with pytest.raises(InvalidInput, match="exists already"):
        t.operators.add("mia", "manager", "1234", by="mia", by_pin=MANAGER_PIN)


def test_each_act_needs_a_role_that_reaches_it_and_a_refusal_writes_nothing(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = _with_roles(make_terminal())
    before = t.journal.tip
    anonymous = t.sale(1_000, VISA, EXPIRY)
    assert anonymous.status == "refused" and "needs an operator and a PIN" in anonymous.reason
    assert t.journal.tip == before and t.records.list() == [], "refused before anything was written or sent"
    sold = t.sale(1_000, VISA, EXPIRY, operator_id="ann", pin="2468")
    assert sold.status == "approved"
    assert t.records.get(sold.invoice)["operator_id"] == "ann"
    by_cashier = t.refund(500, VISA, EXPIRY, original_invoice=sold.invoice, operator_id="ann", pin="2468")
    assert by_cashier.status == "refused" and "needs a supervisor or above; operator ann is a cashier" in (
        by_cashier.reason
    )
    void = t.void(sold.invoice, operator_id="ann", pin="2468")
    assert void.status == "refused" and void.kind == "void" and void.invoice == sold.invoice
    refund = t.refund(500, VISA, EXPIRY, original_invoice=sold.invoice, operator_id="sam", pin="1357")
    assert refund.status == "approved"
    assert t.void(sold.invoice, operator_id="mia", pin=MANAGER_PIN).status == "refused", "refunded: not voidable"
    assert t.operators.check("settle", "ann", "2468") == "ann"
    with pytest.raises(PermissionDenied, match="backup needs a manager"):
        t.operators.check("backup", "sam", "1357")


def test_five_wrong_pins_lock_an_operator_until_a_manager_sets_a_new_pin(
    make_terminal: Callable[..., Terminal],
) -> None:
    now = [datetime(2026, 12, 1, 9, 0).astimezone()]
    t = _with_roles(make_terminal(clock=lambda: now[0]))
    for left in (4, 3, 2, 1):
        with pytest.raises(PermissionDenied, match=f"wrong PIN for operator ann \\({left} tries left\\)"):
            t.operators.check("sale", "ann", "0000")
    with pytest.raises(PermissionDenied, match="locked for 15 minutes"):
        t.operators.check("sale", "ann", "0000")
    locked = t.sale(1_000, VISA, EXPIRY, operator_id="ann", pin="2468")
    assert locked.status == "refused" and "is locked after 5 wrong PINs" in locked.reason, "even the right PIN"
    assert [o["locked"] for o in t.operators.list() if o["operator_id"] == "ann"] == [True]
    now[0] += timedelta(minutes=16)
    assert t.operators.check("sale", "ann", "2468") == "ann", "the lock lapses"
    # A right PIN resets the count; a manager's new PIN unlocks at once.
    for _ in range(5):
        with pytest.raises(PermissionDenied):
            t.operators.check("sale", "ann", "1111")
    t.operators.set_pin("ann", "8642", by="mia", by_pin=MANAGER_PIN)
    assert t.operators.check("sale", "ann", "8642") == "ann"
    with pytest.raises(PermissionDenied, match="wrong PIN"):
        t.operators.check("sale", "ann", "2468")
    kinds = [e.kind for e in t.journal.events() if e.kind.startswith("operator_")]
    assert kinds.count("operator_locked") == 2 and "operator_pin_set" in kinds


def test_no_pin_is_kept_in_clear_and_the_last_manager_stays(make_terminal: Callable[..., Terminal]) -> None:
    t = _with_roles(make_terminal())
    t.journal.checkpoint()
    for path in t.data_dir.rglob("*"):
        if path.is_file():
            assert MANAGER_PIN.encode() not in path.read_bytes(), path
    with pytest.raises(InvalidInput, match="last manager"):
        t.operators.remove("mia", by="mia", by_pin=MANAGER_PIN)
    t.operators.remove("ann", by="mia", by_pin=MANAGER_PIN)
    t.operators.remove("sam", by="mia", by_pin=MANAGER_PIN)
    t.operators.remove("mia", by="mia", by_pin=MANAGER_PIN)
    assert not t.operators.enabled()
    assert t.sale(1_000, VISA, EXPIRY).status == "approved", "roles off again"


def test_the_command_line_asks_for_the_operator_and_pin(make_terminal: Callable[..., Terminal]) -> None:
    t = _with_roles(make_terminal())
    data = t.data_dir
    t.close()
    cli = [sys.executable, "-c", "from tillvault.cli.main import main; main()", "--data", str(data)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60)

    sale = ["sale", "--amount", "10.00", "--pan", VISA, "--expiry", EXPIRY, "--json"]
    assert run(*sale).returncode == 1
    assert run(*sale, "--operator", "ann", "--pin", "2468").returncode == 0
    settle = run("settle", "--operator", "ann", "--pin", "0000")
    assert settle.returncode == 2 and "wrong PIN for operator ann" in settle.stderr + settle.stdout
    assert run("settle", "--operator", "ann", "--pin", "2468", "--json").returncode == 0
    by_supervisor = ("--operator", "sam", "--pin", "1357")
    added = run("operator", "add", "lee", "--role", "cashier", "--new-pin", "5555", *by_supervisor)
    assert added.returncode == 2 and "needs a manager" in added.stderr + added.stdout
    listed = run("operator", "list", "--json")
    assert listed.returncode == 0 and '"role": "supervisor"' in listed.stdout and MANAGER_PIN not in listed.stdout


def test_a_retry_returns_the_first_result_even_once_the_operator_is_locked(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = _with_roles(make_terminal())
    first = t.sale(1_000, VISA, EXPIRY, operator_id="ann", pin="2468", idem_key="pos-42")
    assert first.status == "approved"
    for _ in range(5):
        with pytest.raises(PermissionDenied):
            t.operators.check("sale", "ann", "0000")
    retry = t.sale(1_000, VISA, EXPIRY, operator_id="ann", pin="2468", idem_key="pos-42")
    assert retry.status == "approved" and retry.invoice == first.invoice, "never 'refused' for a charged card"
    fresh = t.sale(1_000, VISA, EXPIRY, operator_id="ann", pin="2468", idem_key="pos-43")
    assert fresh.status == "refused" and "locked" in fresh.reason


def test_a_pin_is_ascii_digits_and_anything_else_is_named(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    with pytest.raises(InvalidInput, match="4 to 12 digits"):
        t.operators.add("mia", "manager", "\uff11\uff12\uff13\uff14")  # full-width digits from an IME
    t.operators.add("mia", "manager", MANAGER_PIN)
    wrong_type = t.sale(1_000, VISA, EXPIRY, operator_id="mia", pin=918273645)  # type: ignore[arg-type]
    assert wrong_type.status == "refused" and "a PIN is 4 to 12 digits" in wrong_type.reason


def _guess(data: str, pin: str, barrier, out) -> None:  # type: ignore[no-untyped-def]
    t = Terminal.open(data)
    try:
        barrier.wait()
        t.operators.check("backup", "mia", pin)
        out.put("accepted")
    except PermissionDenied as exc:
        out.put(str(exc))
    finally:
        t.close()


def test_guesses_from_many_processes_at_once_are_all_counted(make_terminal: Callable[..., Terminal]) -> None:
    import multiprocessing

    t = _with_roles(make_terminal())
    data = str(t.data_dir)
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(12), ctx.Queue()
    guesses = [f"{1000 + i}" for i in range(12)]
    procs = [ctx.Process(target=_guess, args=(data, g, barrier, out)) for g in guesses]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    wrong = [r for r in results if r.startswith("wrong PIN")]
    locked = [r for r in results if "is locked after" in r]
    # Counted one after another: the fifth wrong guess locks, and nothing after it gets in.
    assert len(wrong) == 5 and sum("locked for 15 minutes" in r for r in wrong) == 1, results
    assert len(locked) == 7 and "accepted" not in results, results
    t.journal.refresh()
    [mia] = [o for o in t.operators.list() if o["operator_id"] == "mia"]
    assert mia["locked"], results
    with pytest.raises(PermissionDenied, match="is locked after 5 wrong PINs"):
        t.operators.check("backup", "mia", MANAGER_PIN)


def test_every_manager_pin_lost_a_manager_gets_a_new_one_with_the_recovery_code(
    make_terminal: Callable[..., Terminal],
) -> None:
    import json

    now = [datetime(2026, 12, 1, 9, 0).astimezone()]
    t = make_terminal(clock=lambda: now[0])
    first = t.operators.add("mia", "manager", MANAGER_PIN)
    code = first["recovery_code"]
    assert len(code) == 23 and code.count("-") == 3, "shown once, when roles turn on"
    assert "recovery_code" not in t.operators.add("ann", "cashier", "2468", by="mia", by_pin=MANAGER_PIN)
    with pytest.raises(InvalidInput, match="not a manager"):
        t.operators.recover(code, "ann", "1111")
    # The PIN is forgotten: wrong codes are counted and lock recovery like PINs.
    for left in (4, 3, 2, 1):
        with pytest.raises(PermissionDenied, match=f"wrong recovery code \\({left} tries left\\)"):
            t.operators.recover("AAAAA-AAAAA-AAAAA-AAAAA", "mia", "1111")
    with pytest.raises(PermissionDenied, match="locked for 15 minutes"):
        t.operators.recover("AAAAA-AAAAA-AAAAA-AAAAA", "mia", "1111")
    with pytest.raises(PermissionDenied, match="recovery is locked"):
        t.operators.recover(code, "mia", "1111")
    now[0] += timedelta(minutes=16)
    # Typed back from paper: any case, spaces for dashes.
    following = t.operators.recover(code.lower().replace("-", " "), "mia", "424242")
    assert following != code
    assert t.operators.check("operators", "mia", "424242") == "mia"
    with pytest.raises(PermissionDenied, match="wrong recovery code"):
        t.operators.recover(code, "mia", "1111")  # a code works once
    assert t.operators.recover(following, "mia", "515151")
    # A manager may issue a new code at any time; the old one stops working.
    fresh = t.operators.new_recovery_code(by="mia", by_pin="515151")
    with pytest.raises(PermissionDenied, match="needs a manager"):
        t.operators.new_recovery_code(by="ann", by_pin="2468")
    kinds = [e.kind for e in t.journal.events(0)]
    assert kinds.count("operator_recovered") == 2 and "operator_recovery_locked" in kinds
    t.journal.checkpoint()
    for path in t.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (code, following, fresh, fresh.replace("-", "")):
                assert secret.encode() not in data, (path, "a recovery code in clear")
    assert json.dumps(t.operators.list()).count("recovery") == 0


def test_recovery_from_the_command_line(make_terminal: Callable[..., Terminal]) -> None:
    import json
    import os

    t = make_terminal()
    data = t.data_dir
    t.close()
    cli = [sys.executable, "-c", "from tillvault.cli.main import main; main()", "--data", str(data)]

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})

    added = run("operator", "add", "mia", "--role", "manager", TILLVAULT_NEW_PIN=MANAGER_PIN)
    assert added.returncode == 0 and "Recovery code: " in added.stdout and "shown once" in added.stdout
    code = added.stdout.split("Recovery code: ")[1].split()[0]
    wrong = run("operator", "recover", "mia", TILLVAULT_RECOVERY_CODE="AAAAA", TILLVAULT_NEW_PIN="7777")
    assert wrong.returncode == 2 and "wrong recovery code" in wrong.stderr + wrong.stdout
    ok = run("operator", "recover", "mia", "--json", TILLVAULT_RECOVERY_CODE=code, TILLVAULT_NEW_PIN="7777")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["recovery_code"] != code
    pins = {"TILLVAULT_OPERATOR_PIN": "7777", "TILLVAULT_NEW_PIN": "8888"}
    changed = run("operator", "pin", "mia", "--operator", "mia", **pins)
    assert changed.returncode == 0, "the recovered PIN works"
    again = run("operator", "recovery-code", "--operator", "mia", "--json", TILLVAULT_OPERATOR_PIN="8888")
    assert again.returncode == 0 and len(json.loads(again.stdout)["recovery_code"]) == 23
