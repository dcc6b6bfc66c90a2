"""Short scenarios through the real terminal, host and archive: TillVault's invariants hold, the naive store fails.

Each scenario runs once per module (a few seconds each) and several tests read its figures.
The invariants (DESIGN.md): zero approved transactions lost, zero settlements failed, every
refusal before authorization (the host saw exactly the requests the terminal sent online),
terminal totals = host totals for every batch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tillvault.sim.simulate import Outage, Scenario, SimResult, run_scenario
from tillvault.sim.workload import SHOP_TZ


def assert_invariants(f: dict[str, Any]) -> None:
    """What every TillVault run must show, whatever the scenario."""
    assert f["lost"] == 0, f["lost_invoices"]
    assert f["settlement_failures"] == 0, f["settlement_failure_reasons"]
    assert f["refusals_before_authorization"] is True
    assert f["host_financial_requests"] == f["terminal_online_requests"]
    assert f["totals_reconcile"] is True
    assert all(row["reconciled"] and row["balanced"] for row in f["settlement_table"])
    assert f["unreadable_segments"] == []
    outcomes = f["approved"] + f["declined"] + f["refused_for_space"] + sum(f["refused_other"].values())
    assert outcomes + f["not_completed"] == f["sales_attempted"]


@pytest.fixture(scope="module")
def surge() -> SimResult:
    """A promotion day at ×10 on a 2 MiB store, host and archive reachable."""
    return run_scenario(Scenario(days=3, per_day=300, surge=10, surge_days=(1,), capacity="2MiB"))


@pytest.fixture(scope="module")
def outage() -> SimResult:
    """The network and the archive are down for 30 hours (through a closing time)."""
    return run_scenario(Scenario(days=4, per_day=250, surge=1, capacity="4MiB", outages=(Outage.parse("1@09:00+30h"),)))


@pytest.fixture(scope="module")
def settlement_down() -> SimResult:
    """The acquirer's settlement system is down for 30 hours (it answers 0500 with 91); authorizations work."""
    return run_scenario(
        Scenario(days=3, per_day=400, surge=1, capacity="2MiB", settlement_outages=(Outage.parse("0@12:00+30h"),))
    )


@pytest.fixture(scope="module")
def download() -> SimResult:
    """An update download of 0.9 MB lands at 11:00 on a 3 MiB store during trade and takes three hours."""
    return run_scenario(
        Scenario(
            days=2,
            per_day=300,
            surge=1,
            capacity="3MiB",
            update_day=1,
            update_hour=11.0,
            update_hours=3.0,
            update_bytes=900_000,
        )
    )


@pytest.fixture(scope="module")
def ageing() -> SimResult:
    """An ageing device: capacity shrinks by 30%, sectors go bad under sealed segments and the
    archive link fails ever more often."""
    return run_scenario(
        Scenario(
            days=4,
            per_day=300,
            surge=1,
            capacity="3MiB",
            ageing=0.30,
            archive_error_rate=0.9,
            media_error_rate=1.0,
        )
    )


def test_sim_surge_keeps_every_sale_and_settlement(surge: SimResult) -> None:
    f = surge.figures
    assert_invariants(f)
    assert f["sales_attempted"] > 3000
    assert f["approved"] > 0.9 * f["sales_attempted"]
    # The surge filled the hot tier: the ladder settled early (more batches than days) and sealed.
    assert f["settlements"] > f["scenario"]["days"]
    assert f["offload"]["sealed_segments"] == f["settlements"]


def test_sim_surge_breaks_the_naive_store(surge: SimResult) -> None:
    b = surge.figures["baseline"]
    assert b["lost"] > 0, "the naive store should lose paid orders once full"
    assert b["lost_amount"] > 0
    assert b["first_lost_at"] is not None
    assert b["peak_used_bytes"] <= b["capacity_bytes"] + 2_000_000  # its rows never pass the quota
    assert b["bytes_per_transaction"] > 5 * surge.figures["bytes_per_transaction"]


def test_sim_duplicates_refunds_and_voids(surge: SimResult) -> None:
    f = surge.figures
    assert f["duplicates_absorbed"] > 0  # a retry with the same key returned the first result
    assert f["refunds"].get("approved", 0) > 0
    assert f["voids"].get("approved", 0) > 0
    assert f["declined"] > 0  # the issuer's declines (51/62) came from the real host
    assert f["baseline"]["duplicate_charges"] > 0  # no idempotency key: charged twice


def test_sim_outage_offline_then_settles(outage: SimResult) -> None:
    f = outage.figures
    assert_invariants(f)
    assert f["offline_approved"] > 0
    assert f["settlements_deferred"] >= 1  # closing time fell in the outage
    assert f["settlement_pending_at_end"] is False  # settled once the network came back
    kinds = {e["kind"] for e in outage.timeline["events"]}
    assert "settlement_deferred" in kinds
    assert outage.timeline["outages"] == [[33.0, 63.0]]


def test_sim_refusals_come_before_authorization(settlement_down: SimResult) -> None:
    """Batches cannot close, the store fills with the host reachable: sales are refused, never lost."""
    f = settlement_down.figures
    assert_invariants(f)
    assert f["refused_for_space"] > 0
    # The host answered every request the terminal sent, and no other: a refused sale never reached it.
    assert f["host_financial_requests"] == f["terminal_online_requests"] > 0
    first = datetime.fromisoformat(f["first_refusal_for_space_at"])
    assert datetime(2025, 6, 2, 12, 0, tzinfo=SHOP_TZ) <= first < datetime(2025, 6, 3, 18, 0, tzinfo=SHOP_TZ)
    assert f["settlements_deferred"] > 1 and f["settlement_pending_at_end"] is False


def test_sim_update_download_cannot_take_reserved_space(download: SimResult) -> None:
    """The downloader takes what the file system has free; TillVault's pre-grown space is out of its reach."""
    f = download.figures
    assert_invariants(f)
    kinds = [e["kind"] for e in download.timeline["events"]]
    assert "update" in kinds and "update_done" in kinds
    assert f["refused_for_space"] == 0
    during = [p["used"] for p in download.timeline["points"] if 35.0 <= p["h"] < 38.0]
    before = [p["used"] for p in download.timeline["points"] if 31.0 <= p["h"] < 35.0]
    assert max(during) > min(before) + 800_000  # the download was there, counted against the capacity


def test_sim_ageing_device(ageing: SimResult) -> None:
    f = ageing.figures
    assert_invariants(f)
    assert f["final_capacity_bytes"] == int(f["capacity_bytes"] * 0.7)
    assert f["offload"]["offload_attempts_failed"] > 0  # the flaky link failed some offloads...
    assert f["offload"]["offloaded_segments"] == f["offload"]["sealed_segments"]  # ...later ones made up for them
    # Bad sectors were real (bytes of segment files flipped), found by the scrub and mended from the
    # archive's acknowledged copies: nothing unreadable at the end.
    media = f["media_errors"]
    assert media["errors"] >= 1 and media["repaired"] >= media["errors"] and media["unrepaired"] == 0
    assert f["unreadable_segments"] == []
    kinds = [e["kind"] for e in ageing.timeline["events"]]
    assert kinds.count("media_error") == media["errors"] and "repaired" in kinds
    caps = [p["capacity"] for p in ageing.timeline["points"]]
    assert caps[-1] < caps[0]


def test_sim_figures_have_the_contract_keys(surge: SimResult) -> None:
    keys = {
        "sales_attempted",
        "approved",
        "declined",
        "refused_for_space",
        "lost",
        "settlements",
        "settlement_failures",
        "bytes_per_transaction",
        "peak_used_bytes",
        "capacity_bytes",
        "runway_forecast_days",
    }
    f = surge.figures
    assert keys <= set(f)
    assert keys <= set(f["baseline"])
    for row in f["runway_forecast_days"]:
        assert len(row) == 3 and isinstance(row[0], int)
    assert f["peak_used_bytes"] <= f["capacity_bytes"]
    assert f["device_b"]["applicable"] is False
