"""The simulator's parts on their own: outage parsing, the naive store's quota, the clock, seeded keys."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tillvault.errors import InvalidInput
from tillvault.sim.baseline import ORDERS_FILE, NaiveStore
from tillvault.sim.clock import SharedClockReader, SimClock
from tillvault.sim.simulate import Outage, Scenario, seeded_keyring
from tillvault.sim.workload import SHOP_TZ
from tillvault.store.keys import KeyRing


def test_sim_outage_parse() -> None:
    assert Outage.parse("12") == Outage(12, 0.0, 24.0)
    assert Outage.parse("20+2d") == Outage(20, 0.0, 48.0)
    assert Outage.parse("5@11:30+6h") == Outage(5, 11.5, 6.0)
    assert Outage.parse("3@9+90m") == Outage(3, 9.0, 1.5)
    begin, end = Outage.parse("1@10:00+3h").window(date(2025, 6, 2))
    assert begin == datetime(2025, 6, 3, 10, 0, tzinfo=SHOP_TZ)
    assert end - begin == timedelta(hours=3)
    for bad in ("", "x", "1@25:00", "1+0h", "1+3w", "-1"):
        with pytest.raises(ValueError):
            Outage.parse(bad)


def test_sim_scenario_defaults() -> None:
    sc = Scenario()
    assert sc.surge_indexes() == (10,)
    assert Scenario(surge=1).surge_indexes() == ()
    assert Scenario(days=5, surge_days=(1, 4)).surge_indexes() == (1, 4)
    with pytest.raises(InvalidInput, match="--surge-day must be 0 to 4"):
        Scenario(days=5, surge_days=(1, 9))  # a day the run does not have is refused, not dropped
    assert sc.capacity_bytes() == 24 * 1024 * 1024
    assert sc.update_size() == int(20_000_000 * 24 / 64)
    assert sc.update_index() == 15
    assert Scenario(update_bytes=0).update_index() is None
    assert json.dumps(sc.to_dict())


def _order(store: NaiveStore, outcome: str = "approved", amount: int = 3500, kind: str = "sale") -> bool:
    return store.record(
        outcome=outcome,
        kind=kind,
        when="2025-06-02T12:00:00.000+08:00",
        amount=amount,
        currency="CNY",
        masked_pan="622848******0001",
        card_token="0" * 32,
        brand="unionpay",
        card_type="debit",
        entry_mode="chip",
        merchant_id="898310148160001",
        terminal_id="TV000001",
        batch=1,
        operator_id="01",
        customer_ref=None,
        order_id="pos-20250602-00001",
        rrn="400000000001",
        auth_code="123456",
        response_code="00",
    )


def test_sim_naive_store_loses_orders_past_its_quota(tmp_path: Path) -> None:
    store = NaiveStore(tmp_path, capacity_bytes=5_000)
    assert _order(store, "declined") is True  # declines are not orders: nothing written, nothing lost
    assert store.figures.orders_written == 0 and store.figures.declined == 1
    written = 0
    while _order(store):
        written += 1
    assert 5 <= written < 20
    f = store.figures
    assert f.lost == 1 and f.lost_amount == 3500 and f.first_lost_at
    assert not _order(store)
    assert store.figures.lost == 2
    # The day's closing (Z report) no longer fits either: the settlement fails.
    assert store.close_day("2025-06-02", "2025-06-02T23:10:00+08:00") is False
    assert f.settlement_failures == 1
    done = store.finish()
    size = (tmp_path / ORDERS_FILE).stat().st_size
    assert size <= 5_000 and done.used_bytes == size
    assert 450 <= done.bytes_per_transaction <= 650  # WORKLOAD.md's naive JSON record
    assert done.peak_used_bytes <= 5_000


def test_sim_naive_store_settles_and_notices_imbalance(tmp_path: Path) -> None:
    store = NaiveStore(tmp_path, capacity_bytes=10_000_000)
    for _ in range(3):
        assert _order(store)
    assert _order(store, kind="refund", amount=500)
    assert store.close_day("2025-06-02", "2025-06-02T23:10:00+08:00")
    row = store.figures.settlement_rows[-1]
    assert row["ok"] and row["balanced"] and row["net_amount_app"] == 3 * 3500 - 500
    store.set_capacity(store.used_bytes() + 10)
    assert not _order(store)  # charged, not recorded
    store.set_capacity(10_000_000)
    assert store.close_day("2025-06-03", "2025-06-03T23:10:00+08:00")
    assert store.figures.settlement_rows[-1]["balanced"] is False
    assert store.figures.unbalanced_settlements == 1
    store.finish()


def test_sim_naive_store_counts_neighbour_files(tmp_path: Path) -> None:
    store = NaiveStore(tmp_path, capacity_bytes=100_000)
    store.put_file("update.pkg", 99_800)
    assert not _order(store)
    store.remove_file("update.pkg")
    assert _order(store)
    store.finish()


def test_sim_clock_moves_forward_and_is_shared(tmp_path: Path) -> None:
    start = datetime(2025, 6, 2, 6, 0, tzinfo=SHOP_TZ)
    shared = tmp_path / "clock.bin"
    clock = SimClock(start, shared=shared)
    reader = SharedClockReader(shared, SHOP_TZ)
    assert clock() == start and reader.now() == start
    clock.set(start + timedelta(days=1, hours=12))
    assert reader.today() == date(2025, 6, 3)
    clock.set(start)  # never backwards
    assert clock() == start + timedelta(days=1, hours=12)
    clock.advance(timedelta(hours=7))
    assert clock.today() == date(2025, 6, 4) == reader.today()
    clock.close()
    with pytest.raises(ValueError):
        SimClock(datetime(2025, 6, 2))


def test_sim_seeded_keyring_is_reproducible(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    seeded_keyring(a, 7)
    seeded_keyring(b, 7)
    seeded_keyring(c, 8)
    ka, kb, kc = (KeyRing.load(p) for p in (a, b, c))
    assert ka.token_key() == kb.token_key() != kc.token_key()
    assert ka.active("kek").key_id == kb.active("kek").key_id
    assert len(ka.token_key()) == 32
