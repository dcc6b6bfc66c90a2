"""The host's ledger (double entry, durability settings), its secret, and fault configuration."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.host.conftest import MASTERCARD, SECRET, VISA

from tillvault.errors import ConfigError, InvalidInput
from tillvault.host import ledger as ledger_module
from tillvault.host.faults import FaultInjector, parse_faults, write_faults_file
from tillvault.host.ledger import HostLedger
from tillvault.host.secret import default_config_dir, load_host_secret


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[HostLedger]:
    opened = HostLedger(tmp_path / "data", secret=SECRET, default_credit_limit=10_000)
    yield opened
    opened.close()


# --- secret ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_env_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("TILLVAULT_HOST_SECRET", raising=False)
    monkeypatch.delenv("TILLVAULT_HOST_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_secret_file_is_created_0600_outside_the_data_dir(no_env_secret: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    secret = load_host_secret(data)
    config = default_config_dir(data)
    assert config.parent == no_env_secret / "tillvault" / "host" and len(config.name) == 16
    path = config / "host.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_host_secret(data) == secret  # stable
    assert default_config_dir(tmp_path / "other") != config  # one secret per data dir


def test_env_secret_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TILLVAULT_HOST_SECRET", "from-env")
    assert load_host_secret(tmp_path) == b"from-env"


def test_secret_readable_by_others_is_refused(no_env_secret: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    load_host_secret(data)
    path = default_config_dir(data) / "host.secret"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_host_secret(data)


def test_secret_inside_the_data_dir_is_refused(no_env_secret: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must not be inside"):
        load_host_secret(tmp_path, config_dir=tmp_path / "cfg")


def test_ledger_refuses_a_different_secret(tmp_path: Path) -> None:
    HostLedger(tmp_path, secret=b"one").close()
    with pytest.raises(ConfigError, match="does not match"):
        HostLedger(tmp_path, secret=b"two")


def test_ledger_is_wal_and_synchronous_full(ledger: HostLedger) -> None:
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_card_tokens_are_keyed_hmacs(ledger: HostLedger, tmp_path: Path) -> None:
    other = HostLedger(tmp_path / "other", secret=b"another secret")
    assert ledger.token(VISA) != other.token(VISA)
    assert len(ledger.token(VISA)) == 64 and VISA not in ledger.token(VISA)
    other.close()


def test_card_token_is_hmac_sha256_of_the_pan_so_existing_ledgers_keep_their_accounts(ledger: HostLedger) -> None:
    assert ledger.token(VISA) == hmac.new(SECRET, VISA.encode(), hashlib.sha256).hexdigest()


# --- double entry ----------------------------------------------------------------------------------------


def test_set_card_balance_posts_adjustments_against_deposit(ledger: HostLedger) -> None:
    account = ledger.set_card(VISA, balance=2_500)
    assert (account.balance, account.available, account.credit_limit) == (2_500, 12_500, 10_000)
    account = ledger.set_card(VISA, balance=-300, credit_limit=0)
    assert (account.balance, account.available) == (-300, -300)
    deposit = ledger.accounts("deposit")[0]
    assert deposit.balance == 300
    assert ledger.check_balanced()["ok"]


def test_set_card_validates(ledger: HostLedger) -> None:
    with pytest.raises(InvalidInput, match="12 to 19 digits"):
        ledger.set_card("1234")
    with pytest.raises(InvalidInput, match="negative"):
        ledger.set_card(VISA, credit_limit=-1)


def test_transfers_must_be_positive_between_two_accounts(ledger: HostLedger) -> None:
    a = ledger.card_account(ledger.token(VISA), None, "156").id
    b = ledger.system_account("merchant_payable", "M1", "156").id
    with pytest.raises(InvalidInput, match="positive"):
        ledger.post(a, b, 0, "156", "sale", "x")
    with pytest.raises(InvalidInput, match="two different"):
        ledger.post(a, a, 5, "156", "sale", "x")


def test_a_transfer_is_cancelled_at_most_once(ledger: HostLedger) -> None:
    a = ledger.card_account(ledger.token(VISA), None, "156").id
    b = ledger.system_account("merchant_payable", "M1", "156").id
    transfer = ledger.post(a, b, 500, "156", "sale", "x")
    ledger.cancel(transfer, "reversal", "x")
    with pytest.raises(InvalidInput, match="refused"):
        ledger.cancel(transfer, "reversal", "x")
    assert ledger.account_by_id(a).balance == 0


def test_failed_atomic_block_rolls_back_every_posting(ledger: HostLedger) -> None:
    a = ledger.card_account(ledger.token(VISA), None, "156").id
    b = ledger.system_account("merchant_payable", "M1", "156").id
    with pytest.raises(RuntimeError), ledger.atomic():
        ledger.post(a, b, 100, "156", "sale", "x")
        raise RuntimeError("crash mid-way")
    assert ledger.transfers() == [] and ledger.account_by_id(a).balance == 0


def test_a_failed_commit_rolls_back_and_the_ledger_stays_usable(ledger: HostLedger) -> None:
    a = ledger.card_account(ledger.token(VISA), None, "156").id
    with pytest.raises(sqlite3.IntegrityError), ledger.atomic():
        # A deferred foreign key is checked at COMMIT, which fails and leaves the transaction open.
        ledger.execute("PRAGMA defer_foreign_keys = ON")
        ledger.execute(
            "INSERT INTO transfers (debit_account, credit_account, amount, currency, kind, reference, created_at)"
            " VALUES (?, 999999, 5, '156', 'sale', 'x', 'now')",
            (a,),
        )
    assert ledger.transfers() == []
    b = ledger.system_account("merchant_payable", "M1", "156").id
    ledger.post(a, b, 100, "156", "sale", "after")  # a new transaction can begin
    assert ledger.account_by_id(a).balance == -100 and ledger.check_balanced()["ok"]


def test_a_system_account_id_learnt_in_a_rolled_back_transaction_is_forgotten(ledger: HostLedger) -> None:
    with pytest.raises(RuntimeError), ledger.atomic():
        lost = ledger.system_account_id("merchant_payable", "M9", "156")
        raise RuntimeError("crash mid-way")
    card = ledger.card_account(ledger.token(VISA), None, "156")
    assert card.id == lost  # SQLite handed the rolled-back id to the next account
    payable = ledger.system_account_id("merchant_payable", "M9", "156")
    assert payable != card.id
    assert (ledger.account_by_id(payable).kind, ledger.account_by_id(payable).key) == ("merchant_payable", "M9")
    assert ledger.system_account_id("merchant_payable", "M9", "156") == payable


@pytest.fixture(params=[True, False], ids=["returning", "sqlite-before-3.35"])
def returning(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with ``INSERT ... RETURNING`` and with the read-back older SQLite needs."""
    monkeypatch.setattr(ledger_module, "_HAS_RETURNING", request.param)
    return bool(request.param)


def test_rrns_are_unique_increasing_and_skip_one_already_in_the_log(ledger: HostLedger, returning: bool) -> None:
    first, second = ledger.next_rrn(), ledger.next_rrn()
    assert (first, second) == ("000000000001", "000000000002")
    ledger.insert_auth(
        terminal_id="T0000001", local_date="0615", stan="000001", mti="0200", proc_code="000000", amount=5,
        currency="156", rrn="000000000003", response="00", status="uploaded",
    )  # fmt: skip
    assert ledger.next_rrn() == "000000000004"  # 3 came with an uploaded transaction
    assert ledger.next_rrn() == "000000000005"


def test_rrns_skip_a_run_of_numbers_already_in_the_log(ledger: HostLedger, returning: bool) -> None:
    assert ledger.next_rrn() == "000000000001"
    for stan, rrn in (("000001", "000000000002"), ("000002", "000000000003"), ("000003", "000000000005")):
        ledger.insert_auth(
            terminal_id="T0000001", local_date="0615", stan=stan, mti="0200", proc_code="000000", amount=5,
            currency="156", rrn=rrn, response="00", status="uploaded",
        )  # fmt: skip
    assert [ledger.next_rrn() for _ in range(3)] == ["000000000004", "000000000006", "000000000007"]
    assert ledger.rows("SELECT value FROM counters WHERE name = 'rrn'")[0]["value"] == 7


def test_new_accounts_come_back_whole(ledger: HostLedger, returning: bool) -> None:
    card = ledger.card_account(ledger.token(VISA), "411111******1111", "156")
    assert (card.kind, card.masked_pan, card.credit_limit, card.balance, card.blocked) == (
        "cardholder", "411111******1111", 10_000, 0, False,
    )  # fmt: skip
    assert ledger.card_account(ledger.token(VISA), None, "156") == card
    system = ledger.system_account("fee_income", "fees", "156")
    assert (system.kind, system.key, system.credit_limit) == ("fee_income", "fees", 0)
    assert (
        ledger.system_account_id("fee_income", "fees", "156")
        == system.id
        == ledger.system_account("fee_income", "fees", "156").id
    )


def test_random_postings_keep_debits_equal_to_credits(ledger: HostLedger) -> None:
    rng = random.Random(7)
    accounts = [ledger.card_account(ledger.token(p), None, "156").id for p in (VISA, MASTERCARD)]
    accounts += [ledger.system_account(k, "x", "156").id for k in ("merchant_payable", "deposit", "settlement")]
    posted: list[int] = []
    for _ in range(300):
        if posted and rng.random() < 0.2:
            ledger.cancel(posted.pop(rng.randrange(len(posted))), "reversal", "r")
        else:
            debit, credit = rng.sample(accounts, 2)
            posted.append(ledger.post(debit, credit, rng.randint(1, 10_000), "156", "sale", "s"))
    report = ledger.check_balanced()
    assert report["ok"] and report["debits"] == report["credits"] > 0
    assert sum(ledger.account_by_id(a).balance for a in accounts) == 0


def test_check_balanced_detects_tampering(ledger: HostLedger) -> None:
    ledger.set_card(VISA, balance=100)
    ledger._db.execute("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE kind = 'cardholder'")
    report = ledger.check_balanced()
    assert not report["ok"] and report["problems"]


# --- faults ----------------------------------------------------------------------------------------------


def test_fault_shorthands_and_validation() -> None:
    rules = parse_faults({"delay": 1.5, "drop": True, "garbage": False, "decline": None})
    assert [(r.action, r.seconds) for r in rules] == [("delay", 1.5), ("drop", 0.0)]
    for bad, reason in [
        ({"explode": True}, "unknown fault"),
        ({"drop": 3}, "not a number"),
        ({"drop": {"colour": 1}}, "unknown options"),
        ({"delay": {"seconds": 0}}, "seconds > 0"),
        ({"drop": {"probability": 2}}, "probability"),
        ({"drop": {"count": -1}}, "count"),
        ([1], "JSON object"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            parse_faults(bad)  # type: ignore[arg-type]


def test_fault_counts_and_mtis() -> None:
    injector = FaultInjector(config={"drop": {"count": 2, "mtis": ["0200"]}})
    assert not injector.plan("0800").drop
    assert [injector.plan("0200").drop for _ in range(3)] == [True, True, False]


def test_fault_probability_is_honoured() -> None:
    injector = FaultInjector(config={"garbage": {"probability": 0.5}}, rng=random.Random(1))
    hits = sum(injector.plan("0200").garbage for _ in range(400))
    assert 150 < hits < 250


def test_faults_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    injector = FaultInjector(tmp_path / "faults.json")
    assert injector.plan("0200").actions == ()
    write_faults_file(tmp_path, {"close_after": True})
    assert injector.plan("0200").close_after
    write_faults_file(tmp_path, {"delay": 0.25})
    plan = injector.plan("0200")
    assert plan.delay == 0.25 and not plan.close_after
    (tmp_path / "faults.json").write_text("{not json")
    assert injector.plan("0200").delay == 0.25  # a broken file keeps the faults in force
    (tmp_path / "faults.json").unlink()
    assert injector.plan("0200").actions == ()
