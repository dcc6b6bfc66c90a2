"""The issuer's own card checks (length, Luhn, expiry): the host trusts nothing the terminal did."""

from __future__ import annotations

from datetime import date

__all__ = ["expiry_problem", "is_unionpay", "luhn_ok", "pan_problem"]


def is_unionpay(pan: str) -> bool:
    """True for a UnionPay PAN (starts 62 or 81); such PANs are exempt from the Luhn check."""
    return pan.startswith(("62", "81"))


def luhn_ok(pan: str) -> bool:
    """True when the digits pass the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(pan)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def pan_problem(pan: str) -> str | None:
    """Why ``pan`` is not a valid card number (12-19 digits, Luhn unless UnionPay), or None.

    12 as the terminal's card checks and ISO 8583 field 2 allow: Maestro issues 12-digit cards.
    """
    if not (pan.isascii() and pan.isdigit()):
        return "card number is not all digits"
    if not 12 <= len(pan) <= 19:
        return f"card number has {len(pan)} digits, expected 12 to 19"
    if not is_unionpay(pan) and not luhn_ok(pan):
        return "card number fails the Luhn check"
    return None


def expiry_problem(expiry: str, today: date) -> str | None:
    """Why a YYMM expiry does not allow a transaction on ``today``, or None.

    A card is valid through the last day of its expiry month; YY 50-99 are 1950-1999.
    """
    if len(expiry) != 4 or not expiry.isdigit() or not 1 <= int(expiry[2:]) <= 12:
        return f"expiry {expiry!r} is not a valid YYMM date"
    yy, month = int(expiry[:2]), int(expiry[2:])
    year = 2000 + yy if yy < 50 else 1900 + yy  # as EMV reads a two-digit year
    if (year, month) < (today.year, today.month):
        return "card expired"
    return None
