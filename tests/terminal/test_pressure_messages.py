"""The merchant's prompt when the store is full names only the ways out that exist."""

from __future__ import annotations

from tillvault.terminal.pressure import messages


def test_a_full_store_names_settling_only_with_an_open_batch_and_offloading_only_with_sealed_batches() -> None:
    en, zh = messages("exhausted", "A", {"open_batch_count": 12, "sealed_segments": 3, "evicted_segments": 1})
    assert "Settle now" in en and "12 transactions" in en and "2 sealed batch(es)" in en
    assert "请立即结算" in zh and "归档" in zh
    en, zh = messages("exhausted", "A", {"open_batch_count": 0, "sealed_segments": 2, "evicted_segments": 2})
    assert "Settle now" not in en and "other files fill it" in en and "请清理设备上的其他文件" in zh
    assert en.endswith("Settlement still works.")


def test_the_refusal_for_space_advises_settling_only_when_there_is_something_to_settle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tillvault.store.journal import Journal
    from tillvault.store.space import SpaceManager, SpacePolicy

    journal = Journal(tmp_path / "journal.db").open()
    counts = {"open": 0}
    space = SpaceManager(tmp_path, journal, SpacePolicy(), open_batch_count=lambda: counts["open"])
    st = space.status()
    empty = space.full_error(st, 4096)
    assert "Settle now" not in str(empty) and "Free space (tillvault cleanup)" in str(empty)
    assert "请立即结算" not in empty.message_zh and "请清理空间" in empty.message_zh
    counts["open"] = 7
    busy = space.full_error(st, 4096)
    assert "Settle now (tillvault settle: 7 in the open batch)" in str(busy) and "请立即结算" in busy.message_zh
    journal.close()


def test_a_full_store_without_an_archive_says_how_to_give_it_one() -> None:
    held = {"open_batch_count": 0, "sealed_segments": 3, "evicted_segments": 0}
    en, zh = messages("exhausted", "A", {**held, "archive": None})
    assert "tillvault archive set" in en and "3 sealed batch(es)" in en and "tillvault archive set" in zh
    en, _ = messages("exhausted", "A", {**held, "archive": "/mnt/nas/till"})
    assert "Connect the archive so 3 sealed batch(es)" in en and "archive set" not in en
