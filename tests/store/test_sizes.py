"""Sizes as people type them (capacities, policy figures): exact, and a clear error otherwise."""

from __future__ import annotations

import pytest

from tillvault.store.space import MAX_SIZE, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 << 20),
        ("4m", 4 << 20),
        (" 4 m ", 4 << 20),
        ("1.5G", 1536 << 20),
        ("600KiB", 600 << 10),
        ("12.5kb", 12_500),
        ("999999999999", 999_999_999_999),  # exact, not rounded through a float
        (4096, 4096),
    ],
)
def test_a_size_is_read_exactly(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e400m", "not a size"),  # was an OverflowError traceback
        ("inf", "not a size"),
        ("nan", "not a size"),
        ("lots", "not a size"),
        ("-5m", "must not be negative"),
        ("9" * 30, "larger than any disk"),
    ],
)
def test_what_is_not_a_size_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)
    assert MAX_SIZE == 1 << 60
