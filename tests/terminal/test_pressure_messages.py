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
